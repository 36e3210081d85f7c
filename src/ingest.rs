//! Ingest: parse with limits, validate against the contracts, authorize, route, and make durable.
//!
//! Nothing here knows about HTTP: the API and the CLI call [`Pipeline::ingest`] with bytes and a
//! caller, and get back per-event results.

use std::sync::Arc;

use serde_json::Value;

use crate::audit::{self, Action, Entry};
use crate::auth::Caller;
use crate::config::{LimitsConfig, Role};
use crate::contracts::{Contracts, FieldError};
use crate::metrics::Metrics;
use crate::routing::Router;
use crate::store::siuss::{ExportKey, PersonaRow, ValutazioneRow};
use crate::store::{Acceptance, NewEvent, ProgettoRow, Projection, Store, StoreError};

/// What one submitted event became.
#[derive(Debug, Clone)]
pub enum EventResult {
    Accepted { id: String, duplicate: bool },
    Rejected { errors: Vec<FieldError> },
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The body is not JSON, or breaks a limit before any event can be looked at.
    #[error("{}", .0.first().map(|e| e.message.as_str()).unwrap_or("malformed request"))]
    Malformed(Vec<FieldError>),
    #[error("batch of {got} events exceeds the limit of {max}")]
    BatchTooLarge { got: usize, max: usize },
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Committed, but the message broker has not confirmed the events (cluster mode): they are
    /// published later; the same request sent again answers with their ids.
    #[error("not confirmed by the message broker: {0}")]
    Unconfirmed(String),
}

/// Events checked, authorized and routed ([`Pipeline::check_submission`]), not yet stored.
#[derive(Default)]
pub struct Admission {
    entries: Vec<Entry>,
    new_events: Vec<NewEvent>,
    results: Vec<Option<EventResult>>,
    /// Refused as a whole: the audit records of the refusal and why.
    denied: Option<(Vec<Entry>, String)>,
}

/// Whether the body is one event or a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Single,
    Batch,
}

/// Everything ingest needs, shared by the API, the CLI and adapters.
pub struct Pipeline {
    pub contracts: Arc<Contracts>,
    pub store: Arc<dyn Store>,
    pub router: Router,
    pub limits: LimitsConfig,
    pub metrics: Arc<Metrics>,
    /// Cluster mode with RabbitMQ: accepted events are handed to the broker before the answer.
    pub relay: Option<Arc<crate::broker::relay::Relay>>,
}

impl Pipeline {
    /// The whole ingest path. Returns one result per submitted event, in order, once every
    /// accepted event, its routing and its audit records are committed.
    pub async fn ingest(
        &self,
        caller: &Caller,
        body: &[u8],
        mode: Mode,
    ) -> Result<Vec<EventResult>, IngestError> {
        let started = std::time::Instant::now();
        let digest = audit::digest(body);
        let checked = match check(&self.contracts, &self.limits, body, mode) {
            Ok(c) => c,
            Err(e) => {
                let entry =
                    Entry::new(Action::Rejected, caller.name.as_str()).digest(&digest).detail(e.to_string());
                self.store.audit(vec![entry]).await?;
                self.metrics.rejected.inc();
                return Err(e);
            }
        };
        let checked = checked.into_iter().map(|c| (c, Vec::new())).collect();
        let out = self.admit(caller, &digest, checked).await?;
        self.metrics.accept_latency.observe(started.elapsed().as_secs_f64());
        Ok(out)
    }

    /// Validates events built by an adapter and admits them like published ones, with the read
    /// models they feed. `digest` identifies the submission (file or request) in the audit.
    pub async fn submit(
        &self,
        caller: &Caller,
        digest: &str,
        events: Vec<(Value, Vec<Projection>)>,
    ) -> Result<Vec<EventResult>, IngestError> {
        self.store_admission(self.check_submission(caller, digest, events)).await
    }

