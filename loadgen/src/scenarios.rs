//! The gateway scenarios: closed-loop batch and single-event accept, end-to-end delivery to a
//! loopback receiver, open-loop latency at a fixed rate; resident memory sampled throughout.
//!
//! Every request must be answered `202`; the first other answer aborts the scenario with the
//! gateway's problem+json body, so a misconfiguration never passes for a slow gateway.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::header::CONTENT_TYPE;
use reqwest::StatusCode;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::gateway::{rss_bytes, API_KEY};
use crate::receiver::Receiver;

/// Media type of one event.
pub const SINGLE: &str = "application/cloudevents+json";
/// Media type of a batch.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// How long the end-to-end scenario waits without any new delivery before giving up.
const STALL: Duration = Duration::from_secs(60);

/// The HTTP client of every scenario: pooled keep-alive connections, generous timeout.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(1024)
        .build()
        .context("building the HTTP client")
}

/// A closed-loop or end-to-end run: how many events in how long, and the gateway's peak RSS.
pub struct Throughput {
    pub events: usize,
    pub elapsed: Duration,
    /// For end-to-end: when the last batch had been accepted (the rest is delivery backlog).
    pub accepted_after: Option<Duration>,
    pub peak_rss: u64,
}

impl Throughput {
    pub fn per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }
}

/// The open-loop run: latency distribution in microseconds.
pub struct Latency {
    pub sent: usize,
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub offered_rate: f64,
    pub p50_us: u32,
    pub p95_us: u32,
    pub p99_us: u32,
    pub max_us: u32,
    pub peak_rss: u64,
}

/// Samples the resident memory of a process every 100 ms and keeps the peak.
pub struct RssSampler {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                if let Ok(rss) = rss_bytes(pid) {
                    peak = peak.max(rss);
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => {
                        if let Ok(rss) = rss_bytes(pid) {
                            peak = peak.max(rss);
                        }
                        return peak;
                    }
                }
            }
        });
        Self { stop, task }
    }

    /// Stops sampling; the peak RSS in bytes.
    pub async fn finish(self) -> u64 {
        self.stop.send_replace(true);
        self.task.await.unwrap_or(0)
    }
}

/// POSTs every body with `clients` concurrent workers; returns the number of events accepted.
/// Aborts on the first answer that is not `202`, or on a duplicate inside a batch.
pub async fn post_all(
    http: reqwest::Client,
    urls: Vec<String>,
    bodies: Arc<Vec<Vec<u8>>>,
    content_type: &'static str,
    clients: usize,
) -> Result<usize> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = JoinSet::new();
    for w in 0..clients.max(1) {
        let url = urls[w % urls.len()].clone();
        let (http, bodies, next) = (http.clone(), bodies.clone(), next.clone());
        workers.spawn(async move {
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { return Ok::<_, anyhow::Error>(accepted) };
                let resp = http
                    .post(&url)
                    .bearer_auth(API_KEY)
                    .header(CONTENT_TYPE, content_type)
                    .body(body.clone())
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let status = resp.status();
                let text = resp.text().await.with_context(|| format!("reading the answer of POST {url}"))?;
                if status != StatusCode::ACCEPTED {
                    bail!("POST {url} (request {i}) answered {status}, expected 202:\n{text}");
                }
                if content_type == BATCH {
                    if text.contains("\"duplicate\"") {
                        bail!("POST {url} (batch {i}) reported duplicates: ids are not unique:\n{text}");
                    }
                    accepted += text.matches("\"accepted\"").count();
                } else {
                    accepted += 1;
                }
            }
        });
    }
    let mut total = 0;
    while let Some(done) = workers.join_next().await {
        match done.map_err(|e| anyhow!("a client task failed: {e}")).and_then(|r| r) {
            Ok(n) => total += n,
            Err(e) => {
                workers.abort_all();
                return Err(e);
            }
        }
    }
    Ok(total)
}

/// Closed loop: `clients` workers POST `bodies` as fast as answered; the gateway's `pid` is sampled.
pub async fn accept(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    bodies: Vec<Vec<u8>>,
    content_type: &'static str,
    clients: usize,
    expected: usize,
) -> Result<Throughput> {
    let url = format!("{base}/v1/events");
    let sampler = RssSampler::start(pid);
    let start = Instant::now();
    let events = post_all(http.clone(), vec![url], Arc::new(bodies), content_type, clients).await;
    let elapsed = start.elapsed();
    let peak_rss = sampler.finish().await;
    let events = events?;
    if events != expected {
        bail!("{events} events accepted, {expected} expected");
    }
    Ok(Throughput { events, elapsed, accepted_after: None, peak_rss })
}

