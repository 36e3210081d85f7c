//! `/v1/adapters/coop/...`: cooperatives push delivered hours; comuni close the month and export
//! the liquidazione.

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::problem::Problem;
use super::{AppState, Auth};
use crate::audit::{Action, Entry};
use crate::auth::Caller;
use crate::config::Role;
use crate::coop::{Body, Closing, CoopError, Liquidazione, UploadReport};

impl From<CoopError> for Problem {
    fn from(e: CoopError) -> Self {
        match e {
            CoopError::Mapping(name, why) => Problem::new(
                StatusCode::BAD_REQUEST,
                "unknown-mapping",
                "Mapping not usable",
                format!("mapping '{name}': {why}"),
            ),
            CoopError::Input(why) => {
                Problem::new(StatusCode::BAD_REQUEST, "unreadable-file", "File not readable", why)
            }
            CoopError::Forbidden(why) => Problem::forbidden(why),
            CoopError::Store(e) => e.into(),
            CoopError::Ingest(e) => e.into(),
        }
    }
}

fn coop(app: &AppState) -> Result<&crate::coop::Coop, Problem> {
    app.coop.as_deref().ok_or_else(|| Problem::unavailable("the cooperatives adapter is not configured"))
}

/// The tenant a request is for: the `tenant` parameter, or the caller's only tenant.
pub(super) fn tenant_of(caller: &Caller, given: Option<String>) -> Result<String, Problem> {
    match given {
        Some(t) => Ok(t),
        None => match caller.tenants.as_slice() {
            [only] if only != "*" => Ok(only.clone()),
            _ => Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "missing-tenant",
                "Tenant needed",
                "this client acts for several tenants: add ?tenant=<Belfiore code>",
            )),
        },
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadParams {
    /// Mapping name (a file `mappings/coop/<name>.toml`).
    pub mapping: String,
    /// Tenant (Belfiore code); defaults to the client's only tenant.
    pub tenant: Option<String>,
}

/// Upload delivered hours: a JSON array of deliveries or a whole CSV file (`text/csv`), read with
/// the named mapping. The answer is a per-row report; good rows are accepted even when others fail.
#[utoipa::path(post, path = "/v1/adapters/coop/erogazioni", tag = "cooperatives", params(UploadParams),
    request_body(content = String, content_type = "text/csv", description = "CSV file, or a JSON array as application/json"),
    responses((status = 200, body = UploadReport), (status = 400, body = Problem), (status = 403, body = Problem)),
    security(("bearer" = [])))]
pub async fn upload(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Query(params): Query<UploadParams>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Problem> {
    let coop = coop(&app)?;
    let max = app.coop_max_upload;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        // Refused unread: the connection cannot carry another request after it, and the client
        // must be told so, or it would send its next request on a connection about to close.
        let mut refused = too_large(max).into_response();
        refused.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        return Ok(refused);
    }
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let kind = match ctype.split(';').next().unwrap_or("").trim() {
        "text/csv" | "application/csv" => Body::Csv,
        "application/json" => Body::Json,
        other => {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
                format!("Content-Type '{other}': send text/csv or application/json"),
            ))
        }
    };
    let tenant = tenant_of(&caller, params.tenant)?;
    let (reader, received) = BodyReader::new(body, max);
    let uploaded =
        coop.upload(&app.pipeline, &caller, &tenant, &params.mapping, kind, Box::new(reader)).await;
    // Answer once the body is read (or given up on): answering earlier resets a connection the
    // client is still writing to, and it would never see the answer.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), received).await;
    match uploaded {
        Err(CoopError::Forbidden(why)) => {
            let e = Entry::new(Action::Denied, caller.name.as_str()).tenant(&tenant).detail(&why);
            app.store.audit(vec![e]).await?;
            Err(Problem::forbidden(why))
        }
        other => {
            let up = other?;
            Ok(report_response(coop, up.id, up.report))
        }
    }
}

fn too_large(max: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body-too-large",
        "File too large",
        format!("the file exceeds coop.max_upload_bytes = {max} bytes; split it (by month, say)"),
    )
}

/// An upload's report, its rows streamed from the store.
fn report_response(coop: &crate::coop::Coop, id: String, stored: String) -> Response {
    let id_for_log = id.clone();
    let stream = crate::coop::report_stream(coop.store.clone(), id, stored).map(move |piece| {
        piece.map_err(|e| {
            tracing::error!(upload = %id_for_log, error = %e, "sending the upload report failed");
            std::io::Error::other(e.to_string())
        })
    });
    ([(header::CONTENT_TYPE, "application/json")], axum::body::Body::from_stream(stream)).into_response()
}

