//! Durability: the [`Store`] (events, idempotency keys, audit) and the [`Queue`] (per-destination
//! delivery state). The pipeline sees only these traits; embedded mode implements both on one
//! SQLite file ([`sqlite::SqliteStore`]), so that an event, its deliveries and its audit records
//! commit in one transaction (the outbox is the queue). Cluster mode implements the same traits on
//! PostgreSQL ([`postgres::PgStore`]), with the delivery table as the queue or as the [`Outbox`] of
//! a broker.
//!
//! Invariant: the only place durability lives is here.

pub mod postgres;
pub mod siuss;
pub mod sqlite;

use csi_gateway_sdk::BoxFuture;
use serde::Serialize;

use crate::audit::{Entry, Record, Verification};

/// The maps on the hot paths of accepting and uploading (the writer's keys of a request, an
/// upload's running totals, the handoffs waiting for the relay): foldhash, hashbrown's default,
/// seeded at random per map like the standard library's, and several times faster than its
/// SipHash on short keys. Each is bounded by what it serves (a batch, a chunk, a cache's limit).
pub type FastMap<K, V> = hashbrown::HashMap<K, V>;

/// A failure of the storage engine itself.
#[derive(Debug, Clone, thiserror::Error)]
#[error("store: {message}")]
pub struct StoreError {
    pub message: String,
    /// The transaction lost to a concurrent one (PostgreSQL's deadlock or serialization failure)
    /// and was rolled back: run again as it was, it can succeed.
    pub conflict: bool,
}

impl StoreError {
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), conflict: false }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::new(e.to_string())
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A validated, authorized, routed event ready to be made durable.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub source: String,
    pub event_type: String,
    pub tenant: String,
    pub subject: Option<String>,
    pub idempotency_key: Option<String>,
    pub correlation_id: Option<String>,
    /// The CloudEvent as it will be delivered.
    pub body: Vec<u8>,
    pub digest: String,
    pub destinations: Vec<String>,
    /// The publishing client.
    pub actor: String,
    /// Read models updated in the same commit when the event is new.
    pub projections: Vec<Projection>,
}

impl NewEvent {
    /// Where its idempotency key is unique: its tenant and `source`. Per source alone, a client of
    /// one tenant publishing under another's `source` could take (or learn of) that tenant's keys.
    pub fn idempotency_scope(&self) -> String {
        idempotency_scope(&self.tenant, &self.source)
    }

    /// The audit record of this event recognised as a duplicate of `original`.
    pub fn duplicate_entry(&self, original: &str) -> Entry {
        Entry::new(crate::audit::Action::Duplicate, self.actor.as_str())
            .tenant(&self.tenant)
            .event(original)
            .digest(&self.digest)
            .detail("same source and idempotencykey: original id returned, nothing stored")
    }

    /// The audit record of this event's acceptance, naming where it is routed.
    pub fn accepted_entry(&self) -> Entry {
        let detail = if self.destinations.is_empty() {
            "no route matches: stored, not delivered".to_string()
        } else {
            format!("routed to {}", self.destinations.join(", "))
        };
        Entry::new(crate::audit::Action::Accepted, self.actor.as_str())
            .tenant(&self.tenant)
            .event(&self.id)
            .digest(&self.digest)
            .detail(detail)
    }
}

/// A read model derived from an accepted event, written in the same transaction.
#[derive(Debug, Clone)]
pub enum Projection {
    /// The active progetto of a beneficiary (from `progetto.approvato`).
    Progetto(ProgettoRow),
    /// A cooperative's delivery (from the coop adapter), keyed for corrections and monthly totals.
    CoopDelivery(Box<CoopDeliveryRow>),
    /// The latest persona of a beneficiary (from `persona.registrata`).
    Persona(siuss::PersonaRow),
    /// The latest valutazione with a SINA assessment (from `valutazione.registrata`).
    ValutazioneSina(siuss::ValutazioneRow),
    /// Where a prestazione sits in the web-upload export (from `prestazione.erogata`). The
    /// PostgreSQL store keeps it; the embedded store indexes the event body instead.
    PrestazioneExport(siuss::ExportKey),
}

/// An approved progetto as the coop checks need it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProgettoRow {
    pub tenant: String,
    pub id_progetto: String,
    pub pseudonimo: String,
    pub codice_fiscale: Option<String>,
    pub dal: String,
    pub al: String,
    /// The `interventi` array of the event, as JSON.
    pub interventi: serde_json::Value,
    pub event_id: String,
}

/// `(id_progetto, tipo_servizio, mese)`: the unit the authorized monthly hours apply to.
pub type MonthGroup = (String, String, String);

