//! The cooperatives adapter, hub side: a cooperative's file (CSV or JSON, read and checked row by
//! row by `csi-gateway-coop` through its mapping) is checked against each beneficiary's active
//! progetto, priced, turned into `prestazione` events that go through the common ingest path, and
//! reported row by row. Also: the monthly close and the liquidazione per cooperative.
//!
//! Invariants: a bad row never takes good rows down with it; re-sending a file creates nothing new;
//! a corrected row (same record id, other content) replaces the earlier one and is audited; a
//! cooperative's client acts only as its own cooperative, on progetti that name it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub mod drop_folder;

use csi_gateway_coop::{Delivery, Mapping, RowOutcome, RowResult};
use serde::Serialize;
use serde_json::{json, Value};

use crate::audit::{self, Action, Entry};
use crate::auth::Caller;
use crate::config::{CoopConfig, OnViolation};
use crate::ingest::{Admission, EventResult, IngestError, Pipeline};
use crate::store::{
    now_ms, CoopDeliveryRow, FastMap, MonthGroup, ProgettoRow, Projection, Projections, ReportRow,
    StoreError, UploadRecord,
};

/// The interchange type every delivery becomes.
pub const PRESTAZIONE: &str = "it.lombardia.csi.prestazione.erogata.v1";
/// Rows checked and submitted together.
const CHUNK: usize = 1000;

/// Why an upload as a whole could not be processed.
#[derive(Debug, thiserror::Error)]
pub enum CoopError {
    #[error("mapping '{0}': {1}")]
    Mapping(String, String),
    #[error("{0}")]
    Input(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ingest(#[from] IngestError),
}

/// What a service type defaults to when the progetto does not say.
#[derive(Debug, Clone)]
struct ServiceInfo {
    area_utenza: String,
    codice_prestazione: String,
    denominazione: String,
}

/// The adapter's state: mappings (compiled once), the service table, the policy.
pub struct Coop {
    dir: PathBuf,
    config: CoopConfig,
    services: FastMap<String, ServiceInfo>,
    mappings: Mutex<HashMap<String, Arc<Mapping>>>,
    pub store: Arc<dyn Projections>,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowReport {
    /// Record number in the file (the CSV header is row 1; JSON items count from 1).
    pub row: u64,
    /// `accepted`, `corrected` (replaces an earlier version), `duplicate` (already received),
    /// `rejected` or `skipped` (blank or summary row).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RowProblem>,
    /// Progetto rules the delivery breaks, accepted for the social worker to review.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<RowProblem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A copy of an earlier row of the file still in flight when this one was checked: that
    /// row's number, whose event id this row's report takes once it is committed.
    #[serde(skip)]
    #[schema(ignore)]
    pub same_as: Option<u64>,
}

/// A broken rule, located by the file's own column name when there is one.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RowProblem {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub rule: String,
    pub message: String,
}

impl RowProblem {
    fn new(column: Option<&str>, rule: &str, message: impl Into<String>) -> Self {
        Self { column: column.map(str::to_string), rule: rule.into(), message: message.into() }
    }
}

/// Counts of an upload.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Summary {
    pub rows: u64,
    pub accepted: u64,
    pub corrected: u64,
    pub duplicates: u64,
    pub flagged: u64,
    pub rejected: u64,
    pub skipped: u64,
}

/// The answer to an upload, kept for `GET /v1/adapters/coop/erogazioni/{id}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UploadReport {
    pub id: String,
    pub tenant: String,
    pub mapping: String,
    pub client: String,
    pub received_at: String,
    pub digest: String,
    pub summary: Summary,
    pub rows: Vec<RowReport>,
}

/// A processed upload: its id, its counts, and its stored report without the rows (an
/// [`UploadReport`] whose `rows` are in the store: see [`report_stream`]).
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub id: String,
    pub summary: Summary,
    pub report: String,
}

/// Report rows read from the store at a time when a report is sent.
const REPORT_PAGE: usize = 1000;

/// The report's JSON text with an empty `rows` array, its last field: `..."rows":[]}`.
fn report_head(report: &UploadReport) -> Result<String, CoopError> {
    let text = serde_json::to_string(report).map_err(|e| CoopError::Input(e.to_string()))?;
    if !text.ends_with(ROWS_LAST) {
        return Err(CoopError::Input("internal: unexpected report layout".into()));
    }
    Ok(text)
}

/// How a stored report whose rows are kept apart ends.
const ROWS_LAST: &str = "\"rows\":[]}";

/// The JSON text of a stored report (kept as text, see [`Coop::upload`]; a JSON object as well).
pub fn stored_report(report: Value) -> String {
    match report {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// Where [`report_stream`] is.
enum Part {
    Head(String),
    Rows { after: i64, first: bool },
    Done,
}

/// The whole report of upload `id` as JSON text, in pieces: the stored report (`stored`) up to its
/// `rows` array, then the rows a page at a time from the store, then the end. Memory holds one
/// page, whatever the size of the file. A report stored whole (before rows were kept apart) is
/// sent as it is.
pub fn report_stream(
    store: Arc<dyn Projections>,
    id: String,
    stored: String,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, StoreError>> + Send + 'static {
    futures_util::stream::try_unfold(Part::Head(stored), move |part| {
        let (store, id) = (store.clone(), id.clone());
        async move {
            Ok(match part {
                Part::Head(mut text) => match text.strip_suffix(ROWS_LAST).map(str::len) {
                    Some(len) => {
                        // Up to `"rows":[`.
                        text.truncate(len + ROWS_LAST.len() - 2);
                        Some((bytes::Bytes::from(text), Part::Rows { after: i64::MIN, first: true }))
                    }
                    None => Some((bytes::Bytes::from(text), Part::Done)),
                },
                Part::Rows { after, first } => {
                    let page = store.upload_rows(id, after, REPORT_PAGE).await?;
                    let Some(last) = page.last().map(|r| r.row) else {
                        return Ok(Some((bytes::Bytes::from_static(b"]}"), Part::Done)));
                    };
                    let mut out = Vec::with_capacity(page.iter().map(|r| r.json.len() + 1).sum());
                    for (i, r) in page.iter().enumerate() {
                        if !(first && i == 0) {
                            out.push(b',');
                        }
                        out.extend_from_slice(r.json.as_bytes());
                    }
                    Some((bytes::Bytes::from(out), Part::Rows { after: last, first: false }))
                }
                Part::Done => None,
            })
        }
    })
}

/// A reader that hashes (SHA-256) what passes through it.
struct Digesting<R> {
    inner: R,
    hash: sha2::Sha256,
}

impl<R: Read> Digesting<R> {
    fn new(inner: R) -> Self {
        Self { inner, hash: sha2::Sha256::default() }
    }

    /// Lower-case hex digest of everything read.
    fn finish(self) -> String {
        use sha2::Digest;
        audit::hex_of(self.hash.finalize().into())
    }
}

impl<R: Read> Read for Digesting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

/// What an upload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    Csv,
    Json,
}

/// Parses a decimal string ("22.10", "24", "1.5") into hundredths.
fn hundredths(s: &str) -> Option<i64> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty()
        || frac.len() > 2
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let frac = format!("{frac:0<2}");
    int.parse::<i64>().ok()?.checked_mul(100)?.checked_add(frac.parse::<i64>().ok()?)
}

/// Hundredths as a decimal string with 2 decimals.
fn decimal(h: i64) -> String {
    format!("{}.{:02}", h / 100, h % 100)
}

/// Integer division rounding half up (non-negative operands).
fn div_round(n: i64, d: i64) -> i64 {
    if d == 0 {
        0
    } else {
        (2 * n + d) / (2 * d)
    }
}

/// The most an interchange `importo` holds (9,999,999,999.99 €), in hundredths.
const IMPORTO_MAX: i64 = 999_999_999_999;

