//! The `haproxy` driver through the real binaries: the scheduler and a worker hot-swap the
//! certificate of a real HAProxy 2.6 (from `scripts/stack/up.sh`, on 127.0.0.1) through its
//! runtime API, with the key made on the host over a real sshd. The test's own TLS client
//! handshakes with HAProxy throughout the rotation and must never fail (zero downtime), the
//! HAProxy pid must not change, and a failed validation must leave the old certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::{AssetState, Model as Asset};
use certfleet_tests::device::*;
use certfleet_tests::*;
use sha2::Digest as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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

fn haproxy_pid(stack: &Stack) -> String {
    std::fs::read_to_string(format!("{}/haproxy/haproxy.pid", stack.get("STATE_DIR"))).unwrap().trim().to_owned()
}

fn lb_asset(stack: &Stack, name: &str, tls_port: &str, api: serde_json::Value) -> serde_json::Value {
    let mut settings = serde_json::json!({
        "crt_path": stack.get("HAPROXY_PEM"),
        "ssh_port": stack.get("SSH_PORT").parse::<u16>().unwrap(),
        "host_key": stack.get("SSH_HOST_KEY_FINGERPRINT"),
    });
    settings.as_object_mut().unwrap().extend(api.as_object().unwrap().clone());
    serde_json::json!({
        "system_name": name, "common_name": "lb.certfleet.test",
        "subject_alternative_name": ["lb.certfleet.test", "127.0.0.1"],
        "certificate_authority": "internal", "host_platform": "haproxy",
        "ip_address": "127.0.0.1", "port": tls_port.parse::<u16>().unwrap(),
        "settings": settings,
    })
}

/// Hot swap through the unix admin socket (reached over SSH): no failed handshake during
/// the rotation, the same HAProxy process, the new certificate served and on disk, and
/// the key bytes nowhere in logs, messages or the inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_api_swap_over_ssh_has_zero_downtime() {
    let stack = Stack::start();
    let env = ssh_env(&stack, "");
    let (tapped, tap_task) = tap(&env).await;
    let port: u16 = stack.get("HAPROXY_TLS_PORT").parse().unwrap();
    let pem = stack.get("HAPROXY_PEM");
    let pid_before = haproxy_pid(&stack);
    let original_leaf = first_cert_der(pem);
    env.import(&serde_json::json!([lb_asset(
        &stack,
        "lb",
        stack.get("HAPROXY_TLS_PORT"),
        serde_json::json!({"socket_path": stack.get("HAPROXY_SOCKET")}),
    )]));

    // A client that handshakes with HAProxy in a loop for the whole rotation.
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let connector = tls_connector();
            let (mut ok, mut failures, mut leaves) = (0usize, Vec::new(), Vec::<Vec<u8>>::new());
            while !stop.load(Ordering::Relaxed) {
                match served_leaf(&connector, port, "lb.certfleet.test").await {
                    Ok(leaf) => {
                        ok += 1;
                        if !leaves.contains(&leaf) {
                            leaves.push(leaf);
                        }
                    }
                    Err(e) => failures.push(e),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (ok, failures, leaves)
        })
    };
    let worker = env.spawn_logging("certfleet-worker", "worker", &["--drivers", "haproxy"], "debug");
    let scheduler = env.spawn_logging("certfleet-scheduler", "scheduler", &[], "debug");
    let lb = settled(&env, "lb", Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failures, leaves) = client.await.unwrap();
    assert_eq!(lb.state, AssetState::Ok, "{:?}\n{}", lb.last_error, worker.log_text());

    assert!(
        failures.is_empty(),
        "{} failed handshakes during the rotation: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 20, "the client kept handshaking ({ok})");
    assert_eq!(leaves.first(), Some(&original_leaf), "the client saw the old certificate first");
    assert_eq!(leaves.len(), 2, "then exactly one new certificate");
    let served = served_leaf(&tls_connector(), port, "lb.certfleet.test").await.unwrap();
    assert_eq!(leaves[1], served);
    assert_eq!(lb.fingerprint_sha256, Some(hex::encode(sha2::Sha256::digest(&served))));
    assert_eq!(haproxy_pid(&stack), pid_before, "HAProxy was not restarted");
    // The same bundle is on disk (so a restart keeps it): new chain, then its key, mode 0600.
    assert_eq!(first_cert_der(pem), served);
    let blocks = pem_blocks(&std::fs::read(pem).unwrap());
    let tags: Vec<&str> = blocks.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, ["CERTIFICATE", "CERTIFICATE", "PRIVATE KEY"], "chain (leaf, root) then key");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(pem).unwrap().permissions().mode() & 0o777, 0o600);
    let prev = format!("{pem}.prev");
    assert_eq!(first_cert_der(&prev), original_leaf, "the previous bundle is kept");

    tap_task.abort();
    let messages = tapped.lock().await.concat();
    let mut db_bytes = Vec::new();
    for f in files_with(env.dir.path(), &[".db", ".db-wal", ".db-shm"]) {
        db_bytes.extend(std::fs::read(f).unwrap());
    }
    let forms = key_fingerprints(&std::fs::read(pem).unwrap());
    assert_absent(&forms, worker.log_text().as_bytes(), "the worker log");
    assert_absent(&forms, scheduler.log_text().as_bytes(), "the scheduler log");
    assert_absent(&forms, &messages, "AMQP messages");
    assert_absent(&forms, &db_bytes, "the inventory database");
}

