//! End-to-end: the real binary, a loopback receiver, the embedded store.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn ids(v: &Value) -> Vec<String> {
    v["ids"].as_array().expect("ids").iter().map(|i| i.as_str().expect("id").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_event_is_delivered_signed_with_a_timeline() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;
    let (status, v) = gw.send(KEY_A, &prestazione(1, "F205")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = ids(&v).remove(0);
    let view = gw.wait_status(&id, "delivered", WAIT).await;
    let d = &view["deliveries"][0];
    assert_eq!(d["destination"], "cartella-vendor-a");
    assert_eq!(d["timeline"][0]["outcome"], "delivered");
    assert_eq!(rx.bad_signatures(), 0);
    assert_eq!(rx.delivered().get(&id), Some(&1), "webhook-id is the event id");
    let body = &rx.bodies()[0];
    assert_eq!(body["id"], json!(id));
    assert_eq!(body["sourceid"], "test-1", "the publisher's own id travels along");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_failing_half_the_calls_still_gets_everything() {
    let rx = Receiver::start(Mode::FlakyHalf).await;
    let gw = Gateway::start(&rx.url, "max_attempts = 20").await;
    let batch: Vec<Value> = (0..40).map(|n| prestazione(n, "F205")).collect();
    let (status, v) =
        gw.post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let sent: HashSet<String> = ids(&v).into_iter().collect();
    assert_eq!(sent.len(), 40);
    rx.wait_distinct(40, WAIT).await;
    let got: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert_eq!(got, sent);
    let (_, dl) = gw.get(KEY_A, "/v1/dead-letters").await;
    assert_eq!(dl.as_array().map(Vec::len), Some(0), "no dead letters: {dl}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_deliveries_become_dead_letters_and_replay_delivers_them_once() {
    let rx = Receiver::start(Mode::Reject).await;
    let gw = Gateway::start(&rx.url, "").await;
    let mut sent = Vec::new();
    for n in 0..3 {
        let (status, v) = gw.send(KEY_A, &prestazione(n, "F205")).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sent.extend(ids(&v));
    }
    for id in &sent {
        let view = gw.wait_status(id, "dead_lettered", WAIT).await;
        let err = view["deliveries"][0]["last_error"].as_str().unwrap_or_default().to_string();
        assert!(err.contains("400"), "last error names the status: {err}");
    }
    let (_, dl) = gw.get(KEY_A, "/v1/dead-letters?destination=cartella-vendor-a").await;
    let letters = dl.as_array().expect("list");
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["event"]["type"], PRESTAZIONE, "the original event is kept");
    // Listing them shows their events: each is a read in the audit log.
    let (_, reads) = gw.get(KEY_AUDITOR, "/v1/audit?action=read&limit=1000").await;
    let listed: HashSet<&str> = reads
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["detail"] == "dead letter listed" && r["actor"] == "vendor-a")
        .filter_map(|r| r["event_id"].as_str())
        .collect();
    assert_eq!(listed, sent.iter().map(String::as_str).collect::<HashSet<_>>(), "{reads}");

    // Fix the receiver, replay one by id, then the rest in bulk.
    rx.set_mode(Mode::Ok);
    let first = letters[0]["id"].as_i64().expect("dead letter id");
    // Another tenant's client is answered as for an id that does not exist; the attempt is audited.
    let (status, theirs) = gw.post_json(KEY_B, &format!("/v1/dead-letters/{first}/replay"), json!({})).await;
    let (_, unknown) = gw.post_json(KEY_B, "/v1/dead-letters/999999/replay", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{theirs}");
    assert_eq!(
        theirs["detail"].as_str().map(|d| d.replace(&first.to_string(), "N")),
        unknown["detail"].as_str().map(|d| d.replace("999999", "N"))
    );
    let (_, denied) = gw.get(KEY_AUDITOR, "/v1/audit?action=denied").await;
    assert!(denied.as_array().expect("records").iter().any(|r| r["actor"] == "vendor-b"), "{denied}");
    let (status, v) = gw.post_json(KEY_A, &format!("/v1/dead-letters/{first}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) =
        gw.post_json(KEY_A, "/v1/dead-letters/replay", json!({"destination": "cartella-vendor-a"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    let delivered = rx.delivered();
    for id in &sent {
        assert_eq!(delivered.get(id), Some(&1), "replayed event keeps its id and arrives once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_idempotency_key_returns_original_id() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;
    let ev = prestazione(7, "F205");
    let (_, first) = gw.send(KEY_A, &ev).await;
    let (status, second) = gw.send(KEY_A, &ev).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(ids(&first), ids(&second));
    // Without an idempotencykey, source + id identify the event (CloudEvents).
    let mut plain = prestazione(8, "F205");
    plain.as_object_mut().unwrap().remove("idempotencykey");
    let (_, a) = gw.send(KEY_A, &plain).await;
    let (_, b) = gw.send(KEY_A, &plain).await;
    assert_eq!(ids(&a), ids(&b));
    // Keys are unique per tenant and source: another tenant's client publishing the same key under
    // the same source gets its own event, neither the first one's id nor a refusal.
    let mut theirs = ev.clone();
    theirs["tenant"] = json!("B157");
    let (status, c) = gw.send(KEY_B, &theirs).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{c}");
    assert_ne!(ids(&c), ids(&first), "not a duplicate of another tenant's event");
    rx.wait_distinct(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.calls(), 3, "each event delivered once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_tenant_attempts_are_refused_and_audited() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;
    // vendor-a is bound to F205 only.
    let (status, v) = gw.send(KEY_A, &prestazione(1, "B157")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // vendor-b publishes for B157; vendor-a may not read it.
    let (status, v) = gw.send(KEY_B, &prestazione(2, "B157")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = ids(&v).remove(0);
    // Answered like an unknown event: the id tells vendor-a nothing of B157's events.
    let (status, v) = gw.get(KEY_A, &format!("/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert!(!v.to_string().contains("B157"), "{v}");
    let (status, _) = gw.get(KEY_B, &format!("/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    // No key, wrong key.
    let (status, _) = gw.get("nope", &format!("/v1/events/{id}")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The auditor sees both refusals and the read.
    let (status, audit) = gw.get(KEY_AUDITOR, "/v1/audit?action=denied").await;
    assert_eq!(status, StatusCode::OK);
    let denied = audit.as_array().expect("records");
    assert!(denied.iter().any(|r| r["actor"] == "vendor-a" && r["tenant"] == "B157"), "{audit}");
    assert!(denied.iter().any(|r| r["event_id"] == json!(id)), "{audit}");
    let (_, reads) = gw.get(KEY_AUDITOR, &format!("/v1/audit?action=read&event_id={id}")).await;
    assert_eq!(reads.as_array().map(Vec::len), Some(1), "{reads}");
    assert_eq!(reads[0]["actor"], "vendor-b");
    // A publisher without the auditor role cannot read the audit log.
    let (status, _) = gw.get(KEY_A, "/v1/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // An event for another tenant refuses the whole batch even when it is invalid too.
    let mut foreign = prestazione(3, "B157");
    foreign["data"].as_object_mut().unwrap().remove("codicePrestazione");
    let batch = serde_json::to_vec(&vec![prestazione(4, "F205"), foreign]).unwrap();
    let (status, v) = gw.post(KEY_A, "application/cloudevents-batch+json", batch).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    // Asking for another tenant's dead letters, or replaying them, is refused, not answered empty.
    let (status, v) = gw.get(KEY_A, "/v1/dead-letters?tenant=B157").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, v) = gw.post_json(KEY_A, "/v1/dead-letters/replay", json!({"tenant": "B157"})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (_, audit) = gw.get(KEY_AUDITOR, "/v1/audit?action=denied&tenant=B157").await;
    let by_a = audit.as_array().expect("records").iter().filter(|r| r["actor"] == "vendor-a").count();
    assert_eq!(by_a, 5, "the first send, the read, the batch, the list and the replay: {audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_problem_details_naming_field_and_rule() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;

    let (status, v) = gw.post(KEY_A, "application/cloudevents+json", "{not json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["rule"], "json", "{v}");

    let mut ev = prestazione(1, "F205");
    ev["data"]["beneficiario"]["codiceFiscale"] = json!("RSSMRA85T10A562T");
    ev["specversion"] = json!(1);
    let (status, v) = gw.send(KEY_A, &ev).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let errors = v["errors"].as_array().expect("errors");
    assert!(
        errors.iter().any(|e| e["pointer"] == "/data/beneficiario/codiceFiscale" && e["rule"] == "format"),
        "invalid check character reported at its pointer: {v}"
    );
    assert!(errors.iter().any(|e| e["pointer"] == "/specversion"), "every error is listed: {v}");

    let deep = "[".repeat(40) + &"]".repeat(40);
    let (status, v) = gw.post(KEY_A, "application/cloudevents-batch+json", deep).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["errors"][0]["rule"], "max_depth");

    let huge = vec![b' '; 300_000];
    let (status, v) = gw.post(KEY_A, "application/cloudevents+json", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");

    let (status, _) = gw.post(KEY_A, "text/plain", "hello").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Refused before any event was read, and still in the audit log.
    let (_, audit) = gw.get(KEY_AUDITOR, "/v1/audit?action=rejected").await;
    let details: Vec<&str> =
        audit.as_array().expect("records").iter().filter_map(|r| r["detail"].as_str()).collect();
    assert!(details.iter().any(|d| d.starts_with("415: Content-Type 'text/plain'")), "{audit}");
    assert!(details.iter().any(|d| d.starts_with("413: ")), "{audit}");

    // A string over the limit or holding a NUL costs its own event only, named by pointer.
    let mut nul = prestazione(5, "F205");
    nul["subject"] = json!("ab\u{0}cd");
    let mut long = prestazione(6, "F205");
    long["data"]["denominazione"] = json!("x".repeat(20_000));
    let batch = serde_json::to_vec(&vec![prestazione(7, "F205"), nul, long]).unwrap();
    let (status, v) = gw.post(KEY_A, "application/cloudevents-batch+json", batch).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{v}");
    assert_eq!(v["results"][0]["status"], "accepted", "{v}");
    assert_eq!(v["results"][1]["errors"][0]["pointer"], "/subject", "{v}");
    assert_eq!(v["results"][1]["errors"][0]["rule"], "nul_character", "{v}");
    assert_eq!(v["results"][2]["errors"][0]["pointer"], "/data/denominazione", "{v}");
    assert_eq!(v["results"][2]["errors"][0]["rule"], "max_string_chars", "{v}");

    // A batch keeps its good events and says which were rejected.
    let mut bad = prestazione(3, "F205");
    bad["data"].as_object_mut().unwrap().remove("codicePrestazione");
    let batch = vec![prestazione(2, "F205"), bad];
    let (status, v) =
        gw.post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch).unwrap()).await;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{v}");
    assert!(v["ids"][0].is_string() && v["ids"][1].is_null(), "{v}");
    assert_eq!(v["results"][1]["status"], "rejected");
    assert_eq!(v["results"][1]["errors"][0]["rule"], "required");

    // The CLI's validate gives the API's errors.
    let file = gw.dir.path().join("bad.json");
    std::fs::write(&file, serde_json::to_vec(&ev).unwrap()).unwrap();
    let out =
        std::process::Command::new(bin()).args(["validate", &file.display().to_string()]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("validate prints JSON");
    let pointers = |v: &Value| -> HashSet<String> {
        v.as_array().unwrap().iter().map(|e| format!("{}|{}", e["pointer"], e["rule"])).collect()
    };
    assert_eq!(pointers(&report["errors"]), pointers(&Value::Array(errors.clone())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_the_http_layer_are_problem_details_naming_the_field() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;
    // A query parameter of the wrong type, an unknown one, a path id that is not a number.
    let (status, v) = gw.get(KEY_AUDITOR, "/v1/audit?limit=many").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("limit")), "{v}");
    let (status, v) = gw.get(KEY_AUDITOR, "/v1/audit?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("colour")), "{v}");
    let (status, v) = gw.post_json(KEY_AUDITOR, "/v1/dead-letters/abc/replay", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // A JSON body missing a field it needs: 400 naming it (not 422).
    let (status, v) = gw.post_json(KEY_A, "/v1/adapters/coop/chiusure", json!({"tenant": "F205"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("mese")), "{v}");
    // A method the route does not serve says which it does.
    let r =
        reqwest::Client::new().get(format!("{}/v1/events", gw.base)).bearer_auth(KEY_A).send().await.unwrap();
    assert_eq!(r.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    let (status, v) = common::answer(r).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("GET is not served on /v1/events")), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing() {
    let rx = Receiver::start(Mode::Slow(30)).await;
    let mut gw = Gateway::start(&rx.url, "concurrency = 4").await;
    let mut sent = HashSet::new();
    for chunk in 0..4 {
        let batch: Vec<Value> = (0..50).map(|n| prestazione(chunk * 50 + n, "F205")).collect();
        let (status, v) =
            gw.post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sent.extend(ids(&v));
    }
    // Some deliveries are done, some in flight, most waiting.
    while rx.delivered().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.kill9_and_restart().await;
    rx.wait_distinct(200, Duration::from_secs(60)).await;
    let got: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert_eq!(got, sent, "every accepted event arrives after a crash");
    for id in sent.iter().take(5) {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_audit_log_is_detected_with_its_position() {
    let rx = Receiver::start(Mode::Ok).await;
    let mut gw = Gateway::start(&rx.url, "").await;
    let mut sent = Vec::new();
    for n in 0..3 {
        let (_, v) = gw.send(KEY_A, &prestazione(n, "F205")).await;
        sent.extend(ids(&v));
    }
    rx.wait_distinct(3, WAIT).await;
    // The receiver sees the request before the gateway records the outcome.
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    let total = v["records"].as_i64().expect("count");
    assert!(total >= 9, "received, accepted, delivered per event: {v}");

    gw.child.kill().unwrap();
    let _ = gw.child.wait();
    let db = gw.data_dir().join("gateway.db");
    let verify = || {
        let out = std::process::Command::new(bin())
            .args(["--config", &gw.config_path.display().to_string(), "audit", "verify"])
            .output()
            .unwrap();
        (out.status.code(), serde_json::from_slice::<Value>(&out.stdout).unwrap_or(Value::Null))
    };
    assert_eq!(verify().0, Some(0));

    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 4", []).unwrap();
    let (code, v) = verify();
    assert_eq!(code, Some(1));
    assert_eq!(v["problem"]["position"], 4, "{v}");
    assert_eq!(v["problem"]["kind"], "modified");

    conn.execute("UPDATE audit SET actor = (SELECT actor FROM audit WHERE seq = 3) WHERE seq = 4", []).ok();
    conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let (code, v) = verify();
    assert_eq!(code, Some(1));
    assert_eq!(v["problem"]["position"], 3, "first record after the gap: {v}");

    // The gateway's own endpoint reports the same.
    drop(conn);
    gw.kill9_and_restart().await;
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operational_endpoints_answer() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;
    let (_, v) = gw.send(KEY_A, &prestazione(1, "F205")).await;
    gw.wait_status(&ids(&v)[0], "delivered", WAIT).await;
    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("csi_gateway_events_accepted_total 1"), "{metrics}");
    assert!(
        metrics.contains("csi_gateway_deliveries_total{destination=\"cartella-vendor-a\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("csi_gateway_accept_latency_seconds_bucket"));
    let api: Value =
        gw.http.get(format!("{}/openapi.json", gw.base)).send().await.unwrap().json().await.unwrap();
    for path in [
        "/v1/events",
        "/v1/events/{id}",
        "/v1/dead-letters",
        "/v1/dead-letters/{id}/replay",
        "/v1/audit/verify",
    ] {
        assert!(api["paths"].get(path).is_some(), "openapi documents {path}");
    }
    let (status, list) = gw.get(KEY_A, "/contracts").await;
    assert_eq!(status, StatusCode::OK);
    assert!(list.as_array().unwrap().iter().any(|c| c["event_type"] == PRESTAZIONE));
    let (status, schema) = gw.get(KEY_A, &format!("/contracts/events/{PRESTAZIONE}.schema.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema");
}
