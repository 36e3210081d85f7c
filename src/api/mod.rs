//! The HTTP API. Handlers are thin: extract, call the pipeline or the store, map to a response.
//! Authentication is the [`Auth`] extractor; body limits and tracing are tower layers.

pub mod coop;
pub mod isee;
pub mod problem;
pub mod waas;

use std::sync::Arc;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use utoipa::OpenApi;

use crate::audit::{Action, Entry, Record, Verification};
use crate::auth::{Caller, Clients};
use crate::config::Role;
use crate::contracts::{ContractInfo, Contracts};
use crate::deliver::WorkerHealth;
use crate::ingest::{EventResult, Mode, Pipeline};
use crate::metrics::Metrics;
use crate::store::{AuditFilter, DeadLetter, DeadLetterFilter, EventView, Queue, Store};
use problem::Problem;
use waas::PdndAuth;

/// Everything handlers share.
pub struct App {
    pub pipeline: Pipeline,
    pub clients: Clients,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub contracts: Arc<Contracts>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<WorkerHealth>,
    /// Cluster mode with RabbitMQ.
    pub broker: Option<Arc<crate::broker::Broker>>,
    /// The cooperatives adapter (absent when its mappings cannot be found).
    pub coop: Option<Arc<crate::coop::Coop>>,
    pub coop_max_upload: usize,
    /// The INPS WaaS endpoints (absent without `[inps]`: they answer 404).
    pub waas: Option<Arc<crate::siuss::Waas>>,
    /// The ISEE adapter (absent without `[isee]`: its endpoint answers 404).
    pub isee: Option<Arc<crate::isee::Isee>>,
}

pub type AppState = Arc<App>;

/// The authenticated caller of a request.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(Problem::unauthorized)?;
        app.clients.authenticate(key).cloned().map(Auth).ok_or_else(Problem::unauthorized)
    }
}

impl App {
    /// Refuses a caller without `role`, and records the refusal.
    pub(crate) async fn require(&self, caller: &Caller, role: Role, what: &str) -> Result<(), Problem> {
        if caller.has(role) {
            return Ok(());
        }
        let detail = format!("client '{}' needs the {} role to {what}", caller.name, role.as_str());
        self.store.audit(vec![Entry::new(Action::Denied, caller.name.as_str()).detail(&detail)]).await?;
        Err(Problem::forbidden(detail))
    }

    /// As [`App::require_tenant`], for something the caller named by id: another tenant's answers
    /// `unknown` (a 404, like an id that does not exist), the refusal audited, so that trying ids
    /// tells no one what other tenants have or who they are.
    pub(crate) async fn require_tenant_or_unknown(
        &self,
        caller: &Caller,
        tenant: &str,
        event_id: &str,
        unknown: Problem,
    ) -> Result<(), Problem> {
        match self.require_tenant(caller, tenant, Some(event_id)).await {
            Err(p) if p.status == StatusCode::FORBIDDEN.as_u16() => Err(unknown),
            other => other,
        }
    }

    /// Refuses a caller not bound to `tenant`, and records the refusal.
    pub(crate) async fn require_tenant(
        &self,
        caller: &Caller,
        tenant: &str,
        event_id: Option<&str>,
    ) -> Result<(), Problem> {
        if caller.may_access(tenant) {
            return Ok(());
        }
        let detail = format!("client '{}' is not bound to tenant {tenant}", caller.name);
        let mut e = Entry::new(Action::Denied, caller.name.as_str()).tenant(tenant).detail(&detail);
        if let Some(id) = event_id {
            e = e.event(id);
        }
        self.store.audit(vec![e]).await?;
        Err(Problem::forbidden(detail))
    }
}

/// The router with every route and layer.
pub fn router(app: AppState, max_body: usize) -> Router {
    let routes = if app.waas.is_some() { waas::routes() } else { Router::new() };
    routes
        .route("/v1/events", post(post_events))
        .route("/v1/events/{id}", get(get_event))
        .route("/v1/dead-letters", get(list_dead_letters))
        .route("/v1/dead-letters/replay", post(replay_bulk))
        .route("/v1/dead-letters/{id}/replay", post(replay_one))
        .route("/v1/audit", get(audit_page))
        .route("/v1/audit/verify", get(audit_verify))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/contracts", get(list_contracts))
        .route("/contracts/{*path}", get(get_contract))
        .route(
            "/v1/adapters/coop/erogazioni",
            post(coop::upload).layer(DefaultBodyLimit::max(app.coop_max_upload)),
        )
        .route("/v1/adapters/coop/erogazioni/{id}", get(coop::upload_report))
        .route("/v1/adapters/coop/chiusure", post(coop::close_month))
        .route("/v1/adapters/coop/liquidazioni", get(coop::liquidazioni))
        .route("/v1/adapters/isee/consultazioni", post(isee::consulta))
        .fallback(|| async { Problem::not_found("no such endpoint; see GET /openapi.json") })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(problem::plain_errors_as_problems))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(app)
}

