//! Cluster mode: events, delivery state, idempotency keys, read models and the audit chain in one
//! PostgreSQL database shared by every gateway instance.
//!
//! - `schema.rs` — versioned migrations (`schema_migrations`), applied at start under an advisory
//!   lock so that instances starting together are safe.
//! - `write.rs` — the transactions: accept, complete, replay, audit appends. Every transaction that
//!   appends to the audit chain locks the chain's head row (`audit_head ... FOR UPDATE`) as its
//!   last write, so appends from all instances are serialized and the chain stays linear while
//!   the rest of their transactions run side by side; one that PostgreSQL rolls back for a
//!   deadlock with another runs again. Each instance commits accepts, audit records and
//!   completions in groups (all the writes waiting when a transaction starts), one append to the
//!   chain and one commit per group.
//! - `siuss.rs` — the SIUSS adapter's flussi, progressives and export (`SiussStore`).
//! - `read.rs` — event views, dead letters, audit pages and verification, projections.
//! - `import.rs` — `csi-gateway migrate --from sqlite://...`: an embedded store copied verbatim.
//!
//! The queue (`queue.kind = "store"`) claims with `FOR UPDATE SKIP LOCKED` and a lease, so
//! instances share work and an instance killed mid-delivery has its leases expire and taken over.
//! New work is signalled with `NOTIFY csi_gateway_work` at commit; each instance LISTENs on a
//! dedicated connection (reconnected when lost) and, in any case, workers poll every 200 ms.
//! As an [`Outbox`], deliveries carry `published` for the relay to a broker.
//!
//! Invariant: the password of `store.url` never appears in an error or a log line; errors name
//! the server as `user@host:port/database`.

mod import;
mod read;
mod schema;
mod siuss;
mod write;

use std::sync::Arc;
use std::time::Duration;

use csi_gateway_sdk::BoxFuture;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use super::*;
use crate::audit::{Entry, Record, Verification};

pub use import::{import_sqlite, ImportReport};
pub use schema::MIGRATIONS;

/// The channel on which committed work is announced to every instance.
const CHANNEL: &str = "csi_gateway_work";

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        let conflict = matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::T_R_SERIALIZATION_FAILURE);
        StoreError { message: pg_message(&e), conflict }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::new(format!("PostgreSQL connection pool: {}", pool_message(&e)))
    }
}

/// The text of a PostgreSQL error: the server's message and detail, or the client's reason.
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("PostgreSQL: {} ({detail})", db.message()),
            None => format!("PostgreSQL: {}", db.message()),
        },
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                let more = s.to_string();
                if !text.contains(&more) {
                    text.push_str(": ");
                    text.push_str(&more);
                }
                source = s.source();
            }
            format!("PostgreSQL: {text}")
        }
    }
}

fn pool_message(e: &deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_message(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "no connection available in time (server down or pool exhausted)".into()
        }
        other => other.to_string(),
    }
}

/// `user@host:port/database` of a connection configuration: what errors and logs may show.
pub fn describe(cfg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = cfg.get_ports().get(i).or(cfg.get_ports().first()).copied().unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    let user = cfg.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let db = cfg.get_dbname().or(cfg.get_user()).unwrap_or("");
    format!("{user}{}/{db}", if hosts.is_empty() { "localhost:5432".to_string() } else { hosts.join(",") })
}

/// Parses `store.url` (`postgres://user:password@host:port/database`).
pub fn parse_url(url: &str) -> StoreResult<tokio_postgres::Config> {
    let mut cfg: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
        StoreError::new(format!(
            "not a valid PostgreSQL URL (postgres://user:password@host:port/database): {}",
            pg_message(&e)
        ))
    })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    cfg.application_name("csi-gateway");
    Ok(cfg)
}

/// Opens one connection (for the command line: migrations, verification, import).
pub async fn connect_one(url: &str) -> StoreResult<deadpool_postgres::Object> {
    let cfg = parse_url(url)?;
    let target = describe(&cfg);
    let pool = pool(cfg, &target, 1)?;
    pool.get().await.map_err(|e| {
        StoreError::new(format!("cannot connect to PostgreSQL at {target}: {}", pool_message(&e)))
    })
}

