//! The RabbitMQ topology of cluster mode, as data: declared at every (re)connection by the
//! gateway, and rendered as a definitions file for operators who provision the broker themselves.
//!
//! Every name derives from `queue.exchange` (`X` below, default `csi.events`):
//!
//! | object | kind | role |
//! |---|---|---|
//! | `X` | topic exchange | interchange events, routing key `<destination>.<event type>` |
//! | `X.to.<destination>` | quorum queue, bound `<destination>.#` | work of one destination |
//! | `X.retry` | headers exchange | delayed retries, by the `csi-retry-tier` header |
//! | `X.retry.<tier>` | quorum queue with a message TTL | waits, then dead-letters back to `X` |
//! | `X.parking` | fanout exchange | dead letters |
//! | `X.parked` | quorum queue | the original messages with their last error |
//!
//! Destination queues dead-letter to `X.parking` (at-least-once) when a message is redelivered
//! more than `queue.delivery_limit` times: a poison message that crashes its consumers is parked
//! instead of looping. No plugin is required.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use serde_json::{json, Value};

/// Retry tiers (milliseconds). A retry waits in the longest tier not beyond its delay, as many
/// times as needed; a delay shorter than the first tier is retried at once.
pub const RETRY_TIERS_MS: [u64; 7] = [200, 1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000];

/// Header that routes a retry to its tier.
pub const TIER_HEADER: &str = "csi-retry-tier";

/// A queue or binding argument.
#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Text(String),
    Int(i64),
}

#[derive(Debug, Clone)]
struct ExchangeDef {
    name: String,
    kind: ExchangeKind,
}

#[derive(Debug, Clone)]
struct QueueDef {
    name: String,
    args: Vec<(&'static str, Arg)>,
}

#[derive(Debug, Clone)]
struct BindingDef {
    exchange: String,
    queue: String,
    routing_key: String,
    args: Vec<(&'static str, Arg)>,
}

/// Names and declarations of the broker objects for a set of destinations.
#[derive(Debug, Clone)]
pub struct Topology {
    pub exchange: String,
    pub destinations: Vec<String>,
    pub delivery_limit: u32,
}

impl Topology {
    pub fn new(exchange: &str, destinations: Vec<String>, delivery_limit: u32) -> Self {
        Topology { exchange: exchange.to_string(), destinations, delivery_limit }
    }

    pub fn retry_exchange(&self) -> String {
        format!("{}.retry", self.exchange)
    }

    pub fn parking_exchange(&self) -> String {
        format!("{}.parking", self.exchange)
    }

    /// The queue holding dead letters.
    pub fn parked_queue(&self) -> String {
        format!("{}.parked", self.exchange)
    }

    /// The work queue of a destination.
    pub fn queue(&self, destination: &str) -> String {
        format!("{}.to.{destination}", self.exchange)
    }

    pub fn tier_queue(&self, label: &str) -> String {
        format!("{}.retry.{label}", self.exchange)
    }

    /// Every queue of the topology.
    pub fn queues(&self) -> Vec<String> {
        self.queue_defs().into_iter().map(|q| q.name).collect()
    }

    /// Routing key of an event for a destination.
    pub fn routing_key(destination: &str, event_type: &str) -> String {
        format!("{destination}.{event_type}")
    }

    /// The tier a retry due in `delay_ms` waits in (its label and length), if any.
    pub fn tier_for(delay_ms: i64) -> Option<(String, u64)> {
        RETRY_TIERS_MS.iter().rev().find(|&&t| delay_ms >= t as i64).map(|&t| (tier_label(t), t))
    }

    fn exchange_defs(&self) -> Vec<ExchangeDef> {
        vec![
            ExchangeDef { name: self.exchange.clone(), kind: ExchangeKind::Topic },
            ExchangeDef { name: self.retry_exchange(), kind: ExchangeKind::Headers },
            ExchangeDef { name: self.parking_exchange(), kind: ExchangeKind::Fanout },
        ]
    }

    fn queue_defs(&self) -> Vec<QueueDef> {
        let quorum = || ("x-queue-type", Arg::Text("quorum".into()));
        let mut queues = vec![QueueDef { name: self.parked_queue(), args: vec![quorum()] }];
        for &ms in &RETRY_TIERS_MS {
            queues.push(QueueDef {
                name: self.tier_queue(&tier_label(ms)),
                args: vec![
                    quorum(),
                    ("x-message-ttl", Arg::Int(ms as i64)),
                    ("x-dead-letter-exchange", Arg::Text(self.exchange.clone())),
                    ("x-dead-letter-strategy", Arg::Text("at-least-once".into())),
                    ("x-overflow", Arg::Text("reject-publish".into())),
                ],
            });
        }
        for d in &self.destinations {
            queues.push(QueueDef {
                name: self.queue(d),
                args: vec![
                    quorum(),
                    ("x-delivery-limit", Arg::Int(i64::from(self.delivery_limit))),
                    ("x-dead-letter-exchange", Arg::Text(self.parking_exchange())),
                    ("x-dead-letter-strategy", Arg::Text("at-least-once".into())),
                    ("x-overflow", Arg::Text("reject-publish".into())),
                ],
            });
        }
        queues
    }

    fn binding_defs(&self) -> Vec<BindingDef> {
        let mut bindings = vec![BindingDef {
            exchange: self.parking_exchange(),
            queue: self.parked_queue(),
            routing_key: String::new(),
            args: vec![],
        }];
        for &ms in &RETRY_TIERS_MS {
            let label = tier_label(ms);
            bindings.push(BindingDef {
                exchange: self.retry_exchange(),
                queue: self.tier_queue(&label),
                routing_key: String::new(),
                args: vec![("x-match", Arg::Text("all".into())), (TIER_HEADER, Arg::Text(label))],
            });
        }
        for d in &self.destinations {
            bindings.push(self.destination_binding(d));
        }
        bindings
    }