/// The importo of `minutes` at `tariffa` an hour and the user's share of it (`qu` of `qe + qu`),
/// in hundredths; `None` past [`IMPORTO_MAX`]. In i128 because tariffs and shares the contract
/// allows multiply past i64.
fn amounts(minutes: i64, tariffa: i64, qe: i64, qu: i64) -> Option<(i64, i64)> {
    let half_up = |n: i128, d: i128| (2 * n + d) / (2 * d);
    let importo = half_up(i128::from(minutes) * i128::from(tariffa), 60);
    if importo > i128::from(IMPORTO_MAX) {
        return None;
    }
    let (qe, qu) = (i128::from(qe), i128::from(qu));
    let quota_utente = if qe + qu > 0 { half_up(importo * qu, qe + qu) } else { 0 };
    Some((i64::try_from(importo).ok()?, i64::try_from(quota_utente).ok()?))
}

/// A row of this upload that the store may not hold yet: the start of its content digest, its
/// minutes and its month group (an index into [`Tally::groups`]).
struct SeenRow {
    digest: u128,
    minutes: i64,
    group: u32,
    /// The row of the file it came from.
    row: u64,
}

/// The first 16 bytes of a hex SHA-256.
fn digest_prefix(hex_digest: &str) -> u128 {
    hex_digest.get(..32).and_then(|h| u128::from_str_radix(h, 16).ok()).unwrap_or_default()
}

/// The key of a delivery in [`Tally::seen`]: 128 bits of its SHA-256.
fn key_hash(key: &str) -> u128 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(key.as_bytes());
    u128::from_be_bytes(d[..16].try_into().unwrap_or_default())
}

/// Running totals of one liquidazione line.
#[derive(Default)]
struct LineTotals {
    minutes: i64,
    importo_cents: i64,
    quota_utente_cents: i64,
    interventi: u32,
    flagged: bool,
}

/// Beneficiaries whose progetti an upload keeps at most before the cache is emptied (memory stays
/// bounded).
const PROGETTI_CACHE: usize = 50_000;

/// Who a delivery is for, as progetti name beneficiaries: pseudonym, else codice fiscale.
fn beneficiary(d: &Delivery) -> &str {
    d.beneficiario_pseudonimo.as_deref().or(d.beneficiario_codice_fiscale.as_deref()).unwrap_or_default()
}

/// The month of a delivery's date, `YYYY-MM`.
fn month_of(d: &Delivery) -> String {
    let date = d.data.to_string();
    date.get(..7).unwrap_or_default().to_string()
}

/// An upload's progress through its rows, kept across chunks.
#[derive(Default)]
struct Tally {
    /// Minutes per month group (progetto, service, month): what the store had, plus this upload.
    month: FastMap<MonthGroup, (u32, i64)>,
    /// The month groups by index.
    groups: Vec<MonthGroup>,
    /// Months whose groups were all read from the store (each month once: a group first seen
    /// later in the upload has nothing stored but what this upload tallies).
    months: std::collections::HashSet<String>,
    /// Keys of the chunk being checked, by [`key_hash`]; earlier rows of the upload are in the
    /// store, or in [`Tally::committing`].
    seen: FastMap<u128, SeenRow>,
    /// Keys of the chunk being committed while this one is checked.
    committing: FastMap<u128, SeenRow>,
    /// Every progetto of a beneficiary (by [`beneficiary`]), whatever its period, latest first.
    people: FastMap<String, Arc<[Arc<ProgettoRow>]>>,
    /// Progetti named by id in the file (`None`: there is none).
    by_id: FastMap<String, Option<Arc<ProgettoRow>>>,
}

impl Tally {
    /// The index of a month group, and its minutes so far (`None` when it is new).
    fn group(&self, group: &MonthGroup) -> Option<(u32, i64)> {
        self.month.get(group).copied()
    }

    fn add_group(&mut self, group: MonthGroup, minutes: i64) -> u32 {
        let i = self.groups.len() as u32;
        self.groups.push(group.clone());
        self.month.insert(group, (i, minutes));
        i
    }

    /// Keeps the progetti found for beneficiaries `who` (each of them, with or without progetti).
    fn add_people(&mut self, who: &[String], found: Vec<ProgettoRow>) {
        if self.people.len() + who.len() > PROGETTI_CACHE {
            self.people.clear();
            self.by_id.clear();
        }
        let mut lists: FastMap<&str, Vec<Arc<ProgettoRow>>> =
            who.iter().map(|w| (w.as_str(), Vec::new())).collect();
        for p in found.into_iter().map(Arc::new) {
            if let Some(list) = lists.get_mut(p.pseudonimo.as_str()) {
                list.push(p.clone());
            }
            match p.codice_fiscale.as_deref() {
                Some(cf) if cf != p.pseudonimo => {
                    if let Some(list) = lists.get_mut(cf) {
                        list.push(p.clone());
                    }
                }
                _ => {}
            }
        }
        for (w, mut list) in lists {
            list.sort_by(|a, b| b.dal.cmp(&a.dal).then_with(|| a.id_progetto.cmp(&b.id_progetto)));
            self.people.insert(w.to_string(), list.into());
        }
    }

    /// A row of this upload by key, when the store may not hold it yet.
    fn seen(&self, hash: u128) -> Option<&SeenRow> {
        self.seen.get(&hash).or_else(|| self.committing.get(&hash))
    }

    /// A new chunk is checked: the one before is being committed, the ones before that are in
    /// the store. Memory stays at two chunks of keys, whatever the size of the file.
    fn next_chunk(&mut self) {
        self.committing = std::mem::take(&mut self.seen);
    }

    fn minutes_mut(&mut self, i: u32) -> Option<&mut i64> {
        let g = self.groups.get(i as usize)?;
        self.month.get_mut(g).map(|(_, m)| m)
    }
}

/// A chunk of rows checked and priced, its deliveries validated but not yet stored.
struct Prepared {
    /// Rows already settled (skipped, rejected, duplicate).
    rows: Vec<RowReport>,
    /// The deliveries' events, checked by the pipeline (`None`: there are none).
    admission: Option<Admission>,
    candidates: Vec<Candidate>,
}

/// A chunk of rows checked and priced, with the events of its deliveries.
struct Chunk {
    /// Rows already settled (skipped, rejected, duplicate).
    rows: Vec<RowReport>,
    events: Vec<(Value, Vec<Projection>)>,
    candidates: Vec<Candidate>,
}

impl Chunk {
    /// Validates, authorizes and routes the chunk's events (nothing is stored yet).
    fn check(self, pipeline: &Pipeline, caller: &Caller, submission: &str) -> Prepared {
        let Chunk { rows, events, candidates } = self;
        let admission = (!events.is_empty()).then(|| pipeline.check_submission(caller, submission, events));
        Prepared { rows, admission, candidates }
    }
}

/// The event ids of the rows of the last [`RecentIds::CHUNKS`] chunks committed: enough for any
/// copy checked while its original was in flight ([`Tally::committing`]), or in its own chunk.
#[derive(Default)]
struct RecentIds {
    ids: HashMap<u64, String>,
    chunks: std::collections::VecDeque<Vec<u64>>,
}

impl RecentIds {
    const CHUNKS: usize = 2;

    /// Gives each copy of a row in flight the id its original got, then remembers this chunk's.
    fn resolve(&mut self, rows: &mut [RowReport]) {
        let mut mine = Vec::new();
        for r in rows.iter_mut() {
            if r.id.is_none() {
                r.id = r.same_as.and_then(|n| self.ids.get(&n).cloned());
            }
            if let (Some(id), "accepted" | "corrected") = (&r.id, r.status) {
                self.ids.insert(r.row, id.clone());
                mine.push(r.row);
            }
        }
        self.chunks.push_back(mine);
        if self.chunks.len() > Self::CHUNKS {
            for n in self.chunks.pop_front().unwrap_or_default() {
                self.ids.remove(&n);
            }
        }
    }
}

