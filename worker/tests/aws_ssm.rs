//! The `aws-ssm` driver against moto's SSM server (`moto_server`, installed by
//! `scripts/stack/install.sh`), started per test on a free 127.0.0.1 port and killed on drop.
//!
//! Limits, stated plainly: moto records `SendCommand` and answers `GetCommandInvocation`
//! with status `Success`, but it cannot execute anything and its `StandardOutputContent` is
//! always empty. So these tests check the API conversation (document, instance, the
//! scripts sent, polling until a final status) and then run each script that moto recorded
//! with `/bin/sh` on this machine, as the SSM agent would on the instance, feeding its real
//! output to the driver's parsing. Moto does not validate instance ids either, so the
//! unknown-instance case is answered by a canned endpoint that replies exactly as AWS does
//! (HTTP 400, `__type` `InvalidInstanceId`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_sdk_ssm::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};
use certfleet_proto::Driver;
use certfleet_shared::config::InternalIssuerConfig;
use certfleet_worker::driver::aws_ssm::{AwsSsmDriver, script};
use certfleet_worker::driver::{DriverError, PlatformDriver};
use certfleet_worker::issuer::Issuer as _;
use certfleet_worker::issuer::internal::InternalCa;
use certfleet_worker::outcome::{JobError, Outcome};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

const INSTANCE: &str = "i-0123456789abcdef0";

/// `moto_server` on a free port, killed on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    async fn start() -> Self {
        let port = common::closed_port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server is not installed: run scripts/stack/install.sh");
        let moto = Self { child, url: format!("http://127.0.0.1:{port}") };
        for _ in 0..150 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("moto_server did not listen on {port}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sdk_config() -> aws_config::SdkConfig {
    let creds = Credentials::new("testing", "testing", None, None, "test");
    aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(creds))
        .build()
}

/// The script of the last command moto recorded, checked for document and instance.
async fn last_script(client: &aws_sdk_ssm::Client, step: &str) -> String {
    let out = client.list_commands().instance_id(INSTANCE).send().await.unwrap();
    let cmd = out.commands().last().expect("a command was sent");
    assert_eq!(cmd.document_name(), Some("AWS-RunShellScript"));
    assert_eq!(cmd.instance_ids(), [INSTANCE.to_owned()]);
    assert!(cmd.comment().unwrap_or_default().ends_with(step), "{:?} is not the {step} step", cmd.comment());
    let params = cmd.parameters().expect("parameters");
    params["commands"].join("\n")
}

