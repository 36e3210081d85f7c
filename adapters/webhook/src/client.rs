//! The transport: one pooled HTTP client, one signed POST per attempt.

use std::error::Error as _;
use std::fmt;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use csi_gateway_sdk::{BoxFuture, Delivered, DeliveryError, Outbound, OutboundEvent};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use reqwest::{redirect, Client, Response, Url};
use tracing::Instrument as _;

use crate::classify::{classify_response, MAX_ERROR_BODY_BYTES};
use crate::config::{redact_url, ConfigError, WebhookConfig};
use crate::sign::{decode_secret, sign};

const KIND: &str = "webhook";
const CONTENT_TYPE_CLOUDEVENTS: &str = "application/cloudevents+json";
const HEADER_WEBHOOK_ID: &str = "webhook-id";
const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";
const HEADER_IDEMPOTENCY_KEY: &str = "idempotency-key";
const HEADER_ATTEMPT: &str = "x-csi-attempt";

/// Headers this adapter sets itself; static config headers may not replace them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    HEADER_WEBHOOK_ID,
    HEADER_WEBHOOK_TIMESTAMP,
    HEADER_WEBHOOK_SIGNATURE,
    HEADER_IDEMPOTENCY_KEY,
    HEADER_ATTEMPT,
];

/// How long an idle pooled connection is kept for the next attempt.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// An outbound webhook destination: validated config plus one pooled HTTP client.
///
/// Cheap to share (`Arc<WebhookSink>` or `Arc<dyn Outbound>`) and safe to call concurrently.
/// Each [`deliver`](Outbound::deliver) makes exactly one POST, never follows redirects, and is
/// bounded by the configured timeouts.
pub struct WebhookSink {
    client: Client,
    url: Url,
    key: Vec<u8>,
    headers: HeaderMap,
    /// `host:port`, the only part of the URL that goes into failure reasons.
    target: String,
    timeout_ms: u64,
    connect_timeout_ms: u64,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("url", &redact_url(self.url.as_str()))
            .field("key", &"<redacted>")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// Validates `config` and builds the HTTP client.
    ///
    /// Fails with [`ConfigError::Invalid`] naming the field (`url`, `secret`, `timeout_ms`,
    /// `connect_timeout_ms`, `headers.<name>`) and the rule it breaks.
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        let url = Url::parse(config.url.trim()).map_err(|err| {
            ConfigError::invalid("url", format!("must be an absolute http or https URL ({err})"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::invalid(
                "url",
                format!("must be an absolute http or https URL (the scheme is `{}`)", url.scheme()),
            ));
        }
        let host = url.host_str().ok_or_else(|| ConfigError::invalid("url", "must name a host"))?;
        let target = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };

        let key =
            decode_secret(&config.secret).map_err(|err| ConfigError::invalid("secret", err.to_string()))?;

        if config.timeout_ms == 0 {
            return Err(ConfigError::invalid("timeout_ms", "must be greater than zero"));
        }
        if config.connect_timeout_ms == 0 {
            return Err(ConfigError::invalid("connect_timeout_ms", "must be greater than zero"));
        }

        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            let field = format!("headers.{name}");
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| ConfigError::invalid(&field, "must be a valid HTTP header name"))?;
            if RESERVED_HEADERS.contains(&header_name.as_str()) {
                return Err(ConfigError::invalid(
                    &field,
                    "is set by the webhook adapter itself and cannot be configured",
                ));
            }
            let header_value = HeaderValue::from_str(value).map_err(|_| {
                ConfigError::invalid(&field, "must be a valid HTTP header value (visible ASCII)")
            })?;
            headers.insert(header_name, header_value);
        }

        let client = Client::builder()
            .redirect(redirect::Policy::none())
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .timeout(Duration::from_millis(config.timeout_ms))
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build()
            .map_err(ConfigError::Client)?;

        Ok(Self {
            client,
            url,
            key,
            headers,
            target,
            timeout_ms: config.timeout_ms,
            connect_timeout_ms: config.connect_timeout_ms,
        })
    }

    async fn deliver_once(&self, event: &OutboundEvent) -> Result<Delivered, DeliveryError> {
        let webhook_id = header_value(&event.id, "the event id", HEADER_WEBHOOK_ID)?;
        let timestamp = unix_seconds(SystemTime::now());
        let signature = sign(&self.key, &event.id, timestamp, &event.body);

        let mut request = self
            .client
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(USER_AGENT, concat!("csi-gateway-webhook/", env!("CARGO_PKG_VERSION")))
            .header(CONTENT_TYPE, CONTENT_TYPE_CLOUDEVENTS)
            .header(HEADER_WEBHOOK_ID, webhook_id)
            .header(HEADER_WEBHOOK_TIMESTAMP, timestamp)
            .header(HEADER_WEBHOOK_SIGNATURE, signature)
            .header(HEADER_ATTEMPT, event.attempt);
        if let Some(key) = &event.idempotency_key {
            let value = header_value(key, "the idempotency key", HEADER_IDEMPOTENCY_KEY)?;
            request = request.header(HEADER_IDEMPOTENCY_KEY, value);
        }

        let response =
            request.body(event.body.clone()).send().await.map_err(|err| self.transport_error(&err))?;

        let status = response.status();
        let headers = response.headers().clone();
        // A success is known from its status: its body is not waited for (a receiver that keeps
        // it open would hold the attempt until the timeout).
        let body =
            if status.is_success() { Vec::new() } else { read_prefix(response, MAX_ERROR_BODY_BYTES).await };
        classify_response(status, &headers, &body, SystemTime::now())
    }

    /// Classifies a failure before an HTTP answer arrived. Everything here is transient except
    /// a request that could not be built; reasons name `host:port` only, never the payload.
    fn transport_error(&self, err: &reqwest::Error) -> DeliveryError {
        let target = &self.target;
        if err.is_builder() {
            return DeliveryError::permanent(format!(
                "could not build the request to {target}: {}",
                root_cause(err)
            ));
        }
        let reason = if err.is_timeout() {
            if err.is_connect() {
                format!("connecting to {target} timed out after {} ms", self.connect_timeout_ms)
            } else {
                format!("timed out after {} ms waiting for {target}", self.timeout_ms)
            }
        } else if err.is_dns() {
            format!("could not resolve {target}: {}", root_cause(err))
        } else if err.is_connect() {
            match io_error_kind(err) {
                Some(io::ErrorKind::ConnectionRefused) => {
                    format!("connection refused by {target}")
                }
                _ => format!("could not connect to {target}: {}", root_cause(err)),
            }
        } else if err.is_body() {
            format!("sending the body to {target} failed: {}", root_cause(err))
        } else {
            format!("request to {target} failed: {}", root_cause(err))
        };
        DeliveryError::transient(reason)
    }
}

