//! `csi-gateway migrate --from sqlite://... --to postgres://...`: an embedded store copied into an
//! empty PostgreSQL database in one transaction: events, idempotency keys, deliveries and their
//! attempts, the audit records verbatim (positions and hashes) with the chain's head, the read
//! models, and the SIUSS adapter's flussi, progressives and per-prestazione state. Deliveries in
//! flight in the source become pending (and unpublished) in the target. The audit chain is
//! verified on the target before the commit.
//!
//! The source is read in one SQLite read transaction (a consistent snapshot, even if a gateway is
//! still running on it) by a thread that streams chunks of rows; each chunk is one `INSERT ...
//! SELECT FROM UNNEST(...)`.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use serde::Serialize;
use tokio::sync::mpsc;

use super::schema::MIGRATION_LOCK;
use super::{connect_one, execute, query, read, schema, StoreError, StoreResult};

#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Bytes,
    /// An SQLite integer 0/1 as a PostgreSQL boolean.
    Bool,
}

/// A table to copy: the target's columns and the source's SELECT that yields them, in order.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Kind)],
    select: &'static str,
}

use Kind::{Bool, Bytes, Int, Text};

const TABLES: &[Table] = &[
    Table {
        name: "events",
        columns: &[
            ("id", Text),
            ("source", Text),
            ("type", Text),
            ("tenant", Text),
            ("subject", Text),
            ("idempotency_key", Text),
            ("correlation_id", Text),
            ("received_at", Int),
            ("digest", Text),
            ("body", Bytes),
        ],
        select: "SELECT id, source, type, tenant, subject, idempotency_key, correlation_id, received_at, digest, body
                 FROM events ORDER BY rowid",
    },
    Table {
        name: "idempotency",
        columns: &[("source", Text), ("key", Text), ("event_id", Text)],
        select: "SELECT source, key, event_id FROM idempotency",
    },
    Table {
        name: "deliveries",
        columns: &[
            ("id", Int),
            ("event_id", Text),
            ("destination", Text),
            ("status", Text),
            ("attempts", Int),
            ("since", Int),
            ("next_attempt_at", Int),
            ("lease_until", Int),
            ("last_error", Text),
            ("updated_at", Int),
        ],
        // What was in flight died with the embedded process: due again, and not yet published.
        select: "SELECT id, event_id, destination,
                        CASE WHEN status = 'in_flight' THEN 'pending' ELSE status END,
                        attempts, since, next_attempt_at,
                        CASE WHEN status = 'in_flight' THEN NULL ELSE lease_until END,
                        last_error, updated_at
                 FROM deliveries ORDER BY id",
    },
    Table {
        name: "attempts",
        columns: &[
            ("delivery_id", Int),
            ("attempt", Int),
            ("started_at", Int),
            ("finished_at", Int),
            ("outcome", Text),
            ("detail", Text),
        ],
        select: "SELECT delivery_id, attempt, started_at, finished_at, outcome, detail FROM attempts ORDER BY rowid",
    },
    Table {
        name: "audit",
        columns: &[
            ("seq", Int),
            ("ts", Int),
            ("action", Text),
            ("actor", Text),
            ("tenant", Text),
            ("event_id", Text),
            ("destination", Text),
            ("digest", Text),
            ("detail", Text),
            ("prev_hash", Text),
            ("hash", Text),
        ],
        select: "SELECT seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash
                 FROM audit ORDER BY rowid",
    },
    Table {
        name: "progetti",
        columns: &[
            ("tenant", Text),
            ("id_progetto", Text),
            ("pseudonimo", Text),
            ("codice_fiscale", Text),
            ("dal", Text),
            ("al", Text),
            ("interventi", Text),
            ("event_id", Text),
        ],
        select: "SELECT tenant, id_progetto, pseudonimo, codice_fiscale, dal, al, interventi, event_id FROM progetti",
    },
    Table {
        name: "coop_deliveries",
        columns: &[
            ("tenant", Text),
            ("key", Text),
            ("cooperativa", Text),
            ("id_progetto", Text),
            ("pseudonimo", Text),
            ("tipo_servizio", Text),
            ("codice_prestazione", Text),
            ("denominazione", Text),
            ("area_utenza", Text),
            ("data", Text),
            ("mese", Text),
            ("minuti", Int),
            ("importo_cents", Int),
            ("quota_utente_cents", Int),
            ("flag", Text),
            ("event_id", Text),
            ("upload_id", Text),
            ("digest", Text),
        ],
        select: "SELECT tenant, key, cooperativa, id_progetto, pseudonimo, tipo_servizio, codice_prestazione,
                        denominazione, area_utenza, data, mese, minuti, importo_cents, quota_utente_cents, flag,
                        event_id, upload_id, digest
                 FROM coop_deliveries",
    },
    Table {
        name: "coop_uploads",
        columns: &[
            ("id", Text),
            ("tenant", Text),
            ("client", Text),
            ("mapping", Text),
            ("created_at", Int),
            ("report", Text),
        ],
        select: "SELECT id, tenant, client, mapping, created_at, report FROM coop_uploads",
    },
    Table {
        name: "coop_upload_rows",
        columns: &[("upload_id", Text), ("row", Int), ("report", Text)],
        select: "SELECT upload_id, row, report FROM coop_upload_rows",
    },
    Table {
        name: "persone",
        columns: &[
            ("tenant", Text),
            ("pseudonimo", Text),
            ("codice_fiscale", Text),
            ("event_id", Text),
            ("updated_at", Int),
        ],
        select: "SELECT tenant, pseudonimo, codice_fiscale, event_id, updated_at FROM persone",
    },
    Table {
        name: "valutazioni_sina",
        columns: &[("tenant", Text), ("pseudonimo", Text), ("data_valutazione", Text), ("event_id", Text)],
        select: "SELECT tenant, pseudonimo, data_valutazione, event_id FROM valutazioni_sina",
    },
    Table {
        name: "siuss_flussi",
        columns: &[
            ("id_flusso", Text),
            ("ente", Text),
            ("denominazione", Text),
            ("tenant", Text),
            ("tipo", Text),
            ("operazione", Text),
            ("event_id", Text),
            ("id_prestazione", Text),
            ("built_from_event_id", Text),
            ("persona_event_id", Text),
            ("valutazione_event_id", Text),
            ("content_digest", Text),
            ("flusso", Text),
            ("ts_flusso", Int),
            ("created_at", Int),
            ("stato", Text),
            ("esito", Text),
            ("esito_messaggio", Text),
            ("esito_key", Text),
            ("esito_at", Int),
            ("id_acquisizione_siuss", Text),
            ("codice_siuss", Text),
            ("cancels", Text),
        ],
        // In the order they were offered: the target numbers them (`seq`) in that order.
        select: "SELECT id_flusso, ente, denominazione, tenant, tipo, operazione, event_id, id_prestazione,
                        built_from_event_id, persona_event_id, valutazione_event_id, content_digest, flusso,
                        ts_flusso, created_at, stato, esito, esito_messaggio, esito_key, esito_at,
                        id_acquisizione_siuss, codice_siuss, cancels
                 FROM siuss_flussi ORDER BY rowid",
    },
    Table {
        name: "siuss_progressivi",
        columns: &[("ente", Text), ("day", Text), ("last", Int)],
        select: "SELECT ente, day, last FROM siuss_progressivi",
    },
    Table {
        name: "siuss_prestazioni",
        columns: &[
            ("ente", Text),
            ("id_prestazione", Text),
            ("event_id", Text),
            ("current_flusso", Text),
            ("annullata", Bool),
        ],
        select: "SELECT ente, id_prestazione, event_id, current_flusso, annullata FROM siuss_prestazioni",
    },
];