/// One delivery ready to submit, beside its event.
struct Candidate {
    row: u64,
    flags: Vec<RowProblem>,
    correction: bool,
}

impl Coop {
    /// The adapter for a configuration; mappings load lazily (and are cached) by name.
    pub fn new(config: CoopConfig, store: Arc<dyn Projections>) -> anyhow::Result<Self> {
        let dir = Self::locate(config.mappings_dir.as_deref());
        let services = load_services(&dir.join("tipi-servizio.csv"))?;
        Ok(Self { dir, config, services, mappings: Mutex::new(HashMap::new()), store })
    }

    /// The mappings folder: configured, `./mappings/coop`, or the source tree's.
    pub fn locate(configured: Option<&Path>) -> PathBuf {
        if let Some(p) = configured {
            return p.to_path_buf();
        }
        let local = PathBuf::from("mappings/coop");
        if local.is_dir() {
            return local;
        }
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mappings/coop")
    }

    /// A mapping by name, compiled once.
    pub fn mapping(&self, name: &str) -> Result<Arc<Mapping>, CoopError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(CoopError::Mapping(
                name.into(),
                "a mapping name has only letters, digits, - and _".into(),
            ));
        }
        let mut cache =
            self.mappings.lock().map_err(|_| CoopError::Mapping(name.into(), "cache poisoned".into()))?;
        if let Some(m) = cache.get(name) {
            return Ok(m.clone());
        }
        let m = Arc::new(
            Mapping::load_named(&self.dir, name)
                .map_err(|e| CoopError::Mapping(name.into(), e.to_string()))?,
        );
        cache.insert(name.to_string(), m.clone());
        Ok(m)
    }

    /// Processes one upload and stores its report.
    ///
    /// The file is read from `input` as it arrives (a CSV is never whole in memory; a JSON body
    /// is read whole, up to the upload limit the caller enforces), in chunks of rows that are
    /// checked and committed one after the other. The report's rows go to the store chunk by
    /// chunk, so that memory does not grow with the file: the answer holds the report without its
    /// rows, and [`report_stream`] sends it whole.
    #[allow(clippy::too_many_arguments)]
    pub async fn upload(
        &self,
        pipeline: &Pipeline,
        caller: &Caller,
        tenant: &str,
        mapping_name: &str,
        kind: Body,
        input: Box<dyn Read + Send>,
    ) -> Result<Uploaded, CoopError> {
        if !caller.may_access(tenant) || !caller.has(crate::config::Role::Publisher) {
            return Err(CoopError::Forbidden(format!(
                "client '{}' may not submit deliveries for tenant {tenant}",
                caller.name
            )));
        }
        let mapping = self.mapping(mapping_name)?;
        let today = time::OffsetDateTime::now_utc().date();
        // Two chunks read ahead at most: reading is faster than checking and committing, and each
        // chunk waiting here is memory (measured: 2 MB less at the peak than with four).
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<RowResult>, String>>(2);
        let reader_mapping = mapping.clone();
        // Reading and row checks are CPU work: a blocking thread streams them in chunks, and
        // answers with the file's digest once it has read all of it.
        let reader = tokio::task::spawn_blocking(move || {
            let mut input = Digesting::new(input);
            let checks = csi_gateway_coop::Checks::new(today);
            let send_rows = |rows: &mut dyn Iterator<Item = RowResult>| {
                let mut chunk = Vec::with_capacity(CHUNK);
                for r in rows {
                    chunk.push(r);
                    if chunk.len() == CHUNK && tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                        return;
                    }
                }
                if !chunk.is_empty() {
                    let _ = tx.blocking_send(Ok(chunk));
                }
            };
            match kind {
                Body::Csv => send_rows(&mut csi_gateway_coop::read_csv(&mut input, &reader_mapping, &checks)),
                Body::Json => {
                    let mut body = Vec::new();
                    let read = input
                        .read_to_end(&mut body)
                        .map_err(|e| format!("cannot read the file: {e}"))
                        .and_then(|_| {
                            csi_gateway_coop::read_json(&body, &reader_mapping, &checks)
                                .map_err(|e| e.to_string())
                        });
                    match read {
                        Ok(rows) => send_rows(&mut rows.into_iter()),
                        Err(e) => {
                            let _ = tx.blocking_send(Err(e));
                        }
                    }
                }
            }
            input.finish()
        });
        let upload_id = uuid::Uuid::now_v7().to_string();
        // The file's digest is known only at its end: the chunks' audit records name the upload.
        let submission = audit::digest(format!("upload:{upload_id}").as_bytes());
        let mut report = UploadReport {
            id: upload_id.clone(),
            tenant: tenant.to_string(),
            mapping: mapping_name.to_string(),
            client: caller.name.clone(),
            received_at: crate::store::rfc3339(now_ms()),
            digest: String::new(),
            summary: Summary::default(),
            rows: Vec::new(),
        };
        let mut tally = Tally::default();
        // The first rejected rows, for the upload's audit record.
        let mut refused: Vec<String> = Vec::new();
        // While a chunk is being committed (by the store's writer thread), the next one is
        // checked, and the report rows of the one before are written: the three overlap.
        let mut pending: Option<Prepared> = None;
        let mut spill: Option<Vec<ReportRow>> = None;
        // Event ids of the rows of the last chunks committed, for the copies of them that were
        // checked before they were stored (commits go in file order).
        let mut recent = RecentIds::default();
        loop {
            let commit = async {
                match pending.take() {
                    Some(p) => Some(self.commit_chunk(pipeline, p).await),
                    None => None,
                }
            };
            let save = async {
                match spill.take() {
                    Some(rows) => self.store.save_upload_rows(upload_id.clone(), rows).await,
                    None => Ok(()),
                }
            };
            let prepare = async {
                match rx.recv().await {
                    Some(Ok(chunk)) => {
                        let prepared =
                            self.prepare_chunk(caller, tenant, &upload_id, chunk, &mut tally).await;
                        // The pipeline's checks too: the store then has only to write.
                        Some(prepared.map(|p| p.check(pipeline, caller, &submission)))
                    }
                    Some(Err(e)) => Some(Err(CoopError::Input(e))),
                    None => None,
                }
            };
            let (committed, saved, prepared) = tokio::join!(commit, save, prepare);
            saved?;
            if let Some(rows) = committed {
                // The chunk's rows, as JSON, go to the store with the next chunk.
                let mut rows = rows?;
                recent.resolve(&mut rows);
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    count(&mut report.summary, r);
                    if r.status == "rejected" && refused.len() < AUDIT_ROWS {
                        let rules: Vec<&str> = r.errors.iter().map(|e| e.rule.as_str()).collect();
                        refused.push(format!("{} ({})", r.row, rules.join(", ")));
                    }
                    let json = serde_json::to_string(r).map_err(|e| CoopError::Input(e.to_string()))?;
                    out.push(ReportRow { row: r.row as i64, json });
                }
                spill = Some(out);
            }
            match prepared {
                Some(p) => pending = Some(p?),
                None => break,
            }
        }
        if let Some(rows) = spill.take() {
            self.store.save_upload_rows(upload_id.clone(), rows).await?;
        }
        report.digest =
            reader.await.map_err(|e| CoopError::Input(format!("reading the file failed: {e}")))?;
        let head = report_head(&report)?;
        self.store
            .save_upload(UploadRecord {
                id: upload_id.clone(),
                tenant: tenant.to_string(),
                client: caller.name.clone(),
                mapping: mapping_name.to_string(),
                created_at: now_ms(),
                // As text, the rows apart (see `report_stream`).
                report: Value::String(head.clone()),
            })
            .await?;
        pipeline.store.audit(upload_entries(caller, &report, &refused)).await?;
        Ok(Uploaded { id: upload_id, summary: report.summary, report: head })
    }

    /// Checks a chunk's deliveries against their progetti and prices them.
    async fn prepare_chunk(
        &self,
        caller: &Caller,
        tenant: &str,
        upload_id: &str,
        chunk: Vec<RowResult>,
        tally: &mut Tally,
    ) -> Result<Chunk, CoopError> {
        tally.next_chunk();
        let keys: Vec<Option<String>> = chunk
            .iter()
            .map(|r| match &r.outcome {
                RowOutcome::Delivery(d) => Some(d.idempotency_key()),
                _ => None,
            })
            .collect();
        let stored: FastMap<String, CoopDeliveryRow> = self
            .store
            .coop_deliveries(tenant.to_string(), keys.iter().flatten().cloned().collect())
            .await?
            .into_iter()
            .map(|r| (r.key.clone(), r))
            .collect();
        self.prefetch(tenant, &chunk, &stored, tally).await?;
        let mut out = Chunk { rows: Vec::new(), events: Vec::new(), candidates: Vec::new() };
        for (r, key) in chunk.into_iter().zip(keys) {
            let report = match (r.outcome, key) {
                (RowOutcome::Skipped { reason }, _) => RowReport {
                    row: r.row,
                    status: "skipped",
                    id: None,
                    errors: Vec::new(),
                    flags: Vec::new(),
                    reason: Some(reason),
                    same_as: None,
                },
                (RowOutcome::Rejected(errors), _) => rejected(
                    r.row,
                    errors
                        .into_iter()
                        .map(|e| RowProblem { column: e.column, rule: e.rule, message: e.message })
                        .collect(),
                ),
                (RowOutcome::Delivery(d), Some(key)) => {
                    match self.evaluate(caller, tenant, upload_id, r.row, &d, key, &stored, tally).await? {
                        Evaluated::Duplicate(id, reason, same_as) => RowReport {
                            row: r.row,
                            status: "duplicate",
                            id,
                            errors: Vec::new(),
                            flags: Vec::new(),
                            reason: Some(reason.into()),
                            same_as,
                        },
                        Evaluated::Rejected(errors) => rejected(r.row, errors),
                        Evaluated::Submit(event, projection, c) => {
                            out.events.push((event, vec![Projection::CoopDelivery(projection)]));
                            out.candidates.push(c);
                            continue;
                        }
                    }
                }
                (RowOutcome::Delivery(_), None) => continue,
            };
            out.rows.push(report);
        }
        Ok(out)
    }

    /// Submits a prepared chunk's deliveries; every row of the chunk, in file order.
    async fn commit_chunk(
        &self,
        pipeline: &Pipeline,
        prepared: Prepared,
    ) -> Result<Vec<RowReport>, CoopError> {
        let Prepared { mut rows, admission, candidates } = prepared;
        if let Some(admission) = admission {
            let results = pipeline.store_admission(admission).await?;
            for (c, result) in candidates.into_iter().zip(results) {
                rows.push(match result {
                    EventResult::Accepted { id, duplicate } => RowReport {
                        row: c.row,
                        status: if duplicate {
                            "duplicate"
                        } else if c.correction {
                            "corrected"
                        } else {
                            "accepted"
                        },
                        id: Some(id),
                        errors: Vec::new(),
                        flags: c.flags,
                        reason: None,
                        same_as: None,
                    },
                    // The event built from the row breaks the interchange contract: say where.
                    EventResult::Rejected { errors } => rejected(
                        c.row,
                        errors
                            .into_iter()
                            .map(|e| {
                                RowProblem::new(Some(&e.pointer), &format!("contract:{}", e.rule), e.message)
                            })
                            .collect(),
                    ),
                });
            }
        }
        rows.sort_by_key(|r| r.row);
        Ok(rows)
    }

    /// Checks one delivery against its progetto and prices it.
    #[allow(clippy::too_many_arguments)]
    async fn evaluate(
        &self,
        caller: &Caller,
        tenant: &str,
        upload_id: &str,
        row: u64,
        d: &Delivery,
        key: String,
        stored: &FastMap<String, CoopDeliveryRow>,
        tally: &mut Tally,
    ) -> Result<Evaluated, CoopError> {
        let content = audit::digest_json(d);
        let (hash, content_prefix) = (key_hash(&key), digest_prefix(&content));
        if let Some(own) = &caller.cooperativa {
            if &d.cooperativa != own {
                return Ok(Evaluated::Rejected(vec![RowProblem::new(
                    None,
                    "not_your_cooperative",
                    format!(
                        "client '{}' submits for cooperative {own}, the row names {}",
                        caller.name, d.cooperativa
                    ),
                )]));
            }
        }
        // Same key, same content: nothing new, wherever the earlier copy came from.
        if let Some(seen) = tally.seen(hash) {
            if seen.digest == content_prefix {
                return Ok(Evaluated::Duplicate(None, "same as an earlier row of this file", Some(seen.row)));
            }
        } else if let Some(prev) = stored.get(&key) {
            if prev.digest == content {
                let id = (!prev.event_id.is_empty()).then(|| prev.event_id.clone());
                let why = if prev.upload_id.as_deref() == Some(upload_id) {
                    "same as an earlier row of this file"
                } else {
                    "already received with the same content"
                };
                return Ok(Evaluated::Duplicate(id, why, None));
            }
        }
        let date = d.data.to_string();
        let mese = month_of(d);
        // Built from the row alone: what a cooperative's client is told whenever the progetto
        // is missing, another beneficiary's or another cooperative's, so that its answers never
        // tell whether a person it names has a progetto with someone else.
        let unknown = || {
            let what = d
                .id_progetto
                .as_deref()
                .map(|p| format!("progetto {p}"))
                .unwrap_or_else(|| "an active progetto".into());
            Ok(Evaluated::Rejected(vec![RowProblem::new(
                None,
                "no_progetto",
                format!(
                    "no {what} giving {} to cooperative {} is known for this beneficiary on {date}: \
                     the comune must send it first",
                    d.tipo_servizio, d.cooperativa
                ),
            )]))
        };
        let progetti = self.progetti(tenant, d, &date, tally).await?;
        let Some(progetto) = pick(&progetti, d).cloned() else {
            return unknown();
        };
        // A progetto named by id must be the beneficiary's own.
        let other_cf = d
            .beneficiario_codice_fiscale
            .as_ref()
            .is_some_and(|cf| progetto.codice_fiscale.as_ref() != Some(cf));
        let other_pseudonym = d.beneficiario_pseudonimo.as_ref().is_some_and(|p| p != &progetto.pseudonimo);
        if other_cf || other_pseudonym {
            if caller.cooperativa.is_some() {
                return unknown();
            }
            return Ok(Evaluated::Rejected(vec![RowProblem::new(
                None,
                "no_progetto",
                format!("progetto {} is not this beneficiary's", progetto.id_progetto),
            )]));
        }
        let interventi: &[Value] = progetto.interventi.as_array().map(Vec::as_slice).unwrap_or_default();
        let intervento =
            interventi.iter().find(|i| i["tipoServizio"].as_str() == Some(d.tipo_servizio.as_str()));
        // A comune's own client may learn why; a cooperative's learns only that it has no such
        // progetto (`unknown`).
        let not_yours = |why: String| match caller.cooperativa {
            Some(_) => unknown(),
            None => Ok(Evaluated::Rejected(vec![RowProblem::new(None, "not_your_contract", why)])),
        };
        if let Some(coop) = intervento.and_then(|i| i["cooperativa"].as_str()) {
            if coop != d.cooperativa {
                return not_yours(format!(
                    "progetto {} assigns {} to another cooperative",
                    progetto.id_progetto, d.tipo_servizio
                ));
            }
        }
        // A cooperative's client works only on progetti that give it some service.
        if caller.cooperativa.is_some() && !interventi.iter().any(|i| names(i, &d.cooperativa)) {
            return not_yours(format!(
                "progetto {} assigns no service to cooperative {}",
                progetto.id_progetto, d.cooperativa
            ));
        }
        let text = |k: &str| intervento.and_then(|i| i[k].as_str()).map(str::to_string);
        let cents = |k: &str| text(k).and_then(|t| hundredths(&t)).unwrap_or(0);
        let minutes = i64::from(d.durata_minuti);
        let tariffa = cents("tariffaOraria");
        // Checked before the month's tally counts the row: an amount no event can carry is
        // rejected whatever the tenant's policy.
        let Some((importo, quota_utente)) =
            amounts(minutes, tariffa, cents("quotaEnte"), cents("quotaUtente"))
        else {
            return Ok(Evaluated::Rejected(vec![RowProblem::new(
                None,
                "amount_out_of_range",
                format!(
                    "{} h of {} at the tariffaOraria {} of progetto {} come to more than {}, the most \
                     an importo may be",
                    d.ore(),
                    d.tipo_servizio,
                    decimal(tariffa),
                    progetto.id_progetto,
                    decimal(IMPORTO_MAX)
                ),
            )]));
        };
        let mut violations = Vec::new();
        if intervento.is_none() {
            violations.push(RowProblem::new(
                None,
                "service_not_authorized",
                format!("progetto {} does not authorize {}", progetto.id_progetto, d.tipo_servizio),
            ));
        }
        if date < progetto.dal || date > progetto.al {
            violations.push(RowProblem::new(
                None,
                "outside_period",
                format!(
                    "{date} is outside progetto {} ({} – {})",
                    progetto.id_progetto, progetto.dal, progetto.al
                ),
            ));
        }
        let group = (progetto.id_progetto.clone(), d.tipo_servizio.clone(), mese.clone());
        let (group_id, before) = self.month_group(tenant, group, tally).await?;
        // A correction replaces the earlier minutes instead of adding to them.
        let replaced: Option<(i64, u32)> = match tally.seen(hash) {
            Some(seen) => Some((seen.minutes, seen.group)),
            None => match stored.get(&key) {
                Some(p) => {
                    let g = (p.id_progetto.clone(), p.tipo_servizio.clone(), p.mese.clone());
                    Some((p.minuti, self.month_group(tenant, g, tally).await?.0))
                }
                None => None,
            },
        };
        let correction = replaced.is_some();
        let mut before = before;
        if let Some((m, g)) = replaced {
            if let Some(total) = tally.minutes_mut(g) {
                *total -= m;
            }
            if g == group_id {
                before -= m;
            }
        }
        let total = before + minutes;
        if let Some(authorized) =
            intervento.and_then(|i| i["oreAutorizzateMensili"].as_str()).and_then(hundredths)
        {
            let authorized_minutes = authorized * 60 / 100;
            if total > authorized_minutes {
                violations.push(RowProblem::new(
                    None,
                    "monthly_hours_exceeded",
                    format!(
                        "{} h delivered in {mese} for {} exceed the {} h authorized by progetto {}",
                        decimal(total * 100 / 60),
                        d.tipo_servizio,
                        decimal(authorized),
                        progetto.id_progetto
                    ),
                ));
            }
        }
        if !violations.is_empty() && self.config.policy(tenant) == OnViolation::Reject {
            if let Some((m, g)) = replaced {
                if let Some(total) = tally.minutes_mut(g) {
                    *total += m;
                }
            }
            return Ok(Evaluated::Rejected(violations));
        }
        if let Some(t) = tally.minutes_mut(group_id) {
            *t = total;
        }
        // What this row replaces, if anything: an earlier row of this file, or the stored event.
        let replaces = match tally.seen(hash) {
            Some(seen) => Some(format!("{upload_id}/{}", seen.row)),
            None => stored.get(&key).map(|p| p.event_id.clone()),
        };
        tally.seen.insert(hash, SeenRow { digest: content_prefix, minutes, group: group_id, row });

        let service = self.services.get(&d.tipo_servizio);
        let codice = text("codicePrestazione")
            .or_else(|| service.map(|s| s.codice_prestazione.clone()))
            .unwrap_or_default();
        let denominazione =
            text("denominazione").or_else(|| service.map(|s| s.denominazione.clone())).unwrap_or_default();
        let area = service.map(|s| s.area_utenza.clone()).unwrap_or_else(|| "2".into());
        // Idempotency is per source, not per tenant: the tenant is part of every key, or a
        // cooperative's record sent to two comuni would be taken once.
        let scoped = format!("{tenant}:{key}");
        let short = &audit::digest(scoped.as_bytes())[..16];
        // A correction keeps the idPrestazione of what it corrects, so that SIUSS replaces it.
        let id_prestazione = stored
            .get(&key)
            .and_then(|p| p.id_prestazione.clone())
            .unwrap_or_else(|| id_prestazione(d, short));
        let mut data = json!({
            "idPrestazione": id_prestazione,
            "beneficiario": { "pseudonimo": progetto.pseudonimo },
            "codicePrestazione": codice,
            "denominazione": denominazione,
            "tipoServizio": d.tipo_servizio,
            "carattere": "1",
            "dataInizio": date,
            "dataFine": date,
            "ore": d.ore(),
            "importo": decimal(importo),
            "quotaEnte": decimal(importo - quota_utente),
            "quotaUtente": decimal(quota_utente),
            "erogatore": { "tipo": "cooperativa", "codice": d.cooperativa },
            "areaUtenza": area,
            "idProgetto": progetto.id_progetto,
        });
        if let Some(cf) = progetto.codice_fiscale.as_ref().or(d.beneficiario_codice_fiscale.as_ref()) {
            data["beneficiario"]["codiceFiscale"] = json!(cf);
        }
        // The key names the content and, for a correction, what it replaces: a record corrected
        // back to content it had before is a new event that replaces the correction, not a
        // duplicate of the first one (which would leave the correction counted).
        let version = match &replaces {
            Some(r) => format!("{}@{}", &content[..16], &audit::digest(r.as_bytes())[..12]),
            None => content[..16].to_string(),
        };
        let event = with_data(
            json!({
                "specversion": "1.0",
                "id": format!("coop-{short}-{version}"),
                "source": format!("/coop/{}", d.cooperativa),
                "type": PRESTAZIONE,
                "tenant": tenant,
                "subject": progetto.pseudonimo,
                "datacontenttype": "application/json",
                // A correction is a new event with the same correlation id: the latest one counts.
                "correlationid": format!("coop:{short}"),
                "idempotencykey": format!("{scoped}#{version}"),
            }),
            data,
        );
        let projection = CoopDeliveryRow {
            tenant: tenant.to_string(),
            key,
            cooperativa: d.cooperativa.clone(),
            id_progetto: progetto.id_progetto.clone(),
            pseudonimo: progetto.pseudonimo.clone(),
            tipo_servizio: d.tipo_servizio.clone(),
            codice_prestazione: codice,
            denominazione,
            area_utenza: area,
            data: date,
            mese,
            minuti: minutes,
            importo_cents: importo,
            quota_utente_cents: quota_utente,
            flag: (!violations.is_empty())
                .then(|| violations.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>().join(",")),
            event_id: String::new(),
            upload_id: Some(upload_id.to_string()),
            digest: content,
            id_prestazione: None,
        };
        Ok(Evaluated::Submit(event, Box::new(projection), Candidate { row, flags: violations, correction }))
    }

    /// Looks up what a chunk's rows need that the upload has not seen yet, with one query each:
    /// the beneficiaries' progetti, and the minutes the store holds per month group (of the
    /// progetto each row would count against, and of the stored rows a row may replace).
    async fn prefetch(
        &self,
        tenant: &str,
        chunk: &[RowResult],
        stored: &FastMap<String, CoopDeliveryRow>,
        tally: &mut Tally,
    ) -> Result<(), CoopError> {
        let deliveries = || {
            chunk.iter().filter_map(|r| match &r.outcome {
                RowOutcome::Delivery(d) => Some(d),
                _ => None,
            })
        };
        let mut people: Vec<String> = deliveries()
            .filter(|d| d.id_progetto.is_none())
            .map(beneficiary)
            .filter(|w| !tally.people.contains_key(*w))
            .map(str::to_string)
            .collect();
        people.sort_unstable();
        people.dedup();
        if !people.is_empty() {
            let found = self.store.progetti_of(tenant.to_string(), people.clone()).await?;
            tally.add_people(&people, found);
        }
        let mut groups: Vec<MonthGroup> = Vec::new();
        for d in deliveries() {
            let progetti = self.progetti(tenant, d, &d.data.to_string(), tally).await?;
            if let Some(p) = pick(&progetti, d) {
                let g = (p.id_progetto.clone(), d.tipo_servizio.clone(), month_of(d));
                if tally.group(&g).is_none() {
                    groups.push(g);
                }
            }
        }
        for p in stored.values() {
            let g = (p.id_progetto.clone(), p.tipo_servizio.clone(), p.mese.clone());
            if tally.group(&g).is_none() {
                groups.push(g);
            }
        }
        self.load_groups(tenant, groups, tally).await
    }

    /// Adds month groups the upload has not seen yet, with the minutes the store holds for them.
    async fn load_groups(
        &self,
        tenant: &str,
        mut groups: Vec<MonthGroup>,
        tally: &mut Tally,
    ) -> Result<(), CoopError> {
        groups.sort_unstable();
        groups.dedup();
        let mut mesi: Vec<String> =
            groups.iter().filter(|g| !tally.months.contains(&g.2)).map(|g| g.2.clone()).collect();
        mesi.sort_unstable();
        mesi.dedup();
        if !mesi.is_empty() {
            // Every group of these months, once: the store reads a month's rows in one pass.
            for (g, m) in self.store.month_minutes(tenant.to_string(), mesi.clone()).await? {
                if tally.group(&g).is_none() {
                    tally.add_group(g, m);
                }
            }
            tally.months.extend(mesi);
        }
        for g in groups {
            if tally.group(&g).is_none() {
                tally.add_group(g, 0);
            }
        }
        Ok(())
    }

    /// A month group's index and minutes so far (looked up in the store the first time).
    async fn month_group(
        &self,
        tenant: &str,
        group: MonthGroup,
        tally: &mut Tally,
    ) -> Result<(u32, i64), CoopError> {
        if let Some(g) = tally.group(&group) {
            return Ok(g);
        }
        self.load_groups(tenant, vec![group.clone()], tally).await?;
        tally.group(&group).ok_or_else(|| CoopError::Input("internal: month group not loaded".into()))
    }

    /// The progetti a delivery may count against: the one it names, or the beneficiary's active
    /// ones on `date`, latest first.
    async fn progetti(
        &self,
        tenant: &str,
        d: &Delivery,
        date: &str,
        tally: &mut Tally,
    ) -> Result<Vec<Arc<ProgettoRow>>, CoopError> {
        if let Some(id) = &d.id_progetto {
            if let Some(p) = tally.by_id.get(id) {
                return Ok(p.iter().cloned().collect());
            }
            let p = self.store.progetto(tenant.to_string(), id.clone()).await?.map(Arc::new);
            tally.by_id.insert(id.clone(), p.clone());
            return Ok(p.into_iter().collect());
        }
        let who = beneficiary(d);
        if !tally.people.contains_key(who) {
            let found = self.store.progetti_of(tenant.to_string(), vec![who.to_string()]).await?;
            tally.add_people(&[who.to_string()], found);
        }
        Ok(tally
            .people
            .get(who)
            .map(|all| {
                all.iter().filter(|p| p.dal.as_str() <= date && date <= p.al.as_str()).cloned().collect()
            })
            .unwrap_or_default())
    }

    /// The monthly close of a tenant: one `prestazione` event per progetto, service and month with
    /// the hours (SIUSS `OreServizioMensile`) and amounts, and the liquidazione per cooperative.
    pub async fn close_month(
        &self,
        pipeline: &Pipeline,
        caller: &Caller,
        tenant: &str,
        mese: &str,
    ) -> Result<Closing, CoopError> {
        let liquidazioni = self.liquidazioni(tenant, mese, None).await?;
        let rows = self.store.coop_month(tenant.to_string(), mese.to_string(), None).await?;
        let (first, last) =
            month_bounds(mese).ok_or_else(|| CoopError::Input(format!("mese '{mese}' is not YYYY-MM")))?;
        let mut groups: BTreeMap<(String, String, String), Vec<&CoopDeliveryRow>> = BTreeMap::new();
        for r in &rows {
            groups
                .entry((r.cooperativa.clone(), r.id_progetto.clone(), r.tipo_servizio.clone()))
                .or_default()
                .push(r);
        }
        let mut events = Vec::new();
        let mut errors = Vec::new();
        let mut withheld = HashSet::new();
        for ((coop, progetto, servizio), rs) in &groups {
            let minutes: i64 = rs.iter().map(|r| r.minuti).sum();
            let importo: i64 = rs.iter().map(|r| r.importo_cents).sum();
            let utente: i64 = rs.iter().map(|r| r.quota_utente_cents).sum();
            let r0 = rs[0];
            let cf = self
                .store
                .progetto(tenant.to_string(), progetto.clone())
                .await?
                .and_then(|p| p.codice_fiscale);
            let ore = decimal(div_round(minutes * 100, 60));
            // No tariff (a service the progetto does not authorize, accepted flagged; an intervento
            // without tariffaOraria): SIUSS refuses a prestazione without an amount, so the month
            // is not sent until the progetto says what the hours cost.
            let group_key = format!("{tenant}:{mese}:{coop}:{progetto}:{servizio}");
            let short = &audit::digest(group_key.as_bytes())[..16];
            if importo <= 0 {
                // Still delivered: an earlier close's record of it stays (it is not annulled).
                withheld.insert(format!("MESE-{mese}-{short}"));
                errors.push(format!(
                    "{servizio} of progetto {progetto} ({coop}): {ore} h in {mese} with no amount (the progetto gives \
                     no tariffaOraria for it): not sent to SIUSS; approve the progetto with the service and its \
                     tariff, then close again"
                ));
                continue;
            }
            // The totals and the deliveries behind them: closing again with nothing changed is a
            // duplicate, but totals that corrections bring back to an earlier close's are a new
            // event, which replaces the close in between (as the latest event of its idPrestazione).
            let mut basis: Vec<&str> = rs.iter().map(|r| r.event_id.as_str()).collect();
            basis.sort_unstable();
            let totals =
                audit::digest(format!("{minutes}:{importo}:{utente}:{}", basis.join(",")).as_bytes());
            let mut data = json!({
                "idPrestazione": format!("MESE-{mese}-{short}"),
                "beneficiario": { "pseudonimo": r0.pseudonimo },
                "codicePrestazione": r0.codice_prestazione,
                "denominazione": r0.denominazione,
                "tipoServizio": servizio,
                "carattere": "1",
                "dataInizio": first,
                "dataFine": last,
                "mese": mese,
                "ore": ore,
                "oreServizioMensile": ore,
                "importo": decimal(importo),
                "quotaEnte": decimal(importo - utente),
                "quotaUtente": decimal(utente),
                "erogatore": { "tipo": "cooperativa", "codice": coop },
                "areaUtenza": r0.area_utenza,
                "idProgetto": progetto,
            });
            if let Some(cf) = cf {
                data["beneficiario"]["codiceFiscale"] = json!(cf);
            }
            events.push((
                with_data(
                    json!({
                        "specversion": "1.0",
                        "id": format!("mese-{short}-{}", &totals[..12]),
                        "source": "/coop/chiusura-mensile",
                        "type": PRESTAZIONE,
                        "tenant": tenant,
                        "subject": r0.pseudonimo,
                        "datacontenttype": "application/json",
                        "correlationid": format!("mese:{short}"),
                        "idempotencykey": format!("{group_key}#{}", &totals[..16]),
                    }),
                    data,
                ),
                Vec::new(),
            ));
        }
        // Months a correction emptied since an earlier close (every delivery of a progetto and
        // service moved to another month or service): their monthly record is annulled, or SIUSS
        // would keep hours that were not delivered.
        let sent: HashSet<String> = events
            .iter()
            .filter_map(|(e, _)| e["data"]["idPrestazione"].as_str().map(str::to_string))
            .collect();
        let earlier = self.store.prestazioni_with_prefix(tenant.to_string(), format!("MESE-{mese}-")).await?;
        for (id_prestazione, event_id) in earlier {
            if sent.contains(&id_prestazione) || withheld.contains(&id_prestazione) {
                continue;
            }
            let Some(view) = pipeline.store.event(event_id.clone()).await? else { continue };
            let mut data = view.event["data"].clone();
            if data["annullata"] == true || !data.is_object() {
                continue;
            }
            data["annullata"] = json!(true);
            events.push((
                with_data(
                    json!({
                        "specversion": "1.0",
                        "id": format!("mese-annulla-{}", &audit::digest(event_id.as_bytes())[..16]),
                        "source": "/coop/chiusura-mensile",
                        "type": PRESTAZIONE,
                        "tenant": tenant,
                        "subject": view.event["subject"],
                        "datacontenttype": "application/json",
                        "correlationid": view.event["correlationid"],
                        // Annulling this event once, however many closes follow.
                        "idempotencykey": format!("{tenant}:{id_prestazione}#annulla@{event_id}"),
                    }),
                    data,
                ),
                Vec::new(),
            ));
        }
        let digest = audit::digest(format!("chiusura:{tenant}:{mese}").as_bytes());
        let results =
            if events.is_empty() { Vec::new() } else { pipeline.submit(caller, &digest, events).await? };
        let mut ids = Vec::new();
        for r in results {
            match r {
                EventResult::Accepted { id, .. } => ids.push(id),
                EventResult::Rejected { errors: e } => {
                    errors.extend(e.into_iter().map(|e| format!("{} {}: {}", e.pointer, e.rule, e.message)))
                }
            }
        }
        Ok(Closing { tenant: tenant.into(), mese: mese.into(), events: ids, errors, liquidazioni })
    }

    /// The liquidazione of a month per cooperative (hours, amounts, quotas, and the lines behind them).
    pub async fn liquidazioni(
        &self,
        tenant: &str,
        mese: &str,
        cooperativa: Option<String>,
    ) -> Result<Vec<Liquidazione>, CoopError> {
        month_bounds(mese).ok_or_else(|| CoopError::Input(format!("mese '{mese}' is not YYYY-MM")))?;
        let rows = self.store.coop_month(tenant.to_string(), mese.to_string(), cooperativa).await?;
        let mut by_coop: BTreeMap<String, BTreeMap<(String, String, String), LineTotals>> = BTreeMap::new();
        for r in &rows {
            let line = by_coop
                .entry(r.cooperativa.clone())
                .or_default()
                .entry((r.id_progetto.clone(), r.pseudonimo.clone(), r.tipo_servizio.clone()))
                .or_default();
            line.minutes += r.minuti;
            line.importo_cents += r.importo_cents;
            line.quota_utente_cents += r.quota_utente_cents;
            line.interventi += 1;
            line.flagged |= r.flag.is_some();
        }
        Ok(by_coop
            .into_iter()
            .map(|(coop, lines)| {
                let righe: Vec<RigaLiquidazione> = lines
                    .into_iter()
                    .map(|((progetto, pseudonimo, servizio), t)| RigaLiquidazione {
                        id_progetto: progetto,
                        pseudonimo,
                        tipo_servizio: servizio,
                        interventi: t.interventi,
                        ore: decimal(div_round(t.minutes * 100, 60)),
                        importo: decimal(t.importo_cents),
                        quota_ente: decimal(t.importo_cents - t.quota_utente_cents),
                        quota_utente: decimal(t.quota_utente_cents),
                        da_verificare: t.flagged,
                    })
                    .collect();
                let sum = |f: fn(&RigaLiquidazione) -> &str| -> String {
                    decimal(righe.iter().filter_map(|r| hundredths(f(r))).sum())
                };
                Liquidazione {
                    cooperativa: coop,
                    tenant: tenant.into(),
                    mese: mese.into(),
                    ore: sum(|r| &r.ore),
                    importo: sum(|r| &r.importo),
                    quota_ente: sum(|r| &r.quota_ente),
                    quota_utente: sum(|r| &r.quota_utente),
                    righe,
                }
            })
            .collect())
    }
}