fn pool(cfg: tokio_postgres::Config, target: &str, size: usize) -> StoreResult<Pool> {
    let manager = Manager::from_config(cfg, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(size.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| StoreError::new(format!("PostgreSQL pool for {target}: {e}")))
}

/// Runs a statement prepared once per connection.
async fn query<C: GenericClient>(c: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query(&stmt, params).await?)
}

async fn query_opt<C: GenericClient>(
    c: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Option<Row>> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.query_opt(&stmt, params).await?)
}

async fn execute<C: GenericClient>(c: &C, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
    let stmt = c.prepare_cached(sql).await?;
    Ok(c.execute(&stmt, params).await?)
}

/// Applies pending migrations to the database at `url`; the versions applied now.
pub async fn migrate(url: &str) -> StoreResult<Vec<i64>> {
    let mut client = connect_one(url).await?;
    schema::migrate(&mut client).await
}

/// Verifies the audit chain of the database at `url`, without writing to it.
pub async fn verify_offline(url: &str) -> StoreResult<Verification> {
    verify_snapshot(connect_one(url).await?).await
}

/// Verifies the chain as of one snapshot: the head and every page read together, so that records
/// other instances append meanwhile are neither half seen nor taken for a log past its head.
async fn verify_snapshot(mut client: deadpool_postgres::Object) -> StoreResult<Verification> {
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let v = read::verify_chain(&tx).await?;
    tx.commit().await?;
    Ok(v)
}

/// The cluster store, queue and outbox.
pub struct PgStore {
    pool: Pool,
    target: String,
    notify: Arc<Notify>,
    writer: mpsc::Sender<(write::Write, oneshot::Sender<StoreResult<write::Written>>)>,
    handoffs: Arc<Handoffs>,
}

/// The deliveries of events this instance just committed, kept for the relay's handoff of them
/// (with a broker only: [`Outbox::keep_handoffs`]), so that it need not read back from the
/// database what it wrote a moment before. A handoff takes its events' entries; events it does
/// not find here (the original of a duplicate, more than [`Handoffs::MAX`] waiting, or kept
/// longer than [`Handoffs::KEEP_FOR`]) are read from the database as before.
#[derive(Default)]
struct Handoffs {
    enabled: std::sync::atomic::AtomicBool,
    waiting: std::sync::Mutex<Waiting>,
}

#[derive(Default)]
struct Waiting {
    tasks: FastMap<String, (std::time::Instant, Vec<Task>)>,
    /// When entries were last looked at for age.
    swept: Option<std::time::Instant>,
}

impl Handoffs {
    /// Events kept at most (a handoff takes its own within milliseconds of the commit).
    const MAX: usize = 10_000;
    /// How long an entry is kept: one whose handoff never came (the request was dropped between
    /// its commit and its handoff) is left to the sweeper, as anything unpublished.
    const KEEP_FOR: Duration = Duration::from_secs(10);

    fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps the deliveries of committed events.
    fn keep(&self, committed: Vec<(String, Vec<Task>)>) {
        let now = std::time::Instant::now();
        let mut waiting = self.lock();
        if waiting.swept.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            waiting.tasks.retain(|_, (at, _)| now.duration_since(*at) < Self::KEEP_FOR);
            waiting.swept = Some(now);
        }
        for (event, tasks) in committed {
            if waiting.tasks.len() >= Self::MAX {
                break;
            }
            waiting.tasks.insert(event, (now, tasks));
        }
    }

    /// Takes the deliveries kept for `events`; the events not kept are returned apart.
    fn take(&self, events: Vec<String>) -> (Vec<Task>, Vec<String>) {
        let mut waiting = self.lock();
        let (mut found, mut missing) = (Vec::new(), Vec::new());
        for e in events {
            match waiting.tasks.remove(&e) {
                Some((_, tasks)) => found.extend(tasks),
                None => missing.push(e),
            }
        }
        (found, missing)
    }
}

/// Writes waiting at most in the group-commit queue; beyond, callers wait (back-pressure).
const WRITE_QUEUE: usize = 4096;
/// Writes committed together at most.
const GROUP_MAX: usize = 256;

