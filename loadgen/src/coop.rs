//! The cooperatives scenario: one cooperative's monthly sheets for a year as a single CSV in the
//! Excel dialect of the shipped mapping `coop-excel-csv` (Windows-1252, `;`, decimal commas,
//! `dd/mm/yyyy`, `hh.mm`, a `TOTALE` row), uploaded in one request to
//! `POST /v1/adapters/coop/erogazioni` after the beneficiaries' progetti were published.
//!
//! Every row must come back `accepted`: the figure is rows mapped, checked against the progetto,
//! priced and accepted as `prestazione` events per second, timed from the first byte sent to the
//! end of the report. Progetti are published (and the file built) before the clock starts.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::gateway::API_KEY;
use crate::scenarios::RssSampler;

/// The cooperative of the shipped mapping.
pub const COOPERATIVA: &str = "AURORA";
/// Tenant of the progetti and of the upload.
const TENANT: &str = "F205";
/// Distinct beneficiaries (one progetto each).
const BENEFICIARIES: usize = 500;
/// Operators; each works 8 visits of 45 minutes a day, one after the other.
const OPERATORS: usize = 250;
const VISITS_PER_DAY: usize = 8;
/// Progetti published per batch request.
const PROGETTI_BATCH: usize = 250;

/// One run of the scenario.
pub struct CoopRun {
    pub rows: usize,
    pub bytes: usize,
    pub elapsed: Duration,
    pub peak_rss: u64,
    /// The gateway's CPU time (user + system) during the upload, in seconds.
    pub cpu: f64,
    /// The part of `cpu` used by the embedded store's writer thread (0 on PostgreSQL).
    pub writer_cpu: f64,
}

impl CoopRun {
    pub fn per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// The check character of a codice fiscale's first 15 characters.
fn check_char(first15: &[u8]) -> u8 {
    const ODD: [u32; 26] =
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23];
    let value = |c: u8| if c.is_ascii_digit() { usize::from(c - b'0') } else { usize::from(c - b'A') };
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &c)| if i % 2 == 0 { ODD[value(c)] } else { value(c) as u32 })
        .sum();
    b'A' + (sum % 26) as u8
}

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
    cf.push(check_char(&cf));
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

/// Publishes the progetti (not timed), uploads the sheet (timed), checks every row was accepted.
pub async fn upload(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    coop_key: &str,
    progetti: Vec<Vec<u8>>,
    sheet: Vec<u8>,
    rows: usize,
) -> Result<CoopRun> {
    let events = format!("{base}/v1/events");
    for (i, body) in progetti.into_iter().enumerate() {
        let resp = http
            .post(&events)
            .bearer_auth(API_KEY)
            .header(CONTENT_TYPE, crate::scenarios::BATCH)
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {events}"))?;
        let status = resp.status();
        if status != StatusCode::ACCEPTED {
            bail!(
                "publishing progetti (batch {i}) answered {status}:\n{}",
                resp.text().await.unwrap_or_default()
            );
        }
    }
    let url = format!("{base}/v1/adapters/coop/erogazioni?mapping=coop-excel-csv&tenant={TENANT}");
    let bytes = sheet.len();
    let sampler = RssSampler::start(pid);
    let cpu_before = crate::gateway::cpu_seconds(pid)?;
    let writer_before = crate::gateway::thread_cpu_seconds(pid, WRITER_THREAD)?;
    let start = Instant::now();
    let resp = http
        .post(&url)
        .bearer_auth(coop_key)
        .header(CONTENT_TYPE, "text/csv")
        .body(sheet)
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = resp.status();
    let text = resp.text().await.with_context(|| format!("reading the answer of POST {url}"))?;
    let elapsed = start.elapsed();
    let cpu = crate::gateway::cpu_seconds(pid)? - cpu_before;
    let writer_cpu = crate::gateway::thread_cpu_seconds(pid, WRITER_THREAD)? - writer_before;
    let peak_rss = sampler.finish().await;
    if status != StatusCode::OK {
        bail!("POST {url} answered {status}, expected 200:\n{}", head(&text));
    }
    let report: Value = serde_json::from_str(&text).context("the upload report is not JSON")?;
    let s = &report["summary"];
    let accepted = s["accepted"].as_u64().unwrap_or(0) as usize;
    if accepted != rows || s["flagged"].as_u64() != Some(0) {
        let problem = report["rows"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["status"] != "accepted" && r["status"] != "skipped"))
            .cloned()
            .unwrap_or(Value::Null);
        bail!("{accepted} of {rows} rows accepted (summary {s}); first other row: {problem}");
    }
    Ok(CoopRun { rows, bytes, elapsed, peak_rss, cpu, writer_cpu })
}

/// The name of the embedded store's writer thread (`src/store/sqlite.rs`).
const WRITER_THREAD: &str = "store-writer";

/// The first 2,000 characters of an answer.
fn head(text: &str) -> &str {
    let end = text.char_indices().nth(2000).map_or(text.len(), |(i, _)| i);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_codes_are_valid_and_distinct() {
        // RSSMRA85T10A562S is a known valid code.
        assert_eq!(check_char(b"RSSMRA85T10A562"), b'S');
        let codes: std::collections::HashSet<String> = (0..BENEFICIARIES).map(codice_fiscale).collect();
        assert_eq!(codes.len(), BENEFICIARIES);
    }

    #[test]
    fn days_of_the_year() {
        assert_eq!(day_month(1), (1, 1));
        assert_eq!(day_month(59), (28, 2));
        assert_eq!(day_month(60), (1, 3));
        assert_eq!(day_month(365), (31, 12));
    }
}