/// The answer to an accepted submission.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// Gateway ids, in submission order; `null` for an event that was rejected (batch only).
    pub ids: Vec<Option<String>>,
    /// Per-event outcome (batch only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<BatchResult>,
}

/// What became of one event of a batch.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResult {
    pub index: usize,
    /// `accepted`, `duplicate` (the original id is returned) or `rejected`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::contracts::FieldError>,
}

pub(crate) fn body_problem(rejection: BytesRejection, max: usize) -> Problem {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("the body exceeds limits.max_body_bytes = {max} bytes; split the batch"),
        )
    } else {
        Problem::new(StatusCode::BAD_REQUEST, "unreadable-body", "Unreadable body", rejection.body_text())
    }
}

/// Publish one event or a batch.
///
/// A batch is **partial**: valid events are accepted even when others are rejected. The status
/// says which case it is: 202 every event accepted; 207 some accepted, some rejected (see
/// `results`); 400 none accepted (problem+json, each error with its event `index`).
#[utoipa::path(post, path = "/v1/events", tag = "events",
    request_body(content = serde_json::Value, content_type = "application/cloudevents+json",
        description = "A CloudEvent, or an array of them as application/cloudevents-batch+json"),
    responses(
        (status = 202, description = "Durable", body = Accepted),
        (status = 207, description = "Batch partly accepted", body = Accepted),
        (status = 400, description = "Invalid", body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 413, body = Problem), (status = 415, body = Problem)),
    security(("bearer" = [])))]
