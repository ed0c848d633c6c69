//! `certfleet.toml`: the whole config loader (figment: defaults, the file, validation) as
//! every binary runs it at start-up. Errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Write as _;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
    file.write_all(data).expect("write");
    let _ = certfleet_shared::Config::load_from(Some(file.path()), Vec::new());
});
