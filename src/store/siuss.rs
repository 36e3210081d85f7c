//! What the SIUSS adapter keeps beside the events: the persona and valutazione read models, the
//! flussi offered to INPS over WaaS with their outcome, the per-ente daily progressive of
//! `id_flusso`, and per prestazione what INPS currently holds (to cancel or correct it).
//!
//! Invariant: a flusso, its progressive, its `ts_flusso` and its audit record commit together; a
//! progressive is never handed out twice, and `ts_flusso` strictly increases across the gateway.

use csi_gateway_sdk::BoxFuture;
use serde::Serialize;
use serde_json::Value;

use super::StoreResult;

/// The latest `persona.registrata` of a beneficiary (by tenant and pseudonym). The personal data
/// stays in the event; the row points to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaRow {
    pub tenant: String,
    pub pseudonimo: String,
    pub codice_fiscale: Option<String>,
    pub event_id: String,
}

/// The latest `valutazione.registrata` of a beneficiary that carries a SINA assessment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValutazioneRow {
    pub tenant: String,
    pub pseudonimo: String,
    /// `YYYY-MM-DD`: a later valutazione replaces an earlier one, an older one arriving late does not.
    pub data_valutazione: String,
    pub event_id: String,
}

/// An accepted event as stored.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    /// Milliseconds since the Unix epoch.
    pub received_at: i64,
    /// The CloudEvent.
    pub event: Value,
}

/// `TipoOperazione` of a flusso.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Operazione {
    /// Insertion.
    I,
    /// Cancellation of an earlier insertion.
    C,
}

impl Operazione {
    pub fn as_str(self) -> &'static str {
        match self {
            Operazione::I => "I",
            Operazione::C => "C",
        }
    }
}

/// Where a flusso stands.
pub mod stato {
    /// In the feed, no outcome yet.
    pub const OFFERED: &str = "offered";
    /// INPS acquired it (`OK`).
    pub const ACQUIRED: &str = "acquired";
    /// INPS refused it (`RICHIESTA_INVALIDA`, `DATI_NON_TROVATI`): the source needs a correction.
    pub const TO_CORRECT: &str = "to_correct";
    /// INPS failed on its side (`ERRORE_GENERICO`): back in the feed with a new `ts_flusso`.
    pub const REOFFERED: &str = "reoffered";
}

/// One stored flusso.
#[derive(Debug, Clone)]
pub struct FlussoRow {
    pub id_flusso: String,
    /// Belfiore code of the ente.
    pub ente: String,
    pub denominazione: String,
    pub tenant: String,
    /// WaaS `tipo`: `PS_PSA_SINA`.
    pub tipo: String,
    pub operazione: String,
    /// The event that caused the flusso (a prestazione, its correction or its annulment).
    pub event_id: String,
    pub id_prestazione: String,
    /// The events its content was built from (for a cancellation: those of the insertion it cancels).
    pub built_from_event_id: String,
    pub persona_event_id: String,
    pub valutazione_event_id: Option<String>,
    /// SHA-256 of the content (the XML with an empty `Nome`), to tell a correction from a re-send.
    pub content_digest: String,
    pub ts_flusso: i64,
    pub created_at: i64,
    pub stato: String,
    pub esito: Option<String>,
    pub esito_messaggio: Option<String>,
    pub id_acquisizione_siuss: Option<String>,
    pub codice_siuss: Option<String>,
    /// For a cancellation: the `id_flusso` of the insertion it cancels.
    pub cancels: Option<String>,
}

/// One entry of the WaaS feed.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub id_flusso: String,
    pub ente: String,
    pub denominazione: String,
    pub tipo: String,
    pub ts_flusso: i64,
    /// Base64 of the XML.
    pub flusso: String,
}

/// What is known about one prestazione (by ente and `idPrestazione`).
#[derive(Debug, Clone)]
pub struct PrestazioneState {
    /// The last event handled for it.
    pub event_id: String,
    /// The insertion INPS holds or may hold (offered, re-offered or acquired, not cancelled, not
    /// refused): what a correction or an annulment must cancel.
    pub current: Option<FlussoRow>,
    pub annullata: bool,
}