    /// What [`Pipeline::submit`] does before the store: validation, authorization and routing,
    /// CPU work an adapter can do while its previous submission is being stored.
    pub fn check_submission(
        &self,
        caller: &Caller,
        digest: &str,
        events: Vec<(Value, Vec<Projection>)>,
    ) -> Admission {
        let checked = events
            .into_iter()
            .map(|(ev, projections)| {
                let errors = self.contracts.validate(&ev);
                (if errors.is_empty() { Ok(ev) } else { Err(Invalid::of(&ev, errors)) }, projections)
            })
            .collect();
        self.admission(caller, digest, checked)
    }

    /// Authorizes, routes and stores checked events; one result per event, in order.
    async fn admit(
        &self,
        caller: &Caller,
        digest: &str,
        checked: Vec<(Checked, Vec<Projection>)>,
    ) -> Result<Vec<EventResult>, IngestError> {
        self.store_admission(self.admission(caller, digest, checked)).await
    }

    /// Authorizes and routes checked events: what to store and to audit.
    fn admission(
        &self,
        caller: &Caller,
        digest: &str,
        checked: Vec<(Checked, Vec<Projection>)>,
    ) -> Admission {
        // Authorize before anything is stored: one foreign tenant refuses the whole request.
        let may_publish = caller.has(Role::Publisher);
        let mut denied = Vec::new();
        for (i, (ev, _)) in checked.iter().enumerate() {
            let tenant = match ev {
                Ok(v) => v.get("tenant").and_then(Value::as_str),
                Err(invalid) => invalid.tenant.as_deref(),
            };
            if let Some(t) = tenant {
                if !may_publish || !caller.may_access(t) {
                    denied.push((i, t.to_string()));
                }
            }
        }
        if !may_publish || !denied.is_empty() {
            let detail = if !may_publish {
                format!("client '{}' lacks the publisher role", caller.name)
            } else {
                let list: Vec<String> =
                    denied.iter().map(|(i, t)| format!("event {i}: tenant {t}")).collect();
                format!("client '{}' may not publish for {}", caller.name, list.join("; "))
            };
            let entries = if denied.is_empty() {
                vec![Entry::new(Action::Denied, caller.name.as_str()).digest(digest).detail(&detail)]
            } else {
                denied
                    .iter()
                    .map(|(_, t)| {
                        Entry::new(Action::Denied, caller.name.as_str())
                            .tenant(t)
                            .digest(digest)
                            .detail(&detail)
                    })
                    .collect()
            };
            return Admission { denied: Some((entries, detail)), ..Admission::default() };
        }

        let mut entries = Vec::new();
        let mut new_events = Vec::new();
        let mut results: Vec<Option<EventResult>> = Vec::with_capacity(checked.len());
        for (index, (ev, extra)) in checked.into_iter().enumerate() {
            match ev {
                Err(Invalid { errors, .. }) => {
                    let summary: Vec<String> =
                        errors.iter().take(5).map(|e| format!("{} {}", e.pointer, e.rule)).collect();
                    entries.push(
                        Entry::new(Action::Rejected, caller.name.as_str())
                            .digest(digest)
                            .detail(format!("event {index}: {}", summary.join(", "))),
                    );
                    results.push(Some(EventResult::Rejected { errors }));
                }
                Ok(value) => {
                    let mut new = self.prepare(caller, value);
                    new.projections.extend(extra);
                    entries.push(
                        Entry::new(Action::Received, caller.name.as_str())
                            .tenant(&new.tenant)
                            .event(&new.id)
                            .digest(&new.digest),
                    );
                    new_events.push(new);
                    results.push(None);
                }
            }
        }
        Admission { entries, new_events, results, denied: None }
    }