enum Evaluated {
    /// The earlier event's id when known, why it is a duplicate, and the earlier row of this
    /// file it copies when that row may not be stored yet.
    Duplicate(Option<String>, &'static str, Option<u64>),
    Rejected(Vec<RowProblem>),
    Submit(Value, Box<CoopDeliveryRow>, Candidate),
}

/// An event's envelope with its `data` moved in (`json!` would copy the whole of it).
fn with_data(mut envelope: Value, data: Value) -> Value {
    envelope["data"] = data;
    envelope
}

/// The `idPrestazione` of a new delivery: `<cooperativa>/<record id>` when the cooperative gives
/// its record id and the two make an interchange `identificativo` (letters, digits and `_.:/-`,
/// starting with a letter or digit, at most 64 characters); otherwise `COOP-` and the first 16
/// hex digits of the SHA-256 of `<tenant>:<key>` (`short`).
///
/// The readable form lets the comune and SIUSS trace a prestazione back to the cooperative's
/// record. It also keeps the SIUSS export's `idPrestazione` index in insertion order when the
/// cooperative numbers its records in sequence, as software does: a hash lands anywhere in it, and
/// on a 100,000-row upload that rewrote most of the index's pages at every commit.
fn id_prestazione(d: &Delivery, short: &str) -> String {
    if let Some(record) = &d.id_record {
        let id = format!("{}/{record}", d.cooperativa);
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_.:/-".contains(&b);
        if id.len() <= 64 && id.as_bytes()[0].is_ascii_alphanumeric() && id.bytes().all(allowed) {
            return id;
        }
    }
    format!("COOP-{short}")
}

/// Whether an intervento is given to `cooperativa`.
fn names(intervento: &Value, cooperativa: &str) -> bool {
    intervento["cooperativa"].as_str() == Some(cooperativa)
}

/// The progetto a delivery counts against, among the beneficiary's active ones (one per
/// cooperative or service is common): the one giving this service to this cooperative, else one
/// with this service, else one naming this cooperative, else the most recent.
fn pick<'a>(progetti: &'a [Arc<ProgettoRow>], d: &Delivery) -> Option<&'a Arc<ProgettoRow>> {
    let interventi = |p: &'a Arc<ProgettoRow>| p.interventi.as_array().map(Vec::as_slice).unwrap_or_default();
    let service = |i: &Value| i["tipoServizio"].as_str() == Some(d.tipo_servizio.as_str());
    progetti
        .iter()
        .find(|p| interventi(p).iter().any(|i| service(i) && names(i, &d.cooperativa)))
        .or_else(|| progetti.iter().find(|p| interventi(p).iter().any(service)))
        .or_else(|| progetti.iter().find(|p| interventi(p).iter().any(|i| names(i, &d.cooperativa))))
        .or_else(|| progetti.first())
}