/// A connection of `pool`, to the database at `target` (named in the error).
async fn pooled(pool: &Pool, target: &str) -> StoreResult<deadpool_postgres::Object> {
    pool.get().await.map_err(|e| StoreError::new(format!("PostgreSQL at {target}: {}", pool_message(&e))))
}

impl PgStore {
    /// Connects a pool of `pool_size` to `url`, applies pending migrations and starts listening
    /// for work committed by other instances.
    pub async fn connect(url: &str, pool_size: usize) -> StoreResult<Arc<Self>> {
        let cfg = parse_url(url)?;
        let target = describe(&cfg);
        let pool = pool(cfg.clone(), &target, pool_size)?;
        let (writer, writes) = mpsc::channel(WRITE_QUEUE);
        let notify = Arc::new(Notify::new());
        let handoffs = Arc::new(Handoffs::default());
        let store = Arc::new(Self {
            pool: pool.clone(),
            target: target.clone(),
            notify: notify.clone(),
            writer,
            handoffs: handoffs.clone(),
        });
        {
            let mut client = store.client().await?;
            let applied = schema::migrate(&mut client).await?;
            if !applied.is_empty() {
                tracing::info!(target = %store.target, versions = ?applied, "PostgreSQL migrations applied");
            }
        }
        tokio::spawn(listen(cfg, store.target.clone(), Arc::downgrade(&store.notify)));
        tokio::spawn(group_commit(pool, target, writes, notify, handoffs));
        Ok(store)
    }

    /// `user@host:port/database` of the store.
    pub fn target(&self) -> &str {
        &self.target
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        pooled(&self.pool, &self.target).await
    }

    /// Wakes this instance's workers (other instances hear the NOTIFY sent at commit).
    fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Hands a write to the group committer and waits for its commit.
    async fn write(&self, w: write::Write) -> StoreResult<write::Written> {
        let (tx, rx) = oneshot::channel();
        let stopped = || StoreError::new("store writer has stopped");
        self.writer.send((w, tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// Group commit: every write waiting when a transaction starts joins it, so concurrent requests
/// of this instance share one append to the chain and one commit (as embedded mode's writer).
/// A transaction that lost to a concurrent one (deadlock) runs again; one that failed otherwise
/// answers each of its writes with the error.
async fn group_commit(
    pool: Pool,
    target: String,
    mut writes: mpsc::Receiver<(write::Write, oneshot::Sender<StoreResult<write::Written>>)>,
    notify: Arc<Notify>,
    handoffs: Arc<Handoffs>,
) {
    while let Some(first) = writes.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match writes.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
        let mut committed = Vec::new();
        let mut conflicts = write::Conflicts::new("group commit");
        let result = loop {
            committed.clear();
            let kept = handoffs.enabled().then_some(&mut committed);
            let result = async { write::group(&mut pooled(&pool, &target).await?, &ops, kept).await }.await;
            if !conflicts.again(&result).await {
                break result;
            }
        };
        match result {
            Ok((answers, wake)) => {
                // Before the answers: the handoff that follows an answer finds its deliveries.
                handoffs.keep(committed);
                // A caller that went away no longer needs its answer: the work is committed.
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
                if wake {
                    notify.notify_waiters();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = ops.len(), "store transaction failed; every write in it gets the error");
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// LISTENs for work announced by any instance, on a dedicated connection reconnected when lost.
async fn listen(cfg: tokio_postgres::Config, target: String, notify: std::sync::Weak<Notify>) {
    use tokio_postgres::AsyncMessage;
    // Consecutive connections that failed or were lost: only the first of a series is logged.
    let mut failures = 0u32;
    loop {
        if notify.strong_count() == 0 {
            return;
        }
        match cfg.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => {
                                if tx.send(()).is_err() {
                                    return None;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Some(pg_message(&e)),
                            None => return None,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        if failures > 0 {
                            tracing::info!(target = %target, "listening for work again");
                        }
                        failures = 0;
                        while rx.recv().await.is_some() {
                            match notify.upgrade() {
                                Some(n) => n.notify_waiters(),
                                None => return,
                            }
                        }
                    }
                    Err(e) => tracing::warn!(target = %target, error = %pg_message(&e), "LISTEN failed"),
                }
                drop(client);
                if let Ok(Some(e)) = driver.await {
                    tracing::warn!(target = %target, error = %e, "lost the LISTEN connection; reconnecting");
                }
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(target = %target, error = %pg_message(&e),
                        "cannot open the LISTEN connection; workers poll meanwhile");
                }
            }
        }
        failures += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Store for PgStore {
    fn accept(
        &self,
        events: Vec<NewEvent>,
        audit: Vec<Entry>,
    ) -> BoxFuture<'_, StoreResult<Vec<Acceptance>>> {
        Box::pin(async move {
            match self.write(write::Write::Accept(events, audit)).await? {
                write::Written::Accepted(out) => Ok(out),
                write::Written::Done => Err(StoreError::new("internal: mismatched answer")),
            }
        })
    }

    fn audit(&self, entries: Vec<Entry>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(());
            }
            self.write(write::Write::Audit(entries)).await.map(drop)
        })
    }

    fn event(&self, id: String) -> BoxFuture<'_, StoreResult<Option<EventView>>> {
        Box::pin(async move { read::event(&self.client().await?, &id).await })
    }

    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        Box::pin(async move { read::dead_letters(&self.client().await?, &filter).await })
    }

