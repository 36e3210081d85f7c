//! The outbox relay: from deliveries committed in the store to messages confirmed by RabbitMQ.
//!
//! An accepting request hands its events off ([`Relay::handoff`]) and answers 202 only once the
//! broker has confirmed their messages. Handoffs that arrive together are published together, on
//! a few pipelines, so that confirms are awaited per batch rather than per event. What a handoff
//! could not publish (broker down, timeout) stays unpublished in the store; the sweeper publishes
//! it once it is [`STALE_MS`] old, from whichever instance comes first: nothing committed is lost
//! when the broker, or the instance, fails between the commit and the confirm.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, Mutex};

use super::{message, BrokerError, Message, Publisher};
use crate::store::{Outbox, Task};

/// How long an unpublished delivery waits for its own handoff before the sweeper takes it.
pub const STALE_MS: i64 = 5_000;
/// How long a relay holds deliveries it is publishing before another may take them.
const LEASE_MS: i64 = 30_000;
/// How often the sweeper looks for stale deliveries.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Concurrent publishing pipelines per instance.
const PIPELINES: usize = 4;
/// Handoffs folded into one publication at most.
const MAX_BATCH: usize = 256;

/// Why a handoff did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandoffError {
    #[error("{0}")]
    Broker(#[from] BrokerError),
    #[error("store: {0}")]
    Store(String),
    #[error("RabbitMQ did not confirm within {0:?}")]
    Timeout(Duration),
}

struct Request {
    events: Vec<String>,
    done: oneshot::Sender<Result<(), HandoffError>>,
}

/// Publishes the outbox of one instance.
pub struct Relay {
    outbox: Arc<dyn Outbox>,
    publisher: Publisher,
    exchange: String,
    timeout: Duration,
    requests: mpsc::Sender<Request>,
    /// Deliveries confirmed by the broker, to mark published (in the background, batched).
    confirmed: mpsc::UnboundedSender<Vec<(i64, i64)>>,
}

impl Relay {
    /// Starts the publishing pipelines and the sweeper.
    pub fn spawn(
        outbox: Arc<dyn Outbox>,
        publisher: Publisher,
        exchange: String,
        timeout: Duration,
    ) -> Arc<Self> {
        outbox.keep_handoffs();
        let (tx, rx) = mpsc::channel(4096);
        let (confirmed, marks) = mpsc::unbounded_channel();
        tokio::spawn(mark_published(outbox.clone(), marks));
        let relay = Arc::new(Relay { outbox, publisher, exchange, timeout, requests: tx, confirmed });
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..PIPELINES {
            let (relay, rx) = (Arc::downgrade(&relay), rx.clone());
            tokio::spawn(async move {
                while let Some(batch) = next_batch(&rx).await {
                    let Some(relay) = relay.upgrade() else { return };
                    relay.publish_batch(batch).await;
                }
            });
        }
        let weak = Arc::downgrade(&relay);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                let Some(relay) = weak.upgrade() else { return };
                relay.sweep().await;
            }
        });
        relay
    }

    /// Publishes the unpublished deliveries of these events and waits for the broker's confirm.
    pub async fn handoff(&self, events: Vec<String>) -> Result<(), HandoffError> {
        if events.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        if self.requests.send(Request { events, done }).await.is_err() {
            return Err(HandoffError::Store("the relay has stopped".into()));
        }
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(HandoffError::Store("the relay has stopped".into())),
            Err(_) => Err(HandoffError::Timeout(self.timeout)),
        }
    }

    async fn publish_batch(&self, batch: Vec<Request>) {
        let events: Vec<String> = batch.iter().flat_map(|r| r.events.iter().cloned()).collect();
        let failed = match self.outbox.take_unpublished(Some(events), 0, 100_000, LEASE_MS).await {
            Ok(tasks) => self.publish_tasks(tasks, true).await,
            Err(e) => Err(HandoffError::Store(e.message)),
        };
        // A handoff fails only when one of its own events was not confirmed: a destination the
        // broker refuses does not fail requests whose events do not go there.
        for r in batch {
            let result = match &failed {
                Ok(failed) => match r.events.iter().find_map(|e| failed.iter().find(|(id, _)| id == e)) {
                    Some((_, e)) => Err(e.clone()),
                    None => Ok(()),
                },
                Err(e) => Err(e.clone()),
            };
            let _ = r.done.send(result);
        }
    }

    /// Publishes taken deliveries and settles each in the store: published once confirmed;
    /// otherwise given back (`release`, for the sweeper to try again soon) or left to its lease
    /// (so that a sweep moves on to the deliveries behind it). The events whose deliveries were
    /// not confirmed, with why; `Err` when none could be published (the broker is unreachable).
    async fn publish_tasks(
        &self,
        tasks: Vec<Task>,
        release: bool,
    ) -> Result<Vec<(String, HandoffError)>, HandoffError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let groups = batches(&tasks);
        // A group is never empty: one message each.
        let Some(messages) =
            groups.iter().map(|g| Message::of_tasks(&self.exchange, g)).collect::<Option<Vec<Message>>>()
        else {
            return Ok(Vec::new());
        };
        let outcomes = match tokio::time::timeout(self.timeout, self.publisher.publish_each(&messages)).await
        {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(e)) => Err(HandoffError::Broker(e)),
            Err(_) => Err(HandoffError::Timeout(self.timeout)),
        };
        let outcomes = match outcomes {
            Ok(o) => o,
            Err(e) => {
                let ids: Vec<i64> = tasks.iter().map(|t| t.delivery_id).collect();
                tracing::warn!(error = %e, deliveries = ids.len(), "not published: left in the outbox for the sweeper");
                self.give_back(ids, release).await;
                return Err(e);
            }
        };
        let (mut confirmed, mut refused, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        // Each delivery has the outcome of the message that carried it.
        for (group, outcome) in groups.iter().zip(outcomes) {
            for task in group {
                match &outcome {
                    Ok(()) => confirmed.push((task.delivery_id, task.since)),
                    Err(e) => {
                        tracing::warn!(error = %e, destination = %task.destination, event_id = %task.event_id, "not published: left in the outbox");
                        refused.push(task.delivery_id);
                        failed.push((task.event_id.clone(), HandoffError::Broker(e.clone())));
                    }
                }
            }
        }
        // Confirmed: the answer need not wait for the bookkeeping. Should the mark be lost (the
        // instance dies first), a sweeper publishes these again: a duplicate with the same
        // webhook-id, never a loss.
        if !confirmed.is_empty() {
            let _ = self.confirmed.send(confirmed);
        }
        if !refused.is_empty() {
            self.give_back(refused, release).await;
        }
        Ok(failed)
    }

    /// Deliveries not published: released now, or left to their lease.
    async fn give_back(&self, ids: Vec<i64>, release: bool) {
        if !release {
            return;
        }
        if let Err(se) = self.outbox.release(ids).await {
            tracing::warn!(error = %se, "cannot release deliveries: they are taken again when their lease ends");
        }
    }

    /// Publishes deliveries left unpublished for [`STALE_MS`], by any instance.
    async fn sweep(&self) {
        loop {
            let tasks = match self.outbox.take_unpublished(None, STALE_MS, 500, LEASE_MS).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox sweep: cannot read the store");
                    return;
                }
            };
            let n = tasks.len();
            if n == 0 {
                return;
            }
            // What the broker refuses keeps its lease (LEASE_MS): the next take reaches the
            // deliveries behind it instead of retrying it at once.
            match self.publish_tasks(tasks, false).await {
                Ok(failed) => tracing::info!(
                    deliveries = n - failed.len(),
                    refused = failed.len(),
                    "outbox sweep: published deliveries left behind"
                ),
                Err(_) => return,
            }
            if n < 500 {
                return;
            }
        }
    }
}

