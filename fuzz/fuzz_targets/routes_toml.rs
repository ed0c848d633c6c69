//! `routes.toml`: the scheduler's routing table parser (TOML, globs, driver names).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = certfleet_scheduler::routes::Routes::parse(text);
    }
});
