//! Exactly-once deploys over at-least-once delivery (issue 15). A worker that dies after
//! installing but before acking gets its job redelivered; the redelivered job must not
//! deploy a second certificate for the same job id. Deploys are counted on the device: the
//! reload command appends `<CERTFLEET_JOB_ID> <sha256 of the certificate file>` to a file,
//! then blocks until the test releases it. The test SIGKILLs the worker while the reload
//! blocks (after install, before ack), releases the orphaned reload, and starts a new
//! worker, which gets the redelivery.
//!
//! For `haproxy` there is no reload command to block in, so the crash is modelled in
//! process against the real HAProxy and sshd: a session installs and is abandoned (nothing
//! after install runs, as when the process dies), then the same job runs through the
//! pipeline again.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::{AssetId, Driver, JobId, KeyAlgorithm, RotationJob, RotationOutcome};
use certfleet_shared::config::drivers::{DriversConfig, SshClientConfig};
use certfleet_shared::config::{InternalIssuerConfig, IssuerConfig};
use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::{AssetState, Model as Asset};
use certfleet_tests::device::*;
use certfleet_tests::*;
use certfleet_worker::driver::DriverSet;
use certfleet_worker::issuer::IssuerSet;
use certfleet_worker::rotation::{JobContext, rotate};
use sha2::Digest as _;
use std::path::Path;
use std::time::Duration;

async fn settled(env: &TestEnv, name: &str, timeout: Duration) -> Asset {
    let db = env.db().await;
    let a = wait_for(timeout, &format!("{name} to settle"), || async {
        let a = assets::by_name(&db, name).await.unwrap();
        matches!(a.state, AssetState::Ok | AssetState::Failed | AssetState::Dead).then_some(a)
    })
    .await;
    db.close().await.ok();
    a
}

fn quoted(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// A reload command that records the deploy, then blocks until `release` exists.
fn counting_reload(cert: &Path, deploys: &Path, release: &Path) -> String {
    format!(
        "echo \"$CERTFLEET_JOB_ID $(sha256sum < {c} | cut -c1-64)\" >> {d}; \
         while [ ! -e {r} ]; do sleep 0.05; done",
        c = quoted(cert),
        d = quoted(deploys),
        r = quoted(release)
    )
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_owned).collect()
}