async fn post_events(
    State(app): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    // A request refused before its events are read is audited too (DESIGN: every rejection).
    let refuse = |p: Problem| async {
        let entry =
            Entry::new(Action::Rejected, caller.name.as_str()).detail(format!("{}: {}", p.status, p.detail));
        app.store.audit(vec![entry]).await?;
        app.pipeline.metrics.rejected.inc();
        Err::<Response, Problem>(p)
    };
    let body = match body {
        Ok(body) => body,
        Err(r) => return refuse(body_problem(r, app.pipeline.limits.max_body_bytes)).await,
    };
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let mode = match essence.as_str() {
        "application/cloudevents+json" | "application/json" => Mode::Single,
        "application/cloudevents-batch+json" => Mode::Batch,
        _ => {
            return refuse(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!(
                    "Content-Type '{ctype}' is not accepted: use application/cloudevents+json for one event \
                     or application/cloudevents-batch+json for a batch"
                ),
            ))
            .await
        }
    };
    let results = app.pipeline.ingest(&caller, &body, mode).await?;
    let rejected = results.iter().filter(|r| matches!(r, EventResult::Rejected { .. })).count();
    if rejected == results.len() {
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "validation",
            "Event does not match its contract",
            if mode == Mode::Single {
                "the event breaks the rules listed in errors; nothing was stored".to_string()
            } else {
                format!("all {rejected} events break the rules listed in errors; nothing was stored")
            },
        );
        for (i, r) in results.into_iter().enumerate() {
            if let EventResult::Rejected { errors } = r {
                p = p.with_errors((mode == Mode::Batch).then_some(i), errors);
            }
        }
        return Err(p);
    }
    let ids = results
        .iter()
        .map(|r| match r {
            EventResult::Accepted { id, .. } => Some(id.clone()),
            EventResult::Rejected { .. } => None,
        })
        .collect();
    let results = if mode == Mode::Batch {
        results
            .into_iter()
            .enumerate()
            .map(|(index, r)| match r {
                EventResult::Accepted { id, duplicate } => BatchResult {
                    index,
                    status: if duplicate { "duplicate" } else { "accepted" },
                    id: Some(id),
                    errors: Vec::new(),
                },
                EventResult::Rejected { errors } => {
                    BatchResult { index, status: "rejected", id: None, errors }
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let status = if rejected == 0 { StatusCode::ACCEPTED } else { StatusCode::MULTI_STATUS };
    Ok((status, Json(Accepted { ids, results })).into_response())
}

/// An event, its status and its per-destination delivery timeline. Every read is audited.
#[utoipa::path(get, path = "/v1/events/{id}", tag = "events",
    params(("id" = String, Path, description = "Gateway event id")),
    responses((status = 200, body = EventView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
async fn get_event(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Json<EventView>, Problem> {
    app.require(&caller, Role::Reader, "read events").await?;
    let not_found = || Problem::not_found(format!("no event with id {id}"));
    let Some(view) = app.store.event(id.clone()).await? else {
        return Err(not_found());
    };
    app.require_tenant_or_unknown(&caller, &view.tenant, &id, not_found()).await?;
    app.store
        .audit(vec![Entry::new(Action::Read, caller.name.as_str())
            .tenant(&view.tenant)
            .event(&id)
            .digest(&view.digest)])
        .await?;
    Ok(Json(view))
}

/// Dead letters of the caller's tenants, oldest first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "dead letters", params(DeadLetterFilter),
    responses((status = 200, body = [DeadLetter])), security(("bearer" = [])))]
async fn list_dead_letters(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Query(mut filter): Query<DeadLetterFilter>,
) -> Result<Json<Vec<DeadLetter>>, Problem> {
    app.require(&caller, Role::Operator, "list dead letters").await?;
    if let Some(t) = &filter.tenant {
        app.require_tenant(&caller, t, None).await?;
    }
    filter.allowed_tenants = caller.tenant_scope();
    let letters = app.store.dead_letters(filter).await?;
    // Each dead letter carries its original event: reading it is a read of that event.
    let reads: Vec<Entry> = letters
        .iter()
        .map(|d| {
            Entry::new(Action::Read, caller.name.as_str())
                .tenant(&d.tenant)
                .event(&d.event_id)
                .destination(&d.destination)
                .detail("dead letter listed")
        })
        .collect();
    if !reads.is_empty() {
        app.store.audit(reads).await?;
    }
    Ok(Json(letters))
}

/// The outcome of a replay.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub replayed: usize,
    /// The dead letters put back in the queue (event ids and idempotency keys unchanged).
    pub dead_letters: Vec<DeadLetter>,
}

/// Replay one dead letter.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/replay", tag = "dead letters",
    params(("id" = i64, Path, description = "Dead letter id")),
    responses((status = 200, body = Replayed), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn replay_one(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<i64>,
) -> Result<Json<Replayed>, Problem> {
    app.require(&caller, Role::Operator, "replay dead letters").await?;
    let filter = DeadLetterFilter { ids: Some(vec![id]), ..Default::default() };
    let found = app.store.dead_letters(filter.clone()).await?;
    let not_found = || Problem::not_found(format!("no dead letter with id {id}"));
    let Some(dl) = found.first() else {
        return Err(not_found());
    };
    // Dead-letter ids are sequential: another tenant's answers like an unknown one.
    app.require_tenant_or_unknown(&caller, &dl.tenant, &dl.event_id, not_found()).await?;
    let dead_letters = app.store.replay(filter, caller.name.clone()).await?;
    hand_off_replayed(&app, &dead_letters).await;
    Ok(Json(Replayed { replayed: dead_letters.len(), dead_letters }))
}

/// Replay every dead letter matching a filter (at most `limit`, default 100, per call).
#[utoipa::path(post, path = "/v1/dead-letters/replay", tag = "dead letters", request_body = DeadLetterFilter,
    responses((status = 200, body = Replayed)), security(("bearer" = [])))]
async fn replay_bulk(
    State(app): State<AppState>,
    Auth(caller): Auth,
    body: Option<Json<DeadLetterFilter>>,
) -> Result<Json<Replayed>, Problem> {
    app.require(&caller, Role::Operator, "replay dead letters").await?;
    let mut filter = body.map(|Json(f)| f).unwrap_or_default();
    if let Some(t) = &filter.tenant {
        app.require_tenant(&caller, t, None).await?;
    }
    filter.allowed_tenants = caller.tenant_scope();
    let dead_letters = app.store.replay(filter, caller.name.clone()).await?;
    hand_off_replayed(&app, &dead_letters).await;
    Ok(Json(Replayed { replayed: dead_letters.len(), dead_letters }))
}

/// In cluster mode with RabbitMQ, publishes replayed deliveries now; if the broker does not
/// confirm, the outbox sweeper publishes them shortly (the replay itself is committed).
async fn hand_off_replayed(app: &App, letters: &[DeadLetter]) {
    let events = letters.iter().map(|d| d.event_id.clone()).collect();
    if let Err(e) = app.pipeline.hand_off(events).await {
        tracing::warn!(error = %e, "replayed deliveries left to the outbox sweeper");
    }
}

/// Audit records of the caller's tenants, in order, paged by `after`.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditFilter),
    responses((status = 200, body = [Record])), security(("bearer" = [])))]
