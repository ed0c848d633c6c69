//! Regression test for the first crash the fuzzer found (`fuzz/fuzz_targets/envelope_job.rs`,
//! input kept in `fuzz/corpus/envelope_job/regression-float-roundtrip.json`): a number in a
//! job's free-form `settings` changed value on a re-encode, because serde_json's default
//! float parser is not correctly rounded (2.22222e53 came back as 2.2222200000000002e53).
//! The workspace enables serde_json's `float_roundtrip`, so settings pass through the
//! scheduler, the database and the worker unchanged.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::{Envelope, RotationJob};

#[test]
fn numbers_in_settings_survive_a_re_encode() {
    let input = include_bytes!("../../fuzz/corpus/envelope_job/regression-float-roundtrip.json");
    let job = Envelope::<RotationJob>::decode(input).unwrap();
    let again = Envelope::<RotationJob>::decode(&Envelope::encode(&job)).unwrap();
    assert_eq!(again, job);
    for n in
        ["222222000000000000000000000000000012285882333461537679", "0.1", "1e-300", "84.43", "1.7976931348623157e308"]
    {
        let v: serde_json::Value = serde_json::from_str(n).unwrap();
        let back: serde_json::Value = serde_json::from_str(&v.to_string()).unwrap();
        assert_eq!(back, v, "{n}");
    }
}
