//! Helpers for cross-process tests: the real binaries, a private RabbitMQ vhost and a
//! private directory (config, SQLite inventory, CA, device files) per test. Every process a
//! test starts is killed when its guard drops, and the vhost is deleted.
// Test harness: failing loudly is the point, and process polling runs outside any runtime.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

pub mod acme;
pub mod chaos;
pub mod device;
pub mod notify;
pub mod otlp;
pub mod postgres;
pub mod procinfo;
pub mod prometheus;
pub mod rabbit;

use anyhow::{Context as _, bail};
use sea_orm::DatabaseConnection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A command for a workspace binary with no `CERTFLEET_*` or `OTEL_*` variables inherited
/// from the caller's environment (the test decides the configuration and the tracing).
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(bin(name));
    for (key, _) in std::env::vars_os() {
        let key_text = key.to_string_lossy();
        if key_text.starts_with("CERTFLEET_") || key_text.starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Path of a workspace binary, built by `cargo build --workspace --bins` beside the test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(path.exists(), "{} is missing: run `cargo build --workspace --bins` before the tests", path.display());
    path
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl").args(args).output().context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!("rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A RabbitMQ vhost of its own, so tests running at once never share queues.
pub struct Vhost {
    /// Its name.
    pub name: String,
    /// AMQP URL for it.
    pub url: String,
    /// The private node it lives on (`None`: the machine's node on 5672).
    node: Option<String>,
}

impl Vhost {
    /// Creates a fresh vhost with full rights for guest on the machine's node.
    pub fn new() -> Self {
        let name = format!("certfleet-test-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &name]).expect("RabbitMQ must be running (rabbitmqctl add_vhost)");
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]).expect("set_permissions");
        let url = format!("amqp://guest:guest@127.0.0.1:5672/{name}");
        Self { name, url, node: None }
    }

    /// Creates a fresh vhost on a private node; `url` may list several nodes' URLs
    /// (comma-separated, each ending in `/{vhost}` which is replaced by the name).
    pub fn on(node: &rabbit::RabbitNode, url_template: &str) -> Self {
        let name = format!("certfleet-test-{}", uuid::Uuid::new_v4().simple());
        node.ctl(&["add_vhost", &name]).expect("add_vhost on the private node");
        node.ctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]).expect("set_permissions");
        let url = url_template.replace("{vhost}", &name);
        Self { name, url, node: Some(node.name.clone()) }
    }
}

impl Default for Vhost {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // A private node is deleted with its data; only the machine's node needs cleaning.
        if self.node.is_none() {
            let _ = rabbitmqctl(&["delete_vhost", &self.name]);
        }
    }
}

/// A running binary; SIGKILLed on drop unless it already ended.
pub struct Proc {
    child: Child,
    /// Its combined stdout/stderr log.
    pub log: PathBuf,
}

impl Proc {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status();
    }

    /// Kills it with SIGKILL (a crash) and reaps it.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `grace` for it to exit; returns whether it exited 0.
    pub fn terminate(&mut self, grace: Duration) -> bool {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50)); // test code, outside any runtime
        }
        false
    }

    /// Waits up to `timeout` for it to exit by itself; returns its status if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50)); // test code, outside any runtime
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A private world for one test.
pub struct TestEnv {
    /// The directory (config, database, CA, device files, logs).
    pub dir: tempfile::TempDir,
    /// The vhost.
    pub vhost: Vhost,
    /// The config file.
    pub config: PathBuf,
    /// The inventory URL.
    pub db_url: String,
}

/// The routing table used by the tests.
pub const ROUTES: &str = "[[route]]\nhost_platform = \"local\"\ndriver = \"local\"\n";