/// Runs the crash: the first worker is SIGKILLed while its reload blocks; a second worker
/// gets the redelivery. Checks that one certificate was deployed for the job.
async fn kill_during_reload_then_redeliver(env: &TestEnv, name: &str, driver: &str, cert: &Path) {
    let (deploys, release) = (env.path("deploys.log"), env.path("release"));
    let mut first = env.spawn("certfleet-worker", "worker-1", &["--drivers", driver]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    wait_for(Duration::from_secs(60), "the first reload to start", || async {
        (!lines(&deploys).is_empty()).then_some(())
    })
    .await;
    first.kill9();
    // The orphaned reload finishes now; the job is still unacked, so the broker redelivers it.
    std::fs::write(&release, "").unwrap();
    let second = env.spawn_logging("certfleet-worker", "worker-2", &["--drivers", driver], "info");

    let asset = settled(env, name, Duration::from_secs(60)).await;
    assert_eq!(asset.state, AssetState::Ok, "{:?}\n{}", asset.last_error, second.log_text());
    let deployed = lines(&deploys);
    // The redelivery ran the reload again (activation is idempotent), so there are two
    // lines; both name the same job and the same certificate file.
    assert_eq!(deployed.len(), 2, "one reload per delivery: {deployed:?}");
    assert_eq!(deployed[0], deployed[1], "a second certificate was deployed for the same job: {deployed:?}");
    let (job_id, file_hash) = deployed[0].split_once(' ').unwrap();
    assert!(job_id.parse::<JobId>().is_ok(), "{job_id:?}");
    assert_eq!(file_hash, hex::encode(sha2::Sha256::digest(std::fs::read(cert).unwrap())));
    let leaf = first_cert_der(cert.to_str().unwrap());
    assert_eq!(asset.fingerprint_sha256, Some(hex::encode(sha2::Sha256::digest(&leaf))));
    assert!(
        second.log_text().contains("already installed"),
        "the second worker resumed the earlier install:\n{}",
        second.log_text()
    );
    assert!(files_with(env.path("certs").as_path(), &[".tmp", ".copy"]).is_empty(), "no staged files left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_worker_killed_between_install_and_ack_deploys_once() {
    let env = TestEnv::new("");
    let mut settings = env.local_settings("web");
    let cert = env.path("certs/web.crt");
    settings["reload_command"] = counting_reload(&cert, &env.path("deploys.log"), &env.path("release")).into();
    env.import(&serde_json::json!([{
        "system_name": "web", "common_name": "web.certfleet.test", "subject_alternative_name": ["web.certfleet.test"],
        "certificate_authority": "internal", "host_platform": "local", "settings": settings,
    }]));
    kill_during_reload_then_redeliver(&env, "web", "local", &cert).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linux_ssh_worker_killed_between_install_and_ack_deploys_once() {
    let stack = Stack::start();
    let env = ssh_env(&stack, "");
    let (cert, key) = (env.path("certs/box.crt"), env.path("certs/box.key"));
    env.import(&serde_json::json!([{
        "system_name": "box", "common_name": "box.certfleet.test", "subject_alternative_name": ["box.certfleet.test"],
        "certificate_authority": "internal", "host_platform": "linux",
        "settings": {"host": "127.0.0.1", "ssh_port": stack.get("SSH_PORT").parse::<u16>().unwrap(),
            "host_key": stack.get("SSH_HOST_KEY_FINGERPRINT"), "cert_path": cert, "key_path": key,
            "reload_command": counting_reload(&cert, &env.path("deploys.log"), &env.path("release"))},
    }]));
    kill_during_reload_then_redeliver(&env, "box", "linux-ssh", &cert).await;
}

fn job(stack: &Stack, system_name: &str) -> RotationJob {
    RotationJob {
        job_id: JobId::new(),
        attempt: 1,
        asset_id: AssetId(1),
        system_name: system_name.into(),
        driver: Driver::Haproxy,
        issuer: "internal".into(),
        common_name: "lb.certfleet.test".into(),
        subject_alternative_names: vec!["lb.certfleet.test".into(), "127.0.0.1".into()],
        ip_address: Some("127.0.0.1".into()),
        port: Some(stack.get("HAPROXY_TLS_PORT").parse().unwrap()),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        certificate_validation: false,
        settings: serde_json::json!({
            "crt_path": stack.get("HAPROXY_PEM"), "socket_path": stack.get("HAPROXY_SOCKET"),
            "ssh_port": stack.get("SSH_PORT").parse::<u16>().unwrap(),
            "host_key": stack.get("SSH_HOST_KEY_FINGERPRINT"),
        }),
        not_before: None,
        published_at: chrono::Utc::now(),
        replaces: None,
    }
}

/// HAProxy: an install whose worker died before activating is found by the redelivery,
/// which swaps that same pair in (HAProxy then serves it) instead of making a new one. A new
/// job id rotates afresh: the marker is per job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_redelivery_after_install_swaps_in_the_installed_pair() {
    let stack = Stack::start();
    let ca = tempfile::tempdir().unwrap();
    let drivers = DriversConfig {
        ssh: Some(SshClientConfig {
            private_key_file: stack.get("SSH_KEY").into(),
            user: stack.get("SSH_USER").into(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(30),
        }),
        ..DriversConfig::default()
    };
    let issuer = IssuerConfig::Internal(InternalIssuerConfig {
        ca_dir: ca.path().to_owned(),
        ..InternalIssuerConfig::default()
    });
    let issuers = IssuerSet::from_config(&[("internal".to_owned(), issuer)].into()).await.unwrap();
    let ctx = JobContext { drivers: DriverSet::new(&[Driver::Haproxy], &drivers).unwrap(), issuers };
    let pem = stack.get("HAPROXY_PEM");
    let port: u16 = stack.get("HAPROXY_TLS_PORT").parse().unwrap();
    let connector = tls_connector();
    let original = first_cert_der(pem);

    // The first delivery installs, then its worker dies: nothing after install runs.
    let job = job(&stack, "lb");
    let driver = ctx.drivers.get(Driver::Haproxy).unwrap().clone();
    let mut session = driver.open(&job).await.unwrap();
    let csr = session.generate_csr(&job).await.unwrap();
    let issued = ctx.issuers.get("internal").unwrap().sign(&csr, &job).await.unwrap();
    session.install(&issued).await.unwrap();
    drop(session);
    assert_eq!(first_cert_der(pem), issued.leaf_der, "installed on disk");
    assert_eq!(served_leaf(&connector, port, "lb.certfleet.test").await.unwrap(), original, "not yet swapped in");
    let bundle = std::fs::read(pem).unwrap();

    // The redelivery: the same pair is swapped in and reported; the file is untouched.
    let done = rotate(&job, &ctx).await.unwrap();
    let RotationOutcome::Rotated { certificate } = done.outcome else { panic!("{:?}", done.outcome) };
    assert_eq!(certificate.sha256_fingerprint, issued.info.sha256_fingerprint);
    assert_eq!(std::fs::read(pem).unwrap(), bundle, "no second deploy");
    assert_eq!(served_leaf(&connector, port, "lb.certfleet.test").await.unwrap(), issued.leaf_der);

    // Another job rotates again.
    let next = rotate(&job_with_new_id(&job), &ctx).await.unwrap();
    let RotationOutcome::Rotated { certificate } = next.outcome else { panic!("{:?}", next.outcome) };
    assert_ne!(certificate.sha256_fingerprint, issued.info.sha256_fingerprint);
    assert_ne!(std::fs::read(pem).unwrap(), bundle);
}

fn job_with_new_id(job: &RotationJob) -> RotationJob {
    RotationJob { job_id: JobId::new(), ..job.clone() }
}
