//! Replaceable code tables: codice prestazione → denominazione, ISTAT → SIUSS state codes,
//! ISTAT province → region. The defaults are compiled in: the codici prestazione from the
//! workspace's authoritative `mappings/inps/codici-prestazione.csv`, the others from `tables/*.csv`;
//! the hub loads the configured files with [`CodiciPrestazione::from_path`] or the `from_csv` loaders.
//!
//! CSV format: `;`-separated, UTF-8, lines starting with `#` and blank lines ignored, the first
//! remaining line is a header and is skipped.

use std::collections::HashMap;

use crate::codes::PresenzaProvaMezzi;

/// A table file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("table {table}, line {line}: {message}")]
pub struct TableError {
    /// Which table.
    pub table: &'static str,
    /// 1-based line number in the text.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn rows(text: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')))
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .skip(1)
        .map(|(n, l)| (n, l.split(';').map(str::trim).collect()))
}

fn digits(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| b.is_ascii_digit())
}

/// One row of the prestazioni table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VocePrestazione {
    /// `DenominazionePrestazione`.
    pub denominazione: String,
    /// `PresenzaProvaMezzi` for this prestazione, when the table says.
    pub presenza_prova_mezzi: Option<PresenzaProvaMezzi>,
}

/// Codice prestazione → denominazione (and optionally PresenzaProvaMezzi).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodiciPrestazione {
    map: HashMap<String, VocePrestazione>,
}

impl CodiciPrestazione {
    /// Parses `codice;denominazione[;presenza_prova_mezzi]`.
    pub fn from_csv(text: &str) -> Result<Self, TableError> {
        let err = |line, message: String| TableError { table: "codici-prestazione", line, message };
        let mut map = HashMap::new();
        for (line, f) in rows(text) {
            let (codice, den) = match f.as_slice() {
                [c, d] | [c, d, _] => (*c, *d),
                _ => return Err(err(line, format!("expected 2 or 3 fields, found {}", f.len()))),
            };
            if !(5..=10).contains(&codice.chars().count()) {
                return Err(err(line, format!("codice {codice:?} must be 5-10 characters")));
            }
            if !(10..=200).contains(&den.chars().count()) {
                return Err(err(line, "denominazione must be 10-200 characters".into()));
            }
            let ppm = match f.get(2) {
                None | Some(&"") => None,
                Some(c) => Some(
                    PresenzaProvaMezzi::from_code(c)
                        .ok_or_else(|| err(line, format!("presenza_prova_mezzi {c:?} is not 1-4")))?,
                ),
            };
            if map
                .insert(
                    codice.to_string(),
                    VocePrestazione { denominazione: den.to_string(), presenza_prova_mezzi: ppm },
                )
                .is_some()
            {
                return Err(err(line, format!("codice {codice:?} repeated")));
            }
        }
        Ok(CodiciPrestazione { map })
    }

