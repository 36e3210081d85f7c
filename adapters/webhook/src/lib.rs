//! # csi-gateway-webhook
//!
//! The outbound **webhook adapter**: it POSTs one interchange event (a CloudEvent in structured
//! JSON mode, byte for byte as the hub stored it) to one configured HTTP(S) endpoint, signed per the
//! [Standard Webhooks](https://www.standardwebhooks.com/) specification, and classifies the answer
//! as [`Delivered`](csi_gateway_sdk::Delivered), a transient failure or a permanent failure.
//!
//! What it does:
//! - [`WebhookConfig`]: the serde-typed destination config (URL, signing secret, timeouts, static
//!   headers), whose `Debug` never shows the secret.
//! - [`WebhookSink`]: one validated config plus one pooled HTTP client, implementing
//!   [`Outbound`](csi_gateway_sdk::Outbound). Each call makes exactly one request, bounded by the
//!   configured connect and request timeouts, and never follows redirects.
//! - [`sign`] / [`verify`]: the Standard Webhooks `v1` HMAC-SHA256 signature, as pure functions
//!   that receivers and tests can use too.
//! - [`classify_response`] / [`parse_retry_after`]: the pure mapping from an HTTP answer to a
//!   delivery outcome.
//!
//! What it does not do: retries, backoff, queueing, dead-lettering, concurrency limits or
//! persistence — the hub owns all of those. It does not parse or rewrite the event body, does not
//! follow redirects, does not read proxy settings from the environment, and never puts the payload
//! or the secret into an error reason or a log line.
#![forbid(unsafe_code)]

mod classify;
mod client;
mod config;
mod sign;

pub use classify::{classify_response, parse_retry_after, MAX_ERROR_BODY_BYTES, MAX_RETRY_AFTER};
pub use client::WebhookSink;
pub use config::{ConfigError, WebhookConfig};
pub use sign::{decode_secret, sign, verify, SecretError, VerifyError};
