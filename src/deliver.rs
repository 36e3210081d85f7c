//! Delivery: one worker per destination claims due deliveries from the [`Queue`], runs up to the
//! destination's `concurrency` attempts at once through its outbound adapter, and records each
//! outcome: delivered, retry later (exponential backoff with full jitter, honouring the receiver's
//! `Retry-After`), or dead letter (permanent failure, attempts or age exhausted).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use csi_gateway_sdk::{DeliveryError, Outbound, OutboundEvent};
use tokio::sync::Semaphore;

use crate::config::DestinationConfig;
use crate::metrics::Metrics;
use crate::store::{now_ms, Completion, Outcome, Queue, Task};

/// A configured destination with its adapter.
pub struct Destination {
    pub config: DestinationConfig,
    pub sink: Arc<dyn Outbound>,
}

/// How long a claimed delivery stays leased beyond the attempt timeout before another worker
/// may take it over.
const LEASE_MARGIN_MS: i64 = 30_000;
/// How often an idle worker looks for retries that have become due.
const IDLE_POLL: Duration = Duration::from_millis(200);

/// Counts running workers, for `/readyz`.
#[derive(Debug, Default)]
pub struct WorkerHealth {
    pub running: AtomicUsize,
    pub expected: AtomicUsize,
}

impl WorkerHealth {
    pub fn all_running(&self) -> bool {
        self.running.load(Ordering::SeqCst) == self.expected.load(Ordering::SeqCst)
    }
}

/// Counts a worker as running for as long as it lives.
pub(crate) struct RunningGuard(Arc<WorkerHealth>);

impl RunningGuard {
    pub(crate) fn new(health: Arc<WorkerHealth>) -> Self {
        health.running.fetch_add(1, Ordering::SeqCst);
        RunningGuard(health)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Starts one worker per destination.
pub fn spawn_workers(
    queue: Arc<dyn Queue>,
    destinations: Vec<Destination>,
    metrics: Arc<Metrics>,
) -> Arc<WorkerHealth> {
    let health = Arc::new(WorkerHealth::default());
    health.expected.store(destinations.len(), Ordering::SeqCst);
    for d in destinations {
        let guard = RunningGuard::new(health.clone());
        let (queue, metrics) = (queue.clone(), metrics.clone());
        tokio::spawn(async move {
            let _guard = guard;
            run(queue, Arc::new(d), metrics).await;
        });
    }
    health
}

async fn run(queue: Arc<dyn Queue>, dest: Arc<Destination>, metrics: Arc<Metrics>) {
    let name = dest.config.name.clone();
    let slots = Arc::new(Semaphore::new(dest.config.concurrency));
    let lease = dest.config.timeout_ms as i64 + LEASE_MARGIN_MS;
    let span = tracing::info_span!("destination", destination = %name, adapter = dest.sink.kind());
    let _enter = span.enter();
    tracing::info!("delivery worker started");
    loop {
        // Wait for at least one free slot, then claim as many deliveries as there are free slots.
        let Ok(first) = slots.clone().acquire_owned().await else { return };
        let free = slots.available_permits() + 1;
        let woken = queue.notified();
        let tasks = match queue.claim(name.clone(), free, lease).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "cannot claim deliveries; retrying in 1 s");
                drop(first);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if tasks.is_empty() {
            drop(first);
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(IDLE_POLL) => {}
            }
            continue;
        }
        let mut permit = Some(first);
        for task in tasks {
            let permit = match permit.take() {
                Some(p) => p,
                None => match slots.clone().acquire_owned().await {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let (queue, dest, metrics) = (queue.clone(), dest.clone(), metrics.clone());
            tokio::spawn(async move {
                let completion = attempt(&dest, task, &metrics).await;
                record(&*queue, completion).await;
                drop(permit);
            });
        }
    }
}

/// Makes one attempt and decides what follows.
pub(crate) async fn attempt(dest: &Destination, task: Task, metrics: &Metrics) -> Completion {
    let cfg = &dest.config;
    let started_at = now_ms();
    // Attempts and `since` may come from a broker message's headers: saturate, never wrap.
    let number = task.attempts.saturating_add(1);
    let event = OutboundEvent {
        id: task.event_id.clone(),
        event_type: task.event_type.clone(),
        tenant: task.tenant.clone(),
        idempotency_key: task.idempotency_key.clone(),
        body: bytes::Bytes::from(task.body.clone()),
        attempt: number,
    };
    // The adapter bounds its own attempts; this outer bound guards against an adapter that does not.
    let limit = Duration::from_millis(cfg.timeout_ms.saturating_add(5_000));
    let result = match tokio::time::timeout(limit, dest.sink.deliver(&event)).await {
        Ok(r) => r,
        Err(_) => Err(DeliveryError::transient(format!("no answer within {} ms", limit.as_millis()))),
    };
    let label = Metrics::label(&cfg.name);
    let outcome = match result {
        Ok(d) => {
            metrics.delivered.get_or_create(&label).inc();
            let secs = now_ms().saturating_sub(task.since).max(0) as f64 / 1000.0;
            metrics.delivery_latency.get_or_create(&label).observe(secs);
            tracing::debug!(event_id = %task.event_id, attempt = number, "delivered");
            Outcome::Delivered { detail: d.detail }
        }
        Err(DeliveryError::Permanent { reason }) => {
            metrics.dead_lettered.get_or_create(&label).inc();
            // Logs get the status line, not the receiver's body (it may echo payload data).
            let summary = crate::store::audit_summary(&reason);
            tracing::warn!(event_id = %task.event_id, attempt = number, reason = %summary, "permanent failure: dead letter");
            Outcome::Dead { error: format!("permanent: {reason}") }
        }
        Err(DeliveryError::Transient { reason, retry_after }) => {
            let now = now_ms();
            let delay = i64::try_from(retry_delay(cfg, number, retry_after).as_millis()).unwrap_or(i64::MAX);
            let at = now.saturating_add(delay);
            let max_age_ms = i64::try_from(cfg.max_age_secs).unwrap_or(i64::MAX).saturating_mul(1000);
            let deadline = task.since.saturating_add(max_age_ms);
            if number >= cfg.max_attempts {
                metrics.dead_lettered.get_or_create(&label).inc();
                Outcome::Dead { error: format!("gave up after {number} attempts; last: {reason}") }
            } else if at > deadline {
                metrics.dead_lettered.get_or_create(&label).inc();
                Outcome::Dead {
                    error: format!(
                        "gave up: next attempt would pass max_age_secs={}; last: {reason}",
                        cfg.max_age_secs
                    ),
                }
            } else {
                metrics.retried.get_or_create(&label).inc();
                let summary = crate::store::audit_summary(&reason);
                tracing::info!(event_id = %task.event_id, attempt = number, reason = %summary, retry_in_ms = at - now, "transient failure: retry");
                Outcome::Retry { at, error: reason }
            }
        }
    };
    Completion { task, started_at, outcome }
}

/// The delay before attempt `number + 1`: an exponential schedule from backon (doubling from
/// `backoff_min_ms`, capped at `backoff_max_ms`) with full jitter drawn over it, never shorter than
/// the receiver's `Retry-After`.
pub fn retry_delay(cfg: &DestinationConfig, number: u32, retry_after: Option<Duration>) -> Duration {
    let cap = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(cfg.backoff_min_ms))
        .with_max_delay(Duration::from_millis(cfg.backoff_max_ms))
        .with_factor(2.0)
        .without_max_times()
        .build()
        // Past 64 doublings every delay is the cap; stepping further (a broker header may say
        // 4 billion attempts) would only hold the worker.
        .nth(number.saturating_sub(1).min(64) as usize)
        .unwrap_or(Duration::from_millis(cfg.backoff_max_ms));
    let jittered = Duration::from_millis(fastrand::u64(0..=cap.as_millis() as u64));
    jittered.max(retry_after.unwrap_or_default())
}

/// Records an outcome; a store failure is retried, since the delivery already happened.
pub(crate) async fn record(queue: &dyn Queue, completion: Completion) {
    let mut wait = Duration::from_millis(50);
    loop {
        match queue.complete(vec![completion.clone()]).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, event_id = %completion.task.event_id, "cannot record outcome; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DestinationConfig {
        toml_dest("name = 'd'\nadapter = 'webhook'\nurl = 'http://x'\nsecret = 's'\nbackoff_min_ms = 100\nbackoff_max_ms = 1000")
    }

    fn toml_dest(s: &str) -> DestinationConfig {
        figment::Figment::from(figment::providers::Serialized::defaults(serde_json::json!({})))
            .merge(<figment::providers::Toml as figment::providers::Format>::string(s))
            .extract()
            .expect("destination parses")
    }

    #[test]
    fn delays_grow_then_cap_and_honour_retry_after() {
        let c = cfg();
        for n in 1..20 {
            let d = retry_delay(&c, n, None);
            let cap = (100u64 << (n - 1).min(10)).min(1000);
            assert!(d <= Duration::from_millis(cap), "attempt {n}: {d:?} over cap {cap}");
        }
        assert!(retry_delay(&c, 1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }

    /// An adapter that always answers the same.
    struct Answers(Result<csi_gateway_sdk::Delivered, DeliveryError>);

    impl Outbound for Answers {
        fn kind(&self) -> &'static str {
            "test"
        }

        fn deliver<'a>(
            &'a self,
            _: &'a OutboundEvent,
        ) -> csi_gateway_sdk::BoxFuture<'a, Result<csi_gateway_sdk::Delivered, DeliveryError>> {
            Box::pin(std::future::ready(self.0.clone()))
        }
    }

