//! The INPS WaaS endpoints (`api-comuni.yaml` v2.0.1) at the paths that OpenAPI names: INPS polls
//! `GET /flussi`, posts outcomes to `POST /esiti` and checks `GET /status`. Mounted only when
//! `[inps]` is configured. Only the PDND voucher (or the trusted API gateway) opens them; the
//! gateway's API keys do not. Errors are problem+json with the fields of the OpenAPI's `Problem`
//! (no `errors` list: that schema forbids other properties).

use std::net::SocketAddr;

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{ConnectInfo, FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;

use super::problem::Problem;
use super::AppState;
use crate::audit::{Action, Entry};
use crate::siuss::voucher::Refusal;
use crate::siuss::waas::{esiti_body, feed_query, BadRequest};
use crate::store::siuss::rfc3339_ms;

/// The WaaS routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/flussi", get(flussi)).route("/esiti", post(esiti)).route("/status", get(status))
}

/// INPS, authenticated: the actor named in the audit.
pub struct Inps(pub String);

impl FromRequestParts<AppState> for Inps {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, Self::Rejection> {
        let Some(waas) = &app.waas else {
            return Err(Problem::not_found("no [inps] section: WaaS is not served").into_response());
        };
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        match waas.authorize(&parts.headers, peer).await {
            Ok(caller) => Ok(Inps(caller.actor)),
            Err(refusal) => {
                if let Some(earlier) = waas.denial_to_audit(peer) {
                    let mut detail =
                        format!("WaaS {} {}: {}", parts.method, parts.uri.path(), refusal.reason());
                    if earlier > 0 {
                        detail.push_str(&format!(
                            " (and {earlier} more refused from this address since its last record)"
                        ));
                    }
                    if let Err(e) =
                        app.store.audit(vec![Entry::new(Action::Denied, "waas").detail(&detail)]).await
                    {
                        return Err(Problem::from(e).into_response());
                    }
                }
                Err(match refusal {
                    Refusal::Unauthorized(r) => {
                        let p = Problem::new(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "Missing or invalid PDND voucher",
                            r,
                        );
                        let mut resp = p.into_response();
                        if waas.pdnd() {
                            resp.headers_mut()
                                .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
                        }
                        resp
                    }
                    Refusal::Forbidden(r) => Problem::forbidden(r).into_response(),
                })
            }
        }
    }
}

fn bad_request(b: BadRequest) -> Problem {
    let detail = if b.at.is_empty() { b.message } else { format!("{}: {}", b.at, b.message) };
    Problem::new(StatusCode::BAD_REQUEST, "waas-request", "Request does not follow the WaaS OpenAPI", detail)
}

/// `Entries`: one page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Entries {
    pub elenco_flussi: Vec<FlussoEntry>,
}

/// `Flusso`: one flusso of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FlussoEntry {
    /// Belfiore code of the ente that produced the flusso.
    pub codice_ente: String,
    pub denominazione_ente: String,
    /// `EEEE.PS.AAAAMMGG.NNNNNNN`, with a daily progressive per ente that never repeats.
    pub id_flusso: String,
    /// `PS_PSA_SINA` (or `SINBA`).
    pub tipo: String,
    /// When the flusso was (last) offered, RFC 3339 exact to the millisecond: its Unix
    /// milliseconds are what INPS sends back as `since`.
    #[schema(format = DateTime)]
    pub ts_flusso: String,
    /// The XML flusso, base64.
    #[schema(format = Byte)]
    pub flusso: String,
}

/// Query of `GET /flussi`.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FlussiParams {
    /// Unix milliseconds of the last flusso acquired (0 the first time): flussi strictly after it.
    #[param(minimum = 0)]
    pub since: i64,
    /// Entries per page, 0–100 (default 10).
    #[param(minimum = 0, maximum = 100)]
    pub limit: Option<u8>,
    /// The PDF specification's name for `limit`.
    #[param(minimum = 0, maximum = 100)]
    pub max_entries: Option<u8>,
}

/// `ElencoEsiti`: the outcomes INPS reports.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ElencoEsiti {
    pub elenco_esiti: Vec<EsitoFlusso>,
}

