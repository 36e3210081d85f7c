//! The webhook adapter against a loopback HTTP server standing in for a receiver.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use csi_gateway_sdk::{DeliveryError, Outbound, OutboundEvent};
use csi_gateway_webhook::{decode_secret, verify, ConfigError, WebhookConfig, WebhookSink};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Bytes)>>>);

async fn accept(State(received): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    received.0.lock().unwrap().push((headers, body));
    StatusCode::ACCEPTED
}

async fn busy() -> impl IntoResponse {
    (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "7")], "maintenance")
}

async fn bad_request() -> impl IntoResponse {
    (StatusCode::BAD_REQUEST, "{\"error\":\n  \"missing field subject\"}")
}

async fn moved() -> impl IntoResponse {
    (StatusCode::MOVED_PERMANENTLY, [("location", "/ok")], "")
}

async fn slow() -> StatusCode {
    tokio::time::sleep(Duration::from_secs(5)).await;
    StatusCode::OK
}

/// Starts the simulated receiver on an ephemeral loopback port; returns its base URL.
async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = Router::new()
        .route("/ok", post(accept))
        .route("/busy", post(busy))
        .route("/bad", post(bad_request))
        .route("/moved", post(moved))
        .route("/slow", post(slow))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), received)
}

fn event() -> OutboundEvent {
    OutboundEvent {
        id: "01J9Z3V8Q6M2Y7C5T4K1N0P8R2".to_owned(),
        event_type: "it.lombardia.csi.prestazione.erogata.v1".to_owned(),
        tenant: "F205".to_owned(),
        idempotency_key: Some("pub-42".to_owned()),
        // Deliberately odd spacing and key order: it must arrive byte for byte.
        body: Bytes::from_static(
            br#"{"specversion":"1.0", "id":"01J9Z3V8Q6M2Y7C5T4K1N0P8R2","type":"it.lombardia.csi.prestazione.erogata.v1","source":"/csi","data":{"z":1,"a":"\u00e8"}}"#,
        ),
        attempt: 3,
    }
}

fn sink(url: String) -> WebhookSink {
    WebhookSink::new(WebhookConfig::new(url, SECRET).with_header("X-Channel", "csi")).unwrap()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).unwrap().to_str().unwrap()
}

#[tokio::test]
async fn delivery_arrives_byte_identical_and_verifiably_signed() {
    let (base, received) = receiver().await;
    let sink = sink(format!("{base}/ok"));
    let event = event();

    let delivered = sink.deliver(&event).await.unwrap();
    assert_eq!(delivered.detail, "HTTP 202");

    let received = received.0.lock().unwrap();
    assert_eq!(received.len(), 1);
    let (headers, body) = &received[0];
    assert_eq!(body, &event.body);
    assert_eq!(header(headers, "content-type"), "application/cloudevents+json");
    assert_eq!(header(headers, "webhook-id"), event.id);
    assert_eq!(header(headers, "idempotency-key"), "pub-42");
    assert_eq!(header(headers, "x-csi-attempt"), "3");
    assert_eq!(header(headers, "x-channel"), "csi");

    let timestamp: i64 = header(headers, "webhook-timestamp").parse().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - timestamp).abs() < 60, "timestamp {timestamp} vs now {now}");

    let key = decode_secret(SECRET).unwrap();
    let signature = header(headers, "webhook-signature");
    assert!(signature.starts_with("v1,"), "{signature}");
    assert_eq!(verify(&key, &event.id, timestamp, body, signature), Ok(()));
    assert!(verify(b"wrong key", &event.id, timestamp, body, signature).is_err());
}

#[tokio::test]
async fn idempotency_key_header_is_omitted_when_absent() {
    let (base, received) = receiver().await;
    let sink = sink(format!("{base}/ok"));
    let event = OutboundEvent { idempotency_key: None, attempt: 1, ..event() };
    sink.deliver(&event).await.unwrap();
    let received = received.0.lock().unwrap();
    let (headers, _) = &received[0];
    assert!(headers.get("idempotency-key").is_none());
    assert_eq!(header(headers, "x-csi-attempt"), "1");
}