impl TestEnv {
    /// A config on SQLite with fast scans and retries, plus `extra` TOML appended.
    pub fn new(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display());
        Self::with_db(dir, db_url, extra)
    }

    /// Like [`TestEnv::new`] with the inventory at `db_url`.
    pub fn with_db(dir: tempfile::TempDir, db_url: String, extra: &str) -> Self {
        Self::with_vhost(dir, db_url, Vhost::new(), extra)
    }

    /// Like [`TestEnv::new`] on a vhost of a private RabbitMQ node (see [`Vhost::on`]).
    pub fn on_node(node: &rabbit::RabbitNode, url_template: &str, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db_url = format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display());
        Self::with_vhost(dir, db_url, Vhost::on(node, url_template), extra)
    }

    /// Like [`TestEnv::with_db`] on a given vhost.
    pub fn with_vhost(dir: tempfile::TempDir, db_url: String, vhost: Vhost, extra: &str) -> Self {
        let config = dir.path().join("certfleet.toml");
        std::fs::write(dir.path().join("routes.toml"), ROUTES).expect("routes");
        std::fs::create_dir_all(dir.path().join("certs")).expect("certs dir");
        // Several URLs (a cluster) are written as a TOML array.
        let amqp_url = vhost.url.split(',').map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ");
        let amqp_url = if vhost.url.contains(',') { format!("[{amqp_url}]") } else { amqp_url };
        let text = format!(
            "database_url = \"{db_url}\"\namqp_url = {amqp_url}\nroutes_file = \"{}\"\nscan_interval = \"1s\"\nlease = \"60s\"\n\
             failed_retry_after = \"1h\"\n{extra}\n[issuers.internal]\nkind = \"internal\"\nca_dir = \"{}\"\n",
            dir.path().join("routes.toml").display(),
            dir.path().join("ca").display(),
        );
        std::fs::write(&config, text).expect("config");
        Self { dir, vhost, config, db_url }
    }

    /// A path inside the test directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs the `certfleet` CLI with this config.
    pub fn cli(&self, args: &[&str]) -> Output {
        command("certfleet")
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("run certfleet")
    }

    /// Runs the CLI and fails the test (with its output) unless it succeeds.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "certfleet {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts a binary with this config; its output goes to `<label>.log`.
    pub fn spawn(&self, binary: &str, label: &str, args: &[&str]) -> Proc {
        self.spawn_logging(binary, label, args, "info")
    }

    /// Like [`TestEnv::spawn`] with `RUST_LOG` set to `filter`.
    pub fn spawn_logging(&self, binary: &str, label: &str, args: &[&str], filter: &str) -> Proc {
        self.spawn_with_env(binary, label, args, &[("RUST_LOG", filter)])
    }

    /// Like [`TestEnv::spawn`] with extra environment variables (`CERTFLEET_*` overrides).
    pub fn spawn_with_env(&self, binary: &str, label: &str, args: &[&str], vars: &[(&str, &str)]) -> Proc {
        let log = self.path(&format!("{label}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = command(binary);
        cmd.env("RUST_LOG", "info");
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("spawn");
        Proc { child, log }
    }

    /// Opens the inventory.
    pub async fn db(&self) -> DatabaseConnection {
        certfleet_shared::db::connect(&self.db_url, Duration::from_secs(10)).await.expect("inventory")
    }

    /// Writes `assets` as a JSON file and imports it with the CLI.
    pub fn import(&self, assets: &serde_json::Value) {
        let file = self.path("assets.json");
        std::fs::write(&file, serde_json::to_vec_pretty(assets).expect("json")).expect("write assets");
        self.cli_ok(&["assets", "import", file.to_str().expect("utf-8 path")]);
    }

    /// The `local` settings for an asset whose files live in `certs/`.
    pub fn local_settings(&self, name: &str) -> serde_json::Value {
        serde_json::json!({
            "cert_path": self.path(&format!("certs/{name}.crt")),
            "key_path": self.path(&format!("certs/{name}.key")),
        })
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Message count and consumer count of a queue, by passive declare.
pub async fn queue_depth(amqp_url: &str, queue: &str) -> (u32, u32) {
    let conn = lapin::Connection::connect(amqp_url, lapin::ConnectionProperties::default()).await.expect("amqp");
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions { passive: true, ..Default::default() },
            lapin::types::FieldTable::default(),
        )
        .await
        .expect("passive declare");
    let _ = conn.close(200, "".into()).await;
    (q.message_count(), q.consumer_count())
}

/// What a certificate on disk was checked to be.
#[derive(Debug)]
pub struct CheckedCert {
    /// SHA-256 of the leaf, hex.
    pub fingerprint: String,
    /// The leaf's notAfter.
    pub not_after: chrono::DateTime<chrono::Utc>,
}

/// Checks a `local` install: the leaf chains to `root_pem`, has `cn` and exactly `sans`
/// (plus the CN), matches the key beside it, and the key file has mode 0600.
pub fn check_installed(cert_path: &Path, key_path: &Path, root_pem: &str, cn: &str, sans: &[&str]) -> CheckedCert {
    use sha2::Digest as _;
    use std::os::unix::fs::PermissionsExt as _;
    use x509_parser::prelude::*;
    let chain = std::fs::read_to_string(cert_path).unwrap_or_else(|e| panic!("{}: {e}", cert_path.display()));
    let ders: Vec<Vec<u8>> =
        x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes()).map(|p| p.expect("pem").contents).collect();
    let (_, leaf) = X509Certificate::from_der(&ders[0]).expect("leaf");
    let root_der = x509_parser::pem::parse_x509_pem(root_pem.as_bytes()).expect("root pem").1.contents;
    let (_, root) = X509Certificate::from_der(&root_der).expect("root");
    leaf.verify_signature(Some(root.public_key()))
        .unwrap_or_else(|e| panic!("{} does not chain to the root: {e}", cert_path.display()));
    assert_eq!(ders.last().expect("chain"), &root_der, "the full chain ends with the root");
    let got_cn = leaf.subject().iter_common_name().next().and_then(|c| c.as_str().ok()).unwrap_or_default();
    assert_eq!(got_cn, cn);
    let mut got_sans: Vec<String> = leaf
        .subject_alternative_name()
        .expect("san ext")
        .expect("has SANs")
        .value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => (*d).to_owned(),
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                _ => format!("{ip:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect();
    let mut want: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    if !want.iter().any(|s| s == cn) {
        want.push(cn.to_owned());
    }
    got_sans.sort();
    want.sort();
    assert_eq!(got_sans, want, "SANs of {}", cert_path.display());
    let key_pem = std::fs::read_to_string(key_path).expect("key file");
    let key = rcgen::KeyPair::from_pem(&key_pem).expect("key parses");
    use rcgen::PublicKeyData as _;
    assert_eq!(key.der_bytes(), leaf.public_key().subject_public_key.data.as_ref(), "key matches certificate");
    let mode = std::fs::metadata(key_path).expect("key meta").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode");
    CheckedCert {
        fingerprint: hex::encode(sha2::Sha256::digest(&ders[0])),
        not_after: chrono::DateTime::from_timestamp(leaf.validity().not_after.timestamp(), 0).expect("time"),
    }
}

/// The peer stack of `scripts/stack/` (BIND9, Pebble, sshd, nginx, HAProxy on 127.0.0.1),
/// started in a directory of its own and stopped when this guard drops.
pub struct Stack {
    dir: tempfile::TempDir,
    /// The `stack.env` keys.
    pub env: std::collections::HashMap<String, String>,
}

impl Stack {
    /// Installs the peers if needed and starts a fresh stack.
    pub fn start() -> Self {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack");
        assert!(
            Command::new(scripts.join("install.sh")).status().unwrap().success(),
            "scripts/stack/install.sh failed"
        );
        let dir = tempfile::Builder::new().prefix("cf-stack-").tempdir().unwrap();
        let out = Command::new(scripts.join("up.sh")).arg(dir.path()).output().unwrap();
        assert!(out.status.success(), "scripts/stack/up.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(dir.path().join("stack.env")).unwrap();
        let env = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Self { dir, env }
    }

    /// One `stack.env` value.
    pub fn get(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!("{key} missing from stack.env"))
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack");
        let _ = Command::new(scripts.join("down.sh")).arg(self.dir.path()).output();
    }
}