/// Adds a row to the counts.
fn count(s: &mut Summary, r: &RowReport) {
    s.rows += 1;
    match r.status {
        "accepted" => s.accepted += 1,
        "corrected" => s.corrected += 1,
        "duplicate" => s.duplicates += 1,
        "rejected" => s.rejected += 1,
        _ => s.skipped += 1,
    }
    if !r.flags.is_empty() {
        s.flagged += 1;
    }
}

/// Rejected rows named one by one in an upload's audit record; the report has them all.
const AUDIT_ROWS: usize = 20;

/// The audit records of a finished upload: the file received (its digest, its tally), and the
/// rows rejected by the adapter's own checks, which never became events (their rules, not their
/// content: the report has the rest). Accepted rows have their own records, as events.
fn upload_entries(caller: &Caller, report: &UploadReport, refused: &[String]) -> Vec<Entry> {
    let s = &report.summary;
    let entry =
        |action| Entry::new(action, caller.name.as_str()).tenant(&report.tenant).digest(&report.digest);
    let mut entries = vec![entry(Action::Received).detail(format!(
        "cooperative upload {} (mapping {}): {} rows, {} accepted, {} corrected, {} duplicate, {} flagged, \
         {} rejected, {} skipped",
        report.id,
        report.mapping,
        s.rows,
        s.accepted,
        s.corrected,
        s.duplicates,
        s.flagged,
        s.rejected,
        s.skipped
    ))];
    if s.rejected > 0 {
        let more = s.rejected.saturating_sub(refused.len() as u64);
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        entries.push(entry(Action::Rejected).detail(format!(
            "cooperative upload {}: rows {}{more}; see GET /v1/adapters/coop/erogazioni/{}",
            report.id,
            refused.join(", "),
            report.id
        )));
    }
    entries
}