/// End to end: POST the batches and wait until `receiver` has seen `expected` distinct deliveries.
pub async fn end_to_end(
    http: &reqwest::Client,
    bases: &[String],
    pid: u32,
    receiver: &Receiver,
    batches: Vec<Vec<u8>>,
    clients: usize,
    expected: usize,
) -> Result<Throughput> {
    let urls: Vec<String> = bases.iter().map(|base| format!("{base}/v1/events")).collect();
    let mut delivered = receiver.subscribe();
    let sampler = RssSampler::start(pid);
    let start = Instant::now();
    let mut sender = tokio::spawn(post_all(http.clone(), urls, Arc::new(batches), BATCH, clients));
    let mut accepted_after = None;
    let outcome = loop {
        let so_far = *delivered.borrow();
        if so_far >= expected {
            break Ok(start.elapsed());
        }
        tokio::select! {
            sent = &mut sender, if accepted_after.is_none() => {
                match sent.map_err(|e| anyhow!("the sender task failed: {e}")).and_then(|r| r) {
                    Ok(_) => accepted_after = Some(start.elapsed()),
                    Err(e) => break Err(e),
                }
            }
            changed = tokio::time::timeout(STALL, delivered.changed()) => match changed {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break Err(anyhow!("the webhook receiver stopped")),
                Err(_) => break Err(anyhow!(
                    "no new delivery for {STALL:?}: {so_far} of {expected} delivered"
                )),
            },
        }
    };
    sender.abort();
    let peak_rss = sampler.finish().await;
    let elapsed = outcome?;
    Ok(Throughput { events: expected, elapsed, accepted_after, peak_rss })
}

/// Open loop: one single-event request every `1/rate` s, each spawned on schedule without waiting
/// for earlier answers; latency is measured from the scheduled instant (no coordinated omission).
pub async fn latency(
    http: &reqwest::Client,
    base: &str,
    pid: u32,
    bodies: Vec<Vec<u8>>,
    rate: f64,
) -> Result<Latency> {
    let url = Arc::new(format!("{base}/v1/events"));
    let sent = bodies.len();
    let sampler = RssSampler::start(pid);
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut requests = JoinSet::new();
    let start = Instant::now();
    let mut last = start;
    for body in bodies {
        let scheduled = interval.tick().await;
        last = scheduled;
        let (http, url) = (http.clone(), url.clone());
        requests.spawn(async move {
            let resp = http
                .post(url.as_str())
                .bearer_auth(API_KEY)
                .header(CONTENT_TYPE, SINGLE)
                .body(body)
                .send()
                .await;
            let result = match resp {
                Ok(r) if r.status() == StatusCode::ACCEPTED => {
                    // The answer is complete once its (small) body is read.
                    r.bytes().await.map(|_| ()).map_err(|e| format!("reading the answer: {e}"))
                }
                Ok(r) => {
                    let status = r.status();
                    Err(format!("{status}: {}", r.text().await.unwrap_or_default()))
                }
                Err(e) => Err(format!("{e}")),
            };
            let us = u32::try_from(scheduled.elapsed().as_micros()).unwrap_or(u32::MAX);
            result.map(|()| us)
        });
    }
    let span = last.duration_since(start).as_secs_f64();
    let mut samples = Vec::with_capacity(sent);
    let (mut errors, mut first_error) = (0, None);
    while let Some(done) = requests.join_next().await {
        match done {
            Ok(Ok(us)) => samples.push(us),
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(format!("request task failed: {e}"));
            }
        }
    }
    let peak_rss = sampler.finish().await;
    if samples.is_empty() {
        bail!("no request succeeded; first error: {}", first_error.unwrap_or_default());
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    Ok(Latency {
        sent,
        ok: samples.len(),
        errors,
        first_error,
        offered_rate: if span > 0.0 { (sent - 1) as f64 / span } else { rate },
        p50_us: pct(0.50),
        p95_us: pct(0.95),
        p99_us: pct(0.99),
        max_us: samples[samples.len() - 1],
        peak_rss,
    })
}