/// Rows per INSERT, and the payload bytes after which a chunk is sent early.
const CHUNK_ROWS: usize = 1000;
const CHUNK_BYTES: usize = 16 << 20;

/// One column of a chunk.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Bool(Vec<Option<bool>>),
}

enum Message {
    /// The snapshot's row counts (per table, `TABLES` order) and the chain's head.
    Start {
        counts: Vec<i64>,
        head: Option<(i64, String)>,
    },
    Chunk {
        table: usize,
        columns: Vec<Column>,
        rows: usize,
    },
    Failed(StoreError),
}

/// What was copied.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// `(table, rows)` in copy order.
    pub tables: Vec<(String, i64)>,
    /// Audit records verified on the target.
    pub audit_records: i64,
}

/// Resolves `sqlite://<data_dir or file>` to the database file.
pub fn sqlite_path(from: &str) -> StoreResult<PathBuf> {
    let rest = from.strip_prefix("sqlite://").ok_or_else(|| {
        StoreError::new(format!("--from {from:?}: expected sqlite://<data_dir or gateway.db file>"))
    })?;
    let path = PathBuf::from(rest);
    let file = if path.is_dir() { path.join("gateway.db") } else { path };
    if !file.is_file() {
        return Err(StoreError::new(format!(
            "--from: no embedded store at {} (give the data_dir of the embedded gateway)",
            file.display()
        )));
    }
    Ok(file)
}

