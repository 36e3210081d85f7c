//! # csi-gateway
//!
//! The hub of the interoperability gateway for the Lombardy Cartella Sociale Informatizzata:
//! ingest (HTTP) → validate against the interchange contracts → authorize → store and enqueue in
//! one commit → route → deliver through outbound adapters with retries and dead letters, with a
//! hash-chained audit of every transition. See `ARCHITECTURE.md` for the map.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod broker;
pub mod config;
pub mod contracts;
pub mod coop;
pub mod deliver;
pub mod ingest;
pub mod isee;
pub mod metrics;
pub mod routing;
pub mod siuss;
pub mod store;
