//! The install marker and the `local` driver on a full disk, in process (issue 15).
//!
//! - `local`: a job whose pair an earlier delivery installed (the session was abandoned
//!   right after install, as when the worker dies) is validated and reported again, not
//!   rotated; a new job id rotates afresh.
//! - `local` on a small tmpfs filled to within a few pages: every failure leaves the
//!   previous pair in place and no temporary file behind, and names the path and ENOSPC.
//! - `aws-ssm`: moto cannot run scripts (see `aws_ssm.rs`), so the marker scripts run here
//!   with `/bin/sh`, as the SSM agent would: install writes the marker, the resume script
//!   prints it and the chain (never the key), and a resumed rollback restores `.prev`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use certfleet_proto::{Driver, JobId, RotationOutcome};
use certfleet_shared::config::drivers::DriversConfig;
use certfleet_shared::config::{InternalIssuerConfig, IssuerConfig};
use certfleet_worker::driver::aws_ssm::script;
use certfleet_worker::driver::{DriverSet, marker};
use certfleet_worker::issuer::IssuerSet;
use certfleet_worker::rotation::{JobContext, rotate};
use std::io::Write as _;
use std::path::{Path, PathBuf};

async fn context(ca: &Path) -> JobContext {
    let issuer = IssuerConfig::Internal(InternalIssuerConfig { ca_dir: ca.to_owned(), ..Default::default() });
    let issuers = IssuerSet::from_config(&[("internal".to_owned(), issuer)].into()).await.unwrap();
    JobContext {
        drivers: DriverSet::new(&[Driver::Local, Driver::AwsSsm], &DriversConfig::default()).unwrap(),
        issuers,
    }
}

fn local_job(cert: &Path, key: &Path) -> certfleet_proto::RotationJob {
    common::job(Driver::Local, "a.example.test", &[], serde_json::json!({"cert_path": cert, "key_path": key}))
}

fn fingerprint(outcome: &RotationOutcome) -> String {
    match outcome {
        RotationOutcome::Rotated { certificate } => certificate.sha256_fingerprint.clone(),
        other => panic!("not rotated: {other:?}"),
    }
}

#[tokio::test]
async fn local_redelivery_after_install_reports_the_installed_pair() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir.path().join("ca")).await;
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    let job = local_job(&cert, &key);

    // The first delivery installs, then the worker "dies": nothing after install runs.
    let driver = ctx.drivers.get(Driver::Local).unwrap().clone();
    let mut session = driver.open(&job).await.unwrap();
    let csr = session.generate_csr(&job).await.unwrap();
    let issued = ctx.issuers.get("internal").unwrap().sign(&csr, &job).await.unwrap();
    session.install(&issued).await.unwrap();
    drop(session);
    let installed = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let marker_text = std::fs::read_to_string(dir.path().join("site.crt.certfleet-job")).unwrap();
    assert_eq!(marker::Marker::parse(&marker_text).unwrap().job_id, job.job_id);

    let again = rotate(&job, &ctx).await.unwrap();
    assert_eq!(fingerprint(&again.outcome), issued.info.sha256_fingerprint);
    assert_eq!((std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()), installed, "no second deploy");

    let next = rotate(&local_job(&cert, &key), &ctx).await.unwrap();
    assert_ne!(fingerprint(&next.outcome), issued.info.sha256_fingerprint, "a new job rotates");
    assert_ne!(std::fs::read(&cert).unwrap(), installed.0);
}

/// A tmpfs mounted for one test; unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(ok.success(), "mount -t tmpfs (the tests run as root)");
        Self(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(self.0.path()).status();
    }
}

