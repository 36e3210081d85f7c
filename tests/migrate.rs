//! `csi-gateway migrate --from sqlite://... --to postgres://...`: an embedded installation built by
//! the real binary moves to cluster mode with its history and audit chain intact. Needs a real
//! PostgreSQL (`CSI_GATEWAY_TEST_POSTGRES`); each test has a database of its own.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use csi_gateway::store::sqlite::SqliteStore;
use csi_gateway::store::{Queue, Store};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// Tables copied by the move, compared row for row by count.
const TABLES: &[&str] = &[
    "events",
    "idempotency",
    "deliveries",
    "attempts",
    "audit",
    "progetti",
    "coop_deliveries",
    "coop_uploads",
    "coop_upload_rows",
    "persone",
    "valutazioni_sina",
    "siuss_flussi",
    "siuss_progressivi",
    "siuss_prestazioni",
];

fn ids(v: &Value) -> Vec<String> {
    v["ids"].as_array().expect("ids").iter().map(|i| i.as_str().expect("id").to_string()).collect()
}

fn sqlite_counts(db: &std::path::Path) -> HashMap<String, i64> {
    let conn = rusqlite::Connection::open(db).expect("open source");
    TABLES
        .iter()
        .map(|t| {
            let n = conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| r.get(0)).expect("count");
            (t.to_string(), n)
        })
        .collect()
}