/// Through the TCP admin socket: a rotation whose served-certificate check fails (the asset
/// names nginx's port) is swapped back; HAProxy serves the old certificate from the same
/// process, the old bundle is back on disk, and the asset is `failed` with the cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_validation_swaps_the_old_certificate_back() {
    let stack = Stack::start();
    let env = ssh_env(&stack, "");
    let port: u16 = stack.get("HAPROXY_TLS_PORT").parse().unwrap();
    let pem = stack.get("HAPROXY_PEM");
    let pid_before = haproxy_pid(&stack);
    let original = std::fs::read(pem).unwrap();
    let original_leaf = first_cert_der(pem);
    let api = format!("127.0.0.1:{}", stack.get("HAPROXY_API_PORT"));
    env.import(&serde_json::json!([lb_asset(
        &stack,
        "lb",
        stack.get("NGINX_TLS_PORT"),
        serde_json::json!({"api_address": api}),
    )]));
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "haproxy"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let lb = settled(&env, "lb", Duration::from_secs(90)).await;
    assert_eq!(lb.state, AssetState::Failed, "{:?}", lb.last_error);
    assert!(lb.last_error.as_deref().unwrap_or("").contains("TLS validation"), "{:?}", lb.last_error);
    let served = served_leaf(&tls_connector(), port, "lb.certfleet.test").await.unwrap();
    assert_eq!(served, original_leaf, "HAProxy serves the old certificate again");
    assert_eq!(std::fs::read(pem).unwrap(), original, "the old bundle is back on disk");
    assert_eq!(haproxy_pid(&stack), pid_before, "HAProxy was not restarted");
}

/// A device whose sshd forbids forwarding (`AllowTcpForwarding no`): the channel to
/// HAProxy's unix socket is refused for good, so the job is dead at once (no retries) with
/// the fix in the message, and HAProxy keeps its certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_socket_channel_is_dead_at_once_with_the_fix() {
    let stack = Stack::start();
    let sshd = ExtraSshd::start(&stack, &[("AllowTcpForwarding local", "AllowTcpForwarding no")]);
    let env = ssh_env(&stack, "");
    let original = std::fs::read(stack.get("HAPROXY_PEM")).unwrap();
    let mut asset = lb_asset(
        &stack,
        "lb",
        stack.get("HAPROXY_TLS_PORT"),
        serde_json::json!({"socket_path": stack.get("HAPROXY_SOCKET")}),
    );
    asset["settings"]["ssh_port"] = serde_json::json!(sshd.port);
    env.import(&serde_json::json!([asset]));
    let worker = env.spawn("certfleet-worker", "worker", &["--drivers", "haproxy"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let lb = settled(&env, "lb", Duration::from_secs(60)).await;
    let error = lb.last_error.clone().unwrap_or_default();
    assert_eq!(lb.state, AssetState::Dead, "{error}\n{}", worker.log_text());
    for needle in ["sshd refused the channel", stack.get("HAPROXY_SOCKET"), "api_address", "AllowStreamLocalForwarding"]
    {
        assert!(error.contains(needle), "{needle:?} missing from: {error}");
    }
    assert!(!error.contains("ConnectFailed") && !error.contains("device unreachable"), "{error}");
    let letters: Vec<serde_json::Value> = serde_json::from_str(&env.cli_ok(&["dlq", "list", "--json"])).unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["error_class"], "invalid_input", "dead at once, not after retries: {letters:?}");
    assert_eq!(letters[0]["attempts"], 1, "{letters:?}");
    assert_eq!(std::fs::read(stack.get("HAPROXY_PEM")).unwrap(), original, "nothing was installed");
}