    fn replay(&self, filter: DeadLetterFilter, actor: String) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>> {
        Box::pin(async move {
            let mut conflicts = write::Conflicts::new("replay");
            let letters = loop {
                let result = async { write::replay(&mut self.client().await?, &filter, &actor).await }.await;
                if !conflicts.again(&result).await {
                    break result?;
                }
            };
            if !letters.is_empty() {
                self.wake();
            }
            Ok(letters)
        })
    }

    fn audit_page(&self, filter: AuditFilter) -> BoxFuture<'_, StoreResult<Vec<Record>>> {
        Box::pin(async move { read::audit_page(&self.client().await?, &filter).await })
    }

    fn audit_verify(&self) -> BoxFuture<'_, StoreResult<Verification>> {
        Box::pin(async move { verify_snapshot(self.client().await?).await })
    }

    fn ready(&self) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            self.client().await?.simple_query("SELECT 1").await?;
            Ok(())
        })
    }
}

impl Projections for PgStore {
    fn progetto(
        &self,
        tenant: String,
        id_progetto: String,
    ) -> BoxFuture<'_, StoreResult<Option<ProgettoRow>>> {
        Box::pin(async move { read::progetto(&self.client().await?, &tenant, &id_progetto).await })
    }

    fn progetti_of(&self, tenant: String, who: Vec<String>) -> BoxFuture<'_, StoreResult<Vec<ProgettoRow>>> {
        Box::pin(async move { read::progetti_of(&self.client().await?, &tenant, &who).await })
    }

    fn month_minutes(
        &self,
        tenant: String,
        mesi: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<(MonthGroup, i64)>>> {
        Box::pin(async move { read::month_minutes(&self.client().await?, &tenant, &mesi).await })
    }

    fn coop_deliveries(
        &self,
        tenant: String,
        keys: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<CoopDeliveryRow>>> {
        Box::pin(async move { read::coop_deliveries(&self.client().await?, &tenant, &keys).await })
    }

    fn coop_month(
        &self,
        tenant: String,
        mese: String,
        cooperativa: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<CoopDeliveryRow>>> {
        Box::pin(async move {
            read::coop_month(&self.client().await?, &tenant, &mese, cooperativa.as_deref()).await
        })
    }

    fn prestazioni_with_prefix(
        &self,
        tenant: String,
        prefix: String,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>> {
        Box::pin(async move {
            let rows = query(
                &self.client().await?,
                "SELECT id_prestazione, event_id FROM prestazioni_export
                 WHERE tenant = $1 AND starts_with(id_prestazione, $2) ORDER BY id_prestazione",
                &[&tenant, &prefix],
            )
            .await?;
            rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
        })
    }

    fn save_upload(&self, upload: UploadRecord) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { write::save_upload(&self.client().await?, &upload).await })
    }

    fn upload(&self, id: String) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>> {
        Box::pin(async move { read::upload(&self.client().await?, &id).await })
    }

    fn save_upload_rows(&self, upload_id: String, rows: Vec<ReportRow>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move { write::save_upload_rows(&self.client().await?, &upload_id, &rows).await })
    }

    fn upload_rows(
        &self,
        upload_id: String,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<ReportRow>>> {
        Box::pin(async move { read::upload_rows(&self.client().await?, &upload_id, after, limit).await })
    }
}

impl Queue for PgStore {
    fn claim(
        &self,
        destination: String,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<Task>>> {
        Box::pin(async move { write::claim(&self.client().await?, &destination, limit, lease_ms).await })
    }

    fn complete(&self, done: Vec<Completion>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            if done.is_empty() {
                return Ok(());
            }
            self.write(write::Write::Complete(done)).await.map(drop)
        })
    }

    fn settled(&self, delivery_id: i64) -> BoxFuture<'_, StoreResult<bool>> {
        Box::pin(async move { read::settled(&self.client().await?, delivery_id).await })
    }

    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(String, i64)>>> {
        Box::pin(async move { read::depth(&self.client().await?).await })
    }

    fn notified(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.notify.notified())
    }
}