/// A request body as a blocking [`Read`], for the upload's reading thread: the body's chunks come
/// through a small bounded channel (so the client is read only as fast as rows are processed),
/// at most `max` bytes of them; beyond, reading fails with an error that says so.
struct BodyReader {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl BodyReader {
    /// The reader, and a task that ends once the body has been read to its end or given up on.
    fn new(body: axum::body::Body, max: usize) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, chunks) = tokio::sync::mpsc::channel(8);
        let received = tokio::spawn(async move {
            let mut stream = body.into_data_stream();
            let mut total = 0usize;
            while let Some(chunk) = stream.next().await {
                let item = match chunk {
                    Ok(bytes) => {
                        total += bytes.len();
                        if total > max {
                            Err(std::io::Error::other(format!(
                                "the file exceeds coop.max_upload_bytes = {max} bytes"
                            )))
                        } else {
                            Ok(bytes)
                        }
                    }
                    Err(e) => Err(std::io::Error::other(format!("the upload broke off: {e}"))),
                };
                let over = total > max;
                let failed = item.is_err();
                if tx.send(item).await.is_err() || (failed && !over) {
                    return;
                }
                if over {
                    // The report answers a file over the limit; a client still sending it would
                    // see the connection reset instead of the report if the rest stayed unread.
                    // Read and discard up to another `max` bytes, then give up on the client.
                    let mut discarded = 0usize;
                    while let Some(Ok(bytes)) = stream.next().await {
                        discarded += bytes.len();
                        if discarded > max {
                            break;
                        }
                    }
                    return;
                }
            }
        });
        (Self { chunks, current: Bytes::new() }, received)
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(Ok(bytes)) => self.current = bytes,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The report of an earlier upload: its own client, or an operator or auditor of the tenant.
#[utoipa::path(get, path = "/v1/adapters/coop/erogazioni/{id}", tag = "cooperatives",
    params(("id" = String, Path)), responses((status = 200, body = UploadReport), (status = 404, body = Problem)),
    security(("bearer" = [])))]
pub async fn upload_report(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let coop = coop(&app)?;
    let not_found = || Problem::not_found(format!("no upload with id {id}"));
    let Some(up) = coop.store.upload(id.clone()).await? else {
        return Err(not_found());
    };
    let own = up.client == caller.name;
    let staff = (caller.has(Role::Operator) || caller.has(Role::Auditor)) && caller.may_access(&up.tenant);
    if !own && !staff {
        // Answered like an unknown upload (the refusal is audited): an id tells no one that
        // the upload exists, nor whose it is.
        let detail = format!("client '{}' may read only its own uploads ({id})", caller.name);
        app.store
            .audit(vec![Entry::new(Action::Denied, caller.name.as_str()).tenant(&up.tenant).detail(&detail)])
            .await?;
        return Err(not_found());
    }
    Ok(report_response(coop, up.id, crate::coop::stored_report(up.report)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    pub tenant: Option<String>,
    /// `YYYY-MM`.
    pub mese: String,
}

/// Monthly close: one `prestazione` event per progetto, service and month carrying the hours
/// (SIUSS `OreServizioMensile`), and the liquidazione per cooperative. Closing again with unchanged
/// deliveries creates nothing new.
#[utoipa::path(post, path = "/v1/adapters/coop/chiusure", tag = "cooperatives", request_body = CloseRequest,
    responses((status = 200, body = Closing)), security(("bearer" = [])))]
pub async fn close_month(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Json(req): Json<CloseRequest>,
) -> Result<Json<Closing>, Problem> {
    let coop = coop(&app)?;
    app.require(&caller, Role::Operator, "close the month").await?;
    // The close publishes the monthly events: checked here, before anything is computed.
    app.require(&caller, Role::Publisher, "close the month (it publishes the monthly events)").await?;
    let tenant = tenant_of(&caller, req.tenant)?;
    app.require_tenant(&caller, &tenant, None).await?;
    Ok(Json(coop.close_month(&app.pipeline, &caller, &tenant, &req.mese).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LiquidazioneParams {
    pub tenant: Option<String>,
    /// `YYYY-MM`.
    pub mese: String,
    pub cooperativa: Option<String>,
    /// `json` (default) or `csv` (`;`-separated, decimal comma, for the bilancio office).
    pub format: Option<String>,
}

/// The liquidazione of a month per cooperative, as JSON or CSV.
#[utoipa::path(get, path = "/v1/adapters/coop/liquidazioni", tag = "cooperatives", params(LiquidazioneParams),
    responses((status = 200, body = [Liquidazione])), security(("bearer" = [])))]
pub async fn liquidazioni(
    State(app): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<LiquidazioneParams>,
) -> Result<Response, Problem> {
    let coop = coop(&app)?;
    if !caller.has(Role::Operator) && !caller.has(Role::Reader) {
        app.require(&caller, Role::Operator, "read the liquidazione").await?;
    }
    let tenant = tenant_of(&caller, q.tenant)?;
    app.require_tenant(&caller, &tenant, None).await?;
    let list = coop.liquidazioni(&tenant, &q.mese, q.cooperativa).await?;
    Ok(match q.format.as_deref() {
        Some("csv") => (
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"liquidazione-{tenant}-{}.csv\"", q.mese),
                ),
            ],
            crate::coop::liquidazioni_csv(&list),
        )
            .into_response(),
        None | Some("json") => Json(list).into_response(),
        Some(other) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "bad-format",
                "Unknown format",
                format!("format '{other}': use json or csv"),
            ))
        }
    })
}