    /// Reads and parses a table file (`mappings/inps/codici-prestazione.csv` or the ente's own).
    pub fn from_path(path: &std::path::Path) -> Result<Self, TableError> {
        let text = std::fs::read_to_string(path).map_err(|e| TableError {
            table: "codici-prestazione",
            line: 0,
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_csv(&text)
    }

    /// The row for a code.
    pub fn get(&self, codice: &str) -> Option<&VocePrestazione> {
        self.map.get(codice)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// ISTAT state code (contracts) → SIUSS state code (380 = Italy).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Nazioni {
    map: HashMap<String, String>,
}

impl Nazioni {
    /// Parses `istat;siuss[;nome]`, both 3 digits.
    pub fn from_csv(text: &str) -> Result<Self, TableError> {
        let mut map = HashMap::new();
        for (line, f) in rows(text) {
            match f.as_slice() {
                [i, s, ..] if digits(i, 3) && digits(s, 3) => {
                    map.insert(i.to_string(), s.to_string());
                }
                _ => {
                    return Err(TableError {
                        table: "nazioni-istat-siuss",
                        line,
                        message: "expected istat;siuss with 3 digits each".into(),
                    })
                }
            }
        }
        Ok(Nazioni { map })
    }

    /// SIUSS code for an ISTAT state code.
    pub fn siuss(&self, istat: &str) -> Option<&str> {
        self.map.get(istat).map(String::as_str)
    }

    /// Number of states.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when the table has no states.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// ISTAT province code → ISTAT region code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Regioni {
    map: HashMap<String, String>,
}

impl Regioni {
    /// Parses `provincia;regione[;nome]`, 3 and 2 digits.
    pub fn from_csv(text: &str) -> Result<Self, TableError> {
        let mut map = HashMap::new();
        for (line, f) in rows(text) {
            match f.as_slice() {
                [p, r, ..] if digits(p, 3) && digits(r, 2) => {
                    map.insert(p.to_string(), r.to_string());
                }
                _ => {
                    return Err(TableError {
                        table: "province-regioni",
                        line,
                        message: "expected provincia;regione with 3 and 2 digits".into(),
                    })
                }
            }
        }
        Ok(Regioni { map })
    }

    /// Region code of the comune with this 6-digit ISTAT code.
    pub fn of_comune(&self, istat_comune: &str) -> Option<&str> {
        self.map.get(istat_comune.get(0..3)?).map(String::as_str)
    }
}

/// The three tables the builders use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Codice prestazione → denominazione.
    pub prestazioni: CodiciPrestazione,
    /// ISTAT → SIUSS state codes.
    pub nazioni: Nazioni,
    /// ISTAT province → region.
    pub regioni: Regioni,
}

/// Compiled-in default of the codici prestazione: the workspace's `mappings/inps/codici-prestazione.csv`.
pub const CODICI_PRESTAZIONE_CSV: &str = include_str!("../../../mappings/inps/codici-prestazione.csv");
/// Compiled-in default of `tables/nazioni-istat-siuss.csv`.
pub const NAZIONI_CSV: &str = include_str!("../tables/nazioni-istat-siuss.csv");
/// Compiled-in default of `tables/province-regioni.csv`.
pub const PROVINCE_REGIONI_CSV: &str = include_str!("../tables/province-regioni.csv");

impl Tables {
    /// The compiled-in tables (`mappings/inps/codici-prestazione.csv` and `tables/*.csv`).
    pub fn builtin() -> Self {
        // The built-in files are tested to parse (tests below); an error here is a build defect.
        Tables {
            prestazioni: CodiciPrestazione::from_csv(CODICI_PRESTAZIONE_CSV).unwrap_or_default(),
            nazioni: Nazioni::from_csv(NAZIONI_CSV).unwrap_or_default(),
            regioni: Regioni::from_csv(PROVINCE_REGIONI_CSV).unwrap_or_default(),
        }
    }
}

impl Default for Tables {
    fn default() -> Self {
        Self::builtin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_tables_parse() {
        assert!(CodiciPrestazione::from_csv(CODICI_PRESTAZIONE_CSV).unwrap().len() >= 3);
        let n = Nazioni::from_csv(NAZIONI_CSV).unwrap();
        assert_eq!(n.siuss("100"), Some("380"));
        let r = Regioni::from_csv(PROVINCE_REGIONI_CSV).unwrap();
        assert_eq!(r.of_comune("015146"), Some("03"));
        assert_eq!(r.of_comune("108001"), Some("03"));
    }

    #[test]
    fn the_authoritative_table_loads_from_its_path() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../mappings/inps/codici-prestazione.csv");
        let t = CodiciPrestazione::from_path(&path).unwrap();
        assert_eq!(t, CodiciPrestazione::from_csv(CODICI_PRESTAZIONE_CSV).unwrap());
        let e = CodiciPrestazione::from_path(std::path::Path::new("/nonexistent.csv")).unwrap_err();
        assert!(e.message.contains("/nonexistent.csv"), "{e}");
    }

    #[test]
    fn prestazioni_loader_reports_line() {
        let e = CodiciPrestazione::from_csv("codice;denominazione\nA1.16;corto\n").unwrap_err();
        assert_eq!(e.line, 2);
        let t = CodiciPrestazione::from_csv(
            "# c\ncodice;denominazione\nA1.05.01;Contributo economico una tantum;1\n",
        )
        .unwrap();
        assert_eq!(t.get("A1.05.01").unwrap().presenza_prova_mezzi, Some(PresenzaProvaMezzi::Isee));
    }
}
