//! Event bodies for the load: the contract example with a unique `id` and `idempotencykey` each.
//!
//! Bodies are built before any clock starts, so the measured time is the gateway's, not JSON
//! serialization in the load generator.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The example event every scenario sends (the only one guaranteed valid against its contract).
pub const EXAMPLE: &str = "contracts/examples/it.lombardia.csi.prestazione.erogata.v1.json";

/// A ~1 KB JSON used as the SQLite row body when the example is missing.
const FALLBACK_BODY_LEN: usize = 1024;

/// The example CloudEvent, from which every sent event is derived.
pub struct Template {
    event: Value,
}

impl Template {
    /// Loads the example from the repository at `root`.
    pub fn load(root: &Path) -> Result<Self> {
        let path = root.join(EXAMPLE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("reading the example event {} (the gateway scenarios need it)", path.display())
        })?;
        let event: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        if !event.is_object() {
            bail!("{} is not a JSON object", path.display());
        }
        Ok(Self { event })
    }

    /// The event number `n` of run `run`, serialized: unique `id` and `idempotencykey`.
    pub fn event(&self, run: &str, n: usize) -> Value {
        let mut ev = self.event.clone();
        let key = format!("loadgen-{run}-{n}");
        ev["id"] = Value::String(key.clone());
        ev["idempotencykey"] = Value::String(key);
        ev
    }

    /// `count` single-event bodies (`application/cloudevents+json`).
    pub fn singles(&self, run: &str, count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|n| self.event(run, n).to_string().into_bytes()).collect()
    }

    /// `count` events as batch bodies (`application/cloudevents-batch+json`) of `size` events.
    pub fn batches(&self, run: &str, count: usize, size: usize) -> Vec<Vec<u8>> {
        (0..count)
            .step_by(size)
            .map(|start| {
                let end = (start + size).min(count);
                let batch: Vec<Value> = (start..end).map(|n| self.event(run, n)).collect();
                Value::Array(batch).to_string().into_bytes()
            })
            .collect()
    }
}

/// The row body for the raw SQLite measurement: the example's bytes, else a ~1 KB JSON.
pub fn row_body(root: &Path) -> Vec<u8> {
    match std::fs::read(root.join(EXAMPLE)) {
        Ok(bytes) => bytes,
        Err(_) => {
            let filler = "x".repeat(FALLBACK_BODY_LEN - 16);
            format!("{{\"filler\":\"{filler}\"}}").into_bytes()
        }
    }
}