    fn task(attempts: u32, since: i64) -> Task {
        Task {
            delivery_id: 1,
            event_id: "e-1".into(),
            destination: "d".into(),
            event_type: "t".into(),
            tenant: "F205".into(),
            idempotency_key: None,
            body: b"{}".to_vec(),
            digest: String::new(),
            attempts,
            since,
        }
    }

    async fn outcome(answer: Result<csi_gateway_sdk::Delivered, DeliveryError>, task: Task) -> Outcome {
        let dest = Destination { config: cfg(), sink: Arc::new(Answers(answer)) };
        attempt(&dest, task, &Metrics::default()).await.outcome
    }

    #[tokio::test]
    async fn attempts_and_times_at_their_limits_are_decided_not_overflowed() {
        let ok = || Ok(csi_gateway_sdk::Delivered { detail: "HTTP 200".into() });
        let busy = || Err(DeliveryError::transient("HTTP 503"));
        let delivered = outcome(ok(), task(0, i64::MIN)).await;
        assert!(matches!(delivered, Outcome::Delivered { .. }), "{delivered:?}");
        let spent = outcome(busy(), task(u32::MAX, now_ms())).await;
        assert!(
            matches!(&spent, Outcome::Dead { error } if error.starts_with("gave up after 4294967295 attempts")),
            "{spent:?}"
        );
        assert!(retry_delay(&cfg(), u32::MAX, None) <= Duration::from_millis(1000));
        // A cycle that starts at the end of time never passes max_age_secs: it is retried.
        let late = outcome(busy(), task(0, i64::MAX)).await;
        assert!(matches!(late, Outcome::Retry { .. }), "{late:?}");
    }
}