    /// Stores an admission (the second half of [`Pipeline::submit`]): one result per event, in
    /// order, once the accepted ones are durable.
    pub async fn store_admission(&self, admission: Admission) -> Result<Vec<EventResult>, IngestError> {
        let Admission { entries, new_events, results, denied } = admission;
        if let Some((entries, detail)) = denied {
            self.store.audit(entries).await?;
            return Err(IngestError::Forbidden(detail));
        }
        let n_new = new_events.len();
        let acceptances = if n_new == 0 && entries.is_empty() {
            Vec::new()
        } else {
            self.store.accept(new_events, entries).await?
        };
        self.hand_off(acceptances.iter().map(|a| a.id().to_string()).collect()).await?;
        let mut acc = acceptances.into_iter();
        let out: Vec<EventResult> = results
            .into_iter()
            .map(|r| match r {
                Some(rejected) => {
                    self.metrics.rejected.inc();
                    rejected
                }
                None => match acc.next() {
                    Some(Acceptance::New(id)) => {
                        self.metrics.accepted.inc();
                        EventResult::Accepted { id, duplicate: false }
                    }
                    Some(Acceptance::Duplicate(id)) => {
                        self.metrics.duplicates.inc();
                        EventResult::Accepted { id, duplicate: true }
                    }
                    None => EventResult::Rejected {
                        errors: vec![FieldError::new(
                            "",
                            "internal",
                            "store returned fewer results than events",
                        )],
                    },
                },
            })
            .collect();
        Ok(out)
    }

    /// In cluster mode with RabbitMQ, waits until the broker has confirmed the deliveries of these
    /// events (new ones, and duplicates whose original a failed handoff left unpublished).
    pub async fn hand_off(&self, events: Vec<String>) -> Result<(), IngestError> {
        match &self.relay {
            Some(relay) => relay.handoff(events).await.map_err(|e| IngestError::Unconfirmed(e.to_string())),
            None => Ok(()),
        }
    }

    /// Assigns the gateway id, fills defaults and routes one valid event.
    fn prepare(&self, caller: &Caller, mut value: Value) -> NewEvent {
        let id = uuid::Uuid::now_v7().to_string();
        let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let source = text(&value, "source").unwrap_or_default();
        let event_type = text(&value, "type").unwrap_or_default();
        let tenant = text(&value, "tenant").unwrap_or_default();
        let publisher_id = text(&value, "id").unwrap_or_default();
        // CloudEvents: source + id identify an event. Without an explicit key, that pair is the key.
        let idempotency_key = text(&value, "idempotencykey").or(Some(publisher_id.clone()));
        if let Some(obj) = value.as_object_mut() {
            obj.insert("id".into(), Value::String(id.clone()));
            obj.insert("sourceid".into(), Value::String(publisher_id));
            if !obj.contains_key("time") {
                obj.insert("time".into(), Value::String(crate::store::rfc3339(crate::store::now_ms())));
            }
            if !obj.contains_key("dataschema") {
                if let Some(schema) = self.contracts.schema_id(&event_type) {
                    obj.insert("dataschema".into(), Value::String(schema.to_string()));
                }
            }
        }
        // Sized for a typical event up front: growing a vector by doubling copies it each time.
        let mut body = Vec::with_capacity(BODY_CAPACITY);
        if serde_json::to_writer(&mut body, &value).is_err() {
            body.clear();
        }
        let projections = projections(&id, &event_type, &value);
        NewEvent {
            digest: audit::digest(&body),
            destinations: self.router.route(&event_type, &tenant),
            id,
            subject: text(&value, "subject"),
            correlation_id: text(&value, "correlationid"),
            source,
            event_type,
            tenant,
            idempotency_key,
            projections,
            body,
            actor: caller.name.clone(),
        }
    }
}

/// Bytes reserved for an event's JSON text before it is written (most events are 1–2 KiB).
const BODY_CAPACITY: usize = 2048;