/// Renders a flusso once its daily progressive is known: `progressivo → (id_flusso, base64)`.
pub type Render = Box<dyn FnOnce(u32) -> Result<(String, String), String> + Send>;

/// A flusso to store.
pub struct NewFlusso {
    pub operazione: Operazione,
    pub built_from_event_id: String,
    pub persona_event_id: String,
    pub valutazione_event_id: Option<String>,
    pub content_digest: String,
    pub cancels: Option<String>,
    pub render: Render,
}

impl std::fmt::Debug for NewFlusso {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewFlusso")
            .field("operazione", &self.operazione)
            .field("built_from_event_id", &self.built_from_event_id)
            .field("cancels", &self.cancels)
            .finish_non_exhaustive()
    }
}

/// The flussi one prestazione event produces, stored in one commit, in order (a cancellation
/// before the insertion that corrects it).
#[derive(Debug)]
pub struct Publish {
    pub tenant: String,
    /// Belfiore code of the ente.
    pub ente: String,
    pub denominazione: String,
    /// `YYYYMMDD`: the day of the progressive.
    pub day: String,
    pub id_prestazione: String,
    pub event_id: String,
    /// The `id_flusso` of the current insertion the caller saw; if it changed meanwhile, nothing is
    /// written ([`Published::Conflict`]).
    pub expect_current: Option<String>,
    pub annullata: bool,
    pub flussi: Vec<NewFlusso>,
    /// Client name for the audit.
    pub actor: String,
}

/// What became of a [`Publish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored and in the feed: `(id_flusso, operazione)` in order.
    Offered(Vec<(String, Operazione)>),
    /// This event was handled before (re-delivery, replay): these are its flussi.
    AlreadyDone(Vec<String>),
    /// A later event about the same prestazione was handled already.
    Superseded { by: String },
    /// The prestazione's state changed since the caller read it: try again.
    Conflict,
    /// Nothing stored: the flusso could not be rendered or numbered.
    Failed(String),
}

/// One outcome from INPS (`POST /esiti`), checked by the API.
#[derive(Debug, Clone)]
pub struct EsitoIn {
    pub id_flusso: String,
    /// `OK`, `DATI_NON_TROVATI`, `RICHIESTA_INVALIDA`, `ERRORE_GENERICO`.
    pub codice: String,
    pub descrizione: Option<String>,
    pub id_acquisizione_siuss: Option<String>,
    pub codice_siuss: Option<String>,
    /// The `ts_flusso` INPS names, normalized to milliseconds when it can be read, else as sent:
    /// with the code it tells a new outcome from the same one posted again.
    pub ts_flusso: String,
}

/// What one esito did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsitoApplied {
    pub id_flusso: String,
    pub codice: String,
    /// False when the same outcome had been recorded already (a repeated post).
    pub changed: bool,
}

/// The result of a `POST /esiti`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EsitiOutcome {
    pub applied: Vec<EsitoApplied>,
    /// `id_flusso`s this gateway never offered.
    pub unknown: Vec<String>,
}

/// The SIUSS outcome shown on the source event (`GET /v1/events/{id}`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SiussView {
    /// Where the last flusso of the event stands: `offered`, `acquired`, `to_correct` or `reoffered`.
    pub stato: String,
    /// INPS's text when it refused the flusso: what to correct.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaggio: Option<String>,
    /// Every flusso the event produced, in order (a cancellation first when the event corrects an
    /// earlier prestazione).
    pub flussi: Vec<SiussFlussoView>,
}

/// One flusso as the source event shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SiussFlussoView {
    pub id_flusso: String,
    /// `I` (insertion) or `C` (cancellation).
    pub tipo_operazione: String,
    /// `offered`, `acquired`, `to_correct` or `reoffered`.
    pub stato: String,
    /// When it was (last) put in the feed, RFC 3339 with milliseconds.
    pub ts_flusso: String,
    /// INPS's `codice_esito`, once received.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub esito: Option<String>,
    /// INPS's `descrizione_esito`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaggio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_acquisizione_siuss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codice_siuss: Option<String>,
    /// For a cancellation: the insertion it cancels.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annulla: Option<String>,
}

