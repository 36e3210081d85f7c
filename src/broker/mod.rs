//! Cluster mode's message broker: RabbitMQ through lapin.
//!
//! PostgreSQL stays the record of every event and delivery (status, timeline, dead letters,
//! audit); RabbitMQ carries the work between instances:
//!
//! - [`relay`]: an accepted event's deliveries are committed unpublished (the outbox), then
//!   published with pipelined publisher confirms; the 202 is sent once the broker has confirmed.
//!   A sweeper publishes what a failed handoff or a dead instance left behind.
//! - [`consume`]: one consumer per destination (manual acks, prefetch), an attempt per message;
//!   the outcome is recorded in the store first, then the message is acknowledged, sent to a retry
//!   tier, or parked.
//! - [`topology`]: exchanges and queues, declared at every connection.
//!
//! Connections are re-established with backoff after a broker restart or a network cut; a
//! consumer cancelled by the broker (its queue deleted, a quorum leader moved) consumes again.

pub mod consume;
pub mod message;
pub mod relay;
pub mod topology;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::Confirmation;
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::Mutex;

use crate::config::QueueConfig;
pub use message::Message;
pub use topology::Topology;

/// How long connecting (TCP, AMQP handshake, topology) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A failure to reach or use the broker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BrokerError {
    #[error("RabbitMQ unreachable: {0}")]
    Connect(String),
    #[error("RabbitMQ topology: {0}")]
    Topology(String),
    #[error("RabbitMQ: {0}")]
    Amqp(String),
    #[error("RabbitMQ refused the message: {0}")]
    Refused(String),
}

impl From<lapin::Error> for BrokerError {
    fn from(e: lapin::Error) -> Self {
        BrokerError::Amqp(e.to_string())
    }
}

/// The broker connection shared by the relay and the consumers of one instance.
pub struct Broker {
    url: String,
    name: String,
    topology: Topology,
    connection: Mutex<Option<Arc<Connection>>>,
}

impl Broker {
    pub fn new(config: &QueueConfig, destinations: Vec<String>) -> anyhow::Result<Arc<Self>> {
        let url = config.url.clone().ok_or_else(|| anyhow::anyhow!("queue.url is required"))?;
        let topology = Topology::new(&config.exchange, destinations, config.delivery_limit);
        let name = format!("csi-gateway {} pid {}", env!("CARGO_PKG_VERSION"), std::process::id());
        Ok(Arc::new(Broker { url, name, topology, connection: Mutex::new(None) }))
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The broker address without credentials, for logs.
    pub fn target(&self) -> String {
        crate::config::redact_url(&self.url)
    }

    /// A live connection: the current one, or a new one with the topology declared on it.
    pub async fn connection(&self) -> Result<Arc<Connection>, BrokerError> {
        let mut current = self.connection.lock().await;
        if let Some(c) = current.as_ref() {
            if c.status().connected() {
                return Ok(c.clone());
            }
        }
        *current = None;
        let props = ConnectionProperties::default().with_connection_name(self.name.as_str().into());
        let connect = async {
            let conn = Connection::connect(&self.url, props)
                .await
                .map_err(|e| BrokerError::Connect(e.to_string()))?;
            let ch = conn.create_channel().await?;
            self.topology.declare(&ch).await?;
            let _ = ch.close(200, "topology declared".into()).await;
            Ok::<_, BrokerError>(conn)
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| {
            BrokerError::Connect(format!("no answer from {} within {CONNECT_TIMEOUT:?}", self.target()))
        })??;
        tracing::info!(broker = %self.target(), "connected to RabbitMQ; topology declared");
        let conn = Arc::new(conn);
        *current = Some(conn.clone());
        Ok(conn)
    }

    /// A new channel in confirm mode.
    pub async fn confirm_channel(&self) -> Result<Channel, BrokerError> {
        let ch = self.connection().await?.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        Ok(ch)
    }

    /// Whether the broker can be reached now (connecting if needed).
    pub async fn ready(&self) -> Result<(), BrokerError> {
        self.connection().await.map(drop)
    }
}

/// Publishes on one confirm-mode channel, re-opened when it breaks.
pub struct Publisher {
    broker: Arc<Broker>,
    channel: Mutex<Option<Channel>>,
}

impl Publisher {
    pub fn new(broker: Arc<Broker>) -> Self {
        Publisher { broker, channel: Mutex::new(None) }
    }

    async fn channel(&self) -> Result<Channel, BrokerError> {
        let mut current = self.channel.lock().await;
        if let Some(ch) = current.as_ref() {
            if ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let ch = self.broker.confirm_channel().await?;
        *current = Some(ch.clone());
        Ok(ch)
    }

    /// Publishes messages and waits until the broker has confirmed every one of them. The
    /// publications are pipelined: all are sent, then the confirms are awaited.
    pub async fn publish(&self, messages: &[Message]) -> Result<(), BrokerError> {
        let ch = self.channel().await?;
        publish_on(&ch, messages).await
    }

    /// [`Publisher::publish`], answering for each message: one the broker refuses (no queue
    /// bound for it, not stored) does not take the others down with it. `Err` when the channel
    /// failed, and nothing is known of any.
    pub async fn publish_each(
        &self,
        messages: &[Message],
    ) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
        let ch = self.channel().await?;
        publish_each_on(&ch, messages).await
    }
}

/// Publishes messages on a confirm-mode channel and awaits their confirms (pipelined). A message
/// no queue takes (`mandatory`) or that the broker could not store counts as refused.
pub async fn publish_on(ch: &Channel, messages: &[Message]) -> Result<(), BrokerError> {
    publish_each_on(ch, messages).await?.into_iter().collect()
}

/// [`publish_on`], with each message's own outcome.
pub async fn publish_each_on(
    ch: &Channel,
    messages: &[Message],
) -> Result<Vec<Result<(), BrokerError>>, BrokerError> {
    let mut confirms = Vec::with_capacity(messages.len());
    for m in messages {
        let confirm = ch
            .basic_publish(
                m.exchange.as_str().into(),
                m.routing_key.as_str().into(),
                BasicPublishOptions { mandatory: true, ..BasicPublishOptions::default() },
                &m.body,
                m.properties(),
            )
            .await?;
        confirms.push((m, confirm));
    }
    let mut outcomes = Vec::with_capacity(confirms.len());
    for (m, confirm) in confirms {
        outcomes.push(match confirm.await? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(BrokerError::Refused(format!(
                "no queue bound for routing key {} on exchange {} ({})",
                m.routing_key, m.exchange, returned.reply_text
            ))),
            Confirmation::Nack(_) => {
                Err(BrokerError::Refused(format!("event {} not stored by the broker (nack)", m.message_id)))
            }
        });
    }
    Ok(outcomes)
}
