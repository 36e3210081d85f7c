//! Cluster mode on a real PostgreSQL (`CSI_GATEWAY_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): the pipeline's behaviours through the real
//! binary with `[store] kind = "postgres"`, two processes sharing one database, and the store's
//! own rules through the library. Each test has a database of its own, dropped at the end.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use csi_gateway::audit::{Action, Entry};
use csi_gateway::store::postgres::PgStore;
use csi_gateway::store::{now_ms, Acceptance, Completion, DeadLetterFilter, Outbox, Outcome, Queue, Store};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn ids(v: &Value) -> Vec<String> {
    v["ids"].as_array().expect("ids").iter().map(|i| i.as_str().expect("id").to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_event_is_delivered_with_a_timeline() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_pg(&rx.url, "", &db).await;
    let (status, v) = gw.send(KEY_A, &prestazione(1, "F205")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let id = ids(&v).remove(0);
    let view = gw.wait_status(&id, "delivered", WAIT).await;
    let d = &view["deliveries"][0];
    assert_eq!(d["destination"], "cartella-vendor-a");
    assert_eq!(d["status"], "delivered");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["timeline"][0]["outcome"], "delivered");
    assert_eq!(d["timeline"][0]["attempt"], 1);
    assert_eq!(view["event"]["id"], json!(id));
    assert_eq!(rx.delivered().get(&id), Some(&1), "webhook-id is the event id");
    assert_eq!(rx.bad_signatures(), 0);
    // The rows are in PostgreSQL, not in a SQLite file.
    let pg = db.client().await;
    let n: i64 = pg.query_one("SELECT COUNT(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(n, 1);
    assert!(!gw.data_dir().join("gateway.db").exists(), "no embedded store in cluster mode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_failing_half_the_calls_still_gets_everything() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::FlakyHalf).await;
    let gw = Gateway::start_pg(&rx.url, "max_attempts = 20", &db).await;
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
    // Retries show in the timeline.
    let retried = any_retried(&gw, &sent).await;
    assert!(retried, "some event was retried before delivery");
}

/// Whether any event's timeline holds a retry followed by a delivery.
async fn any_retried(gw: &Gateway, ids: &HashSet<String>) -> bool {
    for id in ids {
        let view = gw.wait_status(id, "delivered", WAIT).await;
        let t = view["deliveries"][0]["timeline"].as_array().cloned().unwrap_or_default();
        if t.len() > 1
            && t[0]["outcome"] == "retry"
            && t.last().map(|a| a["outcome"] == "delivered") == Some(true)
        {
            return true;
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_deliveries_become_dead_letters_and_replay_delivers_them_once() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Reject).await;
    let gw = Gateway::start_pg(&rx.url, "", &db).await;
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
        assert_eq!(view["deliveries"][0]["timeline"][0]["outcome"], "dead_lettered");
    }
    let (_, dl) = gw.get(KEY_A, "/v1/dead-letters?destination=cartella-vendor-a").await;
    let letters = dl.as_array().expect("list");
    assert_eq!(letters.len(), 3);
    assert_eq!(letters[0]["event"]["type"], PRESTAZIONE, "the original event is kept");

    rx.set_mode(Mode::Ok);
    let first = letters[0]["id"].as_i64().expect("dead letter id");
    let (status, v) = gw.post_json(KEY_A, &format!("/v1/dead-letters/{first}/replay"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) =
        gw.post_json(KEY_A, "/v1/dead-letters/replay", json!({"destination": "cartella-vendor-a"})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = rx.delivered();
    for id in &sent {
        assert_eq!(delivered.get(id), Some(&1), "replayed event keeps its id and arrives once");
    }
    let (_, dl) = gw.get(KEY_A, "/v1/dead-letters").await;
    assert_eq!(dl.as_array().map(Vec::len), Some(0), "{dl}");
    let (_, replays) = gw.get(KEY_AUDITOR, "/v1/audit?action=replayed").await;
    assert_eq!(replays.as_array().map(Vec::len), Some(3), "one audit record per replay: {replays}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_idempotency_key_returns_original_id() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_pg(&rx.url, "", &db).await;
    let ev = prestazione(7, "F205");
    let (_, first) = gw.send(KEY_A, &ev).await;
    let (status, second) = gw.send(KEY_A, &ev).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(ids(&first), ids(&second));
    // Twice in one batch: one event, the original id twice.
    let twin = prestazione(9, "F205");
    let (status, v) = gw
        .post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&vec![&twin, &twin]).unwrap())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let twins = ids(&v);
    assert_eq!(twins[0], twins[1]);
    // Without an idempotencykey, source + id identify the event.
    let mut plain = prestazione(8, "F205");
    plain.as_object_mut().unwrap().remove("idempotencykey");
    let (_, a) = gw.send(KEY_A, &plain).await;
    let (_, b) = gw.send(KEY_A, &plain).await;
    assert_eq!(ids(&a), ids(&b));
    rx.wait_distinct(3, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.calls(), 3, "each event delivered once");
    let (_, dups) = gw.get(KEY_AUDITOR, "/v1/audit?action=duplicate").await;
    assert_eq!(dups.as_array().map(Vec::len), Some(3), "{dups}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_delivery_loses_nothing() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Slow(30)).await;
    let mut gw = Gateway::start_pg(&rx.url, "concurrency = 4", &db).await;
    let mut sent = HashSet::new();
    for chunk in 0..4 {
        let batch: Vec<Value> = (0..50).map(|n| prestazione(chunk * 50 + n, "F205")).collect();
        let (status, v) =
            gw.post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        sent.extend(ids(&v));
    }
    while rx.delivered().len() < 20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The new process cannot tell a dead instance's leases from a live one's: they are taken over
    // when they expire (attempt timeout + 30 s).
    gw.kill9_and_restart().await;
    rx.wait_distinct(200, Duration::from_secs(90)).await;
    let got: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert_eq!(got, sent, "every accepted event arrives after a crash");
    for id in &sent {
        gw.wait_status(id, "delivered", Duration::from_secs(60)).await;
    }
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_the_audit_log_is_detected_with_its_position() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Ok).await;
    let mut gw = Gateway::start_pg(&rx.url, "", &db).await;
    let mut sent = Vec::new();
    for n in 0..3 {
        let (_, v) = gw.send(KEY_A, &prestazione(n, "F205")).await;
        sent.extend(ids(&v));
    }
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_i64().unwrap_or(0) >= 9, "received, accepted, delivered per event: {v}");
    let (code, out, err) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, Some(0), "{out}{err}");

    let pg = db.client().await;
    pg.execute("UPDATE audit SET actor = 'someone-else' WHERE seq = 4", &[]).await.unwrap();
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).expect("verify prints JSON");
    assert_eq!(v["problem"]["position"], 4, "{v}");
    assert_eq!(v["problem"]["kind"], "modified");
    // The running gateway's endpoint says the same.
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["problem"]["position"], 4, "{v}");

    // A deleted record: the first record after the gap is reported.
    pg.execute("UPDATE audit SET actor = (SELECT actor FROM audit WHERE seq = 3) WHERE seq = 4", &[])
        .await
        .ok();
    pg.execute("DELETE FROM audit WHERE seq = 2", &[]).await.unwrap();
    let (code, out, _) = gw.cli(&["audit", "verify"]);
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).expect("verify prints JSON");
    assert_eq!(v["problem"]["position"], 3, "first record after the gap: {v}");
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_database_share_the_work() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Slow(20)).await;
    let a = Gateway::start_pg(&rx.url, "concurrency = 4", &db).await;
    let b = Gateway::start_pg(&rx.url, "concurrency = 4", &db).await;
    let mut sent = HashSet::new();
    for (i, gw) in [&a, &b, &a, &b].into_iter().enumerate() {
        let batch: Vec<Value> = (0..40).map(|n| prestazione(i * 40 + n, "F205")).collect();
        let (status, v) =
            gw.post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch).unwrap()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
        sent.extend(ids(&v));
    }
    assert_eq!(sent.len(), 160);
    rx.wait_distinct(160, Duration::from_secs(60)).await;
    let delivered = rx.delivered();
    let got: HashSet<String> = delivered.keys().cloned().collect();
    assert_eq!(got, sent, "every event delivered; a repeat could only carry the same webhook-id");
    let repeats: usize = delivered.values().map(|n| n - 1).sum();
    assert_eq!(repeats, 0, "no delivery is claimed by both instances");
    // Both did some of the work.
    for gw in [&a, &b] {
        assert!(gw.delivered_count().await > 0.0, "{} delivered nothing", gw.base);
    }
    // Either instance shows any event; the audit chain written by both is one linear chain.
    for id in sent.iter().take(10) {
        b.wait_status(id, "delivered", WAIT).await;
    }
    let (_, v) = a.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["records"].as_i64().unwrap_or(0) >= 160 * 3, "{v}");
}

