//! The raw RabbitMQ ceiling of this machine, measured the way the gateway uses the broker:
//! persistent messages of an event's size into a fresh durable quorum queue, publisher confirms
//! pipelined over a window, and a consumer acknowledging each message by hand with a prefetch.
//!
//! No HTTP, no database, no webhook: what the broker allows at best, against which the gateway's
//! end-to-end figure in cluster mode is read as a ratio.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};

/// Publisher confirms outstanding at most.
pub const WINDOW: usize = 1_000;
/// Messages a consumer holds unacknowledged (the gateway's default for a destination with
/// `concurrency = 64`).
pub const PREFETCH: u16 = 128;

/// What the broker achieved.
pub struct Ceiling {
    pub messages: usize,
    pub elapsed: Duration,
}

impl Ceiling {
    pub fn per_sec(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// Publishes `n` copies of `body` and consumes them, concurrently; the time until the last ack.
pub async fn measure(url: &str, n: usize, body: &[u8]) -> Result<Ceiling> {
    let conn = Connection::connect(url, ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to RabbitMQ at {}", redact(url)))?;
    let queue = format!("loadgen.ceiling.{}.{:x}", std::process::id(), fastrand_u32());
    let publisher = conn.create_channel().await?;
    publisher.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    publisher
        .queue_declare(queue.as_str().into(), durable, args)
        .await
        .context("declaring the quorum queue")?;
    let consumer_ch = conn.create_channel().await?;
    consumer_ch.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = consumer_ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let start = Instant::now();
    let consuming = tokio::spawn(async move {
        let mut got = 0;
        while got < n {
            match consumer.next().await {
                Some(Ok(d)) => {
                    d.ack(BasicAckOptions::default()).await?;
                    got += 1;
                }
                Some(Err(e)) => return Err(anyhow::Error::from(e)),
                None => bail!("consumer cancelled after {got} of {n} messages"),
            }
        }
        Ok(())
    });
    let v = std::env::var("LG_VARIANT").unwrap_or_default();
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into());
    if v.contains('p') {
        props = props
            .with_message_id("01a231ca-18e4-74c3-b092-d290eafcbaec".into())
            .with_type("it.lombardia.csi.prestazione.erogata.v1".into())
            .with_app_id("csi-gateway".into())
            .with_timestamp(1796131657);
    }
    if v.contains('h') {
        let mut h = FieldTable::default();
        h.insert("csi-delivery-id".into(), AMQPValue::LongLongInt(123456));
        h.insert("csi-destination".into(), AMQPValue::LongString("vendor".into()));
        h.insert("csi-tenant".into(), AMQPValue::LongString("F205".into()));
        h.insert(
            "csi-digest".into(),
            AMQPValue::LongString("3e7bd14ba7f4d19a83c6b6bd80992b38207bbe1b81fb5b3e662df66fa79e9f66".into()),
        );
        h.insert(
            "csi-idempotency-key".into(),
            AMQPValue::LongString("F205:coop:AURORA:AUR-0099900#e2aa3fa1ce888b84".into()),
        );
        h.insert("csi-attempts".into(), AMQPValue::LongLongInt(0));
        h.insert("csi-since".into(), AMQPValue::LongLongInt(1796131657966));
        props = props.with_headers(h);
    }
    if v.contains('1') {
        let mut h = FieldTable::default();
        h.insert("csi-since".into(), AMQPValue::LongLongInt(1796131657966));
        props = props.with_headers(h);
    }
    let mandatory = v.contains('m');
    // Pipelined: up to WINDOW publications in flight, their confirms awaited oldest first.
    let mut pending = VecDeque::with_capacity(WINDOW);
    for _ in 0..n {
        if pending.len() == WINDOW {
            check(pending.pop_front().expect("window not empty")).await?;
        }
        let confirm = publisher
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions { mandatory, ..BasicPublishOptions::default() },
                body,
                props.clone(),
            )
            .await?;
        pending.push_back(confirm);
    }
    for c in pending {
        check(c).await?;
    }
    consuming.await.context("consumer task")??;
    let elapsed = start.elapsed();
    let _ = publisher.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(Ceiling { messages: n, elapsed })
}

async fn check(confirm: lapin::PublisherConfirm) -> Result<()> {
    match confirm.await? {
        Confirmation::Nack(_) => bail!("the broker refused a message (nack)"),
        _ => Ok(()),
    }
}

fn fastrand_u32() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
}

/// An AMQP URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}
