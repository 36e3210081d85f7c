//! The cooperatives scenario: one cooperative's monthly sheets for a year as a single CSV in the
//! Excel dialect of the shipped mapping `coop-excel-csv` (Windows-1252, `;`, decimal commas,
//! `dd/mm/yyyy`, `hh.mm`, a `TOTALE` row), uploaded in one request to
//! `POST /v1/adapters/coop/erogazioni` after the beneficiaries' progetti were published.
//!
//! Every row must come back `accepted`: the figure is rows mapped, checked against the progetto,
//! priced and accepted as `prestazione` events per second, timed from the first byte sent to the
//! end of the report. Progetti are published (and the file built) before the clock starts.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use crate::gateway::API_KEY;
use crate::scenarios::RssSampler;
use loadgen::fixtures::TENANT;

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
