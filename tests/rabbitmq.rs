//! Cluster mode with RabbitMQ (`CSI_GATEWAY_TEST_AMQP`, default guest/guest on 127.0.0.1:5672)
//! and PostgreSQL (`CSI_GATEWAY_TEST_POSTGRES`): the real binary with `[queue] kind = "rabbitmq"`,
//! under faults — the broker cut mid-load, PostgreSQL cut mid-load, an instance killed with
//! SIGKILL, a receiver down for a while. A broker or database restart is what the gateway sees
//! through a [`Proxy`] that drops every connection and refuses new ones. Each test has its own
//! database and its own exchange and queues, deleted at the end.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// A cluster-mode gateway on `db` and the test's topology, reaching the broker at `amqp`.
async fn gateway(rx: &Receiver, destination: &str, db_url: &str, rabbit: &Rabbit, amqp: &str) -> Gateway {
    let config = format!(
        "\n[store]\nkind = \"postgres\"\nurl = \"{db_url}\"\npool_size = 8\n{}",
        rabbit.queue_config(amqp)
    );
    Gateway::start_with(&rx.url, destination, &config).await
}

async fn send_until_accepted(gw: &Gateway, batch: &[Value]) -> (Vec<String>, usize) {
    gw.send_until_accepted(batch, WAIT).await
}

async fn audit_verifies(gw: &Gateway) {
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}

/// Every event sent reached the receiver, each exactly once.
fn each_delivered_once(rx: &Receiver, sent: &[String]) {
    let delivered = rx.delivered();
    assert_eq!(delivered.keys().cloned().collect::<HashSet<_>>(), sent.iter().cloned().collect());
    assert!(delivered.values().all(|&n| n == 1), "each delivered once: {delivered:?}");
}