/// Read models an accepted event feeds.
fn projections(id: &str, event_type: &str, event: &Value) -> Vec<Projection> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let data = &event["data"];
    if event_type.starts_with("it.lombardia.csi.persona.registrata.") {
        let (Some(tenant), Some(pseudonimo)) = (text(&event["tenant"]), text(&data["pseudonimo"])) else {
            return Vec::new();
        };
        return vec![Projection::Persona(PersonaRow {
            tenant,
            pseudonimo,
            codice_fiscale: text(&data["codiceFiscale"]),
            event_id: id.to_string(),
        })];
    }
    if event_type.starts_with("it.lombardia.csi.valutazione.registrata.") {
        if data.pointer("/strumenti/sina").is_none() {
            return Vec::new();
        }
        let (Some(tenant), Some(pseudonimo), Some(data_valutazione)) =
            (text(&event["tenant"]), text(&data["assistito"]["pseudonimo"]), text(&data["dataValutazione"]))
        else {
            return Vec::new();
        };
        return vec![Projection::ValutazioneSina(ValutazioneRow {
            tenant,
            pseudonimo,
            data_valutazione,
            event_id: id.to_string(),
        })];
    }
    if event_type == crate::coop::PRESTAZIONE {
        let (Some(tenant), Some(id_prestazione), Some(pseudonimo)) =
            (text(&event["tenant"]), text(&data["idPrestazione"]), text(&data["beneficiario"]["pseudonimo"]))
        else {
            return Vec::new();
        };
        return vec![Projection::PrestazioneExport(ExportKey { tenant, id_prestazione, pseudonimo })];
    }
    if !event_type.starts_with("it.lombardia.csi.progetto.approvato.") {
        return Vec::new();
    }
    let (Some(tenant), Some(id_progetto), Some(pseudonimo), Some(dal), Some(al)) = (
        text(&event["tenant"]),
        text(&data["idProgetto"]),
        text(&data["beneficiario"]["pseudonimo"]),
        text(&data["periodo"]["dal"]),
        text(&data["periodo"]["al"]),
    ) else {
        return Vec::new();
    };
    vec![Projection::Progetto(ProgettoRow {
        tenant,
        id_progetto,
        pseudonimo,
        codice_fiscale: text(&data["beneficiario"]["codiceFiscale"]),
        dal,
        al,
        interventi: data["interventi"].clone(),
        event_id: id.to_string(),
    })]
}

/// One event's check result: the parsed event, or every rule it breaks.
pub type Checked = Result<Value, Invalid>;

/// An event that breaks rules: which, and the tenant it names (an invalid event for a tenant the
/// client may not publish for still refuses the whole request).
#[derive(Debug)]
pub struct Invalid {
    pub errors: Vec<FieldError>,
    pub tenant: Option<String>,
}

impl Invalid {
    fn of(ev: &Value, errors: Vec<FieldError>) -> Self {
        Self { errors, tenant: ev.get("tenant").and_then(Value::as_str).map(str::to_string) }
    }
}

/// Parses and validates `body` without storing anything: what `csi-gateway validate` shows, and
/// the first step of every ingest.
pub fn check(
    contracts: &Contracts,
    limits: &LimitsConfig,
    body: &[u8],
    mode: Mode,
) -> Result<Vec<Checked>, IngestError> {
    let events = parse(body, mode, limits)?;
    Ok(events
        .into_iter()
        .map(|ev| {
            let mut errors = text_errors(&ev, limits.max_string_chars);
            if errors.is_empty() {
                errors = contracts.validate(&ev);
            }
            if errors.is_empty() {
                Ok(ev)
            } else {
                Err(Invalid::of(&ev, errors))
            }
        })
        .collect())
}

/// Parses a single event or a batch, enforcing depth and string limits before and after parsing.
pub fn parse(body: &[u8], mode: Mode, limits: &LimitsConfig) -> Result<Vec<Value>, IngestError> {
    check_depth(body, limits.max_depth)?;
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        IngestError::Malformed(vec![FieldError::new(
            "",
            "json",
            format!("body is not valid JSON: {e} (line {}, column {})", e.line(), e.column()),
        )])
    })?;
    let events = match (mode, value) {
        (Mode::Single, v @ Value::Object(_)) => vec![v],
        (Mode::Batch, Value::Array(items)) => items,
        (Mode::Single, _) => {
            return Err(IngestError::Malformed(vec![FieldError::new(
                "",
                "type",
                "a single event must be a JSON object (send arrays as application/cloudevents-batch+json)",
            )]))
        }
        (Mode::Batch, _) => {
            return Err(IngestError::Malformed(vec![FieldError::new(
                "",
                "type",
                "a batch must be a JSON array of events",
            )]))
        }
    };
    if events.len() > limits.max_batch {
        return Err(IngestError::BatchTooLarge { got: events.len(), max: limits.max_batch });
    }
    if events.is_empty() {
        return Err(IngestError::Malformed(vec![FieldError::new("", "minItems", "the batch is empty")]));
    }
    Ok(events)
}

