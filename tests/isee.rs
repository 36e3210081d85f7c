//! The ISEE adapter end to end: the real binary asks a loopback PDND + INPS `SvcConsultazione`
//! and publishes what INPS answered as an `isee.acquisito` event.

mod common;
#[path = "../adapters/isee/tests/common/mod.rs"]
mod inps;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;

const ISEE: &str = "it.lombardia.csi.isee.acquisito.v1";
const WAIT: Duration = Duration::from_secs(20);

fn isee_config(sim: &inps::Simulator) -> String {
    let key = repo().join("adapters/isee/tests/fixtures/pdnd-client.key.pem");
    format!(
        r#"
[[routes]]
types = ["{ISEE}"]
tenants = ["*"]
to = ["cartella-vendor-a"]

[isee]
endpoint = "{endpoint}"
user_id = "{user}"
codice_ufficio = "{ufficio}"
timeout_ms = 2000

[isee.pdnd]
token_url = "{token}"
client_id = "{client}"
audience = "{aud}"
purpose_id = "{purpose}"
kid = "{kid}"
private_key_file = "{key}"
"#,
        endpoint = sim.endpoint(),
        user = inps::USER_ID,
        ufficio = inps::CODICE_UFFICIO,
        token = sim.token_url(),
        client = inps::CLIENT_ID,
        aud = inps::AUDIENCE,
        purpose = inps::PURPOSE_ID,
        kid = inps::KID,
        key = key.display(),
    )
}

fn richiesta(cf: &str) -> Value {
    json!({
        "codiceFiscale": cf,
        "pseudonimo": "ass-5d7a1b68",
        "prestazione": "A1.01",
        "protocolloDomanda": "PG-2026-0004211",
        "dataValidita": "2025-03-04",
    })
}

const PATH: &str = "/v1/adapters/isee/consultazioni";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_becomes_one_event_without_the_codice_fiscale() {
    attestation_becomes_one_event("").await;
}

/// The same in cluster mode (PostgreSQL store and queue).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_becomes_one_event_in_cluster_mode() {
    let db = PgDb::create().await;
    attestation_becomes_one_event(&db.store_config()).await;
}

async fn attestation_becomes_one_event(store: &str) {
    let sim = inps::start().await;
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &format!("{}{store}", isee_config(&sim))).await;

    let (status, v) = gw.post_json(KEY_A, PATH, richiesta(inps::CF_OK)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["esito"], "OK");
    assert_eq!(v["origine"], "inps");
    assert_eq!(v["duplicate"], false);
    let id = v["event_id"].as_str().expect("event id").to_string();
    assert!(v["data"]["protocolloDSU"].as_str().unwrap().starts_with("INPS-ISEE-"), "{v}");
    assert_eq!(v["data"]["beneficiario"]["pseudonimo"], "ass-5d7a1b68");

    gw.wait_status(&id, "delivered", WAIT).await;
    let delivered: Vec<Value> = rx.bodies().into_iter().filter(|b| b["type"] == ISEE).collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0]["subject"], "ass-5d7a1b68");
    assert_eq!(delivered[0]["tenant"], "F205");
    assert!(!delivered[0].to_string().contains(inps::CF_OK), "the codice fiscale never leaves for INPS only");

    // The same attestation asked again is the same fact: same event, nothing new delivered.
    let (status, again) = gw.post_json(KEY_A, PATH, richiesta(inps::CF_OK)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["event_id"], id.as_str());
    assert_eq!(again["duplicate"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.bodies().iter().filter(|b| b["type"] == ISEE).count(), 1);
    // One voucher served both calls.
    assert_eq!(sim.sim.token_calls(), 1);

    let metrics = gw.http.get(format!("{}/metrics", gw.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("csi_gateway_isee_consultations_total{esito=\"OK\"} 2"), "{metrics}");
    let (_, audit) = gw.get(KEY_AUDITOR, "/v1/audit?limit=1000").await;
    assert!(!audit.to_string().contains(inps::CF_OK), "no codice fiscale in the audit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_esito_gets_a_clear_answer() {
    let sim = inps::start().await;
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &isee_config(&sim)).await;

    let (status, v) = gw.post_json(KEY_A, PATH, richiesta(inps::CF_NON_TROVATI)).await;
    assert_eq!(status, StatusCode::OK, "no attestation is an answer: {v}");
    assert_eq!(v["esito"], "DATI_NON_TROVATI");
    assert!(v.get("event_id").is_none());

    let (status, v) = gw.post_json(KEY_A, PATH, richiesta(inps::CF_INVALIDA)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("RICHIESTA_INVALIDA"), "{v}");

    let r = gw.http.post(format!("{}{PATH}", gw.base)).bearer_auth(KEY_A).json(&richiesta(inps::CF_OFFLINE));
    let resp = r.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().get("retry-after").is_some());
    let v: Value = resp.json().await.unwrap();
    assert!(v["detail"].as_str().unwrap().contains("DATABASE_OFFLINE"), "{v}");

    let (status, v) = gw.post_json(KEY_A, PATH, richiesta(inps::CF_PROTOCOLLO)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a protocollo DSU off its pattern: {v}");
    assert!(v["detail"].as_str().unwrap().contains("NumeroProtocolloDSU"), "{v}");
    assert!(!v.to_string().contains(inps::CF_PROTOCOLLO), "no codice fiscale in errors");
    assert_eq!(rx.calls(), 0, "nothing published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_foreign_tenants_never_reach_inps() {
    let sim = inps::start().await;
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &isee_config(&sim)).await;

    let mut bad = richiesta("RSSMRA85T10A562X");
    bad["prestazione"] = json!("B9.99");
    let (status, v) = gw.post_json(KEY_A, PATH, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let pointers: Vec<&str> =
        v["errors"].as_array().unwrap().iter().filter_map(|e| e["pointer"].as_str()).collect();
    assert!(pointers.contains(&"/codiceFiscale"), "{v}");
    assert!(pointers.contains(&"/prestazione"), "{v}");
    // A pseudonimo that is a codice fiscale, or a field missing: 400 naming it, INPS not asked.
    let mut cf_as_pseudonimo = richiesta(inps::CF_OK);
    cf_as_pseudonimo["pseudonimo"] = json!(inps::CF_OK);
    let (status, v) = gw.post_json(KEY_A, PATH, cf_as_pseudonimo).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["errors"][0]["pointer"], "/pseudonimo", "{v}");
    let mut missing = richiesta(inps::CF_OK);
    missing.as_object_mut().unwrap().remove("pseudonimo");
    let (status, v) = gw.post_json(KEY_A, PATH, missing).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("pseudonimo"), "{v}");

    let mut foreign = richiesta(inps::CF_OK);
    foreign["tenant"] = json!("F205");
    let (status, v) = gw.post_json(KEY_B, PATH, foreign).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{v}");
    let (status, _) = gw.post_json("not-a-key", PATH, richiesta(inps::CF_OK)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    assert_eq!(sim.sim.soap_calls(), 0);
    let (_, audit) = gw.get(KEY_AUDITOR, "/v1/audit?action=denied").await;
    assert!(audit.as_array().unwrap().iter().any(|r| r["actor"] == "vendor-b"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_isee_config_the_endpoint_is_absent() {
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start(&rx.url, "").await;
    let (status, v) = gw.post_json(KEY_A, PATH, richiesta(inps::CF_OK)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
}