/// Where a page of the web-upload export stopped: the beneficiary's pseudonym and the
/// `idPrestazione` of the last row (the rows are ordered by both).
impl SiussView {
    /// The SIUSS block of an event from its flussi in the order they were offered; `None` when
    /// the event produced none. A flusso INPS refused (to correct) decides the block's state.
    pub fn of(rows: Vec<FlussoRow>) -> Option<SiussView> {
        let last = rows.last()?;
        let refused = rows.iter().find(|r| r.stato == stato::TO_CORRECT);
        let (stato, messaggio) = match refused {
            Some(r) => (r.stato.clone(), r.esito_messaggio.clone()),
            None => (last.stato.clone(), None),
        };
        let flussi = rows
            .into_iter()
            .map(|r| SiussFlussoView {
                id_flusso: r.id_flusso,
                tipo_operazione: r.operazione,
                stato: r.stato,
                ts_flusso: rfc3339_ms(r.ts_flusso),
                esito: r.esito,
                messaggio: r.esito_messaggio,
                id_acquisizione_siuss: r.id_acquisizione_siuss,
                codice_siuss: r.codice_siuss,
                annulla: r.cancels,
            })
            .collect();
        Some(SiussView { stato, messaggio, flussi })
    }
}

impl Publish {
    /// The audit record of one of its flussi, offered as `id_flusso` (`b64`, the flusso as offered).
    pub fn offered_entry(
        &self,
        operazione: Operazione,
        cancels: Option<&str>,
        id_flusso: &str,
        b64: &str,
    ) -> crate::audit::Entry {
        let detail = match cancels {
            Some(c) => format!("id_flusso {id_flusso} TipoOperazione C, cancels {c}"),
            None => format!("id_flusso {id_flusso} TipoOperazione {}", operazione.as_str()),
        };
        crate::audit::Entry::new(crate::audit::Action::SiussOffered, self.actor.as_str())
            .tenant(&self.tenant)
            .event(&self.event_id)
            .digest(crate::audit::digest(b64.as_bytes()))
            .detail(detail)
    }
}

/// What a new esito does to its flusso.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EsitoEffect {
    /// The flusso's new state ([`stato`]).
    pub stato: &'static str,
    /// Whether it goes back in the feed (a new `ts_flusso`).
    pub reoffer: bool,
    pub messaggio: Option<String>,
    /// A later flusso of the same prestazione was offered: this one is left for an operator.
    pub overtaken: bool,
}

/// What an esito changes in what INPS holds of the prestazione (`siuss_prestazioni`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holding {
    /// INPS refused the insertion it holds: a later correction must not cancel it.
    Refused,
    /// INPS acquired an insertion after all (after a refusal): it holds it.
    Acquired,
    Unchanged,
}

/// Whether esito `e` is about an earlier offering of flusso `row` (its `ts_flusso` is older than
/// the flusso's current one): INPS posting an old batch again, after the flusso was offered anew.
/// Such an esito changes nothing: acting on it would undo what the later outcome decided.
pub fn esito_outdated(e: &EsitoIn, row: &FlussoRow) -> bool {
    e.ts_flusso.parse::<i64>().is_ok_and(|ts| ts < row.ts_flusso)
}

/// The effect of esito `e`; `overtaken` when a later flusso of the same prestazione was offered
/// (re-offering this one would reverse their order at INPS: it is left for an operator instead).
pub fn esito_effect(e: &EsitoIn, overtaken: bool) -> EsitoEffect {
    let overtaken = overtaken && e.codice == "ERRORE_GENERICO";
    let (stato, reoffer) = match e.codice.as_str() {
        "OK" => (stato::ACQUIRED, false),
        "ERRORE_GENERICO" if !overtaken => (stato::REOFFERED, true),
        _ => (stato::TO_CORRECT, false),
    };
    let messaggio = if overtaken { Some(overtaken_message(e)) } else { e.descrizione.clone() };
    EsitoEffect { stato, reoffer, messaggio, overtaken }
}