/// `EsitoFlusso`: one outcome.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EsitoFlusso {
    pub id_flusso: String,
    pub tipo: String,
    /// RFC 3339 (Unix milliseconds accepted too).
    pub ts_flusso: String,
    pub ts_acquisizione: String,
    /// `OK`, `DATI_NON_TROVATI`, `RICHIESTA_INVALIDA`, `ERRORE_GENERICO`.
    pub codice_esito: String,
    pub descrizione_esito: Option<String>,
    /// SIUSS acquisition id (with `OK`).
    pub id_acquisizione_siuss: Option<String>,
    /// SIUSS code (PDF specification).
    pub codice_siuss: Option<String>,
}

/// INPS polls the flussi offered after `since`, oldest first: one beneficiary and one prestazione
/// per flusso, every ente of this gateway in one feed. An empty list means nothing new.
#[utoipa::path(get, path = "/flussi", tag = "inps waas", params(FlussiParams),
    responses((status = 200, body = Entries),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No [inps] configured", body = Problem, content_type = "application/problem+json")),
    security(("pdnd" = [])))]
pub async fn flussi(
    State(app): State<AppState>,
    _inps: Inps,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<Entries>, Problem> {
    let Some(waas) = &app.waas else { return Err(Problem::not_found("WaaS is not served")) };
    let Query(pairs) =
        query.map_err(|e| bad_request(BadRequest { at: String::new(), message: e.body_text() }))?;
    let (since, limit) = feed_query(&pairs).map_err(bad_request)?;
    let entries = waas.feed(since, limit).await?;
    Ok(Json(Entries {
        elenco_flussi: entries
            .into_iter()
            .map(|e| FlussoEntry {
                codice_ente: e.ente,
                denominazione_ente: e.denominazione,
                id_flusso: e.id_flusso,
                tipo: e.tipo,
                ts_flusso: rfc3339_ms(e.ts_flusso),
                flusso: e.flusso,
            })
            .collect(),
    }))
}

/// INPS reports what became of the flussi. Idempotent per `id_flusso`: the same outcome posted
/// again changes nothing. `OK` records the SIUSS acquisition id; `RICHIESTA_INVALIDA` and
/// `DATI_NON_TROVATI` mark the flusso and its source event `to_correct` with INPS's text;
/// `ERRORE_GENERICO` offers the flusso again (same `id_flusso`, new `ts_flusso`). An unknown
/// `id_flusso` answers 404 (the others of the request are recorded).
#[utoipa::path(post, path = "/esiti", tag = "inps waas", request_body = ElencoEsiti,
    responses((status = 204, description = "Recorded"),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown id_flusso", body = Problem, content_type = "application/problem+json")),
    security(("pdnd" = [])))]
pub async fn esiti(
    State(app): State<AppState>,
    Inps(actor): Inps,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, Problem> {
    let Some(waas) = &app.waas else { return Err(Problem::not_found("WaaS is not served")) };
    let body = body.map_err(|r| super::body_problem(r, app.pipeline.limits.max_body_bytes))?;
    if let Some(ctype) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) {
        let essence = ctype.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("Content-Type '{ctype}' is not accepted: send application/json"),
            ));
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        bad_request(BadRequest { at: String::new(), message: format!("the body is not JSON: {e}") })
    })?;
    let list = esiti_body(&value).map_err(bad_request)?;
    let outcome = waas.esiti(list, actor).await?;
    if !outcome.unknown.is_empty() {
        let shown: Vec<&str> = outcome.unknown.iter().take(20).map(String::as_str).collect();
        let more = outcome.unknown.len().saturating_sub(shown.len());
        return Err(Problem::not_found(format!(
            "unknown id_flusso: {}{}; the other esiti of the request were recorded",
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() }
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the WaaS service works, as problem+json (200 when it does, 503 when the store cannot
/// take writes).
#[utoipa::path(get, path = "/status", tag = "inps waas",
    responses((status = 200, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")),
    security(("pdnd" = [])))]
pub async fn status(State(app): State<AppState>, _inps: Inps) -> Result<Response, Problem> {
    app.store.ready().await?;
    let enti = app.waas.as_ref().map(|w| w.enti()).unwrap_or_default();
    let p = Problem {
        kind: "about:blank".into(),
        title: "OK".into(),
        status: 200,
        detail: format!("csi-gateway WaaS is serving the flussi of {enti} enti"),
        errors: Vec::new(),
        retry_after: None,
    };
    Ok(p.into_response())
}

/// The `pdnd` security scheme of the WaaS endpoints.
pub struct PdndAuth;

impl utoipa::Modify for PdndAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "pdnd",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("PDND voucher (RS256), or the trusted API gateway in front"))
                    .build(),
            ),
        );
    }
}
