//! A job message as a worker receives it: decoding never panics, and what decodes
//! re-encodes to a message that decodes to the same job.
#![no_main]

use certfleet_proto::{Envelope, RotationJob};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(job) = Envelope::<RotationJob>::decode(data) {
        let again = Envelope::<RotationJob>::decode(&Envelope::encode(&job)).expect("a re-encoded job decodes");
        assert_eq!(again, job);
    }
});
