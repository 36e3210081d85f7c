//! Any bytes as a cooperative's CSV file, through the shipped Excel-style mapping: every row gets
//! an answer, in file order, and nothing panics.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use csi_gateway_coop::{read_csv, Checks, Mapping, RowOutcome};
use libfuzzer_sys::fuzz_target;

static MAPPING: LazyLock<Mapping> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/coop");
    Mapping::load_named(&dir, "coop-excel-csv").expect("the shipped mapping loads")
});

fuzz_target!(|data: &[u8]| {
    let checks = Checks::new(time::macros::date!(2026 - 11 - 01));
    let mut last = 0;
    for r in read_csv(data, &MAPPING, &checks) {
        assert!(r.row > last, "row numbers go forward: {last} then {}", r.row);
        last = r.row;
        if let RowOutcome::Rejected(errors) = &r.outcome {
            assert!(!errors.is_empty(), "row {} rejected without a reason", r.row);
        }
    }
});
