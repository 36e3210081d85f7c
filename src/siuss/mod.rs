//! INPS SIUSS inside the hub: the flussi `PS_PSA_SINA` built from `prestazione` events and
//! served to INPS over WaaS (INPS polls the comune).
//!
//! - [`outbound`]: [`Siuss`], the built-in outbound adapter of a destination with
//!   `adapter = "siuss"`: one event → one flusso (or a cancellation, or a cancellation and a new
//!   insertion), checked against the SIUSS rules, numbered and stored for the feed;
//! - [`waas`]: [`Waas`], the feed (`GET /flussi`) and the outcomes (`POST /esiti`) without HTTP;
//!   `api/waas.rs` is its HTTP face;
//! - [`voucher`]: who may call WaaS: the PDND voucher (RS256 JWT against a JWKS) or an API gateway
//!   in front that already checked it;
//! - [`day`]: the Italian calendar day of the `id_flusso`;
//! - [`export`]: the web-upload channel, one file with many beneficiaries from the stored
//!   prestazioni of an ente (`csi-gateway siuss export`).
//!
//! Invariant: nothing reaches INPS that breaks a SIUSS rule; a refusal names the rule and the path
//! on the source event. No codice fiscale in a log line, a reason or an audit record.

pub mod day;
pub mod export;
pub mod outbound;
pub mod voucher;
pub mod waas;

pub use outbound::{check_config, Siuss};
pub use waas::Waas;