// The store's own rules, through the library.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_get_the_original_id_within_a_batch_and_across_instances() {
    let db = PgDb::create().await;
    let store = PgStore::connect(&db.url, 4).await.expect("connect");
    let out = store.accept(vec![new_event(1, Some("k")), new_event(2, Some("k"))], vec![]).await.unwrap();
    assert_eq!(out, vec![Acceptance::New("ev-1".into()), Acceptance::Duplicate("ev-1".into())]);
    assert!(store.event("ev-2".into()).await.unwrap().is_none());
    let again = store.accept(vec![new_event(3, Some("k"))], vec![]).await.unwrap();
    assert_eq!(again, vec![Acceptance::Duplicate("ev-1".into())]);
    // A committed key twice, then a new key twice, in one batch.
    let mixed = store
        .accept(
            vec![
                new_event(4, Some("k")),
                new_event(5, Some("k")),
                new_event(6, Some("m")),
                new_event(7, Some("m")),
            ],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        mixed,
        vec![
            Acceptance::Duplicate("ev-1".into()),
            Acceptance::Duplicate("ev-1".into()),
            Acceptance::New("ev-6".into()),
            Acceptance::Duplicate("ev-6".into()),
        ]
    );
    // Two instances racing on one key: one event.
    let other = PgStore::connect(&db.url, 4).await.expect("connect");
    let (a, b) = tokio::join!(
        store.accept(vec![new_event(8, Some("race"))], vec![]),
        other.accept(vec![new_event(9, Some("race"))], vec![])
    );
    let mut got = vec![a.unwrap().remove(0), b.unwrap().remove(0)];
    got.sort_by_key(|a| matches!(a, Acceptance::Duplicate(_)));
    assert!(matches!(&got[0], Acceptance::New(_)), "{got:?}");
    assert_eq!(got[1], Acceptance::Duplicate(got[0].id().to_string()), "{got:?}");
    // The audit records follow the requests' order.
    let page = store.audit_page(Default::default()).await.unwrap();
    let actions: Vec<&str> = page.iter().take(7).map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["accepted", "duplicate", "duplicate", "duplicate", "duplicate", "accepted", "duplicate"]
    );
    assert!(store.audit_verify().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_never_claim_the_same_delivery_and_expired_leases_are_taken_over() {
    let db = PgDb::create().await;
    let a = PgStore::connect(&db.url, 4).await.expect("connect a");
    let b = PgStore::connect(&db.url, 4).await.expect("connect b");
    a.accept((0..50).map(|n| new_event(n, None)).collect(), vec![]).await.unwrap();
    let (ca, cb) = tokio::join!(a.claim("d".into(), 30, 60_000), b.claim("d".into(), 30, 60_000));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    let mut all: Vec<i64> = ca.iter().chain(&cb).map(|t| t.delivery_id).collect();
    assert_eq!(all.len(), 50, "{} + {}", ca.len(), cb.len());
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 50, "no delivery claimed twice");
    assert!(a.claim("d".into(), 10, 60_000).await.unwrap().is_empty(), "leased work stays leased");
    // A short lease that expires (its holder died) is taken over by another instance.
    a.accept(vec![new_event(100, None)], vec![]).await.unwrap();
    let short = a.claim("d".into(), 1, 50).await.unwrap();
    assert_eq!(short.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let taken = b.claim("d".into(), 5, 60_000).await.unwrap();
    assert_eq!(taken.iter().map(|t| t.delivery_id).collect::<Vec<_>>(), vec![short[0].delivery_id]);
    assert_eq!(a.depth().await.unwrap(), vec![("d".to_string(), 51)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_hands_each_unpublished_delivery_to_one_relay_and_replay_makes_it_unpublished_again() {
    let db = PgDb::create().await;
    let store = PgStore::connect(&db.url, 4).await.expect("connect");
    let other = PgStore::connect(&db.url, 4).await.expect("connect");
    store.accept(vec![new_event(1, None), new_event(2, None), new_event(3, None)], vec![]).await.unwrap();
    let ids =
        |tasks: &[csi_gateway::store::Task]| tasks.iter().map(|t| t.event_id.clone()).collect::<Vec<_>>();
    // A handoff reads the deliveries of its own events.
    let out = store.take_unpublished(Some(vec!["ev-1".into(), "ev-2".into()]), 0, 10, 60_000).await.unwrap();
    assert_eq!(ids(&out), vec!["ev-1", "ev-2"]);
    assert_eq!(out[0].body, br#"{"id":"ev-1"}"#.to_vec(), "tasks carry the body");
    store.published(out.iter().map(|t| (t.delivery_id, t.since)).collect()).await.unwrap();
    // A sweep takes only what is stale, leased: another instance's sweep skips it.
    assert!(
        other.take_unpublished(None, 60_000, 10, 60_000).await.unwrap().is_empty(),
        "ev-3 is not stale yet"
    );
    let swept = other.take_unpublished(None, 0, 10, 60_000).await.unwrap();
    assert_eq!(ids(&swept), vec!["ev-3"], "ev-1 and ev-2 are published");
    assert!(store.take_unpublished(None, 0, 10, 60_000).await.unwrap().is_empty(), "ev-3 is leased");
    // ev-3: the broker refused it; given back, it can be taken again at once.
    other.release(swept.iter().map(|t| t.delivery_id).collect()).await.unwrap();
    assert_eq!(ids(&store.take_unpublished(None, 0, 10, 60_000).await.unwrap()), vec!["ev-3"]);
    // Dead, then replayed: pending and unpublished again, with a fresh cycle.
    let task = store.claim("d".into(), 1, 60_000).await.unwrap().remove(0);
    assert_eq!(task.event_id, "ev-1");
    let dead = Completion {
        task,
        started_at: now_ms(),
        outcome: Outcome::Dead { error: "permanent: HTTP 400".into() },
    };
    let (delivery_id, first_since) = (dead.task.delivery_id, dead.task.since);
    let stale = Completion {
        task: dead.task.clone(),
        started_at: now_ms(),
        outcome: Outcome::Delivered { detail: "HTTP 200".into() },
    };
    store.complete(vec![dead]).await.unwrap();
    assert!(store.settled(delivery_id).await.unwrap());
    // A late outcome of the same attempt (a copy the broker gave another instance) is recorded
    // in the timeline but does not undo the dead letter.
    store.complete(vec![stale]).await.unwrap();
    let letters = store.dead_letters(DeadLetterFilter::default()).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].last_error, "permanent: HTTP 400");
    // A replay starts a new cycle (`since` = now): at least a millisecond after the first.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    let replayed = store.replay(DeadLetterFilter::default(), "operator".into()).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert!(!store.settled(delivery_id).await.unwrap(), "replayed: open again");
    // The broker's confirm of the first cycle's message, marked late: the replay's own
    // publication is still to come, so the delivery stays unpublished.
    store.published(vec![(delivery_id, first_since)]).await.unwrap();
    assert!(store.replay(DeadLetterFilter::default(), "operator".into()).await.unwrap().is_empty());
    let again = store.take_unpublished(Some(vec!["ev-1".into()]), 0, 10, 60_000).await.unwrap();
    assert_eq!(ids(&again), vec!["ev-1"]);
    assert_eq!(again[0].attempts, 0, "a replay starts a fresh cycle");
    let v = store.audit_verify().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 6, "accepted ×3, dead_lettered, delivered (the late copy), replayed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_unique_per_tenant_and_source_also_in_a_database_of_an_earlier_release() {
    let db = PgDb::create().await;
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    store.accept(vec![new_event(1, Some("k"))], vec![]).await.unwrap();
    drop(store);
    // As an earlier release left it: keys per source, migration 4 not applied.
    let pg = db.client().await;
    pg.batch_execute(
        "UPDATE idempotency SET source = '/test'; DELETE FROM schema_migrations WHERE version = 4;",
    )
    .await
    .unwrap();
    let store = PgStore::connect(&db.url, 2).await.expect("connect and migrate");
    let again = store.accept(vec![new_event(2, Some("k"))], vec![]).await.unwrap();
    assert!(matches!(&again[..], [Acceptance::Duplicate(id)] if id == "ev-1"), "{again:?}");
    let mut theirs = new_event(3, Some("k"));
    theirs.tenant = "B157".into();
    let other = store.accept(vec![theirs], vec![]).await.unwrap();
    assert!(matches!(&other[..], [Acceptance::New(id)] if id == "ev-3"), "{other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_from_many_instances_keep_one_linear_chain() {
    let db = PgDb::create().await;
    // Several instances starting at once: migrations run once, under the advisory lock.
    let stores = connect_many(&db.url, 4).await;
    let mut tasks = Vec::new();
    for (i, s) in stores.iter().enumerate() {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..20 {
                let e = Entry::new(Action::Read, format!("client-{i}")).detail(format!("read {n}"));
                s.audit(vec![e.clone(), e]).await.expect("append");
            }
        }));
    }
    // Verified while the others append: each verification sees one consistent snapshot.
    let mut checks = 0;
    while tasks.iter().any(|t| !t.is_finished()) || checks == 0 {
        let v = stores[3].audit_verify().await.unwrap();
        assert!(v.ok, "verified during the appends: {v:?}");
        checks += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = stores[0].audit_verify().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 4 * 20 * 2);
    let pg = db.client().await;
    let n: i64 = pg.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).await.unwrap().get(0);
    let known = csi_gateway::store::postgres::MIGRATIONS.len() as i64;
    assert_eq!(n, known, "each migration recorded once, whichever instance applied it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_key_twice_in_a_group_keeps_the_later_and_audits_the_correction() {
    use csi_gateway::store::{CoopDeliveryRow, Projection};
    let db = PgDb::create().await;
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    let delivery = |n: usize, minuti: i64| {
        let mut ev = new_event(n, Some(&format!("k-{n}")));
        ev.destinations.clear();
        ev.projections.push(Projection::CoopDelivery(Box::new(CoopDeliveryRow {
            tenant: "F205".into(),
            key: "coop:AURORA:R-1".into(),
            cooperativa: "AURORA".into(),
            id_progetto: "PRG-1".into(),
            pseudonimo: "ben-1".into(),
            tipo_servizio: "SAD".into(),
            codice_prestazione: "A1.16".into(),
            denominazione: "Assistenza domiciliare".into(),
            area_utenza: "2".into(),
            data: "2026-03-02".into(),
            mese: "2026-03".into(),
            minuti,
            importo_cents: minuti * 30,
            quota_utente_cents: minuti * 6,
            flag: None,
            event_id: format!("ev-{n}"),
            upload_id: Some("u-1".into()),
            digest: format!("d-{minuti}"),
            id_prestazione: None,
        })));
        ev
    };
    // An earlier upload, then one request holding the same record twice (corrected twice).
    store.accept(vec![delivery(1, 60)], vec![]).await.expect("first");
    let out = store.accept(vec![delivery(2, 90), delivery(3, 120)], vec![]).await.expect("group");
    assert!(out.iter().all(|a| matches!(a, Acceptance::New(_))), "{out:?}");
    let pg = db.client().await;
    let rows = pg.query("SELECT event_id, minuti FROM coop_deliveries", &[]).await.unwrap();
    let got: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, vec![("ev-3".to_string(), 120)], "one row, the later delivery");
    let details: Vec<String> = pg
        .query("SELECT detail FROM audit WHERE action = 'corrected' ORDER BY seq", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details[0].ends_with("replaces event ev-1") && details[1].ends_with("replaces event ev-2"),
        "{details:?}"
    );
    assert!(store.audit_verify().await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_racing_on_many_keys_in_opposite_orders_store_each_once() {
    let db = PgDb::create().await;
    let stores = connect_many(&db.url, 2).await;
    let keys: Vec<String> = (0..40).map(|k| format!("k-{k}")).collect();
    for round in 0..10 {
        let batch = |first: usize, reversed: bool| -> Vec<csi_gateway::store::NewEvent> {
            let mut order: Vec<usize> = (0..keys.len()).collect();
            if reversed {
                order.reverse();
            }
            order.iter().map(|&k| new_event(first + k, Some(&format!("r{round}-{}", keys[k])))).collect()
        };
        let base = round * 1000;
        let (a, b) = tokio::join!(
            stores[0].accept(batch(base, false), vec![]),
            stores[1].accept(batch(base + 100, true), vec![])
        );
        let (a, b) = (a.expect("first instance"), b.expect("second instance"));
        // Key k is event base + k on the first instance, base + 100 + k on the second: one of
        // them is new, the other names it.
        for k in 0..keys.len() {
            let (x, y) = (&a[k], &b[keys.len() - 1 - k]);
            let new: Vec<&Acceptance> =
                [x, y].into_iter().filter(|a| matches!(a, Acceptance::New(_))).collect();
            assert_eq!(new.len(), 1, "round {round}, key {k}: {x:?} / {y:?}");
            assert_eq!(x.id(), y.id(), "round {round}, key {k}: the duplicate names the original");
        }
    }
    let pg = db.client().await;
    let events: i64 = pg.query_one("SELECT COUNT(*) FROM events", &[]).await.unwrap().get(0);
    let keys_held: i64 = pg.query_one("SELECT COUNT(*) FROM idempotency", &[]).await.unwrap().get(0);
    assert_eq!((events, keys_held), (400, 400));
    let v = stores[0].audit_verify().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 800, "an accepted or duplicate record for each of the 800 events");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_writing_the_same_read_models_in_opposite_orders_never_deadlock() {
    let db = PgDb::create().await;
    let stores = connect_many(&db.url, 2).await;
    // The same 30 progetti, sent to each instance in the opposite order of the other's.
    const ROUNDS: usize = 10;
    for round in 0..ROUNDS {
        let base = round * 100;
        let a: Vec<_> = (0..30).map(|p| progetto_event(base + p, p)).collect();
        let b: Vec<_> = (0..30).rev().map(|p| progetto_event(base + 50 + p, p)).collect();
        let (ra, rb) = tokio::join!(stores[0].accept(a, vec![]), stores[1].accept(b, vec![]));
        for (i, r) in [ra, rb].into_iter().enumerate() {
            let r = r.unwrap_or_else(|e| panic!("round {round}, instance {i}: {e}"));
            assert!(r.iter().all(|a| matches!(a, Acceptance::New(_))), "{r:?}");
        }
    }
    let pg = db.client().await;
    // Each progetto names the event of the last round that wrote it.
    let rows =
        pg.query("SELECT id_progetto, event_id FROM progetti ORDER BY id_progetto", &[]).await.unwrap();
    assert_eq!(rows.len(), 30);
    let last = (ROUNDS - 1) * 100;
    for r in &rows {
        let (id, ev): (String, String) = (r.get(0), r.get(1));
        let p: usize = id.trim_start_matches("PRG-").parse().unwrap();
        assert!(ev == format!("ev-{}", last + p) || ev == format!("ev-{}", last + 50 + p), "{id}: {ev}");
    }
    let v = stores[0].audit_verify().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, (ROUNDS * 60) as i64);
    // Written in one key order by both, the rows never made PostgreSQL break a deadlock (its
    // statistics arrive when the backends end).
    drop((stores, pg));
    assert_eq!(deadlocks_once_ended(&db).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_rolled_back_for_a_deadlock_is_run_again() {
    let db = PgDb::create().await;
    // The instance's connections look for a deadlock after 300 ms of waiting; the other party's
    // after a minute: the instance's transaction is the one PostgreSQL rolls back.
    let admin = db.client().await;
    admin.batch_execute(&format!("ALTER DATABASE {} SET deadlock_timeout = '300ms'", db.name)).await.unwrap();
    let store = PgStore::connect(&db.url, 2).await.expect("connect");
    store.accept(vec![progetto_event(1, 0), progetto_event(2, 1)], vec![]).await.expect("seed");
    // Another writer (an operator's session, say) holds PRG-1.
    let mut other = db.client().await;
    other.batch_execute("SET deadlock_timeout = '60s'").await.unwrap();
    let tx = other.transaction().await.unwrap();
    tx.execute("UPDATE progetti SET al = al WHERE id_progetto = 'PRG-1'", &[]).await.unwrap();
    // The instance's group writes PRG-0, then waits for PRG-1...
    let store2 = store.clone();
    let accepting =
        tokio::spawn(
            async move { store2.accept(vec![progetto_event(3, 0), progetto_event(4, 1)], vec![]).await },
        );
    let t0 = std::time::Instant::now();
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "the instance never waited for PRG-1");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...while the other writer now wants PRG-0: a deadlock, which PostgreSQL breaks by rolling
    // back the instance's transaction. The other writer then goes on and commits.
    tx.execute("UPDATE progetti SET al = al WHERE id_progetto = 'PRG-0'", &[]).await.unwrap();
    tx.commit().await.unwrap();
    // Run again, the instance's write succeeds: nothing of the first try is left, nothing lost.
    let out = accepting.await.unwrap().expect("the write, run again after the deadlock");
    assert_eq!(out, vec![Acceptance::New("ev-3".into()), Acceptance::New("ev-4".into())]);
    let pg = db.client().await;
    let rows =
        pg.query("SELECT id_progetto, event_id FROM progetti ORDER BY id_progetto", &[]).await.unwrap();
    let got: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [("PRG-0".into(), "ev-3".into()), ("PRG-1".into(), "ev-4".into())]);
    let events: i64 = pg.query_one("SELECT COUNT(*) FROM events", &[]).await.unwrap().get(0);
    assert_eq!(events, 4);
    let v = store.audit_verify().await.unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(v.records, 4, "one accepted record per event, none from the try rolled back");
    drop((store, other, admin, pg));
    assert_eq!(deadlocks_once_ended(&db).await, 1, "PostgreSQL broke one deadlock");
}

/// The deadlocks PostgreSQL broke in the test's database, read once every other session on it has
/// ended (a backend reports its statistics as it ends; the instances' LISTEN sessions aside, which
/// never write).
async fn deadlocks_once_ended(db: &PgDb) -> i64 {
    let admin = db.client().await;
    let t0 = std::time::Instant::now();
    loop {
        let others: i64 = admin
            .query_one(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()
                   AND query NOT LIKE 'LISTEN%'",
                &[&db.name],
            )
            .await
            .unwrap()
            .get(0);
        if others == 0 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "{others} sessions still open on the test database");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin
        .query_one("SELECT deadlocks FROM pg_stat_database WHERE datname = $1", &[&db.name])
        .await
        .unwrap()
        .get(0)
}

/// An event (`ev-<n>`, no destination) whose read model is progetto `PRG-<p>`.
fn progetto_event(n: usize, p: usize) -> csi_gateway::store::NewEvent {
    use csi_gateway::store::{ProgettoRow, Projection};
    let mut ev = new_event(n, None);
    ev.destinations.clear();
    ev.projections.push(Projection::Progetto(ProgettoRow {
        tenant: "F205".into(),
        id_progetto: format!("PRG-{p}"),
        pseudonimo: format!("ben-{p}"),
        codice_fiscale: None,
        dal: "2026-01-01".into(),
        al: "2026-12-31".into(),
        interventi: json!([]),
        event_id: format!("ev-{n}"),
    }));
    ev
}

async fn connect_many(url: &str, n: usize) -> Vec<std::sync::Arc<PgStore>> {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_string();
            tokio::spawn(async move { PgStore::connect(&url, 2).await.expect("connect") })
        })
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_is_an_error_naming_the_host_not_the_password() {
    let port = free_port();
    let err = match PgStore::connect(&format!("postgres://gw:s3cret-pw@127.0.0.1:{port}/csi"), 2).await {
        Ok(_) => panic!("nothing listens on port {port}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");
    // The binary says the same, and exits with an error.
    let rx = Receiver::start(Mode::Ok).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gw.toml");
    let mut text = config(free_port(), &dir.path().join("data"), &rx.url, "");
    text.push_str(&format!(
        "\n[store]\nkind = \"postgres\"\nurl = \"postgres://gw:s3cret-pw@127.0.0.1:{port}/csi\"\n"
    ));
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(bin())
        .args(["--config", &path.display().to_string(), "serve"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")) && !stderr.contains("s3cret-pw"), "{stderr}");
}

// The read models (projections) on PostgreSQL, through the cooperatives adapter.

const KEY_AURORA: &str = "key-coop-aurora";

fn coop_config(db: &PgDb) -> String {
    format!(
        r#"
[[clients]]
name = "coop-aurora"
api_key_sha256 = "{aurora}"
tenants = ["F205"]
roles = ["publisher"]
cooperativa = "AURORA"

[coop]
mappings_dir = "{mappings}"
{store}"#,
        aurora = key_sha256(KEY_AURORA),
        mappings = repo().join("mappings/coop").display(),
        store = db.store_config(),
    )
}

/// An approved progetto of one SAD intervento with cooperative AURORA, 40 hours a month.
fn progetto(id: &str, pseudonimo: &str, cf: &str) -> Value {
    let mut ev = example("it.lombardia.csi.progetto.approvato.v1");
    ev["id"] = json!(format!("approvazione-{id}"));
    ev["idempotencykey"] = json!(format!("progetto-{id}"));
    ev["tenant"] = json!("F205");
    ev["subject"] = json!(pseudonimo);
    let data = &mut ev["data"];
    data["idProgetto"] = json!(id);
    data["beneficiario"] = json!({ "pseudonimo": pseudonimo, "codiceFiscale": cf });
    data["periodo"] = json!({ "dal": "2026-01-01", "al": "2026-12-31" });
    data["interventi"] = json!([{
        "idIntervento": format!("{id}-1"),
        "codicePrestazione": "A1.16",
        "tipoServizio": "SAD",
        "denominazione": "Assistenza domiciliare SAD",
        "oreAutorizzateMensili": "40",
        "tariffaOraria": "22.10",
        "quotaEnte": "424.32",
        "quotaUtente": "106.08",
        "cooperativa": "AURORA",
    }]);
    ev
}

/// An Excel-style sheet (mapping `coop-excel-csv`) of `(id, from, to, codice fiscale)` rows on
/// 2 March 2026.
fn sheet(rows: &[(&str, &str, &str, &str)]) -> String {
    let mut out = "ID;Data;Dalle;Alle;Operatore;CF Utente;Ore;Servizio;Km;Note\r\n".to_string();
    for (id, from, to, cf) in rows {
        out.push_str(&format!("{id};02/03/2026;{from};{to};OP-C1;{cf};;ASS.DOM;3,5;\r\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_uploads_corrections_and_monthly_totals_use_the_postgres_read_models() {
    let db = PgDb::create().await;
    let rx = Receiver::start(Mode::Ok).await;
    let gw = Gateway::start_with(&rx.url, "", &coop_config(&db)).await;
    for (id, pseudonimo, cf) in
        [("PRG-AUR-02", "ben-frrn", "FRRNNA41C52F205P"), ("PRG-AUR-03", "ben-vrdl", "VRDLCU45D55F205C")]
    {
        let (status, v) = gw.send(KEY_A, &progetto(id, pseudonimo, cf)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    }
    let path = "/v1/adapters/coop/erogazioni?mapping=coop-excel-csv&tenant=F205";
    let original = sheet(&[
        ("COR-01", "08.00", "10.00", "FRRNNA41C52F205P"),
        ("COR-02", "10.30", "11.30", "VRDLCU45D55F205C"),
    ]);
    let (status, first) = gw.post_body(KEY_AURORA, path, "text/csv", original).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        first["summary"]["accepted"].as_u64(),
        Some(2),
        "beneficiaries found by codice fiscale: {first}"
    );
    // COR-01 again, ending at 09.30: a correction; COR-02 unchanged: a duplicate.
    let fixed = sheet(&[
        ("COR-01", "08.00", "09.30", "FRRNNA41C52F205P"),
        ("COR-02", "10.30", "11.30", "VRDLCU45D55F205C"),
    ]);
    let (status, second) = gw.post_body(KEY_AURORA, path, "text/csv", fixed).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let s = &second["summary"];
    assert_eq!((s["corrected"].as_u64(), s["duplicates"].as_u64()), (Some(1), Some(1)), "{second}");
    let (_, corrected) = gw.get(KEY_AUDITOR, "/v1/audit?action=corrected").await;
    let corrected = corrected.as_array().cloned().unwrap_or_default();
    assert_eq!(corrected.len(), 1, "{corrected:?}");
    assert!(corrected[0]["detail"].as_str().is_some_and(|d| d.contains("COR-01")), "{corrected:?}");
    // The stored upload report, and the month's total from the latest version of each row.
    let upload = second["id"].as_str().expect("upload id");
    let (status, stored) = gw.get(KEY_A, &format!("/v1/adapters/coop/erogazioni/{upload}")).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["summary"], second["summary"]);
    let (status, list) = gw.get(KEY_A, "/v1/adapters/coop/liquidazioni?tenant=F205&mese=2026-03").await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list[0]["ore"], "2.50", "1.50 h (corrected) + 1.00 h: {list}");
    rx.wait_distinct(3, WAIT).await;

    // Persona and SINA valutazione read models land in their tables too.
    for (n, t) in ["persona.registrata", "valutazione.registrata"].iter().enumerate() {
        let mut ev = example(&format!("it.lombardia.csi.{t}.v1"));
        ev["id"] = json!(format!("model-{n}"));
        ev["tenant"] = json!("F205");
        let (status, v) = gw.send(KEY_A, &ev).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{t}: {v}");
    }
    let pg = db.client().await;
    let count = |t: &'static str| {
        let pg = &pg;
        async move { pg.query_one(&format!("SELECT COUNT(*) FROM {t}"), &[]).await.unwrap().get::<_, i64>(0) }
    };
    assert_eq!(count("progetti").await, 2);
    assert_eq!(count("coop_deliveries").await, 2);
    assert_eq!(count("coop_uploads").await, 2);
    assert_eq!(count("persone").await, 1);
    assert_eq!(count("valutazioni_sina").await, 1, "the example carries a SINA assessment");
}
