//! Embedded mode: events, queue state, idempotency keys and audit in one SQLite file (WAL,
//! `synchronous=FULL`).
//!
//! All writes go through one writer thread that takes every request waiting at that moment and
//! commits them in a single transaction (group commit): concurrent requests share the cost of the
//! fsync, and the audit chain stays linear because only this thread appends to it. Reads use their
//! own connections and never wait for the writer.

use std::borrow::Cow;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use csi_gateway_sdk::BoxFuture;
use rusqlite::{params, Connection, OptionalExtension, ToSql, Transaction};
use tokio::sync::{oneshot, Notify};

use super::*;
use crate::audit::{self, Action, Entry, Record, Verification, Verifier};

mod siuss;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS events (
    id              TEXT PRIMARY KEY,
    source          TEXT NOT NULL,
    type            TEXT NOT NULL,
    tenant          TEXT NOT NULL,
    subject         TEXT,
    idempotency_key TEXT,
    correlation_id  TEXT,
    received_at     INTEGER NOT NULL,
    digest          TEXT NOT NULL,
    body            BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency (
    source   TEXT NOT NULL,
    key      TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (source, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id),
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    since           INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    lease_until     INTEGER,
    last_error      TEXT,
    updated_at      INTEGER NOT NULL,
    UNIQUE (event_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (destination, status, next_attempt_at);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id INTEGER NOT NULL REFERENCES deliveries(id),
    attempt     INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_delivery ON attempts (delivery_id);
CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,
    ts          INTEGER NOT NULL,
    action      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    tenant      TEXT,
    event_id    TEXT,
    destination TEXT,
    digest      TEXT,
    detail      TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_event ON audit (event_id);
CREATE TABLE IF NOT EXISTS progetti (
    tenant         TEXT NOT NULL,
    id_progetto    TEXT NOT NULL,
    pseudonimo     TEXT NOT NULL,
    codice_fiscale TEXT,
    dal            TEXT NOT NULL,
    al             TEXT NOT NULL,
    interventi     TEXT NOT NULL,
    event_id       TEXT NOT NULL,
    PRIMARY KEY (tenant, id_progetto)
);
CREATE INDEX IF NOT EXISTS progetti_pseudonimo ON progetti (tenant, pseudonimo);
CREATE INDEX IF NOT EXISTS progetti_cf ON progetti (tenant, codice_fiscale);
CREATE TABLE IF NOT EXISTS coop_deliveries (
    tenant             TEXT NOT NULL,
    key                TEXT NOT NULL,
    cooperativa        TEXT NOT NULL,
    id_progetto        TEXT NOT NULL,
    pseudonimo         TEXT NOT NULL,
    tipo_servizio      TEXT NOT NULL,
    codice_prestazione TEXT NOT NULL,
    denominazione      TEXT NOT NULL,
    area_utenza        TEXT NOT NULL,
    data               TEXT NOT NULL,
    mese               TEXT NOT NULL,
    minuti             INTEGER NOT NULL,
    importo_cents      INTEGER NOT NULL,
    quota_utente_cents INTEGER NOT NULL,
    flag               TEXT,
    event_id           TEXT NOT NULL,
    upload_id          TEXT,
    digest             TEXT NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS coop_month_rows ON coop_deliveries (tenant, mese);
CREATE TABLE IF NOT EXISTS coop_uploads (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    client     TEXT NOT NULL,
    mapping    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    report     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS coop_upload_rows (
    upload_id TEXT NOT NULL,
    row       INTEGER NOT NULL,
    report    TEXT NOT NULL,
    PRIMARY KEY (upload_id, row)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_head (
    one  INTEGER PRIMARY KEY CHECK (one = 1),
    seq  INTEGER NOT NULL,
    hash TEXT NOT NULL
);
"#;

type Reply<T> = oneshot::Sender<StoreResult<T>>;

enum Op {
    Accept(Vec<NewEvent>, Vec<Entry>, Reply<Vec<Acceptance>>),
    Audit(Vec<Entry>, Reply<()>),
    Claim(String, usize, i64, Reply<Vec<Task>>),
    Complete(Vec<Completion>, Reply<()>),
    Replay(DeadLetterFilter, String, Reply<Vec<DeadLetter>>),
    SaveUpload(Box<UploadRecord>, Reply<()>),
    SaveUploadRows(String, Vec<ReportRow>, Reply<()>),
    Siuss(siuss::WriteOp, Reply<siuss::WriteAnswer>),
}

/// The embedded store and queue.
pub struct SqliteStore {
    /// Held while the store is open for writing: one process per data dir (see
    /// [`lock_data_dir`]); a reader beside it holds none.
    _lock: Option<std::fs::File>,
    writer: mpsc::SyncSender<Op>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
    notify: Arc<Notify>,
    /// The database file, for reads that take a connection of their own (the SIUSS export).
    path: std::path::PathBuf,
}

/// Page cache of the writer connection, KiB.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// WAL bytes after which the checkpoint thread copies the WAL back into the database file
/// (SQLite's automatic checkpoint runs at 1,000 pages, 4 MB: a bulk upload writes about that much
/// per chunk, so it copied the indexes' hot pages back at almost every commit; at 64 MiB each is
/// copied once for many commits. Measured on the 100,000-row cooperatives upload: 8.0–9.4 s
/// before, 6.4–7.8 s after). Small in unit tests, to exercise the hand-over.
const WAL_CHECKPOINT_BYTES: i64 = if cfg!(test) { 512 * 1024 } else { 64 * 1024 * 1024 };
/// How many times [`WAL_CHECKPOINT_BYTES`] the WAL may grow before the writer copies it back
/// itself: the checkpoint thread fell behind.
const WAL_WRITER_CHECKPOINT_FACTOR: i32 = 4;

/// Page size of a new store, bytes (SQLite's default is 4,096). A bulk upload's commit writes
/// about as many bytes either way, but in half as many WAL frames, B-tree pages and `pwrite`s:
/// on the 100,000-row cooperatives upload the writer's CPU fell by about 8 % (measured in nine
/// pairs alternated with 4,096), and single-event deliveries were no slower. A store created
/// before keeps its page size: SQLite changes it only by rebuilding the whole file (`VACUUM`).
const PAGE_SIZE: i64 = 8192;

/// Checkpoints off the writer's thread. Copying the WAL back into the database file (and its
/// `fsync`) was 10 % of the writer's time on a bulk upload, in the middle of the commits of every
/// request; a thread with its own connection does it instead, while the writer goes on appending.
///
/// A WAL starts over from its beginning only when a checkpoint has copied all of it, which a
/// checkpoint running beside the writer never quite does: so once the thread is done, the writer
/// copies the few pages committed meanwhile itself, after its next commit, and its next
/// transaction starts the WAL over. Should the thread fall behind (readers holding old snapshots,
/// a slow disk), the writer checkpoints on its own past [`WAL_WRITER_CHECKPOINT_FACTOR`] times
/// that, as SQLite's automatic checkpoint would.
fn checkpoint_beside(writer: &mut Connection, path: &Path) -> StoreResult<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let page_size: i64 = writer.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let thread_pages = (WAL_CHECKPOINT_BYTES / page_size.max(512)).clamp(1, i64::from(i32::MAX / 8)) as i32;
    let writer_pages = WAL_WRITER_CHECKPOINT_FACTOR * thread_pages;
    let conn = open(path)?;
    let (wake, woken) = mpsc::sync_channel::<()>(1);
    // Set by the thread when it has checkpointed; cleared by the writer when it has done the rest.
    let copied = Arc::new(AtomicBool::new(false));
    // Set by the writer when it wakes the thread; cleared by the thread when it is done.
    let running = Arc::new(AtomicBool::new(false));
    let (done, idle) = (copied.clone(), running.clone());
    std::thread::Builder::new()
        .name("store-checkpoint".into())
        .spawn(move || {
            // Ends when the writer's connection, which holds `wake`, is closed.
            while woken.recv().is_ok() {
                match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    Ok(()) => done.store(true, Ordering::Release),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; the store writer checkpoints itself"),
                }
                idle.store(false, Ordering::Release);
            }
        })
        .map_err(|e| StoreError::new(e.to_string()))?;
    // Replaces SQLite's automatic checkpoint, which is a WAL hook too.
    writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
        if copied.swap(false, Ordering::AcqRel) || pages >= writer_pages {
            // The commit has happened whatever this does: an error returned here would make it
            // look failed to the writer. SQLite's own automatic checkpoint ignores it too.
            if let Err(e) = wal.checkpoint_v2(rusqlite::wal::CheckpointMode::PASSIVE) {
                tracing::warn!(error = %e, "WAL checkpoint by the store writer failed; the next one retries");
            }
        } else if pages >= thread_pages && !running.swap(true, Ordering::AcqRel) {
            // The thread was idle, so the channel is empty; the thread checkpoints all that is
            // committed when it runs. It is gone only if the store is closing.
            let _ = wake.try_send(());
        }
        Ok(())
    }))?;
    Ok(())
}

/// Changes to a store written by an earlier release, in order, after [`SCHEMA`] has created what
/// is missing: `PRAGMA user_version` counts those applied. Each runs in one transaction with its
/// count, so a store is never left half-migrated. A new store takes them all (on empty tables).
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "the SIUSS export reads prestazioni_export instead of indexes on the events' JSON",
        siuss::MIGRATION_EXPORT_TABLE,
    ),
    ("idempotency keys are unique per tenant and source", MIGRATION_IDEMPOTENCY_SCOPE),
    ("cooperative deliveries are indexed by month alone", MIGRATION_COOP_MONTH),
    ("the SIUSS export sorts its rows when it reads them", siuss::MIGRATION_EXPORT_UNORDERED),
];