/// Copies the embedded store at `from` (`sqlite://...`) into the empty PostgreSQL database at
/// `to`, then verifies the audit chain there; nothing is committed unless it verifies.
pub async fn import_sqlite(from: &str, to: &str) -> StoreResult<ImportReport> {
    let file = sqlite_path(from)?;
    let mut client = connect_one(to).await?;
    schema::migrate(&mut client).await?;

    let (tx_chunks, mut chunks) = mpsc::channel::<Message>(4);
    let reader = std::thread::Builder::new()
        .name("sqlite-export".into())
        .spawn(move || {
            if let Err(e) = read_source(&file, &tx_chunks) {
                let _ = tx_chunks.blocking_send(Message::Failed(e));
            }
        })
        .map_err(|e| StoreError::new(format!("cannot start the reader: {e}")))?;

    let result = async {
        let (counts, head) = match chunks.recv().await {
            Some(Message::Start { counts, head }) => (counts, head),
            Some(Message::Failed(e)) => return Err(e),
            _ => return Err(StoreError::new("the source reader stopped early")),
        };
        let tx = client.transaction().await?;
        tx.batch_execute(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")).await?;
        for t in TABLES {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", t.name);
            let used: bool = query(&tx, &sql, &[]).await?[0].try_get(0)?;
            if used {
                return Err(StoreError::new(format!(
                    "--to: the target database is not empty (table {} has rows); migrate only into a \
                     fresh database",
                    t.name
                )));
            }
        }
        let inserts: Vec<String> = TABLES.iter().map(insert_sql).collect();
        while let Some(msg) = chunks.recv().await {
            match msg {
                Message::Chunk { table, columns, rows } => {
                    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
                        .iter()
                        .map(|c| -> &(dyn tokio_postgres::types::ToSql + Sync) {
                            match c {
                                Column::Text(v) => v,
                                Column::Int(v) => v,
                                Column::Bytes(v) => v,
                                Column::Bool(v) => v,
                            }
                        })
                        .collect();
                    let n = execute(&tx, &inserts[table], &params).await?;
                    if n != rows as u64 {
                        return Err(StoreError::new(format!(
                            "{}: {n} rows written of {rows}",
                            TABLES[table].name
                        )));
                    }
                }
                Message::Failed(e) => return Err(e),
                Message::Start { .. } => return Err(StoreError::new("the source reader restarted")),
            }
        }
        // The chain's head as the embedded store kept it (or its last record, for a store that
        // never recorded a head).
        let head = match head {
            Some(h) => Some(h),
            None => query(&tx, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
                .await?
                .first()
                .map(|r| Ok::<_, StoreError>((r.try_get(0)?, r.try_get(1)?)))
                .transpose()?,
        };
        if let Some((seq, hash)) = &head {
            execute(&tx, "UPDATE audit_head SET seq = $1, hash = $2 WHERE one = 1", &[seq, hash]).await?;
        }
        // The export's projection is derived from the events, not copied.
        tx.batch_execute(schema::BACKFILL_EXPORT).await?;
        for t in ["deliveries", "attempts"] {
            tx.batch_execute(&format!(
                "SELECT setval(pg_get_serial_sequence('{t}', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM {t}"
            ))
            .await?;
        }
        let mut tables = Vec::with_capacity(TABLES.len());
        for (t, expected) in TABLES.iter().zip(&counts) {
            let n: i64 = query(&tx, &format!("SELECT COUNT(*) FROM {}", t.name), &[]).await?[0].try_get(0)?;
            if n != *expected {
                return Err(StoreError::new(format!(
                    "{}: {n} rows copied but the source holds {expected}",
                    t.name
                )));
            }
            tables.push((t.name.to_string(), n));
        }
        let v = read::verify_chain(&tx).await?;
        if !v.ok {
            let problem = v.problem.map(|p| format!("{} at position {}: {}", p.kind, p.position, p.detail));
            return Err(StoreError::new(format!(
                "the audit chain does not verify after the copy ({}); nothing was committed",
                problem.unwrap_or_default()
            )));
        }
        tx.commit().await?;
        Ok(ImportReport { tables, audit_records: v.records })
    }
    .await;
    // On an early error the receiver is dropped here, so the reader stops at its next chunk.
    drop(chunks);
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    result
}

fn insert_sql(t: &Table) -> String {
    let names: Vec<&str> = t.columns.iter().map(|c| c.0).collect();
    let params: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, k))| {
            let ty = match k {
                Text => "text",
                Int => "bigint",
                Bytes => "bytea",
                Bool => "boolean",
            };
            format!("${}::{ty}[]", i + 1)
        })
        .collect();
    format!("INSERT INTO {} ({}) SELECT * FROM UNNEST({})", t.name, names.join(", "), params.join(", "))
}

