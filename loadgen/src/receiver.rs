//! The loopback webhook receiver of the end-to-end scenario: answers 204 to everything and counts
//! distinct `webhook-id` headers (deliveries are at least once, so retries are not counted twice).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use tokio::sync::watch;

/// Shared counter of the receiver.
#[derive(Clone)]
pub struct Receiver {
    seen: Arc<Mutex<HashSet<String>>>,
    count: watch::Sender<usize>,
}

impl Receiver {
    /// Binds a free loopback port and serves in the background; returns the receiver and its
    /// address.
    pub async fn start() -> Result<(Self, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver on loopback")?;
        let addr = listener.local_addr().context("reading the receiver's address")?;
        let (count, _) = watch::channel(0);
        let receiver = Self { seen: Arc::default(), count };
        let app = Router::new().fallback(receive).with_state(receiver.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("loadgen: webhook receiver stopped: {e}");
            }
        });
        Ok((receiver, addr))
    }

    /// Distinct deliveries seen so far, as a watch that changes on every new one.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }
}

/// Reads the whole body (so the connection is reused), counts the delivery, answers 204.
async fn receive(State(r): State<Receiver>, headers: HeaderMap, _body: Bytes) -> StatusCode {
    if let Some(id) = headers.get("webhook-id").and_then(|v| v.to_str().ok()) {
        let n = {
            let mut seen = r.seen.lock().unwrap_or_else(|p| p.into_inner());
            seen.insert(id.to_owned());
            seen.len()
        };
        r.count.send_replace(n);
    }
    StatusCode::NO_CONTENT
}