async fn pg_counts(db: &PgDb) -> HashMap<String, i64> {
    let pg = db.client().await;
    let mut out = HashMap::new();
    for t in TABLES {
        let n: i64 = pg.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[]).await.expect("count").get(0);
        out.insert(t.to_string(), n);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_installation_moves_to_postgres_with_history_and_audit_chain() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::FlakyHalf).await;

    // An embedded installation with history: deliveries after retries, read models, a dead letter.
    let mut sqlite = Gateway::start(&rx.url, "max_attempts = 20").await;
    let batch: Vec<Value> = (0..4).map(|n| prestazione(n, "F205")).collect();
    let (status, v) =
        sqlite.post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch).unwrap()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let delivered = ids(&v);
    for (n, t) in ["persona.registrata", "progetto.approvato", "valutazione.registrata"].iter().enumerate() {
        let mut ev = example(&format!("it.lombardia.csi.{t}.v1"));
        ev["id"] = json!(format!("model-{n}"));
        ev["tenant"] = json!("F205");
        let (status, v) = sqlite.send(KEY_A, &ev).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{t}: {v}");
    }
    for id in &delivered {
        sqlite.wait_status(id, "delivered", WAIT).await;
    }
    rx.set_mode(Mode::Reject);
    let (_, v) = sqlite.send(KEY_A, &prestazione(10, "F205")).await;
    let dead = ids(&v).remove(0);
    sqlite.wait_status(&dead, "dead_lettered", WAIT).await;
    let mut before = HashMap::new();
    for id in delivered.iter().chain([&dead]) {
        let (_, view) = sqlite.get(KEY_A, &format!("/v1/events/{id}")).await;
        before.insert(id.clone(), view);
    }
    sqlite.stop();
    let source = sqlite.data_dir().join("gateway.db");
    let (code, out, err) = sqlite.cli(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let records = serde_json::from_str::<Value>(&out).expect("json")["records"].as_i64().expect("records");
    let counts = sqlite_counts(&source);
    assert!(counts["persone"] >= 1 && counts["progetti"] >= 1, "read models to move: {counts:?}");

    // The move.
    let from = format!("sqlite://{}", sqlite.data_dir().display());
    let (code, out, err) = cli(&["migrate", "--from", &from, "--to", &db.url]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("audit chain verified ({records} records)")), "{out}");
    assert_eq!(pg_counts(&db).await, counts, "every table copied whole");

    // A second move into the same database is refused, and changes nothing.
    let (code, out, err) = cli(&["migrate", "--from", &from, "--to", &db.url]);
    assert_eq!(code, Some(2), "{out}{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(pg_counts(&db).await, counts);

    // The same installation in cluster mode.
    rx.set_mode(Mode::Ok);
    let pg = Gateway::start_pg(&rx.url, "", &db).await;
    let (code, out, err) = pg.cli(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["records"].as_i64(), Some(records), "the same audit records: {v}");
    for (id, view) in &before {
        let (status, now) = pg.get(KEY_A, &format!("/v1/events/{id}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(now["status"], view["status"], "{id}");
        assert_eq!(now["deliveries"], view["deliveries"], "the same timeline for {id}");
        assert_eq!(now["event"], view["event"]);
        assert_eq!(now["received_at"], view["received_at"]);
    }
    assert!(
        before.values().any(|v| v["deliveries"][0]["timeline"].as_array().map(Vec::len) > Some(1)),
        "some timeline holds retries"
    );

    // The dead letter is there and replays once.
    let (_, letters) = pg.get(KEY_A, "/v1/dead-letters").await;
    let letters = letters.as_array().cloned().expect("list");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["event_id"], json!(dead));
    let dl = letters[0]["id"].as_i64().expect("id");
    let (status, v) = pg.post_json(KEY_A, &format!("/v1/dead-letters/{dl}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let view = pg.wait_status(&dead, "delivered", WAIT).await;
    let timeline = view["deliveries"][0]["timeline"].as_array().cloned().expect("timeline");
    assert_eq!(timeline.first().map(|a| a["outcome"].clone()), Some(json!("dead_lettered")));
    assert_eq!(timeline.last().map(|a| a["outcome"].clone()), Some(json!("delivered")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.delivered().get(&dead), Some(&1), "the replayed event arrives once, with its id");
    // New work keeps the copied history's numbering going.
    let (status, v) = pg.send(KEY_A, &prestazione(20, "F205")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    pg.wait_status(&ids(&v)[0], "delivered", WAIT).await;
    let (_, v) = pg.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_i64().unwrap_or(0) > records, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_still_in_use_is_not_moved() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.accept(vec![new_event(1, Some("k-1"))], vec![]).await.unwrap();
    let from = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let (code, out, err) = cli(&["migrate", "--from", &from, "--to", &db.url]);
    assert_ne!(code, Some(0), "{out}{err}");
    assert!(err.contains("another gateway process is using the store"), "{err}");
    let pg = db.client().await;
    let events: i64 = pg.query_one("SELECT COUNT(*) FROM events", &[]).await.map(|r| r.get(0)).unwrap_or(0);
    assert_eq!(events, 0, "nothing moved");
    drop(store);
    let (code, out, err) = cli(&["migrate", "--from", &from, "--to", &db.url]);
    assert_eq!(code, Some(0), "once stopped, the store moves: {out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_in_flight_arrive_pending_and_unpublished() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.accept(vec![new_event(1, Some("k-1")), new_event(2, Some("k-2"))], vec![]).await.unwrap();
        assert_eq!(store.claim("d".into(), 1, 60_000).await.unwrap().len(), 1);
    }
    let (code, out, err) = cli(&[
        "migrate",
        "--from",
        &format!("sqlite://{}", dir.path().join("gateway.db").display()),
        "--to",
        &db.url,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("audit chain verified (2 records)"), "{out}");
    let pg = db.client().await;
    let rows = pg
        .query("SELECT status, published, lease_until IS NULL FROM deliveries ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(String, bool, bool)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(got, vec![("pending".into(), false, true), ("pending".into(), false, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn siuss_flussi_progressives_and_export_move_too() {
    let db = PgDb::create().await;
    let dir = tempfile::tempdir().unwrap();
    // Two versions of one prestazione and one of another: the export must name the latest of each.
    let prestazione = |n: usize, id: &str, who: &str| {
        let mut ev = new_event(n, Some(&format!("k-{n}")));
        ev.body = serde_json::to_vec(&json!({"id": format!("ev-{n}"),
            "data": {"idPrestazione": id, "beneficiario": {"pseudonimo": who}}}))
        .unwrap();
        ev
    };
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        store.accept(vec![prestazione(1, "P-1", "ben-b")], vec![]).await.unwrap();
        store.accept(vec![prestazione(2, "P-2", "ben-a")], vec![]).await.unwrap();
        store.accept(vec![prestazione(3, "P-1", "ben-b")], vec![]).await.unwrap();
    }
    let conn = rusqlite::Connection::open(dir.path().join("gateway.db")).unwrap();
    // Offered in this order (rowid), which is not the order of their ids.
    for (id_flusso, ts, event) in
        [("F205.PS.20260101.0000002", 10, "ev-1"), ("F205.PS.20260101.0000001", 20, "ev-3")]
    {
        conn.execute(
            "INSERT INTO siuss_flussi (id_flusso, ente, denominazione, tenant, tipo, operazione, event_id,
                id_prestazione, built_from_event_id, persona_event_id, content_digest, flusso, ts_flusso,
                created_at, stato)
             VALUES (?1, 'F205', 'Comune', 'F205', 'PS_PSA_SINA', 'I', ?3, 'P-1', ?3, 'ev-0', 'd', 'eA==', ?2, 1,
                'offered')",
            rusqlite::params![id_flusso, ts, event],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO siuss_progressivi (ente, day, last) VALUES ('F205', '20260101', 2)", [])
        .unwrap();
    conn.execute(
        "INSERT INTO siuss_prestazioni (ente, id_prestazione, event_id, current_flusso, annullata)
         VALUES ('F205', 'P-1', 'ev-3', NULL, 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let source = dir.path().join("gateway.db");
    let before = sqlite_counts(&source);

    let (code, out, err) =
        cli(&["migrate", "--from", &format!("sqlite://{}", dir.path().display()), "--to", &db.url]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(pg_counts(&db).await, before, "every table moved row for row");
    let pg = db.client().await;
    let order: Vec<String> = pg
        .query("SELECT id_flusso FROM siuss_flussi ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(order, ["F205.PS.20260101.0000002", "F205.PS.20260101.0000001"], "offer order kept");
    let row = pg.query_one("SELECT annullata, current_flusso FROM siuss_prestazioni", &[]).await.unwrap();
    assert!(row.get::<_, bool>(0));
    assert_eq!(row.get::<_, Option<String>>(1), None);
    let last: i64 = pg.query_one("SELECT last FROM siuss_progressivi", &[]).await.unwrap().get(0);
    assert_eq!(last, 2, "the next id_flusso of that day is 3: none handed out twice");
    let export: Vec<(String, String, String)> = pg
        .query("SELECT pseudonimo, id_prestazione, event_id FROM prestazioni_export ORDER BY pseudonimo", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        export,
        [("ben-a".into(), "P-2".into(), "ev-2".into()), ("ben-b".into(), "P-1".into(), "ev-3".into())],
        "the latest event of each prestazione"
    );
}