impl EsitoEffect {
    /// What it changes in what INPS holds of flusso `row`'s prestazione.
    pub fn holding(&self, row: &FlussoRow) -> Holding {
        match self.stato {
            stato::TO_CORRECT if !self.overtaken && row.operazione == "I" => Holding::Refused,
            stato::ACQUIRED if row.operazione == "I" => Holding::Acquired,
            _ => Holding::Unchanged,
        }
    }
}

/// The audit record of esito `e` on flusso `row`, by `actor`; `effect` is `None` for an esito
/// already recorded (nothing changes).
pub fn esito_entry(
    e: &EsitoIn,
    effect: Option<&EsitoEffect>,
    row: &FlussoRow,
    actor: &str,
) -> crate::audit::Entry {
    let mut detail = format!("id_flusso {}: {}", e.id_flusso, e.codice);
    match effect {
        None if esito_outdated(e, row) => {
            detail.push_str(": about an earlier offering of the flusso, no change")
        }
        None => detail.push_str(": already recorded, no change"),
        Some(fx) => match fx.stato {
            stato::TO_CORRECT if fx.overtaken => detail.push_str(": to_correct, overtaken by a later flusso"),
            stato::TO_CORRECT => detail.push_str(": to_correct"),
            stato::ACQUIRED => {
                if let Some(id) = &e.id_acquisizione_siuss {
                    detail.push_str(&format!(", id_acquisizione_siuss {id}"));
                }
            }
            _ => detail.push_str(": re-offered"),
        },
    }
    crate::audit::Entry::new(crate::audit::Action::SiussEsito, actor)
        .tenant(&row.tenant)
        .event(&row.event_id)
        .detail(detail)
}

/// The `data` of a stored CloudEvent; the envelope's other members are skipped, not built.
pub fn data_of(body: &[u8]) -> Value {
    #[derive(serde::Deserialize)]
    struct Data {
        #[serde(default)]
        data: Value,
    }
    serde_json::from_slice::<Data>(body).map(|d| d.data).unwrap_or(Value::Null)
}

/// What an esito says, as one text: an esito for a flusso changes it only when this differs from
/// the one recorded.
pub fn esito_key(e: &EsitoIn) -> String {
    format!(
        "{}|{}|{}|{}|{}",
        e.codice,
        e.ts_flusso,
        e.id_acquisizione_siuss.as_deref().unwrap_or(""),
        e.codice_siuss.as_deref().unwrap_or(""),
        e.descrizione.as_deref().unwrap_or("")
    )
}

/// A daily progressive as an `id_flusso` number: at most 9,999,999 flussi per ente and day.
pub fn progressivo(n: i64, ente: &str, day: &str) -> Result<u32, String> {
    u32::try_from(n).ok().filter(|n| *n <= 9_999_999).ok_or_else(|| {
        format!("the daily progressive of ente {ente} for {day} is exhausted (9999999 flussi)")
    })
}

/// The message of a re-offer INPS could not process after a later flusso of the same prestazione
/// was offered (such a flusso is left for an operator).
fn overtaken_message(e: &EsitoIn) -> String {
    format!(
        "INPS could not process it (ERRORE_GENERICO{}) after a later flusso of the same \
         prestazione was offered: not offered again, check the prestazione with INPS",
        e.descrizione.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )
}

/// A prestazione event's place in the export: its tenant, `idPrestazione` and beneficiary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportKey {
    pub tenant: String,
    pub id_prestazione: String,
    pub pseudonimo: String,
}

/// One prestazione of an ente's tenant for the web-upload export: the latest event of its
/// `idPrestazione` (later events with the same `idPrestazione` supersede earlier ones, whatever
/// their beneficiary).
#[derive(Debug, Clone)]
pub struct ExportRow {
    pub pseudonimo: String,
    pub id_prestazione: String,
    pub event_id: String,
    /// The `data` of the prestazione event.
    pub data: Value,
}

/// What the export needs about one beneficiary: the latest persona and SINA valutazione, with the
/// `data` of their events.
#[derive(Debug, Clone, Default)]
pub struct ExportPersona {
    pub persona: Option<(PersonaRow, Value)>,
    pub valutazione: Option<(ValutazioneRow, Value)>,
}

/// The export's pages as they are read ([`SiussStore::export_pages`]).
pub type ExportPages = tokio::sync::mpsc::Receiver<StoreResult<ExportPage>>;

