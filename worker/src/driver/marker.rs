//! The install marker that makes installs idempotent per job id. Delivery is at least once: a
//! worker that dies after installing but before acking gets its job redelivered. Every
//! driver whose device can hold a file writes `<cert path>.certfleet-job` with the install,
//! naming the job and the SHA-256 of the leaf it installed. On a redelivery the pipeline
//! asks the session to [`resume`](super::DeviceSession::resume): when the marker names this
//! job and the device still holds that leaf, the earlier install is validated and reported
//! instead of a second key and certificate being deployed.
//!
//! The marker is plain text, no secrets: `certfleet-install v1`, then `job_id=<uuid>`,
//! `leaf_sha256=<hex>` and, when the install kept a previous pair as `.prev`,
//! `had_previous=true`. It is renamed into place before the new pair, so a crash between
//! the two leaves a marker whose leaf is not installed, which reads as "not installed".

use super::DriverError;
use crate::issuer::Issued;
use certfleet_proto::JobId;

/// The first line of every marker.
const HEADER: &str = "certfleet-install v1";
/// The suffix of the marker file beside the certificate path.
pub const SUFFIX: &str = ".certfleet-job";

/// What a marker records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// The job whose install this is.
    pub job_id: JobId,
    /// SHA-256 of the installed leaf (DER), lowercase hex.
    pub leaf_sha256: String,
    /// Whether the install kept the pair it replaced as `.prev` (rollback restores it).
    pub had_previous: bool,
}

impl Marker {
    /// The marker text without the `had_previous` line, for device scripts that append it
    /// themselves when they kept a previous pair.
    pub fn base_text(job_id: JobId, leaf_sha256: &str) -> String {
        format!("{HEADER}\njob_id={job_id}\nleaf_sha256={leaf_sha256}\n")
    }

    /// The whole marker text.
    pub fn text(&self) -> String {
        let mut s = Self::base_text(self.job_id, &self.leaf_sha256);
        if self.had_previous {
            s.push_str("had_previous=true\n");
        }
        s
    }

    /// Reads a marker; `None` for anything that is not one (no file, another format).
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().map(str::trim);
        if lines.next()? != HEADER {
            return None;
        }
        let (mut job_id, mut leaf, mut had_previous) = (None, None, false);
        for line in lines {
            match line.split_once('=') {
                Some(("job_id", v)) => job_id = v.parse().ok(),
                Some(("leaf_sha256", v)) if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    leaf = Some(v.to_ascii_lowercase());
                }
                Some(("had_previous", v)) => had_previous = v == "true",
                _ => {}
            }
        }
        Some(Self { job_id: job_id?, leaf_sha256: leaf?, had_previous })
    }
}

/// What a device said about its current install: the marker (if any) and the certificates
/// of the installed chain, PEM (never a key).
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The installed pair, as if just issued (its facts are read from the leaf).
    pub issued: Issued,
    /// Whether that install kept a previous pair.
    pub had_previous: bool,
}

/// Decides from a marker and the installed chain whether `job_id` is already installed.
/// `Ok(None)`: no marker, a marker of another job, or a marker whose leaf is not the one
/// installed (the earlier attempt stopped before its pair was in place).
pub fn resume(job_id: JobId, marker: Option<&str>, chain_pem: &str) -> Result<Option<Resumed>, DriverError> {
    let Some(marker) = marker.and_then(Marker::parse) else { return Ok(None) };
    if marker.job_id != job_id {
        return Ok(None);
    }
    let Ok(ders) = crate::certinfo::pem_chain_to_der(chain_pem) else { return Ok(None) };
    let Some(leaf) = ders.first() else { return Ok(None) };
    let info = crate::certinfo::describe(leaf).map_err(|e| DriverError::Device(format!("installed leaf: {e}")))?;
    if info.sha256_fingerprint != marker.leaf_sha256 {
        return Ok(None);
    }
    let chain: String = ders.iter().map(|d| crate::certinfo::der_to_pem(d)).collect();
    let issued = Issued { chain_pem: chain, leaf_der: leaf.clone(), info };
    Ok(Some(Resumed { issued, had_previous: marker.had_previous }))
}

/// Splits a device's answer to a resume script: the marker lines (up to the first PEM
/// block) and the PEM text after them. An empty answer means no marker.
pub fn split_answer(text: &str) -> (Option<&str>, &str) {
    match text.find("-----BEGIN") {
        Some(i) => (Some(&text[..i]).filter(|m| !m.trim().is_empty()), &text[i..]),
        None => (Some(text).filter(|m| !m.trim().is_empty()), ""),
    }
}

/// A shell fragment that prints the marker at `marker` and only the certificate blocks of
/// `path` (so a bundle that carries the key never sends it), or nothing when either file
/// is missing. Both arguments must already be shell-quoted.
pub fn resume_script(marker: &str, path: &str) -> String {
    format!(
        "if [ -f {marker} ] && [ -f {path} ]; then cat -- {marker}; \
         sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' -- {path}; fi\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn a_marker_round_trips_and_rejects_other_formats() {
        let m = Marker { job_id: JobId::new(), leaf_sha256: "ab".repeat(32), had_previous: true };
        assert_eq!(Marker::parse(&m.text()), Some(m.clone()));
        let first = Marker { had_previous: false, ..m.clone() };
        assert_eq!(Marker::parse(&Marker::base_text(m.job_id, &m.leaf_sha256)), Some(first));
        assert_eq!(Marker::parse(""), None);
        assert_eq!(Marker::parse("job_id=x\n"), None);
        assert_eq!(Marker::parse(&m.text().replace(&"ab".repeat(32), "zz")), None);
    }

    #[test]
    fn resume_needs_this_job_and_the_recorded_leaf() {
        use sha2::Digest as _;
        let (pem, der) = issued();
        let job = JobId::new();
        let fp = hex::encode(sha2::Sha256::digest(&der));
        let marker = Marker { job_id: job, leaf_sha256: fp.clone(), had_previous: true }.text();
        let got = resume(job, Some(&marker), &pem).unwrap().expect("resumed");
        assert_eq!(got.issued.leaf_der, der);
        assert_eq!(got.issued.info.sha256_fingerprint, fp);
        assert!(got.had_previous);
        // Another job's marker, no marker, or a leaf that is not the recorded one: not installed.
        assert!(resume(JobId::new(), Some(&marker), &pem).unwrap().is_none());
        assert!(resume(job, None, &pem).unwrap().is_none());
        let (other, _) = issued();
        assert!(resume(job, Some(&marker), &other).unwrap().is_none());
        assert!(resume(job, Some(&marker), "").unwrap().is_none());
        // The device's answer: marker lines, then the chain.
        let answer = format!("{marker}{pem}");
        assert_eq!(split_answer(&answer), (Some(marker.as_str()), pem.as_str()));
        assert_eq!(split_answer(""), (None, ""));
    }
}
