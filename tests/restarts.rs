//! RabbitMQ, then PostgreSQL, really restarted under load (`rabbitmqctl stop_app` / `start_app`,
//! `pg_ctlcluster ... restart`): queues, messages and rows are durable, the gateway reconnects by
//! itself, and nothing accepted is lost.
//!
//! The servers are the machine's own, shared with every other test: this file holds one test, and
//! `scripts/test.sh` (`cargo test`) runs test binaries one after the other, so no other test sees
//! the restarts.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test restarts a server with {program}, which cannot be run: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Restarts the PostgreSQL cluster listening on the tests' port.
fn restart_postgres() {
    let port = host_port(&postgres_admin_url()).rsplit(':').next().unwrap_or("5432").to_string();
    let clusters = run("pg_lsclusters", &["-h"]);
    let cluster = clusters
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == port)
        .unwrap_or_else(|| panic!("no PostgreSQL cluster on port {port} in pg_lsclusters: {clusters}"));
    run("pg_ctlcluster", &["--skip-systemctl-redirect", cluster[0], cluster[1], "restart"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_then_postgresql_restarted_under_load_lose_nothing() {
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
    run("rabbitmqctl", &["stop_app"]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    run("rabbitmqctl", &["start_app"]);
    for chunk in 10..14 {
        let batch: Vec<Value> = (0..30).map(|n| prestazione(chunk * 30 + n, "F205")).collect();
        sent.extend(gw.send_until_accepted(&batch, WAIT).await.0);
    }
    assert_eq!(sent.len(), 420);
    rx.wait_distinct(420, WAIT).await;
    // PostgreSQL restarted while deliveries are recorded and new events accepted.
    for chunk in 14..20 {
        let batch: Vec<Value> = (0..30).map(|n| prestazione(chunk * 30 + n, "F205")).collect();
        sent.extend(gw.send_until_accepted(&batch, WAIT).await.0);
    }
    restart_postgres();
    for chunk in 20..24 {
        let batch: Vec<Value> = (0..30).map(|n| prestazione(chunk * 30 + n, "F205")).collect();
        sent.extend(gw.send_until_accepted(&batch, WAIT).await.0);
    }
    assert_eq!(sent.len(), 720);
    rx.wait_distinct(720, WAIT).await;
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
