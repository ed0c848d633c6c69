//! `certfleet assets import FILE.csv`: the CLI's own reader (compiled in from
//! `cli/src/import.rs`): cells convert by column, bad rows name the column, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../cli/src/import.rs"]
mod import;

use certfleet_shared::db::assets::Known;
use libfuzzer_sys::fuzz_target;
use std::io::Write as _;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new().suffix(".csv").tempfile().expect("temp file");
    file.write_all(data).expect("write");
    if let Ok(rows) = import::parse(file.path(), import::Format::Csv) {
        for row in rows.into_iter().flatten() {
            let _ = row.validate(Known { issuers: &["internal"], routes: None });
        }
    }
});
