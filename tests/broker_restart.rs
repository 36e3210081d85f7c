//! RabbitMQ really restarted under load (`rabbitmqctl stop_app`, then `start_app`): queues and
//! messages are durable, the gateway reconnects by itself, and nothing accepted is lost.
//!
//! The broker is the machine's own, shared with every other test: this file holds one test, and
//! `scripts/test.sh` (`cargo test`) runs test binaries one after the other, so no other test sees
//! the restart.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test restarts RabbitMQ with rabbitmqctl, which cannot be run: {e}"));
    assert!(out.status.success(), "rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_restart_under_load_loses_nothing() {
    let (db, rabbit) = (PgDb::create().await, Rabbit::create().await);
    // The receiver is slow: messages wait in the quorum queue when the broker goes down.
    let rx = Receiver::start(Mode::Slow(20)).await;
    let config = format!("{}{}", db.store_config(), rabbit.queue_config(&amqp_url()));
    let gw = Gateway::start_with(&rx.url, "concurrency = 2", &config).await;
    let mut sent = HashSet::new();
    for chunk in 0..10 {
        let batch: Vec<Value> = (0..30).map(|n| prestazione(chunk * 30 + n, "F205")).collect();
        sent.extend(gw.send_until_accepted(&batch, WAIT).await.0);
    }
    assert!(rx.delivered().len() < 300, "still work queued when the broker stops");
    rabbitmqctl(&["stop_app"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    rabbitmqctl(&["start_app"]);
    for chunk in 10..14 {
        let batch: Vec<Value> = (0..30).map(|n| prestazione(chunk * 30 + n, "F205")).collect();
        sent.extend(gw.send_until_accepted(&batch, WAIT).await.0);
    }
    assert_eq!(sent.len(), 420);
    rx.wait_distinct(420, WAIT).await;
    assert_eq!(
        rx.delivered().keys().cloned().collect::<HashSet<_>>(),
        sent,
        "every accepted event delivered"
    );
    for id in &sent {
        gw.wait_status(id, "delivered", WAIT).await;
    }
    let (_, v) = gw.get(KEY_AUDITOR, "/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v}");
}