/// Runs `script` here with /bin/sh, as the SSM agent would; returns stdout, fails on error.
async fn run_here(script: &str) -> String {
    let out = tokio::process::Command::new("/bin/sh").arg("-c").arg(script).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "script failed: {stderr}\n{script}");
    String::from_utf8(out.stdout).unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn conversation_with_moto_then_the_recorded_scripts_run_here() {
    let moto = Moto::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("site.crt"), dir.path().join("site.key"));
    let old = rcgen::generate_simple_self_signed(vec!["old.example.test".into()]).unwrap();
    std::fs::write(&cert, old.cert.pem()).unwrap();
    std::fs::write(&key, old.signing_key.serialize_pem()).unwrap();
    let reloads = dir.path().join("reloads");
    // Both quote kinds in the reload command: it must reach the shell unchanged.
    let reload = format!("printf '%s\\n' \"it's reloaded\" >> {}", reloads.display());
    let settings = serde_json::json!({
        "instance_id": INSTANCE, "cert_path": cert, "key_path": key, "reload_command": reload,
        "endpoint_url": moto.url, "command_timeout_secs": 30, "api_timeout_secs": 5,
    });
    let job = common::job(Driver::AwsSsm, "svc.example.test", &["alt.example.test", "10.9.8.7"], settings);
    let driver = AwsSsmDriver::with_sdk_config(sdk_config());
    let client = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&sdk_config()).endpoint_url(&moto.url).build(),
    );

    let mut session = driver.open(&job).await.expect("pre-flight against moto");

    // 1. Key and CSR: moto reports Success with empty output, which the driver refuses.
    let err = session.generate_csr(&job).await.unwrap_err();
    assert!(matches!(&err, DriverError::Device(m) if m.contains("no CSR")), "{err}");
    let generate = last_script(&client, "generate").await;
    assert!(generate.contains("umask 077") && generate.contains("openssl genpkey"), "{generate}");
    let stdout = run_here(&generate).await;
    assert!(!stdout.contains("PRIVATE KEY"), "the generate script printed a key");
    let stage = dir.path().join(format!(".certfleet-{}", job.job_id));
    assert_eq!(mode(&stage), 0o700);
    assert_eq!(mode(&stage.join("key.pem")), 0o600);
    let csr = script::parse_csr(&stdout).expect("the script prints exactly one CSR");

    // The worker's own CA signs it, checking the CSR asks for the job's names.
    let ca = InternalCa::load_or_create(&InternalIssuerConfig {
        ca_dir: dir.path().join("ca"),
        ..InternalIssuerConfig::default()
    })
    .await
    .unwrap();
    let issued = ca.sign(&csr, &job).await.expect("the CSR has the job's CN and SANs");

    // 2. Install: stage, keep .prev, rename.
    session.install(&issued).await.unwrap();
    run_here(&last_script(&client, "install").await).await;
    assert_eq!(std::fs::read_to_string(&cert).unwrap().trim_end(), issued.chain_pem.trim_end());
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::read_to_string(cert.with_extension("crt.prev")).unwrap(), old.cert.pem());
    assert_eq!(std::fs::read_to_string(key.with_extension("key.prev")).unwrap(), old.signing_key.serialize_pem());
    assert!(!stage.join("key.pem").exists(), "the key was moved out of the staging directory");

    // 3. Activate: the reload command, quoting intact.
    session.activate().await.unwrap();
    run_here(&last_script(&client, "activate").await).await;
    assert_eq!(std::fs::read_to_string(&reloads).unwrap(), "it's reloaded\n");

    // 4. Validate: moto's empty output is refused; the real output matches the new leaf.
    let err = session.validate(&issued).await.unwrap_err();
    assert!(matches!(&err, DriverError::Activation(m) if m.contains("fingerprint")), "{err}");
    let out = run_here(&last_script(&client, "validate").await).await;
    assert_eq!(script::parse_fingerprint(&out).as_deref(), Some(issued.info.sha256_fingerprint.as_str()));

    // 5. Rollback restores the previous pair and reloads.
    session.rollback().await.unwrap();
    run_here(&last_script(&client, "rollback").await).await;
    assert_eq!(std::fs::read_to_string(&cert).unwrap(), old.cert.pem());
    assert_eq!(std::fs::read_to_string(&key).unwrap(), old.signing_key.serialize_pem());
    assert_eq!(std::fs::read_to_string(&reloads).unwrap().lines().count(), 2);

    // 6. Close cleans the staging directory.
    session.close().await;
    run_here(&last_script(&client, "cleanup").await).await;
    assert!(!stage.exists());
}

/// AWS's answer to a command for an instance SSM does not manage.
async fn invalid_instance_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = common::read_request(&mut stream).await;
                let body = br#"{"__type":"InvalidInstanceId","message":"Instances not in a valid state for account"}"#;
                let headers = [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-RequestId", "t-1")];
                let _ = common::write_response(&mut stream, 400, &headers, body).await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[tokio::test]
async fn unknown_instance_and_bad_settings_are_dead_unreachable_retries() {
    let driver = AwsSsmDriver::with_sdk_config(sdk_config());
    let base = serde_json::json!({
        "instance_id": INSTANCE, "cert_path": "/etc/ssl/a.crt", "key_path": "/etc/ssl/a.key",
        "reload_command": "true", "api_timeout_secs": 3,
    });
    let with = |k: &str, v: serde_json::Value| {
        let mut s = base.clone();
        s[k] = v;
        common::job(Driver::AwsSsm, "a.example.test", &[], s)
    };
    let classify = |e: DriverError| JobError::from(e).classify();

    let unknown = driver.open(&with("endpoint_url", invalid_instance_endpoint().await.into())).await;
    let err = unknown.err().expect("an unknown instance fails the pre-flight");
    assert!(matches!(&err, DriverError::InvalidSettings(m) if m.contains("InvalidInstanceId")), "{err}");
    assert!(matches!(classify(err), Outcome::Dead { .. }));

    let closed = format!("http://127.0.0.1:{}", common::closed_port());
    let err = driver.open(&with("endpoint_url", closed.into())).await.err().expect("nothing listens");
    assert!(matches!(err, DriverError::Unreachable(_) | DriverError::Timeout { .. }), "{err}");
    assert!(matches!(classify(err), Outcome::Retry { .. }));

    for (key, value) in [
        ("cert_path", serde_json::json!("/etc/ssl/a b.crt")),
        ("key_path", serde_json::json!("relative.key")),
        ("instance_id", serde_json::json!("i-xyz; rm -rf /")),
        ("reload_command", serde_json::json!("a\nb")),
        ("unknown_key", serde_json::json!(1)),
    ] {
        let err = driver.open(&with(key, value)).await.err().expect("refused");
        assert!(matches!(err, DriverError::InvalidSettings(_)), "{key}: {err}");
    }
}