/// The text rules every string of a published event must keep, before its contract is checked
/// (which would otherwise run its patterns over text of any length): at most `max` characters,
/// and nothing the interchange cannot carry (`csi_gateway_sdk::text::unfit`).
fn text_errors(ev: &Value, max: usize) -> Vec<FieldError> {
    let mut errors = Vec::new();
    strings(ev, &mut String::new(), max, &mut errors);
    errors
}

fn check_depth(body: &[u8], max: usize) -> Result<(), IngestError> {
    match csi_gateway_sdk::json::nesting_exceeds(body, max) {
        None => Ok(()),
        Some(offset) => Err(IngestError::Malformed(vec![FieldError::new(
            "",
            "max_depth",
            format!("JSON nesting deeper than {max} levels (at byte {offset})"),
        )])),
    }
}

fn strings(v: &Value, path: &mut String, max: usize, errors: &mut Vec<FieldError>) {
    use csi_gateway_sdk::text::{unfit, Unfit};
    let len = path.len();
    let unfit_error = |path: &str, u: Unfit| {
        let message = match u {
            Unfit::Nul => "text may not contain the NUL character (U+0000)",
            Unfit::Control => {
                "text may not contain control characters other than tab, line feed and carriage return \
                 (U+0001–U+001F): XML, which INPS reads, cannot carry them"
            }
        };
        FieldError::new(path, u.rule(), message)
    };
    match v {
        Value::String(s) if s.chars().count() > max => errors.push(FieldError::new(
            path.clone(),
            "max_string_chars",
            format!("string of {} characters exceeds the limit of {max}", s.chars().count()),
        )),
        Value::String(s) => {
            if let Some(u) = unfit(s) {
                errors.push(unfit_error(path, u))
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push_str(&format!("/{i}"));
                strings(item, path, max, errors);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                if k.chars().count() > max {
                    errors.push(FieldError::new(path.clone(), "max_string_chars", "property name too long"));
                } else if let Some(u) = unfit(k) {
                    errors.push(unfit_error(path, u));
                }
                strings(item, path, max, errors);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_limit_is_enforced_before_parsing() {
        let limits = LimitsConfig { max_depth: 4, ..Default::default() };
        let deep = "[".repeat(5) + &"]".repeat(5);
        let err = parse(deep.as_bytes(), Mode::Batch, &limits).unwrap_err();
        assert!(matches!(err, IngestError::Malformed(ref e) if e[0].rule == "max_depth"), "{err:?}");
        // Brackets inside strings do not count.
        let ok = r#"{"a": "[[[[[[[[[["}"#;
        assert!(parse(ok.as_bytes(), Mode::Single, &limits).is_ok());
    }

    #[test]
    fn long_strings_and_nul_characters_are_named_by_pointer() {
        let ev = serde_json::json!({"a": {"b": "toolong", "c": ["ok", "x\u{0}y", "v\u{b}t"]}, "d\u{0}": 1});
        let errors = text_errors(&ev, 3);
        let found: Vec<(&str, &str)> = errors.iter().map(|e| (e.pointer.as_str(), e.rule.as_str())).collect();
        assert_eq!(
            found,
            [
                ("/a/b", "max_string_chars"),
                ("/a/c/1", "nul_character"),
                ("/a/c/2", "control_character"),
                ("/d\u{0}", "nul_character")
            ]
        );
        // Tab, line feed and carriage return are text.
        assert!(text_errors(&serde_json::json!({"note": "a\tb\r\nc"}), 16).is_empty());
        assert!(text_errors(&serde_json::json!({"a": ["abc", {"b": "é漢字"}]}), 3).is_empty());
    }
}
