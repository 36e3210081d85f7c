//! Any bytes as a cooperative's JSON body, through the shipped JSON-API mapping: an answer per
//! item or one error for the body, never a panic.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use csi_gateway_coop::{read_json, Checks, Mapping, RowOutcome};
use libfuzzer_sys::fuzz_target;

static MAPPING: LazyLock<Mapping> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/coop");
    Mapping::load_named(&dir, "coop-json-api").expect("the shipped mapping loads")
});

fuzz_target!(|data: &[u8]| {
    let checks = Checks::new(time::macros::date!(2026 - 11 - 01));
    if let Ok(rows) = read_json(data, &MAPPING, &checks) {
        for r in rows {
            if let RowOutcome::Rejected(errors) = &r.outcome {
                assert!(!errors.is_empty(), "row {} rejected without a reason", r.row);
            }
        }
    }
});