impl Outbound for WebhookSink {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn deliver<'a>(&'a self, event: &'a OutboundEvent) -> BoxFuture<'a, Result<Delivered, DeliveryError>> {
        let span = tracing::debug_span!(
            "webhook.deliver",
            adapter = KIND,
            event.id = %event.id,
            tenant = %event.tenant,
            attempt = event.attempt,
        );
        Box::pin(
            async move {
                let outcome = self.deliver_once(event).await;
                match &outcome {
                    Ok(delivered) => tracing::debug!(detail = %delivered.detail, "delivered"),
                    Err(err) => tracing::debug!(
                        transient = err.is_transient(),
                        reason = %err.reason(),
                        "delivery failed"
                    ),
                }
                outcome
            }
            .instrument(span),
        )
    }
}

/// An event field as a header value; a value HTTP cannot carry fails the same way every time.
fn header_value(value: &str, what: &str, header: &str) -> Result<HeaderValue, DeliveryError> {
    HeaderValue::from_str(value).map_err(|_| {
        DeliveryError::permanent(format!(
            "{what} cannot be sent as the `{header}` header: it holds characters HTTP headers \
             do not allow"
        ))
    })
}

/// Reads at most `limit` bytes of the response body. A body that fails midway yields what
/// arrived: the status has already decided the outcome.
async fn read_prefix(mut response: Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = chunk.len().min(limit - body.len());
                body.extend_from_slice(&chunk[..take]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

fn unix_seconds(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The innermost error in the chain: the OS or protocol reason, without reqwest's wrapper text
/// (which would repeat the full URL, query string included).
fn root_cause(err: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if std::ptr::addr_eq(cause, err) {
        return "unknown error".to_owned();
    }
    cause.to_string()
}

fn io_error_kind(err: &reqwest::Error) -> Option<io::ErrorKind> {
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io_err) = cause.downcast_ref::<io::Error>() {
            return Some(io_err.kind());
        }
        source = cause.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(config: WebhookConfig) -> String {
        WebhookSink::new(config).unwrap_err().field().unwrap().to_owned()
    }

    #[test]
    fn invalid_urls_name_the_url_field() {
        for url in ["", "not a url", "/relative/path", "ftp://ente.example/", "file:///etc/passwd"] {
            let err = WebhookSink::new(WebhookConfig::new(url, "k")).unwrap_err();
            assert_eq!(err.field(), Some("url"), "{url}: {err}");
            assert!(err.to_string().contains("http or https"), "{err}");
        }
    }

    #[test]
    fn bad_secrets_name_the_secret_field_without_echoing_it() {
        let err =
            WebhookSink::new(WebhookConfig::new("https://ente.example/", "whsec_!!!secret-ish")).unwrap_err();
        assert_eq!(err.field(), Some("secret"));
        assert!(!err.to_string().contains("secret-ish"), "{err}");
        assert_eq!(field_of(WebhookConfig::new("https://ente.example/", "")), "secret");
    }

    #[test]
    fn zero_timeouts_and_bad_or_reserved_headers_are_rejected() {
        let base = || WebhookConfig::new("https://ente.example/", "k");
        assert_eq!(field_of(base().with_timeout_ms(0)), "timeout_ms");
        assert_eq!(field_of(base().with_connect_timeout_ms(0)), "connect_timeout_ms");
        assert_eq!(field_of(base().with_header("bad name", "x")), "headers.bad name");
        assert_eq!(field_of(base().with_header("X-Ok", "line\nbreak")), "headers.X-Ok");
        assert_eq!(
            field_of(base().with_header("Webhook-Signature", "v1,forged")),
            "headers.Webhook-Signature"
        );
        assert_eq!(field_of(base().with_header("Content-Type", "text/plain")), "headers.Content-Type");
    }

    #[test]
    fn valid_config_builds_and_debug_hides_the_key() {
        let sink = WebhookSink::new(
            WebhookConfig::new("http://127.0.0.1:9/hook", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .with_header("X-Channel", "csi"),
        )
        .unwrap();
        assert_eq!(sink.kind(), "webhook");
        assert_eq!(sink.target, "127.0.0.1:9");
        let shown = format!("{sink:?}");
        assert!(!shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{shown}");
    }

    #[test]
    fn unix_seconds_never_goes_negative() {
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(42)), 42);
    }
}