fn rejected(row: u64, errors: Vec<RowProblem>) -> RowReport {
    RowReport { row, status: "rejected", id: None, errors, flags: Vec::new(), reason: None, same_as: None }
}

/// The result of a monthly close.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Closing {
    pub tenant: String,
    pub mese: String,
    /// Ids of the monthly `prestazione` events (unchanged totals return the earlier ids).
    pub events: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    pub liquidazioni: Vec<Liquidazione>,
}

/// What the comune owes a cooperative for a month.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Liquidazione {
    pub cooperativa: String,
    pub tenant: String,
    pub mese: String,
    pub ore: String,
    pub importo: String,
    pub quota_ente: String,
    pub quota_utente: String,
    pub righe: Vec<RigaLiquidazione>,
}

/// One beneficiary and service in a liquidazione.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RigaLiquidazione {
    pub id_progetto: String,
    pub pseudonimo: String,
    pub tipo_servizio: String,
    pub interventi: u32,
    pub ore: String,
    pub importo: String,
    pub quota_ente: String,
    pub quota_utente: String,
    /// Some deliveries were accepted flagged (progetto rules broken) and await review.
    pub da_verificare: bool,
}

/// The liquidazione as the bilancio office opens it in a spreadsheet: `;`-separated, decimal comma.
pub fn liquidazioni_csv(list: &[Liquidazione]) -> String {
    let comma = |s: &str| s.replace('.', ",");
    let mut out = String::from(
        "cooperativa;tenant;mese;id_progetto;beneficiario;tipo_servizio;interventi;ore;importo;quota_ente;quota_utente;da_verificare\r\n",
    );
    for l in list {
        for r in &l.righe {
            out.push_str(&format!(
                "{};{};{};{};{};{};{};{};{};{};{};{}\r\n",
                l.cooperativa,
                l.tenant,
                l.mese,
                r.id_progetto,
                r.pseudonimo,
                r.tipo_servizio,
                r.interventi,
                comma(&r.ore),
                comma(&r.importo),
                comma(&r.quota_ente),
                comma(&r.quota_utente),
                if r.da_verificare { "si" } else { "no" }
            ));
        }
        // The TOTALE line sums the columns: deliveries, and the lines awaiting review.
        let interventi: u32 = l.righe.iter().map(|r| r.interventi).sum();
        let da_verificare = l.righe.iter().filter(|r| r.da_verificare).count();
        out.push_str(&format!(
            "{};{};{};TOTALE;;;{interventi};{};{};{};{};{da_verificare}\r\n",
            l.cooperativa,
            l.tenant,
            l.mese,
            comma(&l.ore),
            comma(&l.importo),
            comma(&l.quota_ente),
            comma(&l.quota_utente)
        ));
    }
    out
}

