//! Any bytes as an ISEE attestazione (INPS's XML): decoded or refused with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = csi_gateway_isee::decode_xml(data) {
        assert!(!e.to_string().is_empty());
    }
});