#[tokio::test]
async fn service_unavailable_with_retry_after_is_transient_with_the_hint() {
    let (base, _) = receiver().await;
    let err = sink(format!("{base}/busy")).deliver(&event()).await.unwrap_err();
    assert_eq!(
        err,
        DeliveryError::Transient {
            reason: "HTTP 503 Service Unavailable: maintenance".to_owned(),
            retry_after: Some(Duration::from_secs(7)),
        }
    );
}

#[tokio::test]
async fn bad_request_is_permanent_with_status_and_body_on_one_line() {
    let (base, _) = receiver().await;
    let err = sink(format!("{base}/bad")).deliver(&event()).await.unwrap_err();
    assert_eq!(err, DeliveryError::permanent("HTTP 400 Bad Request: {\"error\": \"missing field subject\"}"));
}

#[tokio::test]
async fn connection_refused_is_transient_and_names_the_target() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);

    let err = sink(format!("http://{addr}/hook?token=do-not-log")).deliver(&event()).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.reason(), format!("connection refused by {addr}"));
}

#[tokio::test]
async fn slow_receiver_times_out_as_transient() {
    let (base, _) = receiver().await;
    let sink =
        WebhookSink::new(WebhookConfig::new(format!("{base}/slow"), SECRET).with_timeout_ms(300)).unwrap();
    let started = std::time::Instant::now();
    let err = sink.deliver(&event()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(err.is_transient(), "{err:?}");
    assert!(err.reason().contains("timed out after 300 ms"), "{err:?}");
}

#[tokio::test]
async fn redirect_is_not_followed_and_is_permanent() {
    let (base, received) = receiver().await;
    let err = sink(format!("{base}/moved")).deliver(&event()).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert!(err.reason().starts_with("HTTP 301 Moved Permanently"), "{err:?}");
    assert!(received.0.lock().unwrap().is_empty(), "the redirect was followed");
}

#[tokio::test]
async fn reasons_never_contain_payload_or_secret() {
    let (base, _) = receiver().await;
    for path in ["busy", "bad", "moved"] {
        let err = sink(format!("{base}/{path}")).deliver(&event()).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("prestazione"), "{shown}");
        assert!(!shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{shown}");
    }
}

#[test]
fn invalid_url_and_bad_secret_are_config_errors_naming_the_field() {
    let err = WebhookSink::new(WebhookConfig::new("ftp://ente.example/", SECRET)).unwrap_err();
    assert!(matches!(&err, ConfigError::Invalid { field, .. } if field == "url"), "{err}");
    assert!(err.to_string().contains("`url`"), "{err}");

    let err = WebhookSink::new(WebhookConfig::new("no scheme", SECRET)).unwrap_err();
    assert_eq!(err.field(), Some("url"), "{err}");

    let err = WebhookSink::new(WebhookConfig::new("https://ente.example/", "whsec_%%%")).unwrap_err();
    assert_eq!(err.field(), Some("secret"), "{err}");
    assert!(err.to_string().contains("`secret`"), "{err}");
}

#[test]
fn config_debug_never_shows_the_secret() {
    let config = WebhookConfig::new("https://ente.example/hook", SECRET);
    let shown = format!("{config:?} {config:#?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "{shown}");
}

#[test]
fn config_deserializes_with_defaults_and_rejects_unknown_fields() {
    let config: WebhookConfig = serde_json::from_value(serde_json::json!({
        "url": "https://ente.example/hook",
        "secret": SECRET,
    }))
    .unwrap();
    assert_eq!(config, WebhookConfig::new("https://ente.example/hook", SECRET));
    assert_eq!(config.timeout_ms, 10_000);
    assert_eq!(config.connect_timeout_ms, 3_000);
    assert!(config.headers.is_empty());

    let config: WebhookConfig = serde_json::from_value(serde_json::json!({
        "url": "https://ente.example/hook",
        "secret": SECRET,
        "timeout_ms": 500,
        "connect_timeout_ms": 200,
        "headers": { "X-Channel": "csi" },
    }))
    .unwrap();
    assert_eq!(
        config,
        WebhookConfig::new("https://ente.example/hook", SECRET)
            .with_timeout_ms(500)
            .with_connect_timeout_ms(200)
            .with_header("X-Channel", "csi")
    );

    let err = serde_json::from_value::<WebhookConfig>(serde_json::json!({
        "url": "https://ente.example/hook",
        "secret": SECRET,
        "max_attempts": 5,
    }))
    .unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
}
