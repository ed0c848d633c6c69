//! The `panos` driver against a local HTTPS stand-in for the PAN-OS 9/10 XML API
//! (`common/panos_fixture.rs`). PAN-OS cannot run here; the fixture follows the XML API
//! documentation (keygen, op generate CSR, export, import, config get/show/set, commit,
//! show jobs), makes a real key and CSR with rcgen and keeps the key to itself. The
//! rotations run through the worker's real pipeline (`rotation::rotate`) and its internal CA.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use certfleet_proto::{Driver, RotationJob, RotationOutcome};
use certfleet_shared::config::{DriversConfig, InternalIssuerConfig, IssuerConfig, PanosDriverConfig};
use certfleet_worker::driver::{DriverError, DriverSet};
use certfleet_worker::issuer::IssuerSet;
use certfleet_worker::outcome::{JobError, Outcome};
use certfleet_worker::rotation::{JobContext, rotate};
use common::panos_fixture::{self as fw, Fixture};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// A worker context serving `panos` with a credentials file (mode 0600) and an internal CA.
async fn context(dir: &Path, password: &str) -> JobContext {
    let creds = dir.join("panos-credentials.toml");
    std::fs::write(
        &creds,
        format!(
            "[fw-admins]\nusername = \"{}\"\npassword = \"{password}\"\n\n[ready-key]\napi_key = \"{}\"\n",
            fw::USER,
            fw::API_KEY
        ),
    )
    .unwrap();
    std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = DriversConfig { panos: PanosDriverConfig { credentials_file: Some(creds) }, ssh: None };
    let issuers = BTreeMap::from([(
        "internal".to_owned(),
        IssuerConfig::Internal(InternalIssuerConfig { ca_dir: dir.join("ca"), ..InternalIssuerConfig::default() }),
    )]);
    JobContext {
        drivers: DriverSet::new(&[Driver::Panos], &config).expect("drivers"),
        issuers: IssuerSet::from_config(&issuers).await.unwrap(),
    }
}

fn job(port: u16, extra: serde_json::Value) -> RotationJob {
    let mut settings = serde_json::json!({
        "host": "127.0.0.1", "api_port": port, "credential": "fw-admins",
        "certificate_name": "portal", "ssl_tls_service_profile": fw::PROFILE,
        "api_timeout_secs": 5, "commit_timeout_secs": 20,
    });
    for (k, v) in extra.as_object().unwrap() {
        settings[k] = v.clone();
    }
    common::job(Driver::Panos, "portal.example.test", &["vpn.example.test", "192.0.2.10"], settings)
}

#[tokio::test]
async fn rotation_generates_on_the_firewall_imports_binds_and_commits() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("fw-ca.pem");
    std::fs::write(&bundle, &fixture.tls_cert_pem).unwrap();
    let ctx = context(dir.path(), fw::PASSWORD).await;
    // The firewall's management certificate is verified against the bundle here.
    let job = job(fixture.port, serde_json::json!({ "ca_bundle": bundle }));

    let outcome = rotate(&job, &ctx).await.expect("rotation runs").outcome;
    let RotationOutcome::Rotated { certificate } = outcome else { panic!("not rotated: {outcome:?}") };

    let calls = fixture.calls().await;
    let what: Vec<&str> = calls.iter().map(|c| c.what.as_str()).collect();
    let new = what.iter().find_map(|w| w.strip_prefix("generate ")).expect("a CSR was generated").to_owned();
    assert!(new.starts_with("portal-") && new.len() == "portal-".len() + 14, "{new}");
    let expected_prefix = [
        "keygen".to_owned(),
        "get".to_owned(),
        format!("generate {new}"),
        format!("export {new}"),
        format!("import {new}"),
        format!("set {new}"),
        "commit".to_owned(),
    ];
    assert_eq!(what[..7], expected_prefix.iter().map(String::as_str).collect::<Vec<_>>()[..], "{what:?}");
    // The commit job was polled until FIN, then the running profile and the certificate read back.
    assert_eq!(what[7..], ["job 1", "job 1", "show", &format!("export {new}")], "{what:?}");
    assert!(calls[0].key.is_none(), "keygen carries no key");
    assert!(calls[1..].iter().all(|c| c.key.as_deref() == Some(fw::API_KEY)), "every call after keygen uses the key");

    let state = fixture.state.lock().await;
    assert_eq!(state.running, new, "the running profile uses the new certificate");
    assert!(certificate.not_after > chrono::Utc::now());
}

