//! `certfleet assets import FILE.json`: the CLI's own reader (compiled in from
//! `cli/src/import.rs`) and the row parser it shares with the API. Bad rows are errors that
//! name a field, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../cli/src/import.rs"]
mod import;

use certfleet_shared::db::assets::Known;
use libfuzzer_sys::fuzz_target;
use std::io::Write as _;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::Builder::new().suffix(".json").tempfile().expect("temp file");
    file.write_all(data).expect("write");
    if let Ok(rows) = import::parse(file.path(), import::Format::Json) {
        for row in rows.into_iter().flatten() {
            let _ = row.validate(Known { issuers: &["internal"], routes: None });
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = certfleet_shared::db::assets::AssetInput::from_json(0, value);
    }
});