/// One page of the export, in beneficiary order.
#[derive(Debug, Clone, Default)]
pub struct ExportPage {
    pub rows: Vec<ExportRow>,
    /// The beneficiaries of `rows`, by pseudonym, in the order they first appear.
    pub persone: Vec<(String, ExportPersona)>,
}

/// Storage of the SIUSS adapter.
pub trait SiussStore: Send + Sync + 'static {
    /// The latest persona of a beneficiary, with the `data` of its event.
    fn persona(
        &self,
        tenant: String,
        pseudonimo: String,
    ) -> BoxFuture<'_, StoreResult<Option<(PersonaRow, Value)>>>;
    /// The latest valutazione with a SINA assessment, with the `data` of its event.
    fn valutazione_sina(
        &self,
        tenant: String,
        pseudonimo: String,
    ) -> BoxFuture<'_, StoreResult<Option<(ValutazioneRow, Value)>>>;
    /// An accepted event.
    fn stored_event(&self, id: String) -> BoxFuture<'_, StoreResult<Option<StoredEvent>>>;
    /// Accepted events of a tenant and type, in acceptance order after the cursor `after` (an
    /// event id), at most `limit` (for exports that stream an ente's prestazioni).
    fn events_of_type(
        &self,
        tenant: String,
        event_type: String,
        after: Option<String>,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEvent>>>;
    /// The `prestazione.erogata` events of a tenant for the web-upload export, in pages of at most
    /// `limit` rows: only the latest event of each `idPrestazione`, ordered by beneficiary
    /// pseudonym then `idPrestazione` (bytewise), each page with its beneficiaries' personas and
    /// SINA valutazioni. Read on the side, one page ahead of the caller; the channel closes after
    /// the last page, or after the error that ended the reading.
    fn export_pages(&self, tenant: String, limit: usize) -> ExportPages;
    /// How many prestazioni (the latest event of each `idPrestazione`) the export of a tenant reads:
    /// its progress total.
    fn export_count(&self, tenant: String) -> BoxFuture<'_, StoreResult<u64>>;
    fn prestazione_state(
        &self,
        ente: String,
        id_prestazione: String,
    ) -> BoxFuture<'_, StoreResult<Option<PrestazioneState>>>;
    /// The flussi an event produced, in order.
    fn flussi_of_event(&self, event_id: String) -> BoxFuture<'_, StoreResult<Vec<FlussoRow>>>;
    /// Numbers, stores and offers the flussi of one event, in one commit.
    fn siuss_publish(&self, publish: Publish) -> BoxFuture<'_, StoreResult<Published>>;
    /// The feed: flussi with `ts_flusso > since`, by `ts_flusso`, at most `limit`.
    fn siuss_feed(&self, since: i64, limit: usize) -> BoxFuture<'_, StoreResult<Vec<FeedEntry>>>;
    /// Records INPS's outcomes (idempotent per `id_flusso`), with an audit record each.
    fn siuss_esiti(&self, esiti: Vec<EsitoIn>, actor: String) -> BoxFuture<'_, StoreResult<EsitiOutcome>>;
}

/// RFC 3339 text of a millisecond timestamp, UTC, always with three decimals
/// (`2023-11-27T11:04:56.852Z`): the WaaS `ts_flusso`, exact to the millisecond.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Milliseconds of an RFC 3339 date-time (any offset, any number of decimals).
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ts_flusso_round_trips_to_the_millisecond() {
        for ms in [0, 1, 1_490_000_000_000, 1_701_083_096_852, 1_701_083_096_000] {
            let s = rfc3339_ms(ms);
            assert_eq!(s.len(), 24, "{s}");
            assert_eq!(parse_rfc3339_ms(&s), Some(ms), "{s}");
        }
        assert_eq!(rfc3339_ms(1_701_083_096_852), "2023-11-27T11:04:56.852Z");
        assert_eq!(parse_rfc3339_ms("2023-11-27T12:04:56.852+01:00"), Some(1_701_083_096_852));
        assert_eq!(parse_rfc3339_ms("yesterday"), None);
    }
}
