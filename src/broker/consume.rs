//! One consumer per destination on its quorum queue.
//!
//! Each delivery a message carries (one, or up to [`message::BATCH_MAX`] published together) is
//! one attempt through the destination's outbound adapter, at most `concurrency` at once, with
//! `prefetch` messages held (default four times the concurrency): while some are recorded and
//! settled, others are already being attempted. Each outcome is written to the store first
//! (timeline, audit), then the message is settled on the broker once every delivery it carries is:
//! - delivered → nothing more;
//! - transient failure → republished alone to the retry tier of its delay (confirmed);
//! - permanent failure or retries exhausted → republished alone to the parking queue with its
//!   last error (confirmed);
//!
//! then the message is acknowledged. Nothing is acknowledged before its successors are safe, so an
//! instance killed at any point leaves the message to the broker, which gives it to another
//! consumer: delivered at least once, with the same `webhook-id` (the deliveries of a message given
//! again that are already settled are not attempted again).
//!
//! Acknowledgements are batched ([`Acks`]): the settled messages at the front of the channel's
//! unacknowledged ones go in one `basic.ack` with `multiple`, which costs the broker about a third
//! less CPU per message than one ack each (`BENCHMARKS.md`). A message settled behind one still in
//! its attempt is acknowledged alone after [`STRAGGLER`], so that a slow receiver never holds the
//! others' acknowledgements (and the prefetch window) for the length of its attempt.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use tokio::sync::{Notify, Semaphore};

use super::message::{self, Message};
use super::{publish_on, Broker, BrokerError, Topology};
use crate::deliver::{self, Destination, WorkerHealth};
use crate::metrics::Metrics;
use crate::store::{now_ms, Completion, Outcome, Queue, Task};

/// Starts one consumer per destination; they run (and reconnect) for the life of the process.
pub fn spawn_consumers(
    broker: Arc<Broker>,
    queue: Arc<dyn Queue>,
    destinations: Vec<Destination>,
    metrics: Arc<Metrics>,
    prefetch: u16,
) -> Arc<WorkerHealth> {
    let health = Arc::new(WorkerHealth::default());
    health.expected.store(destinations.len(), std::sync::atomic::Ordering::SeqCst);
    for d in destinations {
        let guard = deliver::RunningGuard::new(health.clone());
        let ctx =
            Arc::new(Ctx { broker: broker.clone(), queue: queue.clone(), dest: d, metrics: metrics.clone() });
        let prefetch = if prefetch == 0 {
            (ctx.dest.config.concurrency * 4).min(u16::MAX as usize) as u16
        } else {
            prefetch
        };
        tokio::spawn(async move {
            let _guard = guard;
            supervise(ctx, prefetch).await;
        });
    }
    health
}

struct Ctx {
    broker: Arc<Broker>,
    queue: Arc<dyn Queue>,
    dest: Destination,
    metrics: Arc<Metrics>,
}

