//! The raw SQLite ceiling of this machine: the gateway's settings (WAL, `synchronous=FULL`), a
//! table shaped like its `events`, rows inserted with a prepared statement in transactions of 100.
//!
//! No HTTP, no validation, no audit, no deliveries: what the disk and SQLite allow at best, against
//! which the gateway's figures are read as ratios.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

/// Rows per transaction.
pub const TX_ROWS: usize = 100;

/// What the raw insert achieved.
pub struct Ceiling {
    pub rows: usize,
    pub elapsed: Duration,
}

impl Ceiling {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// Inserts `rows` rows of `body` into a fresh database in a temporary directory.
pub fn measure(rows: usize, body: &[u8]) -> Result<Ceiling> {
    let dir = tempfile::tempdir().context("creating a temporary directory for SQLite")?;
    let path = dir.path().join("ceiling.db");
    let mut conn =
        Connection::open(&path).with_context(|| format!("opening SQLite at {}", path.display()))?;
    let mode: String =
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).context("setting journal_mode=WAL")?;
    anyhow::ensure!(mode.eq_ignore_ascii_case("wal"), "SQLite refused WAL mode (got {mode})");
    conn.execute_batch(
        "PRAGMA synchronous=FULL;
         CREATE TABLE events(id TEXT PRIMARY KEY, source TEXT, type TEXT, tenant TEXT,
                             received_at INTEGER, digest TEXT, body BLOB);",
    )
    .context("creating the events table")?;

    let digest = hex::encode(Sha256::digest(body));
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0);
    let ids: Vec<String> = (0..rows).map(|n| format!("ceiling-{n:08}")).collect();

    let start = Instant::now();
    for chunk in ids.chunks(TX_ROWS) {
        let tx = conn.transaction().context("beginning a transaction")?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO events(id, source, type, tenant, received_at, digest, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .context("preparing the insert")?;
            for id in chunk {
                stmt.execute(params![
                    id,
                    "/vendor-a/cartella",
                    "it.lombardia.csi.prestazione.erogata.v1",
                    "F205",
                    now,
                    digest,
                    body
                ])
                .context("inserting a row")?;
            }
        }
        tx.commit().context("committing a transaction")?;
    }
    let elapsed = start.elapsed();
    Ok(Ceiling { rows, elapsed })
}