/// The columns of a `progetti` row, in [`ProgettoRow`]'s order (both stores read them so).
pub(crate) const PROGETTO_COLUMNS: &str =
    "tenant, id_progetto, pseudonimo, codice_fiscale, dal, al, interventi, event_id";
/// The columns of a `coop_deliveries` row, in [`CoopDeliveryRow`]'s order.
pub(crate) const COOP_COLUMNS: &str = "tenant, key, cooperativa, id_progetto, pseudonimo, tipo_servizio, codice_prestazione,
    denominazione, area_utenza, data, mese, minuti, importo_cents, quota_utente_cents, flag, event_id, upload_id, digest";

/// [`COOP_COLUMNS`] of the table aliased `alias` in a join.
pub(crate) fn coop_columns_of(alias: &str) -> String {
    COOP_COLUMNS.split(',').map(|c| format!("{alias}.{}", c.trim())).collect::<Vec<_>>().join(", ")
}

/// One accepted cooperative delivery.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CoopDeliveryRow {
    pub tenant: String,
    /// Idempotency key of the delivery (the cooperative's record id, or a content key).
    pub key: String,
    pub cooperativa: String,
    pub id_progetto: String,
    pub pseudonimo: String,
    pub tipo_servizio: String,
    pub codice_prestazione: String,
    pub denominazione: String,
    pub area_utenza: String,
    /// `YYYY-MM-DD`.
    pub data: String,
    /// `YYYY-MM`.
    pub mese: String,
    pub minuti: i64,
    pub importo_cents: i64,
    pub quota_utente_cents: i64,
    /// Why the delivery was accepted flagged for the social worker, if it was.
    pub flag: Option<String>,
    pub event_id: String,
    pub upload_id: Option<String>,
    /// Digest of the delivery's content, to tell a correction from a re-send.
    pub digest: String,
    /// `idPrestazione` of the delivery's event, which a correction keeps. Not a column: read from
    /// the event by [`Projections::coop_deliveries`], `None` elsewhere.
    pub id_prestazione: Option<String>,
}

/// What became of one submitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acceptance {
    /// Stored now, under this id.
    New(String),
    /// Same `(source, idempotencykey)` seen before: the original event's id.
    Duplicate(String),
}

impl Acceptance {
    pub fn id(&self) -> &str {
        match self {
            Acceptance::New(id) | Acceptance::Duplicate(id) => id,
        }
    }
}

/// A delivery claimed by a worker.
#[derive(Debug, Clone)]
pub struct Task {
    pub delivery_id: i64,
    pub event_id: String,
    pub destination: String,
    pub event_type: String,
    pub tenant: String,
    pub idempotency_key: Option<String>,
    pub body: Vec<u8>,
    pub digest: String,
    /// Attempts already made before this one.
    pub attempts: u32,
    /// When the current delivery cycle started (acceptance or last replay), ms.
    pub since: i64,
}

#[cfg(test)]
impl Task {
    /// A delivery for unit tests: the rest of its state empty.
    pub(crate) fn example(delivery_id: i64, event_id: &str, destination: &str, event_type: &str) -> Self {
        Task {
            delivery_id,
            event_id: event_id.into(),
            destination: destination.into(),
            event_type: event_type.into(),
            tenant: "F205".into(),
            idempotency_key: None,
            body: b"{}".to_vec(),
            digest: String::new(),
            attempts: 0,
            since: 0,
        }
    }
}

/// The result of one attempt, as the worker decided it.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered { detail: String },
    Retry { at: i64, error: String },
    Dead { error: String },
}

/// A finished attempt to record.
#[derive(Debug, Clone)]
pub struct Completion {
    pub task: Task,
    pub started_at: i64,
    pub outcome: Outcome,
}

/// One attempt in a timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attempt {
    pub attempt: u32,
    pub started_at: String,
    pub finished_at: String,
    /// `delivered`, `retry` or `dead_lettered`.
    pub outcome: String,
    pub detail: String,
}

/// Delivery state of an event at one destination.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub destination: String,
    /// `pending`, `in_flight`, `delivered` or `dead_lettered`.
    pub status: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub timeline: Vec<Attempt>,
}

/// An event as `GET /v1/events/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    pub tenant: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub source: String,
    pub received_at: String,
    /// `accepted` (no route), `pending`, `delivered` or `dead_lettered`.
    pub status: String,
    pub digest: String,
    /// The CloudEvent as accepted.
    pub event: serde_json::Value,
    pub deliveries: Vec<DeliveryView>,
    /// What INPS SIUSS made of the event (prestazioni routed to a `siuss` destination).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub siuss: Option<siuss::SiussView>,
}

/// A dead letter: an event that one destination could not take.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// Id to replay it by.
    pub id: i64,
    pub event_id: String,
    pub destination: String,
    pub tenant: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub attempts: u32,
    pub last_error: String,
    pub dead_at: String,
    /// The original CloudEvent.
    pub event: serde_json::Value,
}