/// Fills the file system with `fill` until ENOSPC; returns the bytes written.
fn fill_up(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let page = [0u8; 4096];
    let mut written = 0;
    loop {
        match f.write(&page) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "{e}");
                break;
            }
        }
    }
    f.sync_all().ok();
    written
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn local_on_a_full_disk_keeps_the_previous_pair_and_names_enospc() {
    let disk = Tmpfs::mount("256k");
    let ca = tempfile::tempdir().unwrap();
    let ctx = context(ca.path()).await;
    let (cert, key) = (disk.path("site.crt"), disk.path("site.key"));
    let old = rcgen::generate_simple_self_signed(vec!["a.example.test".into()]).unwrap();
    std::fs::write(&cert, old.cert.pem()).unwrap();
    std::fs::write(&key, old.signing_key.serialize_pem()).unwrap();
    let old_pair = (std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap());
    let fill = disk.path("fill");
    let full = fill_up(&fill);

    // Free one more page each time, until the rotation fits.
    let mut failures = 0;
    for free_pages in 0..16u64 {
        std::fs::OpenOptions::new().write(true).open(&fill).unwrap().set_len(full - free_pages * 4096).unwrap();
        match rotate(&local_job(&cert, &key), &ctx).await {
            Ok(done) => {
                fingerprint(&done.outcome);
                assert!(failures > 0, "the full disk never failed a rotation");
                assert_ne!(std::fs::read(&cert).unwrap(), old_pair.0, "installed once there was room");
                return;
            }
            Err(e) => {
                failures += 1;
                let text = e.to_string();
                assert!(text.contains("ENOSPC") && text.contains(&disk.0.path().display().to_string()), "{text}");
                assert_eq!((std::fs::read(&cert).unwrap(), std::fs::read(&key).unwrap()), old_pair, "{text}");
                for name in names(disk.0.path()) {
                    assert!(
                        ["fill", "site.crt", "site.key", "site.crt.prev", "site.key.prev"].contains(&name.as_str()),
                        "{name} left behind after: {text}"
                    );
                }
            }
        }
    }
    panic!("no rotation fitted in 16 free pages");
}

/// `/bin/sh -c script` here; its stdout, failing the test on error.
fn run_here(script: &str) -> String {
    let out = std::process::Command::new("/bin/sh").arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}\n{script}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn aws_ssm_scripts_write_and_read_the_marker() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(&dir.path().join("ca")).await;
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    let old = rcgen::generate_simple_self_signed(vec!["old.example.test".into()]).unwrap();
    std::fs::write(&cert, old.cert.pem()).unwrap();
    std::fs::write(&key, old.signing_key.serialize_pem()).unwrap();
    let (c, k) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let job = common::job(Driver::AwsSsm, "svc.example.test", &[], serde_json::json!({}));
    let paths = script::Paths::new(c, k, &job.job_id.to_string()).unwrap();

    let resume = |paths: &script::Paths, id: JobId| {
        let out = run_here(&script::resume(paths, id));
        assert!(!out.contains("PRIVATE KEY"), "the resume script printed a key");
        let (found, chain) = marker::split_answer(&out);
        marker::resume(id, found, chain).unwrap()
    };
    assert!(resume(&paths, job.job_id).is_none(), "nothing installed yet");

    let csr_out = run_here(&script::generate(&paths, job.key_algorithm, &job.common_name, &[]).unwrap());
    let csr = script::parse_csr(&csr_out).unwrap();
    let issued = ctx.issuers.get("internal").unwrap().sign(&csr, &job).await.unwrap();
    run_here(&script::install(&paths, &issued.chain_pem, job.job_id, &issued.info.sha256_fingerprint));
    // The worker dies here; its session never cleans up. A cleanup by someone else must not
    // lose the fact that a previous pair was kept.
    run_here(&script::cleanup(&paths));

    let found = resume(&paths, job.job_id).expect("the install is found");
    assert_eq!(found.issued.leaf_der, issued.leaf_der);
    assert!(found.had_previous);
    let other = JobId::new();
    assert!(resume(&script::Paths::new(c, k, &other.to_string()).unwrap(), other).is_none(), "another job");

    // A rollback after the resume restores the previous pair.
    run_here(&script::rollback(&paths, "true"));
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), old.cert.pem());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), old.signing_key.serialize_pem());
}
