//! PAN-OS XML API answers as the `panos` driver reads them: status, error codes and
//! messages, and the element lookups the driver makes.
#![no_main]

use certfleet_worker::driver::panos::xml::Response;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data).into_owned();
    if let Ok(r) = Response::parse("op", body) {
        let _ = r.text(&["result", "key"]);
        let _ = r.text(&["entry", "ssl-tls-service-profile", "certificate"]);
        let _ = r.has(&["result", "job"]);
        let _ = r.messages();
    }
});
