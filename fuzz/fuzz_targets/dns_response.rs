//! DNS answers as the ACME DNS-01 code reads them: hickory's message parser, then the
//! CNAME lookup of a delegated challenge for every name the answer asks about.
#![no_main]

use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::from_vec(data) {
        for query in &message.queries {
            let _ = certfleet_worker::issuer::dns::lookup::cname_in(&message, query.name());
        }
        let _ = message.to_vec();
    }
});