    fn destination_binding(&self, destination: &str) -> BindingDef {
        BindingDef {
            exchange: self.exchange.clone(),
            queue: self.queue(destination),
            routing_key: format!("{destination}.#"),
            args: vec![],
        }
    }

    /// Declares everything (idempotent: an object that exists with the same arguments is kept;
    /// one with other arguments fails the declaration, naming it).
    pub async fn declare(&self, ch: &Channel) -> Result<(), super::BrokerError> {
        for x in self.exchange_defs() {
            ch.exchange_declare(
                x.name.as_str().into(),
                x.kind.clone(),
                durable_exchange(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| super::BrokerError::Topology(format!("exchange {}: {e}", x.name)))?;
        }
        for q in self.queue_defs() {
            declare_queue(ch, &q).await?;
        }
        for b in self.binding_defs() {
            bind(ch, &b).await?;
        }
        Ok(())
    }

    /// Declares one destination's queue and binding (before consuming from it again).
    pub async fn declare_destination(
        &self,
        ch: &Channel,
        destination: &str,
    ) -> Result<(), super::BrokerError> {
        if let Some(q) = self.queue_defs().into_iter().find(|q| q.name == self.queue(destination)) {
            declare_queue(ch, &q).await?;
            bind(ch, &self.destination_binding(destination)).await?;
        }
        Ok(())
    }

    /// The topology as a RabbitMQ definitions file (`rabbitmqctl import_definitions`, or the
    /// management plugin's `load_definitions`), for virtual host `/`.
    pub fn definitions(&self) -> Value {
        let args = |a: &[(&str, Arg)]| {
            Value::Object(
                a.iter()
                    .map(|(k, v)| {
                        let v = match v {
                            Arg::Text(s) => json!(s),
                            Arg::Int(n) => json!(n),
                        };
                        (k.to_string(), v)
                    })
                    .collect(),
            )
        };
        let exchanges: Vec<Value> = self
            .exchange_defs()
            .iter()
            .map(|x| {
                json!({ "name": x.name, "vhost": "/", "type": kind_name(&x.kind), "durable": true,
                        "auto_delete": false, "internal": false, "arguments": {} })
            })
            .collect();
        let queues: Vec<Value> = self
            .queue_defs()
            .iter()
            .map(|q| {
                json!({ "name": q.name, "vhost": "/", "durable": true, "auto_delete": false,
                        "arguments": args(&q.args) })
            })
            .collect();
        let bindings: Vec<Value> = self
            .binding_defs()
            .iter()
            .map(|b| {
                json!({ "source": b.exchange, "vhost": "/", "destination": b.queue,
                        "destination_type": "queue", "routing_key": b.routing_key,
                        "arguments": args(&b.args) })
            })
            .collect();
        json!({ "exchanges": exchanges, "queues": queues, "bindings": bindings })
    }
}

fn kind_name(kind: &ExchangeKind) -> &str {
    match kind {
        ExchangeKind::Custom(k) => k,
        ExchangeKind::Direct => "direct",
        ExchangeKind::Fanout => "fanout",
        ExchangeKind::Headers => "headers",
        ExchangeKind::Topic => "topic",
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() }
}

fn table(args: &[(&'static str, Arg)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in args {
        let v = match v {
            Arg::Text(s) => AMQPValue::LongString(s.as_str().into()),
            Arg::Int(n) => AMQPValue::LongLongInt(*n),
        };
        t.insert((*k).into(), v);
    }
    t
}

async fn declare_queue(ch: &Channel, q: &QueueDef) -> Result<(), super::BrokerError> {
    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    ch.queue_declare(q.name.as_str().into(), options, table(&q.args)).await.map_err(|e| {
        super::BrokerError::Topology(format!(
            "queue {}: {e} (a queue declared earlier with other arguments must be deleted, or the old settings kept)",
            q.name
        ))
    })?;
    Ok(())
}

async fn bind(ch: &Channel, b: &BindingDef) -> Result<(), super::BrokerError> {
    ch.queue_bind(
        b.queue.as_str().into(),
        b.exchange.as_str().into(),
        b.routing_key.as_str().into(),
        QueueBindOptions::default(),
        table(&b.args),
    )
    .await
    .map_err(|e| super::BrokerError::Topology(format!("binding {} → {}: {e}", b.exchange, b.queue)))
}

/// `200ms`, `1s`, `2m`, `1h`.
fn tier_label(ms: u64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_waits_in_the_longest_tier_not_beyond_its_delay() {
        assert_eq!(Topology::tier_for(150), None, "shorter than every tier: at once");
        assert_eq!(Topology::tier_for(200), Some(("200ms".into(), 200)));
        assert_eq!(Topology::tier_for(4_999), Some(("1s".into(), 1_000)));
        assert_eq!(Topology::tier_for(90_000), Some(("30s".into(), 30_000)));
        assert_eq!(Topology::tier_for(86_400_000), Some(("1h".into(), 3_600_000)));
    }

    #[test]
    fn shipped_definitions_match_the_declared_topology() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rabbitmq/definitions.json");
        let shipped: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("definitions.json"))
            .expect("definitions.json is JSON");
        // The destinations of deploy/config/gateway.cluster.toml, with the default settings.
        let topology = Topology::new("csi.events", vec!["cartella-vendor-a".into()], 20);
        assert_eq!(
            shipped,
            topology.definitions(),
            "deploy/rabbitmq/definitions.json is stale: regenerate it with `csi-gateway rabbitmq definitions`"
        );
    }
}