#[tokio::test]
async fn failed_commit_rolls_back_to_the_previous_certificate() {
    let fixture = Fixture::start().await;
    fixture.state.lock().await.fail_commit_of = Some("portal-20".into());
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path(), fw::PASSWORD).await;
    // Like Ottr: the management certificate is not verified when certificate_validation is off.
    let mut job = job(fixture.port, serde_json::json!({}));
    job.certificate_validation = false;

    let outcome = rotate(&job, &ctx).await.expect("rotation ends on the device").outcome;
    assert!(matches!(&outcome, RotationOutcome::RolledBack { cause } if cause.contains("FAIL")), "{outcome:?}");
    let what: Vec<String> = fixture.calls().await.into_iter().map(|c| c.what).collect();
    let new = what.iter().find_map(|w| w.strip_prefix("set portal-")).map(|s| format!("portal-{s}")).unwrap();
    let tail: Vec<&str> = what.iter().skip_while(|w| **w != format!("set {new}")).map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            &format!("set {new}"),
            "commit",
            "job 1",
            "job 1",
            &format!("set {}", fw::OLD_CERT),
            "commit",
            "job 2",
            "job 2"
        ]
    );
    let state = fixture.state.lock().await;
    assert_eq!((state.candidate.as_str(), state.running.as_str()), (fw::OLD_CERT, fw::OLD_CERT));
}

#[tokio::test]
async fn bad_credentials_are_dead_and_an_unreachable_firewall_retries() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let classify = |e: JobError| e.classify();

    let ctx = context(dir.path(), "wrong-password").await;
    let mut j = job(fixture.port, serde_json::json!({}));
    j.certificate_validation = false;
    let err = rotate(&j, &ctx).await.unwrap_err();
    assert!(matches!(&err, JobError::Driver(DriverError::Auth(m)) if m.contains("Invalid Credential")), "{err}");
    assert!(!err.to_string().contains("wrong-password"));
    assert!(matches!(classify(err), Outcome::Dead { .. }));

    // A ready API key works without keygen.
    let ctx = context(dir.path(), fw::PASSWORD).await;
    let mut j = job(fixture.port, serde_json::json!({ "credential": "ready-key" }));
    j.certificate_validation = false;
    assert!(matches!(rotate(&j, &ctx).await.map(|r| r.outcome), Ok(RotationOutcome::Rotated { .. })));

    // The fixture's self-signed management certificate is refused when validation is on.
    let err = rotate(&job(fixture.port, serde_json::json!({})), &ctx).await.unwrap_err();
    assert!(matches!(&err, JobError::Driver(DriverError::InvalidSettings(m)) if m.contains("not trusted")), "{err}");

    let err = rotate(&job(common::closed_port(), serde_json::json!({})), &ctx).await.unwrap_err();
    assert!(matches!(err, JobError::Driver(DriverError::Unreachable(_))), "{err}");
    assert!(matches!(classify(err), Outcome::Retry { .. }));

    for extra in [
        serde_json::json!({ "credential": "nobody" }),
        serde_json::json!({ "certificate_name": "bad name'" }),
        serde_json::json!({ "ssl_tls_service_profile": "missing-profile" }),
        serde_json::json!({ "surprise": true }),
    ] {
        let mut j = job(fixture.port, extra.clone());
        j.certificate_validation = false;
        let err = rotate(&j, &ctx).await.unwrap_err();
        assert!(matches!(err, JobError::Driver(DriverError::InvalidSettings(_))), "{extra}: {err}");
    }
}