/// Migration 3: the deliveries of a month are found by `(tenant, mese)`. The index by progetto and
/// service took each row of an upload at a random place (its commits rewrote some 500 of its
/// pages each); by month alone, an upload's rows go at its end. Month totals are read a month
/// at a time (`month_minutes`).
const MIGRATION_COOP_MONTH: &str = "
DROP INDEX IF EXISTS coop_month;
CREATE INDEX IF NOT EXISTS coop_month_rows ON coop_deliveries (tenant, mese);
";

/// Migration 2: the `source` of each idempotency key becomes its scope, tenant and source
/// (`store::idempotency_scope`), taken from the event that claimed it.
const MIGRATION_IDEMPOTENCY_SCOPE: &str = "
UPDATE idempotency SET source = (SELECT e.tenant FROM events AS e WHERE e.id = idempotency.event_id)
    || char(31) || source
WHERE instr(source, char(31)) = 0
  AND EXISTS (SELECT 1 FROM events AS e WHERE e.id = idempotency.event_id);
";

/// The schema version of an up-to-date embedded store (`PRAGMA user_version`).
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// Whether the store on `conn` lacks tables or migrations of this release.
fn pending_migrations(conn: &Connection) -> StoreResult<bool> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    Ok(version < MIGRATIONS.len() as i64)
}

/// Creates the tables and indexes that are missing, then applies the migrations not applied yet.
fn create_and_migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(siuss::SCHEMA)?;
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let Some((what, sql)) = usize::try_from(version).ok().and_then(|v| MIGRATIONS.get(v)) else {
            if version > MIGRATIONS.len() as i64 {
                return Err(StoreError::new(format!(
                    "this store is at schema version {version}, written by a newer release of the gateway (this one knows {}); run that release, or restore a copy from before it",
                    MIGRATIONS.len()
                )));
            }
            return Ok(());
        };
        tracing::info!(version = version + 1, "store migration: {what}");
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version + 1)?;
        tx.commit()?;
    }
}

/// Takes `data_dir/gateway.lock` for this process. Embedded mode has one process per store: a
/// second one would hand the first one's deliveries in flight back to the queue (sending them
/// twice) and append to the audit chain behind the first one's back. The lock goes with the
/// process, however it ends.
pub fn lock_data_dir(data_dir: &Path) -> StoreResult<std::fs::File> {
    let path = data_dir.join("gateway.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::new(format!("cannot open {}: {e}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::new(format!(
            "another gateway process is using the store in {}: one process per data dir (stop it, or set \
             another server.data_dir)",
            data_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::new(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

fn open(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    // Before the journal mode, which writes the header of a new file; ignored by an existing one.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // The writer alone uses more statements than rusqlite's default cache of 16 holds: with the
    // default, a mixed workload evicts and re-prepares them (SQL parsing on every commit).
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating when absent) `gateway.db` in `data_dir`, and hands every delivery that was
    /// in flight when the previous process stopped back to the queue.
    pub fn open(data_dir: &Path) -> StoreResult<Arc<Self>> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StoreError::new(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let lock = lock_data_dir(data_dir)?;
        let path = data_dir.join("gateway.db");
        let mut conn = open(&path)?;
        // The writer's page cache (SQLite's default is 2 MiB): a big batch inserts into the
        // indexes at many places, and pages evicted mid-batch are read back from the file.
        conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        // Statement journals (a multi-row INSERT keeps the pages it changes, to undo itself on a
        // constraint error) in memory: in a temporary file they cost a write system call a page.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        create_and_migrate(&mut conn)?;
        checkpoint_beside(&mut conn, &path)?;
        // Embedded mode has one process per file: whatever was in flight died with the last one.
        conn.execute(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL WHERE status = 'in_flight'",
            [],
        )?;
        let head: Option<(i64, String)> = conn
            .query_row("SELECT seq, hash FROM audit_head WHERE one = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let readers = Arc::new((0..4).map(|_| open(&path).map(Mutex::new)).collect::<StoreResult<Vec<_>>>()?);
        let notify = Arc::new(Notify::new());
        let (tx, rx) = mpsc::sync_channel::<Op>(4096);
        let mut writer = Writer { conn, head: head.unwrap_or((0, audit::GENESIS.to_string())) };
        let wake = notify.clone();
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(rx, wake))
            .map_err(|e| StoreError::new(e.to_string()))?;
        Ok(Arc::new(Self {
            _lock: Some(lock),
            writer: tx,
            readers,
            next_reader: Default::default(),
            notify,
            path,
        }))
    }

    fn submit<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Op) -> BoxFuture<'_, StoreResult<T>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.writer.clone();
        let op = make(tx);
        Box::pin(async move {
            let stopped = || StoreError::new("store writer has stopped");
            match sent.try_send(op) {
                Ok(()) => {}
                // The channel is bounded: when the writer is saturated, back-pressure reaches the caller.
                Err(mpsc::TrySendError::Full(op)) => {
                    let delivered = tokio::task::spawn_blocking(move || sent.send(op).is_ok())
                        .await
                        .map_err(|e| StoreError::new(e.to_string()))?;
                    if !delivered {
                        return Err(stopped());
                    }
                }
                Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
            }
            rx.await.map_err(|_| stopped())?
        })
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'_, StoreResult<T>> {
        let i = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        let readers = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = readers[i].lock().map_err(|_| StoreError::new("reader poisoned"))?;
                f(&conn)
            })
            .await
            .map_err(|e| StoreError::new(e.to_string()))?
        })
    }
}

struct Writer {
    conn: Connection,
    head: (i64, String),
}