async fn audit_page(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Query(mut filter): Query<AuditFilter>,
) -> Result<Json<Vec<Record>>, Problem> {
    app.require(&caller, Role::Auditor, "read the audit log").await?;
    if let Some(t) = &filter.tenant {
        app.require_tenant(&caller, t, None).await?;
    }
    filter.allowed_tenants = caller.tenant_scope();
    Ok(Json(app.store.audit_page(filter).await?))
}

/// Verifies the whole hash chain; reports the first modified, missing or reordered record.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Verification)), security(("bearer" = [])))]
async fn audit_verify(
    State(app): State<AppState>,
    Auth(caller): Auth,
) -> Result<Json<Verification>, Problem> {
    app.require(&caller, Role::Auditor, "verify the audit log").await?;
    Ok(Json(app.store.audit_verify().await?))
}

/// Liveness.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the store takes writes and every delivery worker runs.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200), (status = 503, body = Problem)))]
async fn readyz(State(app): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    app.store.ready().await?;
    if let Some(broker) = &app.broker {
        broker.ready().await.map_err(|e| Problem::unavailable(e.to_string()))?;
    }
    if !app.health.all_running() {
        return Err(Problem::unavailable("a delivery worker has stopped"));
    }
    Ok(Json(serde_json::json!({ "status": "ready" })))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4")))]
async fn metrics(State(app): State<AppState>) -> Response {
    if let Ok(depths) = app.queue.depth().await {
        app.metrics.queue_depth.clear();
        for (dest, n) in depths {
            app.metrics.queue_depth.get_or_create(&Metrics::label(&dest)).set(n);
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], app.metrics.render())
        .into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations", responses((status = 200)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The interchange contracts.
#[utoipa::path(get, path = "/contracts", tag = "contracts", responses((status = 200, body = [ContractInfo])))]
async fn list_contracts(State(app): State<AppState>) -> Json<Vec<ContractInfo>> {
    Json(app.contracts.list().cloned().collect())
}

/// One contract (JSON Schema 2020-12), by path, e.g. `events/it.lombardia.csi.prestazione.erogata.v1.schema.json`.
#[utoipa::path(get, path = "/contracts/{path}", tag = "contracts",
    params(("path" = String, Path)), responses((status = 200), (status = 404, body = Problem)))]
async fn get_contract(State(app): State<AppState>, Path(path): Path<String>) -> Result<Response, Problem> {
    let schema = app.contracts.get(&path).ok_or_else(|| Problem::not_found(format!("no contract {path}")))?;
    Ok(([(header::CONTENT_TYPE, "application/schema+json")], Json(schema.clone())).into_response())
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "csi-gateway", description = "Interoperability gateway for the Lombardy Cartella Sociale Informatizzata"),
    paths(post_events, get_event, list_dead_letters, replay_one, replay_bulk, audit_page, audit_verify,
          healthz, readyz, metrics, openapi, list_contracts, get_contract,
          coop::upload, coop::upload_report, coop::close_month, coop::liquidazioni, isee::consulta,
          waas::flussi, waas::esiti, waas::status),
    components(schemas(Problem, Accepted, BatchResult, EventView, DeadLetter, Replayed, Record, Verification,
                       ContractInfo, DeadLetterFilter, crate::isee::Richiesta, crate::isee::Esito, crate::coop::UploadReport, crate::coop::Closing,
                       crate::coop::Liquidazione, coop::CloseRequest,
                       waas::Entries, waas::FlussoEntry, waas::ElencoEsiti, waas::EsitoFlusso,
                       crate::store::siuss::SiussView, crate::store::siuss::SiussFlussoView)),
    modifiers(&BearerAuth, &PdndAuth)
)]
pub struct ApiDoc;
