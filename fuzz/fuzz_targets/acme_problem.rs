//! ACME problem documents (RFC 7807 / RFC 8555 section 6.7) as the CA sends them, through
//! the one mapping onto retry or dead.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(problem) = serde_json::from_slice::<instant_acme::Problem>(data) {
        let e = certfleet_worker::issuer::acme::errors::from_problem(&problem, "new order");
        let _ = e.to_string();
    }
});
