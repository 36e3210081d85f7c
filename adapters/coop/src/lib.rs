//! # csi-gateway-coop
//!
//! The inbound cooperatives adapter as a library: a cooperative's report of delivered home-care
//! hours (SAD, SADH, ADM, ADH, AES) — CSV exported from Excel or JSON from its software — read
//! through a declarative [`Mapping`] (`mappings/coop/<name>.toml`: settings, code tables and a jq
//! program run by jaq) into checked, canonical [`Delivery`] records, one [`RowResult`] per record.
//!
//! What it is for: decoding (UTF-8 with or without BOM, Windows-1252), CSV dialects, the mapping,
//! and the checks a single upload can make on its own (formats, codice fiscale, service codes,
//! times, duration, future dates, overlapping deliveries of one operator).
//!
//! What it is not for: HTTP, storage, progetti, pricing, events. The hub does those and depends on
//! this crate, never the other way round.
//!
//! Invariants: CSV is streamed, one record at a time, so memory does not grow with the file (only
//! the per-operator-day intervals of [`Checks`] do); a bad row never stops the rows after it; no
//! input makes the reader panic; a mapping program is compiled once, when the mapping loads.
#![forbid(unsafe_code)]

mod cf;
mod checks;
mod csv_in;
mod decode;
mod json_in;
mod mapping;
mod parse;
mod recursion;
mod row;
mod template;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use cf::check as check_codice_fiscale;
pub use cf::check_char as codice_fiscale_check_char;
pub use checks::Checks;
pub use csv_in::read_csv;
pub use decode::TextEncoding;
pub use json_in::{read_json, InputError};
pub use mapping::{Decimal, Delimiter, Format, Mapping, MappingError, FIELDS};

/// The service types of the interchange code list (`contracts/codes/tipo-servizio-domiciliare`).
pub const SERVICES: &[&str] = &["SAD", "SADH", "ADM", "ADH", "AES"];

/// One record of the file and what became of it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowResult {
    /// 1-based record number in the file: for CSV the header is row 1 and blank lines count (so it
    /// is the spreadsheet's row number); for JSON the array index + 1.
    pub row: u64,
    pub outcome: RowOutcome,
}

// Most rows are deliveries: boxing them would only add an allocation per row.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    Delivery(Delivery),
    /// Every problem of the row, not just the first.
    Rejected(Vec<RowError>),
    /// A blank line or a summary row (`TOTALE`): not a delivery, not an error.
    Skipped {
        reason: String,
    },
}

/// One broken rule in one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// The file's own column name (CSV) or JSON pointer (JSON), when known.
    pub column: Option<String>,
    /// Stable machine name: `required`, `codice_fiscale`, `unknown_service`, `date_format`,
    /// `time_format`, `number_format`, `coordinates`, `end_before_start`, `duration_range`,
    /// `overlap`, `future_date`, `mapping`, `read_error`.
    pub rule: String,
    /// Plain words; holds nothing personal beyond what the row itself holds.
    pub message: String,
}

impl RowError {
    pub(crate) fn new(column: Option<String>, rule: &str, message: impl Into<String>) -> Self {
        Self { column, rule: rule.into(), message: message.into() }
    }
}

/// A checked, canonical delivery (one visit / one block of hours).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Delivery {
    /// The cooperative's code (from the mapping or a column).
    pub cooperativa: String,
    /// Contract / progetto reference.
    pub id_progetto: Option<String>,
    /// Pseudonymous operator id.
    pub operatore: String,
    pub beneficiario_pseudonimo: Option<String>,
    /// Upper case, shape and check character verified. At least one of the two is present.
    pub beneficiario_codice_fiscale: Option<String>,
    /// `SAD|SADH|ADM|ADH|AES`, or a code of the mapping's `extra_services`.
    pub tipo_servizio: String,
    #[serde(with = "serde_date")]
    pub data: time::Date,
    #[serde(with = "serde_time")]
    pub ora_inizio: Option<time::Time>,
    #[serde(with = "serde_time")]
    pub ora_fine: Option<time::Time>,
    /// From end − start, or a duration column; 1..=1440.
    pub durata_minuti: u32,
    /// Decimal string with 2 decimals (`"12.50"`).
    pub km: Option<String>,
    pub note: Option<String>,
    /// (latitude, longitude).
    pub checkin: Option<(f64, f64)>,
    pub checkout: Option<(f64, f64)>,
    /// The cooperative's own record id.
    pub id_record: Option<String>,
}

impl Delivery {
    /// `coop:<cooperativa>:<id_record>` when the record has an id (a corrected row keeps its id and
    /// so its key, and replaces the earlier one), else `content:<sha256 hex>` of the identifying
    /// fields (cooperativa, beneficiary, operatore, tipo_servizio, data, ora_inizio). Re-sending the
    /// same file yields the same keys.
    pub fn idempotency_key(&self) -> String {
        if let Some(id) = &self.id_record {
            return format!("coop:{}:{}", self.cooperativa, id);
        }
        let beneficiary = self
            .beneficiario_codice_fiscale
            .as_deref()
            .or(self.beneficiario_pseudonimo.as_deref())
            .unwrap_or("");
        let start = self.ora_inizio.map(serde_time::text).unwrap_or_default();
        let mut h = Sha256::new();
        for part in [
            self.cooperativa.as_str(),
            beneficiary,
            &self.operatore,
            &self.tipo_servizio,
            &serde_date::text(self.data),
            &start,
        ] {
            h.update(part.as_bytes());
            h.update([0x1f]);
        }
        format!("content:{}", hex::encode(h.finalize()))
    }

    /// Hours as a decimal string with 2 decimals (`"1.50"`), rounded half up.
    pub fn ore(&self) -> String {
        let hundredths = (u64::from(self.durata_minuti) * 100 + 30) / 60;
        parse::decimal_string(hundredths)
    }
}

/// `YYYY-MM-DD`.
mod serde_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn text(d: Date) -> String {
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    }

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&text(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        let f = crate::parse::DateFormat::parse("yyyy-mm-dd").map_err(serde::de::Error::custom)?;
        crate::parse::date(&s, &[f])
            .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not YYYY-MM-DD")))
    }
}

/// `HH:MM`, or `HH:MM:SS` when there are seconds.
mod serde_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Time;

    pub fn text(t: Time) -> String {
        if t.second() == 0 {
            format!("{:02}:{:02}", t.hour(), t.minute())
        } else {
            format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
        }
    }

    pub fn serialize<S: Serializer>(t: &Option<Time>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&text(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Time>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => crate::parse::time(&s)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not HH:MM"))),
        }
    }
}
