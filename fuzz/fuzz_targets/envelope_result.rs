//! A result message as the scheduler receives it: decoding never panics, and what decodes
//! re-encodes to a message that decodes again.
#![no_main]

use certfleet_proto::{Envelope, RotationResult};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(result) = Envelope::<RotationResult>::decode(data) {
        let again = Envelope::<RotationResult>::decode(&Envelope::encode(&result));
        assert!(again.is_ok(), "a re-encoded result decodes");
    }
});