/// First and last day of `YYYY-MM`.
fn month_bounds(mese: &str) -> Option<(String, String)> {
    let (y, m) = mese.split_once('-')?;
    let (y, m): (i32, u8) = (y.parse().ok()?, m.parse().ok()?);
    let month = time::Month::try_from(m).ok()?;
    if mese.len() != 7 {
        return None;
    }
    let last = time::util::days_in_month(month, y);
    Some((format!("{y:04}-{m:02}-01"), format!("{y:04}-{m:02}-{last:02}")))
}

/// `tipi-servizio.csv`: `tipo_servizio;area_utenza;codice_prestazione;denominazione`.
fn load_services(path: &Path) -> anyhow::Result<FastMap<String, ServiceInfo>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FastMap::new()),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display())),
    };
    let mut out = FastMap::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(';').map(str::trim).collect();
        let [tipo, area, codice, denominazione] = f[..] else {
            anyhow::bail!("{} line {}: expected 4 fields separated by ';'", path.display(), i + 1);
        };
        out.insert(
            tipo.to_string(),
            ServiceInfo {
                area_utenza: area.into(),
                codice_prestazione: codice.into(),
                denominazione: denominazione.into(),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_exact() {
        assert_eq!(hundredths("22.10"), Some(2210));
        assert_eq!(hundredths("24"), Some(2400));
        assert_eq!(hundredths("1.5"), Some(150));
        assert_eq!(hundredths("1.555"), None);
        assert_eq!(hundredths("-1"), None);
        assert_eq!(decimal(53040), "530.40");
        // 90 minutes at 22.10/h = 33.15; user share 20 % of it.
        assert_eq!(amounts(90, 2210, 42432, 10608), Some((3315, 663)));
        assert_eq!(amounts(90, 2210, 0, 0), Some((3315, 0)));
    }

    #[test]
    fn amounts_the_contract_allows_do_not_overflow_and_past_an_importo_are_refused() {
        let c = |s: &str| hundredths(s).expect("an amount");
        let (tariffa, qe, qu) = (c("9999999999.99"), c("1.00"), c("9999999.99"));
        // An hour at the largest tariff is the largest importo; its user share is most of it.
        assert_eq!(amounts(60, tariffa, qe, qu), Some((999_999_999_999, 999_999_899_999)));
        assert_eq!(amounts(61, tariffa, qe, qu), None);
        assert_eq!(amounts(24 * 60, tariffa, qe, qu), None);
        assert_eq!(hundredths("99999999999999999"), None, "past i64 in hundredths");
    }

    #[test]
    fn month_bounds_know_february() {
        assert_eq!(month_bounds("2024-02"), Some(("2024-02-01".into(), "2024-02-29".into())));
        assert_eq!(month_bounds("2025-13"), None);
        assert_eq!(month_bounds("2025-1"), None);
    }
}
