//! RFC 9457 problem details: every API error, one stable `type` URI per kind.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::contracts::FieldError;

/// Where problem type URIs start.
pub const TYPE_BASE: &str = "https://csi-gateway.invalid/problems/";

/// An `application/problem+json` body.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Every failing field, with its JSON pointer and the rule it breaks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<IndexedError>,
    /// Seconds to wait before retrying, sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// A field error, with the position of its event in a batch.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IndexedError {
    /// Position of the event in the batch (absent for a single event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    #[serde(flatten)]
    pub error: FieldError,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{TYPE_BASE}{kind}"),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    pub fn with_errors(mut self, index: Option<usize>, errors: Vec<FieldError>) -> Self {
        self.errors.extend(errors.into_iter().map(|error| IndexedError { index, error }));
        self
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Missing or unknown API key",
            "send 'Authorization: Bearer <api key>' with a key configured in [[clients]]",
        )
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Not ready", detail)
    }

    /// 503 with `Retry-After`.
    pub fn retry_later(detail: impl Into<String>, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..Self::unavailable(detail) }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/problem+json")], body).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        response
    }
}

/// Turns the error answers that the HTTP layer writes itself — a query string, path or JSON body
/// that does not fit its type, a body over the limit, a method the route does not have — into
/// problem details like every other error; the text they carry names the field and the rule.
///
/// An answer that is already typed (problem+json, or anything but plain text) passes unchanged.
pub async fn plain_errors_as_problems(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let content_type =
        response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let plain = content_type.is_empty() || content_type.starts_with("text/plain");
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (parts, body) = response.into_parts();
    // These texts are short (an extractor's message); a longer one is cut, not buffered whole.
    let text = match axum::body::to_bytes(body, 16 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_string(),
        Err(_) => String::new(),
    };
    let problem = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts.headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            Problem::new(
                status,
                "method-not-allowed",
                "Method not allowed",
                format!("{method} is not served on {path}; use {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => Problem::new(
            status,
            "too-large",
            "Request too large",
            format!("the body is over this endpoint's limit ({text})"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Problem::new(status, "unsupported-media-type", "Unsupported media type", text)
        }
        // A JSON body that parses but does not fit the request's type (a missing or mistyped
        // field) is a bad request like any other, not a refusal by a system behind the gateway.
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => {
            Problem::new(StatusCode::BAD_REQUEST, "bad-request", "Bad request", text)
        }
        _ => Problem::new(
            status,
            "http",
            status.canonical_reason().unwrap_or("Error"),
            if text.is_empty() { status.to_string() } else { text },
        ),
    };
    let mut answer = problem.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        answer.headers_mut().insert(header::ALLOW, allow.clone());
    }
    answer
}

impl From<crate::store::StoreError> for Problem {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        Problem::retry_later(
            format!("the store cannot take the request now ({e}); nothing was lost, retry later"),
            5,
        )
    }
}

impl From<crate::ingest::IngestError> for Problem {
    fn from(e: crate::ingest::IngestError) -> Self {
        use crate::ingest::IngestError;
        match e {
            IngestError::Malformed(errors) => {
                let detail = errors.first().map(|e| e.message.clone()).unwrap_or_default();
                Problem::new(StatusCode::BAD_REQUEST, "malformed", "Malformed request", detail)
                    .with_errors(None, errors)
            }
            e @ IngestError::BatchTooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch-too-large",
                "Batch too large",
                e.to_string(),
            ),
            IngestError::Forbidden(detail) => Problem::forbidden(detail),
            IngestError::Store(e) => e.into(),
            IngestError::Unconfirmed(why) => {
                tracing::warn!(error = %why, "accepted events not yet confirmed by the broker");
                Problem::retry_later(
                    format!(
                        "the events are stored but the message broker has not confirmed them ({why}); they will be \
                         delivered: send the same request again (same idempotency keys) to get their ids"
                    ),
                    5,
                )
            }
        }
    }
}