impl Writer {
    fn run(&mut self, rx: mpsc::Receiver<Op>, notify: Arc<Notify>) {
        while let Ok(first) = rx.recv() {
            let mut ops = vec![first];
            while ops.len() < 1024 {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            let head_before = self.head.clone();
            let result = self.apply_all(&mut ops);
            let wake = ops.iter().any(|op| matches!(op, Op::Accept(..) | Op::Replay(..)));
            match result {
                Ok(replies) => {
                    for (op, reply) in ops.into_iter().zip(replies) {
                        op.answer(Ok(reply));
                    }
                    if wake {
                        notify.notify_waiters();
                    }
                }
                Err(e) => {
                    self.head = head_before;
                    tracing::error!(error = %e, "store transaction failed; every request in it is answered with the error");
                    for op in ops {
                        op.answer(Err(e.clone()));
                    }
                }
            }
        }
    }

    fn apply_all(&mut self, ops: &mut [Op]) -> StoreResult<Vec<Answer>> {
        let tx = self.conn.transaction()?;
        let mut head = self.head.clone();
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops.iter_mut() {
            answers.push(apply(&tx, &mut head, op)?);
        }
        if head.0 != self.head.0 {
            tx.execute(
                "INSERT INTO audit_head (one, seq, hash) VALUES (1, ?1, ?2)
                 ON CONFLICT (one) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                params![head.0, head.1],
            )?;
        }
        tx.commit()?;
        self.head = head;
        Ok(answers)
    }
}

enum Answer {
    Accept(Vec<Acceptance>),
    Unit,
    Claim(Vec<Task>),
    Replay(Vec<DeadLetter>),
    Siuss(siuss::WriteAnswer),
}

impl Op {
    fn answer(self, result: StoreResult<Answer>) {
        // A caller that went away (client disconnected) no longer needs the answer: ignoring the
        // send error is right, the work is committed either way.
        match (self, result) {
            (Op::Accept(_, _, r), Ok(Answer::Accept(v))) => drop(r.send(Ok(v))),
            (Op::Audit(_, r), Ok(_))
            | (Op::Complete(_, r), Ok(_))
            | (Op::SaveUpload(_, r), Ok(_))
            | (Op::SaveUploadRows(_, _, r), Ok(_)) => drop(r.send(Ok(()))),
            (Op::Claim(_, _, _, r), Ok(Answer::Claim(v))) => drop(r.send(Ok(v))),
            (Op::Replay(_, _, r), Ok(Answer::Replay(v))) => drop(r.send(Ok(v))),
            (Op::Siuss(_, r), Ok(Answer::Siuss(v))) => drop(r.send(Ok(v))),
            (op, Ok(_)) => op.answer(Err(StoreError::new("internal: mismatched answer"))),
            (Op::Accept(_, _, r), Err(e)) => drop(r.send(Err(e))),
            (Op::Audit(_, r), Err(e))
            | (Op::Complete(_, r), Err(e))
            | (Op::SaveUpload(_, r), Err(e))
            | (Op::SaveUploadRows(_, _, r), Err(e)) => drop(r.send(Err(e))),
            (Op::Claim(_, _, _, r), Err(e)) => drop(r.send(Err(e))),
            (Op::Replay(_, _, r), Err(e)) => drop(r.send(Err(e))),
            (Op::Siuss(_, r), Err(e)) => drop(r.send(Err(e))),
        }
    }
}

fn append(tx: &Transaction<'_>, head: &mut (i64, String), e: &Entry, ts: i64) -> StoreResult<()> {
    let seq = head.0 + 1;
    let hash = audit::hash_of(&head.1, seq, ts, e);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit (seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    stmt.execute(params![
        seq,
        ts,
        e.action.as_str(),
        e.actor,
        e.tenant,
        e.event_id,
        e.destination,
        e.digest,
        e.detail,
        head.1,
        hash
    ])?;
    *head = (seq, hash);
    Ok(())
}

fn apply(tx: &Transaction<'_>, head: &mut (i64, String), op: &mut Op) -> StoreResult<Answer> {
    let now = now_ms();
    match op {
        Op::Accept(events, entries, _) => {
            let mut chain = Chain::new(head, now);
            for e in entries.iter() {
                chain.push(Cow::Borrowed(e));
            }
            let out = accept(tx, &mut chain, events, now)?;
            chain.insert(tx)?;
            Ok(Answer::Accept(out))
        }
        Op::Audit(entries, _) => {
            for e in entries.iter() {
                append(tx, head, e, now)?;
            }
            Ok(Answer::Unit)
        }
        Op::Claim(destination, limit, lease_ms, _) => {
            let mut stmt = tx.prepare_cached(
                "UPDATE deliveries SET status = 'in_flight', lease_until = ?3, updated_at = ?2
                 WHERE id IN (SELECT id FROM deliveries
                              WHERE destination = ?1
                                AND ((status = 'pending' AND next_attempt_at <= ?2)
                                     OR (status = 'in_flight' AND lease_until <= ?2))
                              ORDER BY next_attempt_at, id LIMIT ?4)
                 RETURNING id",
            )?;
            let ids: Vec<i64> = stmt
                .query_map(params![&*destination, now, now + *lease_ms, *limit as i64], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut load = tx.prepare_cached(
                "SELECT d.id, d.event_id, d.destination, e.type, e.tenant, e.idempotency_key, e.body,
                        e.digest, d.attempts, d.since
                 FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.id = ?1",
            )?;
            let mut tasks = Vec::with_capacity(ids.len());
            for id in ids {
                tasks.push(load.query_row([id], |r| {
                    Ok(Task {
                        delivery_id: r.get(0)?,
                        event_id: r.get(1)?,
                        destination: r.get(2)?,
                        event_type: r.get(3)?,
                        tenant: r.get(4)?,
                        idempotency_key: r.get(5)?,
                        body: r.get(6)?,
                        digest: r.get(7)?,
                        attempts: r.get(8)?,
                        since: r.get(9)?,
                    })
                })?);
            }
            tasks.sort_by_key(|t| t.delivery_id);
            Ok(Answer::Claim(tasks))
        }
        Op::SaveUpload(u, _) => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO coop_uploads (id, tenant, client, mapping, created_at, report)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                u.id,
                u.tenant,
                u.client,
                u.mapping,
                u.created_at,
                report_text(&u.report)
            ])?;
            Ok(Answer::Unit)
        }
        Op::SaveUploadRows(id, rows, _) => {
            // Each row of an upload is written once (the upload's id is new).
            let mut values: Vec<&dyn ToSql> = Vec::with_capacity(rows.len() * 3);
            for r in rows.iter() {
                values.extend([&*id as &dyn ToSql, &r.row, &r.json]);
            }
            insert_rows(tx, "INSERT OR IGNORE INTO coop_upload_rows (upload_id, row, report)", 3, &values)?;
            Ok(Answer::Unit)
        }
        Op::Complete(done, _) => {
            for c in done.iter() {
                complete_one(tx, head, c, now)?;
            }
            Ok(Answer::Unit)
        }
        Op::Siuss(w, _) => Ok(Answer::Siuss(siuss::apply(tx, head, w, now)?)),
        Op::Replay(filter, actor, _) => {
            let letters = select_dead_letters(tx, filter)?;
            let mut stmt = tx.prepare_cached(
                "UPDATE deliveries SET status = 'pending', attempts = 0, since = ?2, next_attempt_at = ?2,
                        lease_until = NULL, updated_at = ?2
                 WHERE id = ?1 AND status = 'dead'",
            )?;
            for dl in &letters {
                stmt.execute(params![dl.id, now])?;
                let e = Entry::new(Action::Replayed, actor.as_str())
                    .tenant(&dl.tenant)
                    .event(&dl.event_id)
                    .destination(&dl.destination);
                append(tx, head, &e, now)?;
            }
            Ok(Answer::Replay(letters))
        }
    }
}

/// Audit records appended by one request, inserted together once it is decided.
struct Chain<'h, 'a> {
    head: &'h mut (i64, String),
    ts: i64,
    /// `(seq, prev_hash, hash, entry)`.
    records: Vec<(i64, String, String, Cow<'a, Entry>)>,
}

impl<'h, 'a> Chain<'h, 'a> {
    fn new(head: &'h mut (i64, String), ts: i64) -> Self {
        Self { head, ts, records: Vec::new() }
    }

    /// Links a record to the chain (same hashing as [`append`]).
    fn push(&mut self, e: Cow<'a, Entry>) {
        let seq = self.head.0 + 1;
        let hash = audit::hash_of(&self.head.1, seq, self.ts, &e);
        let prev = std::mem::replace(&mut self.head.1, hash.clone());
        self.head.0 = seq;
        self.records.push((seq, prev, hash, e));
    }