/// Reads the snapshot and streams it.
fn read_source(file: &Path, out: &mpsc::Sender<Message>) -> StoreResult<()> {
    // A gateway still serving from this store would accept events after the snapshot, which the
    // move would leave behind: refused while one holds the data dir's lock.
    let _lock = match file.parent() {
        Some(dir) if dir.join("gateway.lock").exists() => Some(crate::store::sqlite::lock_data_dir(dir)?),
        _ => None,
    };
    let conn = rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(30))?;
    // Rows are copied as they are: the store must be in this release's shape (the gateway brings
    // a store up to date when it starts on it).
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let current = crate::store::sqlite::schema_version();
    if version != current {
        return Err(StoreError::new(format!(
            "{} is at schema version {version}, this release writes {current}: {}",
            file.display(),
            if version < current {
                "start this release's gateway on it once (it brings the store up to date), stop it, then move it"
            } else {
                "move it with the release that wrote it"
            }
        )));
    }
    // One read transaction: every table from the same snapshot.
    conn.execute_batch("BEGIN")?;
    let exists = |name: &str| -> StoreResult<bool> {
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )? > 0)
    };
    if !exists("events")? || !exists("audit")? {
        return Err(StoreError::new(format!("--from: {} is not a csi-gateway store", file.display())));
    }
    let mut present = Vec::with_capacity(TABLES.len());
    let mut counts = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let here = exists(t.name)?;
        counts.push(if here {
            conn.query_row(&format!("SELECT COUNT(*) FROM {}", t.name), [], |r| r.get(0))?
        } else {
            0
        });
        present.push(here);
    }
    let head = if exists("audit_head")? {
        use rusqlite::OptionalExtension;
        conn.query_row("SELECT seq, hash FROM audit_head WHERE one = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?
    } else {
        None
    };
    if out.blocking_send(Message::Start { counts, head }).is_err() {
        return Ok(());
    }
    for (i, t) in TABLES.iter().enumerate() {
        if !present[i] {
            continue;
        }
        let mut stmt = conn.prepare(t.select)?;
        let mut rows = stmt.query([])?;
        let fresh = || -> Vec<Column> {
            t.columns
                .iter()
                .map(|(_, k)| match k {
                    Text => Column::Text(Vec::with_capacity(CHUNK_ROWS)),
                    Int => Column::Int(Vec::with_capacity(CHUNK_ROWS)),
                    Bytes => Column::Bytes(Vec::with_capacity(CHUNK_ROWS)),
                    Bool => Column::Bool(Vec::with_capacity(CHUNK_ROWS)),
                })
                .collect()
        };
        let (mut columns, mut n, mut bytes) = (fresh(), 0usize, 0usize);
        while let Some(row) = rows.next()? {
            for (j, col) in columns.iter_mut().enumerate() {
                let v = row.get_ref(j)?;
                let bad = |want: &str| {
                    StoreError::new(format!("{}.{}: a value that is not {want}", t.name, t.columns[j].0))
                };
                match col {
                    Column::Text(c) => c.push(match v {
                        ValueRef::Null => None,
                        ValueRef::Text(b) | ValueRef::Blob(b) => {
                            bytes += b.len();
                            Some(String::from_utf8(b.to_vec()).map_err(|_| bad("UTF-8 text"))?)
                        }
                        ValueRef::Integer(i) => Some(i.to_string()),
                        ValueRef::Real(f) => Some(f.to_string()),
                    }),
                    Column::Int(c) => c.push(match v {
                        ValueRef::Null => None,
                        ValueRef::Integer(i) => Some(i),
                        ValueRef::Text(b) => Some(
                            std::str::from_utf8(b)
                                .ok()
                                .and_then(|s| s.parse().ok())
                                .ok_or_else(|| bad("an integer"))?,
                        ),
                        _ => return Err(bad("an integer")),
                    }),
                    Column::Bool(c) => c.push(match v {
                        ValueRef::Null => None,
                        ValueRef::Integer(i) => Some(i != 0),
                        _ => return Err(bad("0 or 1")),
                    }),
                    Column::Bytes(c) => c.push(match v {
                        ValueRef::Null => None,
                        ValueRef::Blob(b) | ValueRef::Text(b) => {
                            bytes += b.len();
                            Some(b.to_vec())
                        }
                        _ => return Err(bad("bytes")),
                    }),
                }
            }
            n += 1;
            if n >= CHUNK_ROWS || bytes >= CHUNK_BYTES {
                let full = std::mem::replace(&mut columns, fresh());
                if out.blocking_send(Message::Chunk { table: i, columns: full, rows: n }).is_err() {
                    return Ok(());
                }
                (n, bytes) = (0, 0);
            }
        }
        if n > 0 && out.blocking_send(Message::Chunk { table: i, columns, rows: n }).is_err() {
            return Ok(());
        }
    }
    Ok(())
}
