//! The install marker a device hands back on a redelivery (`driver::marker`): the device
//! controls the marker and the chain text; reading them never panics, and only a marker
//! naming the job with the installed leaf's fingerprint resumes.
#![no_main]

use certfleet_proto::JobId;
use certfleet_worker::driver::marker;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (found, chain) = marker::split_answer(&text);
    let job = found.and_then(marker::Marker::parse).map_or_else(JobId::new, |m| m.job_id);
    if let Ok(Some(resumed)) = marker::resume(job, found, chain) {
        let parsed = found.and_then(marker::Marker::parse).expect("a resumed marker parses");
        assert_eq!(resumed.issued.info.sha256_fingerprint, parsed.leaf_sha256);
    }
});