/// Which dead letters to list or replay.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterFilter {
    pub destination: Option<String>,
    pub tenant: Option<String>,
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    /// Only dead letters whose event id is one of these (bulk replay).
    #[serde(default)]
    pub ids: Option<Vec<i64>>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
    /// Only ids greater than this (paging cursor).
    pub after: Option<i64>,
    /// Tenants the caller may see; filled by the API, not the user.
    #[serde(skip)]
    pub allowed_tenants: Option<Vec<String>>,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    pub event_id: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
    pub tenant: Option<String>,
    /// Only records after this sequence number (paging cursor).
    pub after: Option<i64>,
    /// Page size (default 100, max 1000).
    pub limit: Option<u32>,
    #[serde(skip)]
    pub allowed_tenants: Option<Vec<String>>,
}

/// Events, idempotency keys and the audit chain.
pub trait Store: Send + Sync + 'static {
    /// Makes events durable with their deliveries and audit records, in one commit. Duplicates
    /// come back as [`Acceptance::Duplicate`] and write nothing but an audit record.
    fn accept(&self, events: Vec<NewEvent>, audit: Vec<Entry>)
        -> BoxFuture<'_, StoreResult<Vec<Acceptance>>>;
    /// Appends audit records (rejections, reads, denials).
    fn audit(&self, entries: Vec<Entry>) -> BoxFuture<'_, StoreResult<()>>;
    fn event(&self, id: String) -> BoxFuture<'_, StoreResult<Option<EventView>>>;
    fn dead_letters(&self, filter: DeadLetterFilter) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>>;
    /// Puts matching dead letters back in the queue, keeping event id and idempotency key.
    fn replay(&self, filter: DeadLetterFilter, actor: String) -> BoxFuture<'_, StoreResult<Vec<DeadLetter>>>;
    fn audit_page(&self, filter: AuditFilter) -> BoxFuture<'_, StoreResult<Vec<Record>>>;
    fn audit_verify(&self) -> BoxFuture<'_, StoreResult<Verification>>;
    /// Whether the store accepts writes now.
    fn ready(&self) -> BoxFuture<'_, StoreResult<()>>;
}

/// A stored upload report (coop adapter).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct UploadRecord {
    pub id: String,
    pub tenant: String,
    pub client: String,
    pub mapping: String,
    pub created_at: i64,
    /// The report as JSON (summary and per-row outcomes). Reports written since the rows are kept
    /// apart ([`Projections::save_upload_rows`]) hold an empty `rows` array here.
    pub report: serde_json::Value,
}

/// One row of an upload's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Record number in the file.
    pub row: i64,
    /// The row's report, a JSON object as text.
    pub json: String,
}