    fn insert(self, tx: &Transaction<'_>) -> StoreResult<()> {
        let actions: Vec<&str> = self.records.iter().map(|r| r.3.action.as_str()).collect();
        let mut values: Vec<&dyn ToSql> = Vec::with_capacity(self.records.len() * 11);
        for ((seq, prev, hash, e), action) in self.records.iter().zip(&actions) {
            values.extend([
                seq as &dyn ToSql,
                &self.ts,
                action,
                &e.actor,
                &e.tenant,
                &e.event_id,
                &e.destination,
                &e.digest,
                &e.detail,
                prev,
                hash,
            ]);
        }
        insert_rows(
            tx,
            "INSERT OR IGNORE INTO audit (seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash)",
            11,
            &values,
        )
    }
}

/// Rows per multi-row `INSERT`.
const ROWS_PER_INSERT: usize = 32;

/// Inserts rows of `columns` values each (`values` holds them one row after the other) with
/// `insert` (`INSERT [OR ...] INTO t (...)`): [`ROWS_PER_INSERT`] rows per statement, the rest one
/// by one. Every row must be written: a statement that wrote fewer rows than it was given (an
/// `INSERT OR IGNORE` that met a conflict) is an error, and the writer then rolls the whole
/// transaction back.
///
/// Why `OR IGNORE` where no conflict is expected: a multi-row `INSERT` that may abort half-way
/// keeps a statement journal of every page it changes, to undo itself alone; the writer never
/// goes on with a transaction after a failed statement, so that journal is pure cost (6 % of the
/// writer on the cooperatives upload). A statement that ignores conflicts cannot abort half-way,
/// and the count check turns an ignored row back into an error.
fn insert_rows(tx: &Transaction<'_>, insert: &str, columns: usize, values: &[&dyn ToSql]) -> StoreResult<()> {
    upsert_rows(tx, insert, columns, values, "")
}

/// [`insert_rows`] with `on_conflict` (an upsert clause) after the rows.
fn upsert_rows(
    tx: &Transaction<'_>,
    insert: &str,
    columns: usize,
    values: &[&dyn ToSql],
    on_conflict: &str,
) -> StoreResult<()> {
    if values.is_empty() {
        return Ok(());
    }
    let written = |n: usize, expected: usize| {
        if n == expected {
            Ok(())
        } else {
            Err(StoreError::new(format!(
                "{insert}: {n} of {expected} rows written, a constraint refused the others (a key already stored, a missing value); nothing of this transaction is kept"
            )))
        }
    };
    let row = format!("({})", vec!["?"; columns].join(", "));
    let mut chunks = values.chunks_exact(columns * ROWS_PER_INSERT);
    if values.len() >= columns * ROWS_PER_INSERT {
        let sql = format!("{insert} VALUES {} {on_conflict}", vec![row.as_str(); ROWS_PER_INSERT].join(", "));
        let mut stmt = tx.prepare_cached(&sql)?;
        for c in &mut chunks {
            written(stmt.execute(c)?, ROWS_PER_INSERT)?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut stmt = tx.prepare_cached(&format!("{insert} VALUES {row} {on_conflict}"))?;
        for c in rest.chunks_exact(columns) {
            written(stmt.execute(c)?, 1)?;
        }
    }
    Ok(())
}

/// Runs `sql` over `pairs` (passed as a JSON array of two-element arrays, `?1`), whose rows are the
/// position of a pair and an event id.
fn event_ids_by_pair(
    tx: &Transaction<'_>,
    sql: &str,
    pairs: &[(&str, &str)],
) -> StoreResult<Vec<(usize, String)>> {
    let json = serde_json::to_string(pairs).unwrap_or_default();
    let mut stmt = tx.prepare_cached(sql)?;
    let rows = stmt.query_map([json], |r| Ok((r.get::<_, i64>(0)? as usize, r.get::<_, String>(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Makes a request's events durable, set-based: the idempotency keys already held and the
/// cooperative deliveries already stored are looked up with one query each, then every table
/// gets multi-row inserts. Decisions and audit records follow the order of the events, as if
/// they were accepted one by one: the first event of a key in the request claims it.
fn accept<'a>(
    tx: &Transaction<'_>,
    chain: &mut Chain<'_, 'a>,
    events: &'a [NewEvent],
    now: i64,
) -> StoreResult<Vec<Acceptance>> {
    // Keys held before this request, by position among the keyed events; a key is unique within
    // its tenant and source (`NewEvent::idempotency_scope`).
    let scopes: Vec<String> = events.iter().map(NewEvent::idempotency_scope).collect();
    let keyed: Vec<(&str, &str)> = events
        .iter()
        .zip(&scopes)
        .filter_map(|(e, scope)| e.idempotency_key.as_deref().map(|k| (scope.as_str(), k)))
        .collect();
    let mut held: FastMap<usize, String> = FastMap::new();
    if !keyed.is_empty() {
        let sql = "SELECT j.key, i.event_id FROM json_each(?1) AS j CROSS JOIN idempotency AS i
                   WHERE i.source = j.value ->> 0 AND i.key = j.value ->> 1";
        held.extend(event_ids_by_pair(tx, sql, &keyed)?);
    }
    // Cooperative deliveries stored under the keys this request writes: a new one replaces them.
    let coop: Vec<(&str, &str)> = events
        .iter()
        .flat_map(|e| &e.projections)
        .filter_map(|p| match p {
            Projection::CoopDelivery(r) => Some((r.tenant.as_str(), r.key.as_str())),
            _ => None,
        })
        .collect();
    let mut stored: FastMap<(&str, &str), String> = FastMap::new();
    if !coop.is_empty() {
        let sql = "SELECT j.key, d.event_id FROM json_each(?1) AS j CROSS JOIN coop_deliveries AS d
                   WHERE d.tenant = j.value ->> 0 AND d.key = j.value ->> 1";
        for (i, id) in event_ids_by_pair(tx, sql, &coop)? {
            if let Some(k) = coop.get(i) {
                stored.insert(*k, id);
            }
        }
    }
    // Stored before this request: a new row for one of these keys replaces it.
    let stored_before: Vec<(&str, &str)> = stored.keys().copied().collect();

    let mut out = Vec::with_capacity(events.len());
    let mut claimed: FastMap<(&str, &str), &str> = FastMap::new();
    let mut new: Vec<&NewEvent> = Vec::with_capacity(events.len());
    // The keys the new events claim: (scope, key, event id).
    let mut claims: Vec<(&str, &str, &str)> = Vec::new();
    let mut nth_key = 0;
    for (ev, scope) in events.iter().zip(&scopes) {
        if let Some(key) = ev.idempotency_key.as_deref() {
            let i = nth_key;
            nth_key += 1;
            let original = match claimed.get(&(scope.as_str(), key)) {
                Some(id) => Some((*id).to_string()),
                None => held.get(&i).cloned(),
            };
            if let Some(original) = original {
                chain.push(Cow::Owned(ev.duplicate_entry(&original)));
                out.push(Acceptance::Duplicate(original));
                continue;
            }
            claimed.insert((scope.as_str(), key), ev.id.as_str());
            claims.push((scope.as_str(), key, ev.id.as_str()));
        }
        for p in &ev.projections {
            if let Projection::CoopDelivery(r) = p {
                let key = (r.tenant.as_str(), r.key.as_str());
                if let Some(old) = stored.insert(key, ev.id.clone()) {
                    chain.push(Cow::Owned(
                        Entry::new(Action::Corrected, ev.actor.as_str())
                            .tenant(&r.tenant)
                            .event(&ev.id)
                            .digest(&r.digest)
                            .detail(format!("delivery {} corrected: replaces event {old}", r.key)),
                    ));
                }
            }
        }
        chain.push(Cow::Owned(ev.accepted_entry()));
        out.push(Acceptance::New(ev.id.clone()));
        new.push(ev);
    }

    let mut values: Vec<&dyn ToSql> = Vec::new();
    for (scope, key, id) in &claims {
        values.extend([scope as &dyn ToSql, key, id]);
    }
    insert_rows(tx, "INSERT OR IGNORE INTO idempotency (source, key, event_id)", 3, &values)?;
    values.clear();
    for ev in &new {
        values.extend([
            &ev.id as &dyn ToSql,
            &ev.source,
            &ev.event_type,
            &ev.tenant,
            &ev.subject,
            &ev.idempotency_key,
            &ev.correlation_id,
            &now,
            &ev.digest,
            &ev.body,
        ]);
    }
    insert_rows(
        tx,
        "INSERT OR IGNORE INTO events (id, source, type, tenant, subject, idempotency_key, correlation_id, received_at, digest, body)",
        10,
        &values,
    )?;
    values.clear();
    for ev in &new {
        for d in &ev.destinations {
            values.extend([&ev.id as &dyn ToSql, d, &"pending", &0, &now, &now, &now]);
        }
    }
    insert_rows(
        tx,
        "INSERT INTO deliveries (event_id, destination, status, attempts, since, next_attempt_at, updated_at)",
        7,
        &values,
    )?;
    // The latest row of each key of the request (in request order, the later one stays), in the
    // place of the first; the rows they replace are deleted, then all are inserted at once.
    let mut coop_rows = Vec::new();
    let mut export_keys = Vec::new();
    for ev in &new {
        for p in &ev.projections {
            match p {
                Projection::CoopDelivery(r) => {
                    coop_rows.push(((r.tenant.as_str(), r.key.as_str()), (r, &ev.id)))
                }
                Projection::PrestazioneExport(k) => {
                    export_keys.push(((k.tenant.as_str(), k.id_prestazione.as_str()), (k, &ev.id)))
                }
                other => project(tx, other, now)?,
            }
        }
    }
    let (rows, place) = latest_by_key(coop_rows);
    let mut delete = tx.prepare_cached("DELETE FROM coop_deliveries WHERE tenant = ?1 AND key = ?2")?;
    for (tenant, key) in stored_before.into_iter().filter(|k| place.contains_key(k)) {
        delete.execute(params![tenant, key])?;
    }
    values.clear();
    for (r, event_id) in &rows {
        values.extend([
            &r.tenant as &dyn ToSql,
            &r.key,
            &r.cooperativa,
            &r.id_progetto,
            &r.pseudonimo,
            &r.tipo_servizio,
            &r.codice_prestazione,
            &r.denominazione,
            &r.area_utenza,
            &r.data,
            &r.mese,
            &r.minuti,
            &r.importo_cents,
            &r.quota_utente_cents,
            &r.flag,
            // The row names the event it came with.
            event_id,
            &r.upload_id,
            &r.digest,
        ]);
    }
    // No conflict is left: OR IGNORE spares the statement journal (see `insert_rows`).
    insert_rows(tx, &format!("INSERT OR IGNORE INTO coop_deliveries ({COOP_COLUMNS})"), 18, &values)?;
    // The export's projection: the latest event of each prestazione replaces the one stored.
    let (export, _) = latest_by_key(export_keys);
    values.clear();
    for (k, event_id) in &export {
        values.extend([&k.tenant as &dyn ToSql, &k.id_prestazione, &k.pseudonimo, *event_id]);
    }
    // OR IGNORE: no statement journal (see `insert_rows`); a row stored for the key is updated.
    upsert_rows(
        tx,
        "INSERT OR IGNORE INTO prestazioni_export (tenant, id_prestazione, pseudonimo, event_id)",
        4,
        &values,
        "ON CONFLICT (tenant, id_prestazione) DO UPDATE SET pseudonimo = excluded.pseudonimo, event_id = excluded.event_id",
    )?;
    Ok(out)
}

/// The latest of each key among `items` (in their order, a later item takes the first one's
/// place), and where each key's item is.
fn latest_by_key<K: Eq + std::hash::Hash, T>(items: Vec<(K, T)>) -> (Vec<T>, FastMap<K, usize>) {
    let mut latest = Vec::with_capacity(items.len());
    let mut place = FastMap::with_capacity(items.len());
    for (k, item) in items {
        match place.get(&k) {
            Some(&i) => latest[i] = item,
            None => {
                place.insert(k, latest.len());
                latest.push(item);
            }
        }
    }
    (latest, place)
}

/// A read model of a new event (cooperative deliveries and the export's keys are written by
/// [`accept`]).
fn project(tx: &Transaction<'_>, p: &Projection, now: i64) -> StoreResult<()> {
    match p {
        Projection::Progetto(r) => {
            tx.prepare_cached(
                "INSERT INTO progetti (tenant, id_progetto, pseudonimo, codice_fiscale, dal, al, interventi, event_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (tenant, id_progetto) DO UPDATE SET pseudonimo = excluded.pseudonimo,
                    codice_fiscale = excluded.codice_fiscale, dal = excluded.dal, al = excluded.al,
                    interventi = excluded.interventi, event_id = excluded.event_id",
            )?
            .execute(params![
                r.tenant,
                r.id_progetto,
                r.pseudonimo,
                r.codice_fiscale,
                r.dal,
                r.al,
                r.interventi.to_string(),
                r.event_id
            ])?;
        }
        Projection::Persona(r) => siuss::project_persona(tx, r, now)?,
        Projection::ValutazioneSina(r) => siuss::project_valutazione(tx, r)?,
        // Written set-based by `accept`.
        Projection::CoopDelivery(_) | Projection::PrestazioneExport(_) => {}
    }
    Ok(())
}

fn complete_one(tx: &Transaction<'_>, head: &mut (i64, String), c: &Completion, now: i64) -> StoreResult<()> {
    let t = &c.task;
    let attempt = t.attempts + 1;
    let (status, next, error, action, label, detail) = match &c.outcome {
        Outcome::Delivered { detail } => {
            ("delivered", now, None, Action::Delivered, "delivered", detail.clone())
        }
        Outcome::Retry { at, error } => {
            ("pending", *at, Some(error.clone()), Action::Retried, "retry", error.clone())
        }
        Outcome::Dead { error } => {
            ("dead", now, Some(error.clone()), Action::DeadLettered, "dead_lettered", error.clone())
        }
    };
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?2, attempts = ?3, next_attempt_at = ?4, lease_until = NULL,
                last_error = COALESCE(?5, last_error), updated_at = ?6
         WHERE id = ?1 AND status NOT IN ('delivered', 'dead')",
    )?
    .execute(params![t.delivery_id, status, attempt, next, error, now])?;
    tx.prepare_cached(
        "INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![t.delivery_id, attempt, c.started_at, now, label, detail])?;
    let e = Entry::new(action, "gateway")
        .tenant(&t.tenant)
        .event(&t.event_id)
        .destination(&t.destination)
        .digest(&t.digest)
        .detail(format!("attempt {attempt}: {}", audit_summary(&detail)));
    append(tx, head, &e, now)
}

/// The JSON text of an upload report: a report kept as text (see `Coop::upload`) is stored as is,
/// not escaped into a JSON string.
fn report_text(report: &serde_json::Value) -> std::borrow::Cow<'_, str> {
    match report {
        serde_json::Value::String(text) => std::borrow::Cow::Borrowed(text),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

fn select_dead_letters(conn: &Connection, f: &DeadLetterFilter) -> StoreResult<Vec<DeadLetter>> {
    let limit = f.limit.unwrap_or(100).clamp(1, 1000) as i64;
    let ids_json = f.ids.as_ref().map(|ids| serde_json::to_string(ids).unwrap_or_default());
    let tenants_json = f.allowed_tenants.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default());
    let mut stmt = conn.prepare_cached(
        "SELECT d.id, d.event_id, d.destination, e.tenant, e.type, d.attempts, COALESCE(d.last_error, ''),
                d.updated_at, e.body
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.status = 'dead'
           AND (?1 IS NULL OR d.destination = ?1)
           AND (?2 IS NULL OR e.tenant = ?2)
           AND (?3 IS NULL OR e.type = ?3)
           AND (?4 IS NULL OR d.id IN (SELECT value FROM json_each(?4)))
           AND (?5 IS NULL OR e.tenant IN (SELECT value FROM json_each(?5)))
           AND d.id > ?6
         ORDER BY d.id LIMIT ?7",
    )?;
    let rows = stmt.query_map(
        params![f.destination, f.tenant, f.event_type, ids_json, tenants_json, f.after.unwrap_or(0), limit],
        |r| {
            let body: Vec<u8> = r.get(8)?;
            Ok(DeadLetter {
                id: r.get(0)?,
                event_id: r.get(1)?,
                destination: r.get(2)?,
                tenant: r.get(3)?,
                event_type: r.get(4)?,
                attempts: r.get(5)?,
                last_error: r.get(6)?,
                dead_at: rfc3339(r.get(7)?),
                event: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            })
        },
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl Store for SqliteStore {
    fn accept(
        &self,
        events: Vec<NewEvent>,
        audit: Vec<Entry>,
    ) -> BoxFuture<'_, StoreResult<Vec<Acceptance>>> {
        self.submit(|r| Op::Accept(events, audit, r))
    }

    fn audit(&self, entries: Vec<Entry>) -> BoxFuture<'_, StoreResult<()>> {
        self.submit(|r| Op::Audit(entries, r))
    }

    fn event(&self, id: String) -> BoxFuture<'_, StoreResult<Option<EventView>>> {
        self.read(move |conn| {
            let row = conn
                .query_row(
                    "SELECT id, tenant, type, source, received_at, digest, body FROM events WHERE id = ?1",
                    [&id],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, String>(5)?,
                            r.get::<_, Vec<u8>>(6)?,
                        ))
                    },
                )
                .optional()?;
            let Some((id, tenant, event_type, source, received_at, digest, body)) = row else {
                return Ok(None);
            };
            let mut stmt = conn.prepare_cached(
                "SELECT id, destination, status, attempts, next_attempt_at, last_error
                 FROM deliveries WHERE event_id = ?1 ORDER BY destination",
            )?;
            let mut deliveries = stmt
                .query_map([&id], |r| {
                    let status: String = r.get(2)?;
                    let next: i64 = r.get(4)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        DeliveryView {
                            destination: r.get(1)?,
                            next_attempt_at: (status == "pending").then(|| rfc3339(next)),
                            status: if status == "dead" { "dead_lettered".into() } else { status },
                            attempts: r.get(3)?,
                            last_error: r.get(5)?,
                            timeline: Vec::new(),
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let mut att = conn.prepare_cached(
                "SELECT attempt, started_at, finished_at, outcome, detail FROM attempts
                 WHERE delivery_id = ?1 ORDER BY rowid",
            )?;
            for (did, view) in deliveries.iter_mut() {
                view.timeline = att
                    .query_map([*did], |r| {
                        Ok(Attempt {
                            attempt: r.get(0)?,
                            started_at: rfc3339(r.get(1)?),
                            finished_at: rfc3339(r.get(2)?),
                            outcome: r.get(3)?,
                            detail: r.get(4)?,
                        })
                    })?
                    .collect::<Result<_, _>>()?;
            }
            let deliveries: Vec<DeliveryView> = deliveries.into_iter().map(|(_, v)| v).collect();
            let status = if deliveries.is_empty() {
                "accepted"
            } else if deliveries.iter().any(|d| d.status == "dead_lettered") {
                "dead_lettered"
            } else if deliveries.iter().all(|d| d.status == "delivered") {
                "delivered"
            } else {
                "pending"
            };
            let siuss = siuss::view(conn, &id)?;
            Ok(Some(EventView {
                id,
                tenant,
                event_type,
                source,
                received_at: rfc3339(received_at),
                status: status.into(),
                digest,
                event: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                siuss,
                deliveries,
            }))
        })
    }

    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        self.read(move |conn| select_dead_letters(conn, &filter))
    }

    fn replay(&self, filter: DeadLetterFilter, actor: String) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        self.submit(|r| Op::Replay(filter, actor, r))
    }

    fn audit_page(&self, f: AuditFilter) -> BoxFuture<'_, StoreResult<Vec<Record>>> {
        self.read(move |conn| {
            let limit = f.limit.unwrap_or(100).clamp(1, 1000) as i64;
            let tenants_json =
                f.allowed_tenants.as_ref().map(|t| serde_json::to_string(t).unwrap_or_default());
            let mut stmt = conn.prepare_cached(
                "SELECT seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash
                 FROM audit
                 WHERE seq > ?1 AND (?2 IS NULL OR event_id = ?2) AND (?3 IS NULL OR action = ?3)
                   AND (?4 IS NULL OR actor = ?4) AND (?5 IS NULL OR tenant = ?5)
                   AND (?6 IS NULL OR tenant IN (SELECT value FROM json_each(?6)))
                 ORDER BY seq LIMIT ?7",
            )?;
            let rows = stmt.query_map(
                params![f.after.unwrap_or(0), f.event_id, f.action, f.actor, f.tenant, tenants_json, limit],
                record_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn audit_verify(&self) -> BoxFuture<'_, StoreResult<Verification>> {
        self.read(verify_chain)
    }

    fn ready(&self) -> BoxFuture<'_, StoreResult<()>> {
        self.submit(|r| Op::Audit(Vec::new(), r))
    }
}

/// Verifies the audit chain of an open database.
pub fn verify_chain(conn: &Connection) -> StoreResult<Verification> {
    // One read transaction: the head and the log from the same snapshot, while the writer goes on
    // appending (records appended meanwhile would otherwise look like a log past its head).
    let snapshot = conn.unchecked_transaction()?;
    let conn = &*snapshot;
    let head: Option<(i64, String)> = conn
        .query_row("SELECT seq, hash FROM audit_head WHERE one = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut stmt = conn.prepare(
        "SELECT seq, ts, action, actor, tenant, event_id, destination, digest, detail, prev_hash, hash
         FROM audit ORDER BY rowid",
    )?;
    let mut rows = stmt.query([])?;
    let mut v = Verifier::default();
    while let Some(row) = rows.next()? {
        if !v.feed(&record_from_row(row)?) {
            break;
        }
    }
    drop(rows);
    drop(stmt);
    snapshot.commit()?;
    Ok(v.finish(head))
}

/// Verifies the audit chain of the store in `data_dir` without writing to it (safe while a
/// gateway is running on it).
pub fn verify_offline(data_dir: &Path) -> StoreResult<Verification> {
    let path = data_dir.join("gateway.db");
    if !path.exists() {
        return Err(StoreError::new(format!("no store at {}", path.display())));
    }
    let conn = Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    verify_chain(&conn)
}

fn record_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        seq: r.get(0)?,
        ts: r.get(1)?,
        action: r.get(2)?,
        actor: r.get(3)?,
        tenant: r.get(4)?,
        event_id: r.get(5)?,
        destination: r.get(6)?,
        digest: r.get(7)?,
        detail: r.get(8)?,
        prev_hash: r.get(9)?,
        hash: r.get(10)?,
    })
}

fn progetto_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ProgettoRow> {
    let interventi: String = r.get(6)?;
    Ok(ProgettoRow {
        tenant: r.get(0)?,
        id_progetto: r.get(1)?,
        pseudonimo: r.get(2)?,
        codice_fiscale: r.get(3)?,
        dal: r.get(4)?,
        al: r.get(5)?,
        interventi: serde_json::from_str(&interventi).unwrap_or_default(),
        event_id: r.get(7)?,
    })
}

fn coop_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CoopDeliveryRow> {
    Ok(CoopDeliveryRow {
        tenant: r.get(0)?,
        key: r.get(1)?,
        cooperativa: r.get(2)?,
        id_progetto: r.get(3)?,
        pseudonimo: r.get(4)?,
        tipo_servizio: r.get(5)?,
        codice_prestazione: r.get(6)?,
        denominazione: r.get(7)?,
        area_utenza: r.get(8)?,
        data: r.get(9)?,
        mese: r.get(10)?,
        minuti: r.get(11)?,
        importo_cents: r.get(12)?,
        quota_utente_cents: r.get(13)?,
        flag: r.get(14)?,
        event_id: r.get(15)?,
        upload_id: r.get(16)?,
        digest: r.get(17)?,
        id_prestazione: None,
    })
}

impl Projections for SqliteStore {
    fn progetto(
        &self,
        tenant: String,
        id_progetto: String,
    ) -> BoxFuture<'_, StoreResult<Option<ProgettoRow>>> {
        self.read(move |conn| {
            let sql =
                format!("SELECT {PROGETTO_COLUMNS} FROM progetti WHERE tenant = ?1 AND id_progetto = ?2");
            Ok(conn
                .prepare_cached(&sql)?
                .query_row(params![tenant, id_progetto], progetto_from_row)
                .optional()?)
        })
    }