/// Consumes, and consumes again after a connection loss or a cancellation, with backoff.
async fn supervise(ctx: Arc<Ctx>, prefetch: u16) {
    let name = ctx.dest.config.name.clone();
    let mut wait = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        match consume(&ctx, prefetch).await {
            Ok(()) => tracing::warn!(destination = %name, "consumer cancelled by RabbitMQ; consuming again"),
            Err(e) => {
                tracing::warn!(destination = %name, error = %e, retry_in_ms = wait.as_millis() as u64, "consumer stopped")
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            wait = Duration::from_millis(100);
        }
        tokio::time::sleep(wait + Duration::from_millis(fastrand::u64(0..=wait.as_millis() as u64 / 2)))
            .await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

async fn consume(ctx: &Arc<Ctx>, prefetch: u16) -> Result<(), BrokerError> {
    let dest = &ctx.dest.config.name;
    let topology = ctx.broker.topology();
    let ch = ctx.broker.confirm_channel().await?;
    topology.declare_destination(&ch, dest).await?;
    ch.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let queue = topology.queue(dest);
    let mut consumer = ch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(destination = %dest, queue = %queue, prefetch, "consuming");
    let slots = Arc::new(Semaphore::new(ctx.dest.config.concurrency));
    let acks = Arc::new(Acks::default());
    // Sends the acknowledgements for as long as this consumer runs; ended with it.
    let acking = AbortOnDrop(tokio::spawn(send_acks(ch.clone(), acks.clone())));
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        if acking.0.is_finished() {
            return Err(BrokerError::Amqp("the channel's acknowledgements could not be sent".into()));
        }
        acks.received(delivery.delivery_tag);
        // One task a message: the broker gives at most `prefetch` unacknowledged ones, so at most
        // that many tasks; `slots` bounds the attempts among them.
        let (ctx, ch, acks, slots) = (ctx.clone(), ch.clone(), acks.clone(), slots.clone());
        tokio::spawn(async move {
            if let Err(e) = handle(&ctx, &ch, &acks, &slots, delivery).await {
                // The channel broke: the broker redelivers what was not acknowledged.
                tracing::warn!(destination = %ctx.dest.config.name, error = %e, "message left to the broker for redelivery");
            }
        });
    }
    Ok(())
}

/// How long a settled message waits at most for the ones received before it to be settled too,
/// before it is acknowledged alone.
const STRAGGLER: Duration = Duration::from_millis(100);

/// The messages of one channel not yet acknowledged, by delivery tag (the broker numbers them in
/// the order it delivers them).
#[derive(Default)]
struct Acks {
    open: Mutex<BTreeMap<u64, Settled>>,
    wake: Notify,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Settled {
    /// In its attempt (or being given back to the queue): nothing may acknowledge it.
    No,
    /// Its outcome and successor are safe since then: it may be acknowledged.
    Since(Instant),
}

/// What to acknowledge now.
#[derive(Debug, Default, PartialEq)]
struct AckBatch {
    /// With `multiple`: every message up to this tag is settled.
    up_to: Option<u64>,
    /// Settled messages behind an unsettled one for longer than [`STRAGGLER`], one by one.
    alone: Vec<u64>,
}

impl Acks {
    fn received(&self, tag: u64) {
        self.lock().insert(tag, Settled::No);
    }

    /// The message's outcome and successor are safe: it may be acknowledged.
    fn settled(&self, tag: u64) {
        if let Some(s) = self.lock().get_mut(&tag) {
            *s = Settled::Since(Instant::now());
        }
        self.wake.notify_one();
    }

    /// The message was given back to the queue (`basic.nack`, sent): no acknowledgement covers it.
    fn given_back(&self, tag: u64) {
        self.lock().remove(&tag);
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Settled>> {
        // A panic while holding the lock leaves the map as it was between two whole operations.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes what can be acknowledged at `now`: the settled run at the front, with one
    /// `multiple` ack (which must never reach past a message still unsettled: it would be
    /// acknowledged too), and stragglers alone.
    fn take(&self, now: Instant) -> AckBatch {
        let mut open = self.lock();
        let mut batch = AckBatch::default();
        while let Some(entry) = open.first_entry() {
            if *entry.get() == Settled::No {
                break;
            }
            batch.up_to = Some(*entry.key());
            entry.remove();
        }
        open.retain(|tag, s| match s {
            Settled::Since(at) if now.duration_since(*at) >= STRAGGLER => {
                batch.alone.push(*tag);
                false
            }
            _ => true,
        });
        batch
    }
}

/// Sends a channel's acknowledgements as messages are settled, gathering those settled together.
async fn send_acks(ch: Channel, acks: Arc<Acks>) -> Result<(), BrokerError> {
    loop {
        // Woken by a settlement, or at least every STRAGGLER for the ones waiting behind a slow one.
        let _ = tokio::time::timeout(STRAGGLER, acks.wake.notified()).await;
        // The other handlers finishing at this moment join the same acknowledgement.
        tokio::task::yield_now().await;
        let batch = acks.take(Instant::now());
        if let Some(tag) = batch.up_to {
            ch.basic_ack(tag, BasicAckOptions { multiple: true }).await?;
        }
        for tag in batch.alone {
            ch.basic_ack(tag, BasicAckOptions::default()).await?;
        }
    }
}

/// Aborts a task when dropped (the acknowledgements of a consumer that stopped).
struct AbortOnDrop(tokio::task::JoinHandle<Result<(), BrokerError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One message: attempt, record, settle — for each of its deliveries when it carries several.
async fn handle(
    ctx: &Ctx,
    ch: &Channel,
    acks: &Acks,
    slots: &Semaphore,
    delivery: Delivery,
) -> Result<(), BrokerError> {
    let topology = ctx.broker.topology();
    let read = match message::tasks_of(&delivery) {
        Some(tasks) => tasks,
        None => message::task_of(&delivery).map(|t| vec![t]),
    };
    let tasks = match read {
        Ok(t) => t,
        Err(why) => {
            tracing::error!(destination = %ctx.dest.config.name, %why, "unreadable message parked");
            let parked = Message::of_delivery(&delivery, &topology.parking_exchange())
                .with(message::LAST_ERROR, message::text(&format!("unreadable message: {why}")));
            return settle(ch, acks, &delivery, &[parked]).await;
        }
    };
    // Given again by the broker (an instance died, or lost the broker, between recording an
    // outcome and acknowledging): a delivery already delivered or dead-lettered is not attempted
    // again — a dead letter would otherwise turn delivered without a replay.
    let mut open = Vec::with_capacity(tasks.len());
    for task in tasks {
        if delivery.redelivered && ctx.queue.settled(task.delivery_id).await.unwrap_or(false) {
            tracing::info!(destination = %ctx.dest.config.name, event_id = %task.event_id, "redelivered delivery already settled: not attempted again");
        } else {
            open.push(task);
        }
    }
    if open.is_empty() {
        acks.settled(delivery.delivery_tag);
        return Ok(());
    }
    // A retry that came back from its tier early waits again for what is left (a retry is always
    // a message of its own).
    if let Some(tier) = tier_left(&delivery, now_ms()) {
        let again = Message::of_delivery(&delivery, &topology.retry_exchange())
            .with(super::topology::TIER_HEADER, message::text(&tier));
        return settle(ch, acks, &delivery, &[again]).await;
    }
    // A message the broker gives again and again without an outcome (instances that crashed or
    // lost the broker during its attempt) is parked before the broker's own x-delivery-limit
    // would park it unrecorded: the store says why.
    let redelivered = header_int(&delivery, "x-delivery-count").unwrap_or(0);
    let limit = i64::from(topology.delivery_limit);
    let poison = redelivered >= limit.saturating_sub(1);
    let runs = open.into_iter().map(|task| async move {
        let completion = if poison {
            let error = format!(
                "poison message: given {redelivered} times without an outcome (an instance crashed or lost \
                 the broker during each attempt); parked before queue.delivery_limit = {limit}"
            );
            tracing::error!(destination = %ctx.dest.config.name, event_id = %task.event_id, %error, "dead letter");
            Completion { task, started_at: now_ms(), outcome: Outcome::Dead { error } }
        } else {
            // A slot is the receiver's: held for the attempt only, not while the outcome is
            // recorded and the message settled (a commit behind a large batch of accepted events
            // would otherwise keep the receiver waiting for work).
            // (Never closed: `ok()` only spares an unreachable error path.)
            let _slot = slots.acquire().await.ok();
            deliver::attempt(&ctx.dest, task, &ctx.metrics).await
        };
        deliver::record(&*ctx.queue, completion.clone()).await;
        next_message(topology, &completion)
    });
    // A message of several deliveries is acknowledged once all of them are settled; those that
    // failed go on alone, each to its retry tier or to the parking queue.
    let next: Vec<Message> = futures_util::future::join_all(runs).await.into_iter().flatten().collect();
    settle(ch, acks, &delivery, &next).await
}

/// The retry tier a message must wait in again when its `csi-not-before` is still ahead of `now`.
/// Saturating: the header may hold any integer.
fn tier_left(delivery: &Delivery, now: i64) -> Option<String> {
    let not_before = header_int(delivery, message::NOT_BEFORE)?;
    Topology::tier_for(not_before.saturating_sub(now)).map(|(tier, _)| tier)
}

/// An integer header of a received message.
fn header_int(delivery: &Delivery, key: &str) -> Option<i64> {
    delivery.properties.headers().as_ref().and_then(|h| message::int(h, key))
}

/// What must be safe on the broker before the message carrying a delivery is acknowledged: its
/// successor, a message of its own built from the delivery's state.
fn next_message(topology: &Topology, c: &Completion) -> Option<Message> {
    let attempts = AMQPValue::LongLongInt(i64::from(c.task.attempts) + 1);
    match &c.outcome {
        Outcome::Delivered { .. } => None,
        Outcome::Retry { at, .. } => {
            let retry = match Topology::tier_for(at.saturating_sub(now_ms())) {
                Some((tier, _)) => Message::of_task(&topology.retry_exchange(), &c.task)
                    .with(super::topology::TIER_HEADER, message::text(&tier)),
                None => Message::of_task(&topology.exchange, &c.task),
            };
            Some(
                retry
                    .with(message::ATTEMPTS, attempts)
                    .with(message::NOT_BEFORE, AMQPValue::LongLongInt(*at)),
            )
        }
        Outcome::Dead { error } => Some(
            Message::of_task(&topology.parking_exchange(), &c.task)
                .with(message::ATTEMPTS, attempts)
                .with(message::LAST_ERROR, message::text(error))
                .with("csi-dead-at", AMQPValue::LongLongInt(now_ms())),
        ),
    }
}

/// Publishes the successors (confirmed), then lets the message be acknowledged; if they cannot be
/// published the message goes back to the queue.
async fn settle(ch: &Channel, acks: &Acks, delivery: &Delivery, next: &[Message]) -> Result<(), BrokerError> {
    if let Err(e) = publish_on(ch, next).await {
        let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
        acks.given_back(delivery.delivery_tag);
        return Err(e);
    }
    acks.settled(delivery.delivery_tag);
    Ok(())
}

/// The delivery a message carries (for tests and tools that read the parking queue).
pub fn parked_task(delivery: &Delivery) -> Result<(Task, Option<String>), String> {
    let task = message::task_of(delivery)?;
    let error = delivery.properties.headers().as_ref().and_then(|h| message::string(h, message::LAST_ERROR));
    Ok((task, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_not_before(ms: i64) -> Delivery {
        let mut d = Delivery::mock(1, "".into(), "".into(), false, Vec::new());
        let mut h = FieldTable::default();
        h.insert(message::NOT_BEFORE.into(), AMQPValue::LongLongInt(ms));
        d.properties = lapin::BasicProperties::default().with_headers(h);
        d
    }

    #[test]
    fn one_ack_covers_the_settled_front_and_never_an_unsettled_message() {
        let acks = Acks::default();
        for tag in 1..=5 {
            acks.received(tag);
        }
        let now = Instant::now();
        assert_eq!(acks.take(now), AckBatch::default(), "nothing settled, nothing acknowledged");
        acks.settled(2);
        acks.settled(1);
        acks.settled(4);
        // 3 is still in its attempt: a multiple ack up to 4 would acknowledge it too.
        assert_eq!(acks.take(Instant::now()), AckBatch { up_to: Some(2), alone: vec![] });
        // 4 waits behind 3, then goes alone once it has waited STRAGGLER.
        assert_eq!(acks.take(Instant::now() + STRAGGLER), AckBatch { up_to: None, alone: vec![4] });
        // 3 given back to the queue: 5 is the front once settled, and nothing covers 3.
        acks.given_back(3);
        acks.settled(5);
        assert_eq!(acks.take(Instant::now()), AckBatch { up_to: Some(5), alone: vec![] });
        assert!(acks.lock().is_empty(), "every message accounted for");
    }

    #[test]
    fn a_message_given_back_blocks_the_front_until_its_nack_is_sent() {
        let acks = Acks::default();
        acks.received(1);
        acks.received(2);
        acks.settled(2);
        // 1 is being given back (publishing its successor failed, the nack is on its way).
        assert_eq!(acks.take(Instant::now()).up_to, None);
        acks.given_back(1);
        assert_eq!(acks.take(Instant::now()).up_to, Some(2));
    }

    #[test]
    fn a_not_before_at_either_end_of_time_is_due_or_waits_the_longest_tier() {
        let now = now_ms();
        assert_eq!(tier_left(&with_not_before(i64::MIN), now), None, "long past: due now");
        assert_eq!(tier_left(&with_not_before(now + 90_000), now).as_deref(), Some("30s"));
        assert_eq!(tier_left(&with_not_before(i64::MAX), now).as_deref(), Some("1h"));
    }
}