impl Outbox for PgStore {
    fn take_unpublished(
        &self,
        events: Option<Vec<String>>,
        stale_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<Task>>> {
        Box::pin(async move {
            // A handoff's events just committed here: their deliveries are at hand, unpublished
            // and unleased (no sweeper takes them before they are stale).
            let (mut tasks, events) = match events {
                Some(events) if self.handoffs.enabled() => {
                    let (found, missing) = self.handoffs.take(events);
                    if missing.is_empty() {
                        return Ok(found);
                    }
                    (found, Some(missing))
                }
                other => (Vec::new(), other),
            };
            let client = self.client().await?;
            tasks.extend(
                write::take_unpublished(&client, events.as_deref(), stale_ms, limit, lease_ms).await?,
            );
            tasks.sort_by_key(|t| t.delivery_id);
            Ok(tasks)
        })
    }

    fn keep_handoffs(&self) {
        self.handoffs.enabled.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn published(&self, deliveries: Vec<(i64, i64)>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            if deliveries.is_empty() {
                return Ok(());
            }
            write::mark_published(&self.client().await?, &deliveries).await
        })
    }

    fn release(&self, delivery_ids: Vec<i64>) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            if delivery_ids.is_empty() {
                return Ok(());
            }
            write::release(&self.client().await?, &delivery_ids).await
        })
    }
}

#[cfg(test)]
mod handoff_tests {
    use super::*;

    fn task(event: &str, delivery_id: i64) -> Task {
        Task::example(delivery_id, event, "csi", "t")
    }

    #[test]
    fn a_handoff_takes_its_events_once_and_names_the_ones_it_must_read() {
        let h = Handoffs::default();
        h.keep(vec![("e1".into(), vec![task("e1", 1), task("e1", 2)]), ("e2".into(), vec![])]);
        let (found, missing) = h.take(vec!["e1".into(), "e2".into(), "original".into()]);
        assert_eq!(found.iter().map(|t| t.delivery_id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(missing, ["original"], "an event not committed here is read from the database");
        let (found, missing) = h.take(vec!["e1".into()]);
        assert!(found.is_empty(), "taken once");
        assert_eq!(missing, ["e1"]);
    }

    #[test]
    fn what_no_relay_takes_does_not_grow_past_the_bound() {
        let h = Handoffs::default();
        h.keep((0..Handoffs::MAX + 10).map(|i| (format!("e{i}"), vec![])).collect());
        assert_eq!(h.lock().tasks.len(), Handoffs::MAX);
    }

    #[test]
    fn an_entry_whose_handoff_never_came_is_dropped_after_a_while() {
        let h = Handoffs::default();
        h.keep(vec![("dropped".into(), vec![task("dropped", 1)])]);
        {
            let mut w = h.lock();
            let old = std::time::Instant::now() - Handoffs::KEEP_FOR;
            w.tasks.get_mut("dropped").expect("kept").0 = old;
            w.swept = Some(old);
        }
        h.keep(vec![("next".into(), vec![])]);
        let (found, missing) = h.take(vec!["dropped".into()]);
        assert!(found.is_empty());
        assert_eq!(missing, ["dropped"], "left to the database (and the sweeper)");
    }
}
