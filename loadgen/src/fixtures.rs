//! What the load tool and the criterion benchmarks share: the cooperatives scenario's data (the
//! beneficiaries' progetti and one cooperative's sheet of deliveries in the Excel dialect of the
//! shipped mapping `coop-excel-csv`), and paths written into a gateway's configuration.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// A path as a TOML basic string (JSON string escaping is valid TOML).
pub fn toml_string(path: &Path) -> String {
    Value::String(path.to_string_lossy().into_owned()).to_string()
}

/// The cooperative of the shipped mapping.
pub const COOPERATIVA: &str = "AURORA";
/// Tenant of the progetti and of the upload.
pub const TENANT: &str = "F205";
/// Distinct beneficiaries (one progetto each).
pub const BENEFICIARIES: usize = 500;
/// Operators; each works 8 visits of 45 minutes a day, one after the other.
const OPERATORS: usize = 250;
const VISITS_PER_DAY: usize = 8;
/// Progetti published per batch request.
const PROGETTI_BATCH: usize = 250;

/// A valid, distinct codice fiscale for beneficiary `n` (born 1930–1979, in Milan).
fn codice_fiscale(n: usize) -> String {
    const MONTHS: &[u8] = b"ABCDEHLMPRST";
    let letters = |k: usize| -> [u8; 3] { [b'A' + (k % 26) as u8, b'A' + (k / 26 % 26) as u8, b'X'] };
    let (surname, name) = (letters(n), letters(n / 7 + 3));
    let year = 30 + n % 50;
    let month = MONTHS[n % 12];
    let day = 1 + n % 28;
    let mut cf = format!(
        "{}{}{year:02}{}{day:02}F205",
        std::str::from_utf8(&surname).unwrap_or("AAX"),
        std::str::from_utf8(&name).unwrap_or("AAX"),
        month as char
    )
    .into_bytes();
    cf.push(csi_gateway_coop::codice_fiscale_check_char(&cf));
    String::from_utf8(cf).unwrap_or_default()
}

/// The contract example every progetto is derived from.
const PROGETTO_EXAMPLE: &str = "contracts/examples/it.lombardia.csi.progetto.approvato.v1.json";

/// The `progetto.approvato` events of the beneficiaries (SAD from AURORA, 60 h a month, 2025) as
/// batch bodies.
pub fn progetti(root: &Path) -> Result<Vec<Vec<u8>>> {
    let path = root.join(PROGETTO_EXAMPLE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let example: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let events: Vec<Value> = (0..BENEFICIARIES)
        .map(|n| {
            let mut ev = example.clone();
            let id = format!("PRG-LOAD-{n:05}");
            ev["id"] = json!(format!("approvazione-{id}"));
            ev["idempotencykey"] = json!(format!("loadgen-progetto-{id}"));
            ev["tenant"] = json!(TENANT);
            ev["subject"] = json!(format!("ben-{n:05}"));
            ev["data"]["idProgetto"] = json!(id);
            ev["data"]["beneficiario"] =
                json!({ "pseudonimo": format!("ben-{n:05}"), "codiceFiscale": codice_fiscale(n) });
            ev["data"]["periodo"] = json!({ "dal": "2025-01-01", "al": "2025-12-31" });
            ev["data"]["interventi"] = json!([{
                "idIntervento": format!("{id}-1"),
                "codicePrestazione": "A1.16",
                "tipoServizio": "SAD",
                "denominazione": "Assistenza domiciliare anziani",
                "oreAutorizzateMensili": "60",
                "tariffaOraria": "22.10",
                "quotaEnte": "1060.80",
                "quotaUtente": "265.20",
                "cooperativa": COOPERATIVA,
            }]);
            ev
        })
        .collect();
    Ok(events.chunks(PROGETTI_BATCH).map(|c| Value::Array(c.to_vec()).to_string().into_bytes()).collect())
}

/// `rows` deliveries as Excel saves them: Windows-1252, `;`, CRLF, decimal commas, `hh.mm`, a
/// quoted note with the separator in it every 10 rows, a blank line every 1,000, a TOTALE row.
/// Operators' visits never overlap; every date is a weekday-independent day of 2025.
pub fn sheet(rows: usize) -> Vec<u8> {
    let mut out = String::with_capacity(rows * 110);
    out.push_str("ID;Data;Dalle;Alle;Operatore;CF Utente;Ore;Servizio;Km;Note\r\n");
    let cfs: Vec<String> = (0..BENEFICIARIES).map(codice_fiscale).collect();
    let per_day = OPERATORS * VISITS_PER_DAY;
    for i in 0..rows {
        let slot = i % VISITS_PER_DAY;
        let operator = i / VISITS_PER_DAY % OPERATORS;
        // Spread the days over the year (day of year 1..=358).
        let day_of_year = 1 + (i / per_day * 7) % 358;
        let (d, m) = day_month(day_of_year);
        let cf = &cfs[(i * 7 + i / per_day) % BENEFICIARIES];
        let note = match i % 10 {
            0 => "\"Igiene; spesa e più\"",
            5 => "visita più lunga",
            _ => "",
        };
        out.push_str(&format!(
            "AUR-{i:07};{d:02}/{m:02}/2025;{h:02}.00;{h:02}.45;OP-{operator:03};{cf};0,75;ASS.DOM;{km},5;{note}\r\n",
            h = 8 + slot,
            km = i % 20
        ));
        if i % 1000 == 999 {
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("TOTALE;;;;;;{},00;;;\r\n", rows * 3 / 4));
    // Windows-1252: the only non-ASCII character used is `ù`.
    out.chars().map(|c| if c == 'ù' { 0xF9 } else { c as u8 }).collect()
}

/// Day and month of a day of year (1-based) in a non-leap year.
fn day_month(day_of_year: usize) -> (usize, usize) {
    const DAYS: [usize; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut d = day_of_year;
    for (m, len) in DAYS.iter().enumerate() {
        if d <= *len {
            return (d, m + 1);
        }
        d -= len;
    }
    (31, 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_valid_and_distinct() {
        let codes: std::collections::HashSet<String> = (0..BENEFICIARIES).map(codice_fiscale).collect();
        assert_eq!(codes.len(), BENEFICIARIES);
        for cf in &codes {
            assert_eq!(csi_gateway_coop::check_codice_fiscale(cf).as_deref(), Ok(cf.as_str()));
        }
    }

    #[test]
    fn days_of_the_year() {
        assert_eq!(day_month(1), (1, 1));
        assert_eq!(day_month(59), (28, 2));
        assert_eq!(day_month(60), (1, 3));
        assert_eq!(day_month(365), (31, 12));
    }
}
