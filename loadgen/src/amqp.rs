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

/// What a published message carries beyond the body, delivery mode 2 and the content type: the
/// parts of the gateway's messages, to measure what each costs the broker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Shape {
    /// The seven `csi-*` headers of a first publication.
    pub headers: bool,
    /// `message_id`, `type`, `app_id`, `timestamp`.
    pub properties: bool,
    /// Published `mandatory`.
    pub mandatory: bool,
}

impl Shape {
    /// From `--amqp-shape`: `plain`, or any of `headers`, `properties`, `mandatory`, or `gateway`
    /// (all three).
    pub fn parse(list: &[String]) -> Result<Self> {
        let mut s = Shape::default();
        for part in list {
            match part.as_str() {
                "plain" => {}
                "headers" => s.headers = true,
                "properties" => s.properties = true,
                "mandatory" => s.mandatory = true,
                "gateway" => s = Shape { headers: true, properties: true, mandatory: true },
                other => bail!(
                    "--amqp-shape: unknown part '{other}' (use plain, headers, properties, mandatory, gateway)"
                ),
            }
        }
        Ok(s)
    }

    /// What the messages carried, for the report (empty when plain).
    pub fn label(&self) -> String {
        let parts: Vec<&str> =
            [(self.headers, "headers"), (self.properties, "properties"), (self.mandatory, "mandatory")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, name)| *name)
                .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!(", with {}", parts.join(" + "))
        }
    }
}

/// Publishes `n` copies of `body` and consumes them, concurrently; the time until the last ack.
pub async fn measure(url: &str, n: usize, body: &[u8], shape: Shape) -> Result<Ceiling> {
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
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/cloudevents+json".into());
    if shape.properties {
        props = props
            .with_message_id("01a231ca-18e4-74c3-b092-d290eafcbaec".into())
            .with_type("it.lombardia.csi.prestazione.erogata.v1".into())
            .with_app_id("csi-gateway".into())
            .with_timestamp(1_796_131_657);
    }
    if shape.headers {
        let text = |s: &str| AMQPValue::LongString(s.into());
        let mut h = FieldTable::default();
        h.insert("csi-delivery-id".into(), AMQPValue::LongLongInt(123_456));
        h.insert("csi-destination".into(), text("cartella-vendor-a"));
        h.insert("csi-tenant".into(), text("F205"));
        h.insert("csi-digest".into(), text(&"3e7bd14ba7f4d19a".repeat(4)));
        h.insert("csi-idempotency-key".into(), text("F205:coop:AURORA:AUR-0099900#e2aa3fa1ce888b84"));
        h.insert("csi-attempts".into(), AMQPValue::LongLongInt(0));
        h.insert("csi-since".into(), AMQPValue::LongLongInt(1_796_131_657_966));
        props = props.with_headers(h);
    }
    let mandatory = shape.mandatory;
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