/// Marks confirmed deliveries as published, all those waiting in one statement.
async fn mark_published(outbox: Arc<dyn Outbox>, mut marks: mpsc::UnboundedReceiver<Vec<(i64, i64)>>) {
    while let Some(mut ids) = marks.recv().await {
        while let Ok(more) = marks.try_recv() {
            ids.extend(more);
        }
        let mut wait = Duration::from_millis(50);
        while let Err(e) = outbox.published(ids.clone()).await {
            if wait > Duration::from_secs(2) {
                tracing::warn!(error = %e, deliveries = ids.len(), "cannot mark deliveries published: the sweeper publishes them again");
                break;
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
    }
}

/// Waits for one handoff, then takes those already waiting behind it.
async fn next_batch(rx: &Mutex<mpsc::Receiver<Request>>) -> Option<Vec<Request>> {
    let mut rx = rx.lock().await;
    let first = rx.recv().await?;
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The deliveries that go in one message each, in their order: those of one destination and event
/// type, [`message::BATCH_MAX`] at most a message.
fn batches(tasks: &[Task]) -> Vec<Vec<&Task>> {
    let mut groups: Vec<Vec<&Task>> = Vec::new();
    // The group still open for each destination and event type.
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    for t in tasks {
        let key = (t.destination.as_str(), t.event_type.as_str());
        match open.get(&key).and_then(|&g| groups.get_mut(g)).filter(|g| g.len() < message::BATCH_MAX) {
            Some(group) => group.push(t),
            None => {
                open.insert(key, groups.len());
                groups.push(vec![t]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(n: i64, destination: &str, event_type: &str) -> Task {
        Task::example(n, &format!("e-{n}"), destination, event_type)
    }

    #[test]
    fn one_message_carries_the_deliveries_of_one_destination_and_type_up_to_the_most() {
        let mut tasks = vec![task(0, "a", "t1"), task(1, "b", "t1"), task(2, "a", "t2"), task(3, "a", "t1")];
        tasks.extend((4..4 + message::BATCH_MAX as i64).map(|n| task(n, "b", "t1")));
        let ids: Vec<Vec<i64>> =
            batches(&tasks).iter().map(|g| g.iter().map(|t| t.delivery_id).collect()).collect();
        let last = 3 + message::BATCH_MAX as i64;
        assert_eq!(ids[0], [0, 3]);
        assert_eq!(ids[1], [1].into_iter().chain(4..last).collect::<Vec<_>>(), "b/t1 holds BATCH_MAX");
        assert_eq!(ids[2], [2]);
        assert_eq!(ids[3], [last], "the one more starts a message of its own");
        assert_eq!(ids.len(), 4);
    }
}