    fn progetti_of(&self, tenant: String, who: Vec<String>) -> BoxFuture<'_, StoreResult<Vec<ProgettoRow>>> {
        self.read(move |conn| {
            let who = serde_json::to_string(&who).unwrap_or_default();
            // Two indexed lookups: an `OR` of the two columns would scan the tenant's progetti.
            let sql = format!(
                "SELECT {PROGETTO_COLUMNS} FROM progetti
                 WHERE tenant = ?1 AND pseudonimo IN (SELECT value FROM json_each(?2))
                 UNION
                 SELECT {PROGETTO_COLUMNS} FROM progetti
                 WHERE tenant = ?1 AND codice_fiscale IN (SELECT value FROM json_each(?2))"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![tenant, who], progetto_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn month_minutes(
        &self,
        tenant: String,
        mesi: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<(MonthGroup, i64)>>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id_progetto, tipo_servizio, mese, SUM(minuti) FROM coop_deliveries
                 WHERE tenant = ?1 AND mese = ?2 GROUP BY id_progetto, tipo_servizio",
            )?;
            let mut out = Vec::new();
            for mese in &mesi {
                let rows = stmt.query_map(params![tenant, mese], |r| {
                    Ok(((r.get(0)?, r.get(1)?, r.get(2)?), r.get(3)?))
                })?;
                for row in rows {
                    out.push(row?);
                }
            }
            Ok(out)
        })
    }

    fn coop_deliveries(
        &self,
        tenant: String,
        keys: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<CoopDeliveryRow>>> {
        self.read(move |conn| {
            let keys = serde_json::to_string(&keys).unwrap_or_default();
            // With the `idPrestazione` of each row's event, which a correction keeps.
            let sql = format!(
                "SELECT {}, json_extract(CAST(e.body AS TEXT), '$.data.idPrestazione')
                 FROM coop_deliveries d LEFT JOIN events e ON e.id = d.event_id
                 WHERE d.tenant = ?1 AND d.key IN (SELECT value FROM json_each(?2))",
                coop_columns_of("d")
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![tenant, keys], |r| {
                Ok(CoopDeliveryRow { id_prestazione: r.get(18)?, ..coop_from_row(r)? })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn coop_month(
        &self,
        tenant: String,
        mese: String,
        cooperativa: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<CoopDeliveryRow>>> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {COOP_COLUMNS} FROM coop_deliveries
                 WHERE tenant = ?1 AND mese = ?2 AND (?3 IS NULL OR cooperativa = ?3)
                 ORDER BY cooperativa, id_progetto, tipo_servizio, data"
            );
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![tenant, mese, cooperativa], coop_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn prestazioni_with_prefix(
        &self,
        tenant: String,
        prefix: String,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id_prestazione, event_id FROM prestazioni_export
                 WHERE tenant = ?1 AND substr(id_prestazione, 1, length(?2)) = ?2 ORDER BY id_prestazione",
            )?;
            let rows = stmt.query_map(params![tenant, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn save_upload(&self, upload: UploadRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.submit(|r| Op::SaveUpload(Box::new(upload), r))
    }

    fn upload(&self, id: String) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, tenant, client, mapping, created_at, report FROM coop_uploads WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    let report: String = r.get(5)?;
                    Ok(UploadRecord {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        client: r.get(2)?,
                        mapping: r.get(3)?,
                        created_at: r.get(4)?,
                        // The column holds the report's JSON text; it is served as such.
                        report: serde_json::Value::String(report),
                    })
                })
                .optional()?)
        })
    }

    fn save_upload_rows(&self, upload_id: String, rows: Vec<ReportRow>) -> BoxFuture<'_, StoreResult<()>> {
        self.submit(|r| Op::SaveUploadRows(upload_id, rows, r))
    }

    fn upload_rows(
        &self,
        upload_id: String,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<ReportRow>>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT row, report FROM coop_upload_rows WHERE upload_id = ?1 AND row > ?2
                 ORDER BY row LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![upload_id, after, limit as i64], |r| {
                Ok(ReportRow { row: r.get(0)?, json: r.get(1)? })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }
}

impl Queue for SqliteStore {
    fn claim(
        &self,
        destination: String,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<Task>>> {
        self.submit(|r| Op::Claim(destination, limit, lease_ms, r))
    }

    fn complete(&self, done: Vec<Completion>) -> BoxFuture<'_, StoreResult<()>> {
        self.submit(|r| Op::Complete(done, r))
    }

    fn settled(&self, delivery_id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        self.read(move |conn| {
            let status: Option<String> = conn
                .prepare_cached("SELECT status FROM deliveries WHERE id = ?1")?
                .query_row([delivery_id], |r| r.get(0))
                .optional()?;
            Ok(matches!(status.as_deref(), Some("delivered" | "dead")))
        })
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(String, i64)>>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT destination, COUNT(*) FROM deliveries
                 WHERE status IN ('pending', 'in_flight') GROUP BY destination",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.notify.notified())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize, key: Option<&str>) -> NewEvent {
        NewEvent {
            id: format!("ev-{n}"),
            source: "/test".into(),
            event_type: "it.lombardia.csi.prestazione.erogata.v1".into(),
            tenant: "F205".into(),
            subject: None,
            idempotency_key: key.map(str::to_string),
            correlation_id: None,
            body: format!(r#"{{"id":"ev-{n}"}}"#).into_bytes(),
            digest: audit::digest(b"x"),
            destinations: vec!["d".into()],
            actor: "tester".into(),
            projections: Vec::new(),
        }
    }

    #[tokio::test]
    async fn same_key_twice_in_one_commit_yields_one_event() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let out = store.accept(vec![event(1, Some("k")), event(2, Some("k"))], vec![]).await.unwrap();
        assert_eq!(out, vec![Acceptance::New("ev-1".into()), Acceptance::Duplicate("ev-1".into())]);
        assert!(store.event("ev-2".into()).await.unwrap().is_none());
    }

    /// A delivery of record R-1 carried by event `n`, lasting `minuti`.
    fn delivery(n: usize, minuti: i64) -> NewEvent {
        let mut ev = event(n, Some(&format!("k-{n}")));
        ev.destinations.clear();
        let text = |s: &str| s.to_string();
        ev.projections.push(Projection::CoopDelivery(Box::new(CoopDeliveryRow {
            tenant: text("F205"),
            key: text("coop:AURORA:R-1"),
            cooperativa: text("AURORA"),
            id_progetto: text("PRG-1"),
            pseudonimo: text("ben-1"),
            tipo_servizio: text("SAD"),
            codice_prestazione: text("A1.16"),
            denominazione: text("Assistenza domiciliare"),
            area_utenza: text("2"),
            data: text("2026-03-02"),
            mese: text("2026-03"),
            minuti,
            importo_cents: minuti * 30,
            quota_utente_cents: 0,
            flag: None,
            event_id: String::new(),
            upload_id: None,
            digest: format!("d-{minuti}"),
            id_prestazione: None,
        })));
        ev
    }

    #[tokio::test]
    async fn one_delivery_key_twice_in_a_commit_keeps_the_later_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.accept(vec![delivery(1, 60)], vec![]).await.unwrap();
        // Stored, then corrected twice in one request: the last version is the row.
        let out = store.accept(vec![delivery(2, 90), delivery(3, 120)], vec![]).await.unwrap();
        assert_eq!(out, vec![Acceptance::New("ev-2".into()), Acceptance::New("ev-3".into())]);
        let rows = store.coop_deliveries("F205".into(), vec!["coop:AURORA:R-1".into()]).await.unwrap();
        let got: Vec<(&str, i64)> = rows.iter().map(|r| (r.event_id.as_str(), r.minuti)).collect();
        assert_eq!(got, vec![("ev-3", 120)]);
        let corrected = store
            .audit_page(AuditFilter { action: Some("corrected".into()), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(corrected.len(), 2, "{corrected:?}");
        assert!(store.audit_verify().await.unwrap().ok);
    }

    #[tokio::test]
    async fn month_totals_come_a_month_at_a_time_also_from_a_store_indexed_by_progetto() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut rows = vec![delivery(1, 60), delivery(2, 30), delivery(3, 45), delivery(4, 15)];
        let edit = |ev: &mut NewEvent, key: &str, progetto: &str, mese: &str| {
            if let Some(Projection::CoopDelivery(r)) = ev.projections.last_mut() {
                (r.key, r.id_progetto, r.mese) = (key.into(), progetto.into(), mese.into());
            }
        };
        edit(&mut rows[0], "k-1", "PRG-1", "2026-03");
        edit(&mut rows[1], "k-2", "PRG-1", "2026-03");
        edit(&mut rows[2], "k-3", "PRG-2", "2026-03");
        edit(&mut rows[3], "k-4", "PRG-1", "2026-04");
        store.accept(rows, vec![]).await.unwrap();
        let totals = |store: Arc<SqliteStore>| async move {
            let mut t = store.month_minutes("F205".into(), vec!["2026-03".into()]).await.unwrap();
            t.sort();
            t
        };
        let group =
            |p: &str, m: &str, minutes: i64| ((p.to_string(), "SAD".to_string(), m.to_string()), minutes);
        let expected = vec![group("PRG-1", "2026-03", 90), group("PRG-2", "2026-03", 45)];
        assert_eq!(totals(store.clone()).await, expected, "every group of March, none of April");
        drop(store);

        // As release 2 left it: the index by progetto and service, schema version 2.
        let conn = Connection::open(dir.path().join("gateway.db")).unwrap();
        conn.execute_batch(
            "DROP INDEX coop_month_rows;
             CREATE INDEX coop_month ON coop_deliveries (tenant, mese, id_progetto, tipo_servizio);
             PRAGMA user_version = 2;",
        )
        .unwrap();
        drop(conn);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(totals(store.clone()).await, expected);
        let conn = Connection::open(dir.path().join("gateway.db")).unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE tbl_name = 'coop_deliveries' AND name LIKE 'coop_month%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(indexes, ["coop_month_rows"], "the old index is gone, the new one is there");
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, schema_version());
    }

    #[tokio::test]
    async fn the_checkpoint_thread_keeps_the_wal_short() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let wal = dir.path().join("gateway.db-wal");
        let frame = PAGE_SIZE as u64 + 24;
        let mut high = 0;
        for batch in 0..150 {
            let events = (0..20)
                .map(|i| {
                    let mut ev = event(batch * 20 + i, None);
                    ev.body = format!(r#"{{"pad":"{}"}}"#, " ".repeat(2000)).into_bytes();
                    ev
                })
                .collect();
            store.accept(events, vec![]).await.unwrap();
            high = high.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) / frame);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // About 8 pages a commit, 1,200 in all: the thread copies the WAL back from 64 pages on
        // and the writer hands it over; alone, the writer would let it reach 256.
        assert!(high < 200, "the WAL grew to {high} pages");
        let db = std::fs::metadata(dir.path().join("gateway.db")).unwrap().len();
        assert!(db > 4 * 1024 * 1024, "the database file holds the events: {db} bytes");
    }

    #[tokio::test]
    async fn a_new_store_has_large_pages_and_an_earlier_one_keeps_its_own() {
        let page_size = |dir: &Path| -> i64 {
            let conn = Connection::open(dir.join("gateway.db")).unwrap();
            conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
        };
        let new = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(new.path()).unwrap());
        assert_eq!(page_size(new.path()), PAGE_SIZE);
        // As an earlier release created its file: with SQLite's default pages.
        let old = tempfile::tempdir().unwrap();
        Connection::open(old.path().join("gateway.db"))
            .unwrap()
            .execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; VACUUM;")
            .unwrap();
        {
            let store = SqliteStore::open(old.path()).unwrap();
            let events = (0..300).map(|n| event(n, Some(&format!("k{n}")))).collect();
            store.accept(events, vec![]).await.unwrap();
        }
        assert_eq!(page_size(old.path()), 4096);
        let store = SqliteStore::open(old.path()).unwrap();
        let again = store.accept(vec![event(300, Some("k7"))], vec![]).await.unwrap();
        assert!(matches!(&again[..], [Acceptance::Duplicate(id)] if id == "ev-7"), "{again:?}");
    }

    #[tokio::test]
    async fn keys_of_a_store_from_before_tenant_scoped_keys_still_find_their_events() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.accept(vec![event(1, Some("k"))], vec![]).await.unwrap();
        }
        // As an earlier release left it: keys per source, schema version 1.
        let conn = Connection::open(dir.path().join("gateway.db")).unwrap();
        conn.execute_batch("UPDATE idempotency SET source = '/test'; PRAGMA user_version = 1;").unwrap();
        drop(conn);
        let store = SqliteStore::open(dir.path()).unwrap();
        let again = store.accept(vec![event(2, Some("k"))], vec![]).await.unwrap();
        assert!(matches!(&again[..], [Acceptance::Duplicate(id)] if id == "ev-1"), "{again:?}");
        // Another tenant's event with the same source and key is its own.
        let mut theirs = event(3, Some("k"));
        theirs.tenant = "B157".into();
        let other = store.accept(vec![theirs], vec![]).await.unwrap();
        assert!(matches!(&other[..], [Acceptance::New(id)] if id == "ev-3"), "{other:?}");
    }

    #[tokio::test]
    async fn a_second_process_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = SqliteStore::open(dir.path()).unwrap();
        let err = SqliteStore::open(dir.path()).err().expect("refused while the first is open");
        assert!(err.message.starts_with("another gateway process is using the store in"), "{err}");
        // A reader beside it (the command line's SIUSS export) is welcome.
        assert!(SqliteStore::open_reader(dir.path()).is_ok());
        drop(first);
        assert!(SqliteStore::open(dir.path()).is_ok(), "free again once the first is closed");
    }

    #[tokio::test]
    async fn claimed_work_is_leased_and_a_restart_hands_it_back() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.accept(vec![event(1, None), event(2, None)], vec![]).await.unwrap();
            let claimed = store.claim("d".into(), 10, 60_000).await.unwrap();
            assert_eq!(claimed.len(), 2);
            assert!(
                store.claim("d".into(), 10, 60_000).await.unwrap().is_empty(),
                "leased work is not claimed twice"
            );
        }
        // A new process on the same file: what was in flight is due again.
        let store = SqliteStore::open(dir.path()).unwrap();
        let claimed = store.claim("d".into(), 10, 60_000).await.unwrap();
        assert_eq!(claimed.iter().map(|t| t.event_id.as_str()).collect::<Vec<_>>(), vec!["ev-1", "ev-2"]);
    }

    #[tokio::test]
    async fn dead_letter_replay_and_audit_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.accept(vec![event(1, None)], vec![]).await.unwrap();
        let task = store.claim("d".into(), 1, 60_000).await.unwrap().remove(0);
        let dead = Completion {
            task,
            started_at: now_ms(),
            outcome: Outcome::Dead { error: "permanent: HTTP 400".into() },
        };
        let delivery_id = dead.task.delivery_id;
        let stale = Completion {
            task: dead.task.clone(),
            started_at: now_ms(),
            outcome: Outcome::Delivered { detail: "HTTP 200".into() },
        };
        store.complete(vec![dead]).await.unwrap();
        assert!(store.settled(delivery_id).await.unwrap());
        // A late outcome of the same attempt (a copy of it still running elsewhere) is recorded
        // in the timeline but does not undo the dead letter.
        store.complete(vec![stale]).await.unwrap();
        let letters = store.dead_letters(DeadLetterFilter::default()).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].last_error, "permanent: HTTP 400");
        let replayed = store.replay(DeadLetterFilter::default(), "operator".into()).await.unwrap();
        assert_eq!(replayed.len(), 1);
        assert!(!store.settled(delivery_id).await.unwrap(), "replayed: open again");
        let again = store.claim("d".into(), 1, 60_000).await.unwrap();
        assert_eq!(again[0].event_id, "ev-1");
        assert_eq!(again[0].attempts, 0, "a replay starts a fresh cycle");
        let v = store.audit_verify().await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 4, "accepted, dead_lettered, delivered (the late copy), replayed");
    }
}