/// Read models and adapter state kept beside the events.
pub trait Projections: Send + Sync + 'static {
    fn progetto(
        &self,
        tenant: String,
        id_progetto: String,
    ) -> BoxFuture<'_, StoreResult<Option<ProgettoRow>>>;
    /// Every progetto, whatever its period, of these beneficiaries (each named by pseudonym or
    /// codice fiscale): one lookup for a chunk of rows.
    fn progetti_of(&self, tenant: String, who: Vec<String>) -> BoxFuture<'_, StoreResult<Vec<ProgettoRow>>>;
    /// Minutes already accepted per month group, for every group of these months (`YYYY-MM`; a
    /// group with none is left out).
    fn month_minutes(
        &self,
        tenant: String,
        mesi: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<(MonthGroup, i64)>>>;
    /// The deliveries stored under these keys.
    fn coop_deliveries(
        &self,
        tenant: String,
        keys: Vec<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<CoopDeliveryRow>>>;
    /// Every delivery of a tenant and month (for the monthly close), optionally of one cooperative.
    fn coop_month(
        &self,
        tenant: String,
        mese: String,
        cooperativa: Option<String>,
    ) -> BoxFuture<'_, StoreResult<Vec<CoopDeliveryRow>>>;
    /// The latest event of each prestazione of `tenant` whose `idPrestazione` starts with
    /// `prefix` (the monthly records of a month's closes), as (idPrestazione, event id).
    fn prestazioni_with_prefix(
        &self,
        tenant: String,
        prefix: String,
    ) -> BoxFuture<'_, StoreResult<Vec<(String, String)>>>;
    fn save_upload(&self, upload: UploadRecord) -> BoxFuture<'_, StoreResult<()>>;
    fn upload(&self, id: String) -> BoxFuture<'_, StoreResult<Option<UploadRecord>>>;
    /// Adds rows to an upload's report as the upload goes (a report row already there is
    /// replaced), so that a report never has to be whole in memory.
    fn save_upload_rows(&self, upload_id: String, rows: Vec<ReportRow>) -> BoxFuture<'_, StoreResult<()>>;
    /// Up to `limit` rows of an upload's report after record `after`, in record order.
    fn upload_rows(
        &self,
        upload_id: String,
        after: i64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<ReportRow>>>;
}

/// Per-destination delivery queue.
pub trait Queue: Send + Sync + 'static {
    /// Claims up to `limit` due deliveries for `destination`, leased for `lease_ms`.
    fn claim(
        &self,
        destination: String,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<Task>>>;
    /// Records finished attempts and their audit records.
    fn complete(&self, done: Vec<Completion>) -> BoxFuture<'_, StoreResult<()>>;
    /// Whether a delivery's outcome is final: delivered, or dead and not replayed since. A
    /// message the broker gives again for such a delivery (its consumer died between recording
    /// the outcome and acknowledging) is not attempted again.
    fn settled(&self, delivery_id: i64) -> BoxFuture<'_, StoreResult<bool>>;
    /// Deliveries waiting or in flight, per destination.
    fn depth(&self) -> BoxFuture<'_, StoreResult<Vec<(String, i64)>>>;
    /// Wakes when new work may be due (new events, replays).
    fn notified(&self) -> BoxFuture<'_, ()>;
}

/// Deliveries made durable but not yet handed to a message broker: the outbox of cluster mode.
/// A store that feeds a broker writes each new or replayed delivery as unpublished in the same
/// commit as the event; a relay takes them (leased, so that relays of several instances do not
/// publish the same delivery twice), publishes them, and marks them once the broker has confirmed.
pub trait Outbox: Send + Sync + 'static {
    /// Takes up to `limit` unpublished deliveries not leased by another relay, oldest first: those
    /// of `events` when given (a handoff of events just committed, which no sweeper takes before
    /// they are stale: read without a lease), otherwise, leased for `lease_ms`, those left
    /// unpublished for at least `stale_ms` (a handoff that failed, or an instance that died
    /// between its commit and the broker's confirm).
    fn take_unpublished(
        &self,
        events: Option<Vec<String>>,
        stale_ms: i64,
        limit: usize,
        lease_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<Task>>>;
    /// Marks deliveries as confirmed by the broker, each as `(delivery id, since)` of the task
    /// that was published: a mark that arrives after a replay started a new cycle (a new
    /// `since`) leaves the replayed delivery unpublished, for its own publication.
    fn published(&self, deliveries: Vec<(i64, i64)>) -> BoxFuture<'_, StoreResult<()>>;
    /// Gives taken deliveries back unpublished (the broker refused them or did not answer).
    fn release(&self, delivery_ids: Vec<i64>) -> BoxFuture<'_, StoreResult<()>>;
    /// A relay will hand off this instance's new events: the store may keep their deliveries at
    /// hand for [`Outbox::take_unpublished`] instead of reading them back.
    fn keep_handoffs(&self) {}
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// RFC 3339 text of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// The part of a delivery outcome fit for the audit: its classification and status line
/// (`permanent: HTTP 400 Bad Request`, `HTTP 503 Service Unavailable`, `timeout after 10s`), never
/// a receiver's response body that follows them (it may echo payload data).
pub(crate) fn audit_summary(reason: &str) -> String {
    let mut kept = Vec::new();
    for part in reason.split(": ") {
        kept.push(part);
        // The status line ends what may be kept; so do two parts of anything else.
        if part.starts_with("HTTP ") || kept.len() == 2 {
            break;
        }
    }
    kept.join(": ").chars().take(120).collect()
}

/// The `source` column of the idempotency keys: tenant and source, apart by U+001F (which neither
/// a tenant code nor a URI reference holds). Both stores' migrations write the same.
pub fn idempotency_scope(tenant: &str, source: &str) -> String {
    format!("{tenant}\u{1f}{source}")
}

#[cfg(test)]
mod audit_summary_tests {
    use super::audit_summary;

    #[test]
    fn a_receivers_body_never_reaches_the_audit() {
        let body = r#"{"error":"subject RSSMRA80A01F205X non trovato"}"#;
        assert_eq!(
            audit_summary(&format!("HTTP 500 Internal Server Error: {body}")),
            "HTTP 500 Internal Server Error"
        );
        assert_eq!(
            audit_summary(&format!("permanent: HTTP 400 Bad Request: {body}")),
            "permanent: HTTP 400 Bad Request"
        );
        assert_eq!(audit_summary("HTTP 503 Service Unavailable"), "HTTP 503 Service Unavailable");
        assert_eq!(
            audit_summary("timeout after 10s to 127.0.0.1:9000"),
            "timeout after 10s to 127.0.0.1:9000"
        );
    }
}