/// Messages in a queue (read and acknowledged: the queue is empty afterwards).
async fn drain(queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    let conn = Rabbit::connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let mut out = Vec::new();
    while let Some(m) = ch.basic_get(queue.into(), Default::default()).await.expect("basic.get") {
        m.delivery.ack(Default::default()).await.expect("ack");
        out.push(m);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_travel_through_the_broker_and_the_topology_is_declared() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let rx = Receiver::start(Mode::Ok).await;
    let gw = gateway(&rx, "concurrency = 8", &db.url, &rabbit, &amqp_url()).await;
    let batch: Vec<Value> = (0..50).map(|n| prestazione(n, "F205")).collect();
    let (sent, refusals) = send_until_accepted(&gw, &batch).await;
    assert_eq!((sent.len(), refusals), (50, 0));
    rx.wait_distinct(50, WAIT).await;
    // Confirmed by the broker: the outbox marks every delivery published.
    let client = db.client().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let row = client
            .query_one("SELECT count(*) FILTER (WHERE NOT published), count(*) FROM deliveries", &[])
            .await
            .expect("query");
        let (left, all) = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        assert_eq!(all, 50);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} deliveries never marked published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert_eq!(got, sent.iter().cloned().collect::<HashSet<_>>());
    let v = gw.wait_status(&sent[0], "delivered", WAIT).await;
    assert_eq!(v["deliveries"][0]["timeline"][0]["outcome"], "delivered", "{v}");
    // Every queue of the topology exists, durable; the destination queue is a quorum queue
    // (redeclaring it as classic is refused by the broker).
    let conn = Rabbit::connect().await;
    let ch = conn.create_channel().await.expect("channel");
    for q in rabbit.topology().queues() {
        let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
        ch.queue_declare(q.as_str().into(), passive, Default::default())
            .await
            .unwrap_or_else(|e| panic!("queue {q} missing: {e}"));
    }
    let classic = lapin::options::QueueDeclareOptions { durable: true, ..Default::default() };
    let queue = rabbit.topology().queue("cartella-vendor-a");
    assert!(
        ch.queue_declare(queue.as_str().into(), classic, Default::default()).await.is_err(),
        "{queue} is not a classic queue"
    );
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_never_gets_more_requests_at_once_than_its_concurrency() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let rx = Receiver::start(Mode::Slow(40)).await;
    // Prefetch 12 (four times the concurrency): twelve messages are held, three attempted at once, while
    // the others' outcomes are recorded and settled.
    let gw = gateway(&rx, "concurrency = 3", &db.url, &rabbit, &amqp_url()).await;
    let batch: Vec<Value> = (0..30).map(|n| prestazione(n, "F205")).collect();
    let (sent, refusals) = send_until_accepted(&gw, &batch).await;
    assert_eq!((sent.len(), refusals), (30, 0));
    rx.wait_distinct(30, WAIT).await;
    let most = rx.max_in_flight();
    assert!(most <= 3, "{most} requests at once to a destination of concurrency 3");
    assert!(most >= 2, "the attempts run side by side (at most {most} at once)");
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_everything_through_the_retry_tiers() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let rx = Receiver::start(Mode::Unavailable).await;
    let gw = gateway(&rx, "concurrency = 8\nmax_attempts = 50", &db.url, &rabbit, &amqp_url()).await;
    let batch: Vec<Value> = (0..20).map(|n| prestazione(n, "F205")).collect();
    let (sent, _) = send_until_accepted(&gw, &batch).await;
    // Each event is tried, fails, waits in a retry tier and is tried again.
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, v) = gw.get(KEY_A, &format!("/v1/events/{}", sent[19])).await;
        if v["deliveries"][0]["attempts"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no retry seen: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(rx.delivered().is_empty());
    rx.set_mode(Mode::Ok);
    rx.wait_distinct(20, WAIT).await;
    each_delivered_once(&rx, &sent);
    let v = gw.wait_status(&sent[19], "delivered", WAIT).await;
    let timeline = v["deliveries"][0]["timeline"].as_array().expect("timeline").clone();
    assert!(timeline.len() >= 2, "{v}");
    assert!(timeline[..timeline.len() - 1].iter().all(|a| a["outcome"] == "retry"), "{v}");
    assert_eq!(timeline.last().expect("last")["outcome"], "delivered");
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_published_together_are_each_settled_and_only_the_failed_ones_retried() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    // Every other call fails: half of each message's deliveries go to a retry tier, alone.
    let rx = Receiver::start(Mode::FlakyHalf).await;
    let gw = gateway(&rx, "concurrency = 8\nmax_attempts = 50", &db.url, &rabbit, &amqp_url()).await;
    // One request: the relay publishes its 40 deliveries in two messages (32 and 8).
    let batch: Vec<Value> = (0..40).map(|n| prestazione(n, "F205")).collect();
    let (sent, _) = send_until_accepted(&gw, &batch).await;
    rx.wait_distinct(40, WAIT).await;
    each_delivered_once(&rx, &sent);
    // 40 successes and, alternating with them, at most 40 failures: no delivery of a message
    // was tried again because another of the same message failed.
    assert!(rx.calls() <= 80, "{} calls for 40 events", rx.calls());
    let mut retried = 0;
    for id in &sent {
        let v = gw.wait_status(id, "delivered", WAIT).await;
        let timeline = v["deliveries"][0]["timeline"].as_array().expect("timeline").clone();
        assert_eq!(timeline.last().expect("last")["outcome"], "delivered", "{v}");
        retried += usize::from(timeline.len() > 1);
    }
    assert!(retried >= 10, "only {retried} of 40 needed a retry: the receiver failed every other call");
    assert!(drain(&rabbit.topology().parked_queue()).await.is_empty(), "nothing parked");
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_forty_events_is_two_messages_on_the_destination_queue() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    // One attempt at a time, one message held: the rest of the queue stays ready, countable.
    let rx = Receiver::start(Mode::Slow(1_000)).await;
    let config = format!("{}{}prefetch = 1\n", db.store_config(), rabbit.queue_config(&amqp_url()));
    let gw = Gateway::start_with(&rx.url, "concurrency = 1", &config).await;
    let batch: Vec<Value> = (0..40).map(|n| prestazione(n, "F205")).collect();
    let (sent, _) = send_until_accepted(&gw, &batch).await;
    let deadline = Instant::now() + WAIT;
    while rx.calls() == 0 {
        assert!(Instant::now() < deadline, "no delivery attempted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // 32 deliveries in the message being consumed, 8 in the one waiting: one message ready, where
    // a message a delivery would leave 39.
    let conn = Rabbit::connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let queue = rabbit.topology().queue("cartella-vendor-a");
    let q = ch.queue_declare(queue.as_str().into(), passive, Default::default()).await.expect("queue");
    assert_eq!(q.message_count(), 1, "messages ready on {queue}");
    rx.set_mode(Mode::Ok);
    rx.wait_distinct(40, WAIT).await;
    each_delivered_once(&rx, &sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_parked_with_their_last_error_and_replay_delivers_them_once() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let rx = Receiver::start(Mode::Reject).await;
    let gw = gateway(&rx, "", &db.url, &rabbit, &amqp_url()).await;
    let batch: Vec<Value> = (0..3).map(|n| prestazione(n, "F205")).collect();
    let (sent, _) = send_until_accepted(&gw, &batch).await;
    for id in &sent {
        gw.wait_status(id, "dead_lettered", WAIT).await;
    }
    let (_, letters) = gw.get(KEY_A, "/v1/dead-letters").await;
    assert_eq!(letters.as_array().map(Vec::len), Some(3), "{letters}");
    // The parking queue holds the original messages with their last error.
    let parked = drain(&rabbit.topology().parked_queue()).await;
    assert_eq!(parked.len(), 3);
    let mut parked_ids = HashSet::new();
    for m in &parked {
        let (task, error) = csi_gateway::broker::consume::parked_task(&m.delivery).expect("a delivery");
        assert!(error.as_deref().unwrap_or("").contains("400"), "last error: {error:?}");
        let body: Value = serde_json::from_slice(&m.delivery.data).expect("the original CloudEvent");
        assert_eq!(body["id"], task.event_id.as_str());
        parked_ids.insert(task.event_id);
    }
    assert_eq!(parked_ids, sent.iter().cloned().collect());
    // Fixed receiver, bulk replay: each delivered once, under its original id.
    rx.set_mode(Mode::Ok);
    let (status, v) = gw.post_json(KEY_A, "/v1/dead-letters/replay", serde_json::json!({})).await;
    assert_eq!((status, v["replayed"].as_u64()), (StatusCode::OK, Some(3)), "{v}");
    rx.wait_distinct(3, WAIT).await;
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    assert!(rx.delivered().values().all(|&n| n == 1));
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_cut_mid_load_loses_nothing() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let proxy = Proxy::start(&host_port(&amqp_url())).await;
    let rx = Receiver::start(Mode::Slow(5)).await;
    let gw = gateway(&rx, "concurrency = 8", &db.url, &rabbit, &via_port(&amqp_url(), proxy.port)).await;
    let batch = |chunk: usize| (0..20).map(|n| prestazione(chunk * 20 + n, "F205")).collect::<Vec<Value>>();
    let mut sent = HashSet::new();
    for chunk in 0..8 {
        sent.extend(send_until_accepted(&gw, &batch(chunk)).await.0);
    }
    // The broker goes away while deliveries are under way: accepting answers 503 with
    // Retry-After (the events are committed, not yet confirmed), and the gateway is not ready.
    proxy.cut();
    for chunk in 8..12 {
        let (status, v) = gw
            .post(KEY_A, "application/cloudevents-batch+json", serde_json::to_vec(&batch(chunk)).unwrap())
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    }
    let ready = gw.http.get(format!("{}/readyz", gw.base)).send().await.expect("readyz");
    assert_eq!(ready.status().as_u16(), 503, "not ready without the broker");
    proxy.restore();
    // Clients send the refused batches again: the same events, now confirmed.
    for chunk in 8..30 {
        sent.extend(send_until_accepted(&gw, &batch(chunk)).await.0);
    }
    assert_eq!(sent.len(), 600);
    rx.wait_distinct(600, WAIT).await;
    assert_eq!(
        rx.delivered().keys().cloned().collect::<HashSet<_>>(),
        sent,
        "every accepted event delivered"
    );
    let client = db.client().await;
    let deadline = Instant::now() + WAIT;
    loop {
        let row = client
            .query_one("SELECT count(*) FROM deliveries WHERE status <> 'delivered' OR NOT published", &[])
            .await
            .expect("query");
        let left: i64 = row.get(0);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} deliveries not recorded as delivered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_mid_load_loses_nothing() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let proxy = Proxy::start(&host_port(&db.url)).await;
    let rx = Receiver::start(Mode::Slow(5)).await;
    let gw = gateway(&rx, "concurrency = 8", &via_port(&db.url, proxy.port), &rabbit, &amqp_url()).await;
    let mut sent = HashSet::new();
    let mut refusals = 0;
    for chunk in 0..20 {
        if chunk == 6 {
            // The database goes away for two seconds while events are accepted and delivered.
            proxy.cut_for(Duration::from_secs(2));
        }
        let batch: Vec<Value> = (0..20).map(|n| prestazione(chunk * 20 + n, "F205")).collect();
        let (got, n) = send_until_accepted(&gw, &batch).await;
        refusals += n;
        sent.extend(got);
    }
    assert_eq!(sent.len(), 400);
    assert!(refusals > 0, "the database cut was seen by clients as 503");
    rx.wait_distinct(400, WAIT).await;
    assert_eq!(rx.delivered().keys().cloned().collect::<HashSet<_>>(), sent);
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    audit_verifies(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_work_and_one_killed_mid_load_loses_nothing() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let rx = Receiver::start(Mode::Slow(20)).await;
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(gateway(&rx, "concurrency = 4", &db.url, &rabbit, &amqp_url()).await);
    }
    let mut sent = HashSet::new();
    for chunk in 0..12 {
        let batch: Vec<Value> = (0..25).map(|n| prestazione(chunk * 25 + n, "F205")).collect();
        let (got, _) = send_until_accepted(&gws[chunk % 3], &batch).await;
        sent.extend(got);
    }
    // Deliveries are under way on every instance; one dies without a chance to clean up.
    while rx.delivered().len() < 40 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gws[1].stop();
    rx.wait_distinct(300, WAIT).await;
    let delivered = rx.delivered();
    assert_eq!(delivered.keys().cloned().collect::<HashSet<_>>(), sent, "every accepted event delivered");
    let repeats: usize = delivered.values().map(|n| n - 1).sum();
    assert!(repeats <= 3 * 8, "only messages in flight at the kill come again (same webhook-id): {repeats}");
    for gw in [&gws[0], &gws[2]] {
        assert!(gw.delivered_count().await > 0.0, "{} delivered nothing", gw.base);
    }
    // Any surviving instance shows every event delivered; the chain written by all is linear.
    for id in &sent {
        gws[2].wait_status(id, "delivered", WAIT).await;
    }
    let (_, letters) = gws[0].get(KEY_A, "/v1/dead-letters").await;
    assert_eq!(letters.as_array().map(Vec::len), Some(0), "{letters}");
    audit_verifies(&gws[0]).await;
    // Nothing is left in the destination queue.
    let conn = Rabbit::connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let q = ch
        .queue_declare(
            rabbit.topology().queue("cartella-vendor-a").as_str().into(),
            passive,
            Default::default(),
        )
        .await
        .expect("queue");
    assert_eq!(q.message_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_cancelled_by_the_broker_consumes_again() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    let rx = Receiver::start(Mode::Ok).await;
    let gw = gateway(&rx, "", &db.url, &rabbit, &amqp_url()).await;
    let (first, _) = send_until_accepted(&gw, &[prestazione(1, "F205")]).await;
    rx.wait_distinct(1, WAIT).await;
    // An operator deletes the destination queue: the broker cancels the gateway's consumer.
    let conn = Rabbit::connect().await;
    let ch = conn.create_channel().await.expect("channel");
    let queue = rabbit.topology().queue("cartella-vendor-a");
    ch.queue_delete(queue.as_str().into(), Default::default()).await.expect("queue.delete");
    // The consumer declares its queue again and consumes from it: new events are delivered.
    let deadline = Instant::now() + WAIT;
    let passive = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    // (A failed passive declaration closes its channel: one channel per probe.)
    while conn
        .create_channel()
        .await
        .expect("channel")
        .queue_declare(queue.as_str().into(), passive, Default::default())
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "{queue} not declared again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (second, _) = send_until_accepted(&gw, &[prestazione(2, "F205")]).await;
    rx.wait_distinct(2, WAIT).await;
    let got: HashSet<String> = rx.delivered().keys().cloned().collect();
    assert_eq!(got, first.into_iter().chain(second).collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_attempts_keep_dying_is_parked_with_the_reason() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    // The receiver answers after 1.5 s: the attempt is in flight when the instance dies.
    let rx = Receiver::start(Mode::Slow(1_500)).await;
    let config = format!("{}{}delivery_limit = 2\n", db.store_config(), rabbit.queue_config(&amqp_url()));
    let mut gw = Gateway::start_with(&rx.url, "", &config).await;
    let (sent, _) = send_until_accepted(&gw, &[prestazione(1, "F205")]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    gw.kill9_and_restart().await;
    // Given again after the crash, the message is at the limit: parked, and the store says why.
    let v = gw.wait_status(&sent[0], "dead_lettered", WAIT).await;
    let error = v["deliveries"][0]["last_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("poison message"), "{v}");
    let parked = drain(&rabbit.topology().parked_queue()).await;
    assert_eq!(parked.len(), 1);
    let (task, last) = csi_gateway::broker::consume::parked_task(&parked[0].delivery).expect("a delivery");
    assert_eq!(task.event_id, sent[0]);
    assert!(last.unwrap_or_default().contains("poison message"));
    // Replayed once the cause is gone: delivered.
    rx.set_mode(Mode::Ok);
    let (status, _) = gw.post_json(KEY_A, "/v1/dead-letters/replay", serde_json::json!({})).await;
    assert_eq!(status, StatusCode::OK);
    gw.wait_status(&sent[0], "delivered", WAIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_refuses_does_not_fail_the_others_of_its_batch() {
    use lapin::options::{
        ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    };
    use lapin::types::FieldTable;
    let rabbit = Rabbit::create().await;
    let conn = Rabbit::connect().await;
    let ch = conn.create_channel().await.expect("channel");
    ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm mode");
    let exchange = rabbit.exchange.clone();
    let auto = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
    ch.exchange_declare(exchange.as_str().into(), lapin::ExchangeKind::Topic, auto, FieldTable::default())
        .await
        .expect("exchange");
    let queue = format!("{exchange}.bound");
    let q = QueueDeclareOptions::default();
    ch.queue_declare(queue.as_str().into(), q, FieldTable::default()).await.expect("queue");
    ch.queue_bind(
        queue.as_str().into(),
        exchange.as_str().into(),
        "bound".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind");
    let message = |key: &str, id: &str| csi_gateway::broker::Message {
        exchange: exchange.clone(),
        routing_key: key.into(),
        body: b"{}".to_vec(),
        headers: FieldTable::default(),
        message_id: id.into(),
        event_type: "t".into(),
    };
    let batch = [message("bound", "e-1"), message("nowhere", "e-2"), message("bound", "e-3")];
    let outcomes = csi_gateway::broker::publish_each_on(&ch, &batch).await.expect("channel works");
    let refused: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
    assert_eq!(refused, [false, true, false], "{outcomes:?}");
    assert!(outcomes[1].as_ref().unwrap_err().to_string().contains("no queue bound for routing key nowhere"));
    // The whole batch, as one answer, is refused because of the one message.
    assert!(csi_gateway::broker::publish_on(&ch, &batch).await.is_err());
    assert_eq!(drain(&queue).await.len(), 4, "both good messages were stored, twice");
    ch.queue_delete(queue.as_str().into(), Default::default()).await.expect("queue deleted");
}
