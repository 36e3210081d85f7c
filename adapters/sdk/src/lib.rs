//! # csi-gateway-sdk
//!
//! The small contract between the csi-gateway hub and its adapters. An outbound adapter takes one
//! interchange event (a CloudEvent, already validated and stored durably by the hub) and hands it to
//! an external system, answering with a [`Delivered`] receipt or a [`DeliveryError`] that says
//! whether trying again can help.
//!
//! What this crate is for: vendors and adapter authors depend on it without pulling in the hub.
//! What it is not for: queues, retries, storage, routing. The hub owns all of those; an adapter
//! makes exactly one attempt per call and classifies the outcome.
#![forbid(unsafe_code)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;

pub mod json;
pub mod text;

/// A boxed, sendable future, so that [`Outbound`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One interchange event on its way to one destination.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    /// The CloudEvent `id`, stable across retries and replays. Receivers deduplicate on it.
    pub id: String,
    /// The CloudEvent `type`, e.g. `it.lombardia.csi.prestazione.erogata.v1`.
    pub event_type: String,
    /// The ente (Belfiore/ISTAT code or Ambito code) the event belongs to.
    pub tenant: String,
    /// The publisher's idempotency key, passed on so receivers get exactly-once effect.
    pub idempotency_key: Option<String>,
    /// The complete CloudEvent in structured JSON mode, byte for byte as stored.
    pub body: Bytes,
    /// 1 for the first attempt at this destination, 2 for the first retry, and so on.
    pub attempt: u32,
}

/// What the receiver said when it accepted the event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// A short description of the receiver's answer, e.g. `HTTP 202`.
    pub detail: String,
}

/// Why an attempt failed, classified at the adapter edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Trying again later may succeed: connection refused, timeout, HTTP 5xx, 408, 429.
    #[error("transient failure: {reason}")]
    Transient {
        /// What happened, in words an operator understands. Never contains payload data.
        reason: String,
        /// The receiver's own hint (HTTP `Retry-After`), honoured by the hub's scheduler.
        retry_after: Option<Duration>,
    },
    /// Trying again with the same event will fail the same way: HTTP 4xx, a refused payload.
    #[error("permanent failure: {reason}")]
    Permanent {
        /// What happened, in words an operator understands. Never contains payload data.
        reason: String,
    },
}

impl DeliveryError {
    /// A transient failure without a receiver hint.
    pub fn transient(reason: impl Into<String>) -> Self {
        Self::Transient { reason: reason.into(), retry_after: None }
    }

    /// A permanent failure.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent { reason: reason.into() }
    }

    /// Whether the hub may schedule another attempt.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }

    /// The operator-facing reason.
    pub fn reason(&self) -> &str {
        match self {
            Self::Transient { reason, .. } | Self::Permanent { reason } => reason,
        }
    }
}

/// An outbound adapter: delivers one event to one configured destination.
///
/// Implementations must be cheap to call concurrently (the hub runs several attempts at once per
/// destination, up to the destination's `concurrency`), must not retry internally, and must bound
/// every attempt in time.
pub trait Outbound: Send + Sync {
    /// The adapter kind as written in config, e.g. `webhook`.
    fn kind(&self) -> &'static str;

    /// Makes one delivery attempt.
    fn deliver<'a>(&'a self, event: &'a OutboundEvent) -> BoxFuture<'a, Result<Delivered, DeliveryError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_is_visible_to_the_scheduler() {
        assert!(DeliveryError::transient("HTTP 503").is_transient());
        assert!(!DeliveryError::permanent("HTTP 400").is_transient());
        assert_eq!(DeliveryError::permanent("HTTP 400").reason(), "HTTP 400");
    }
}
