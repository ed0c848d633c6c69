//! Faults a device causes, through the real binaries over a real sshd (issue 15):
//!
//! - a device that stalls mid-command (a `sleep` past the asset's `command_timeout_secs`)
//!   is retried within the job timeout, and its temporary key directory is removed;
//! - when `worker.job_timeout` fires mid-job, the session is still closed and no temporary
//!   key stays on the device.
//!
//! The stall is a fake `openssl` first on the device's `PATH` (set with `SetEnv` in a
//! second sshd of the stack's config): the first `openssl req` for each common name sleeps
//! 30 s, later ones run the real openssl. `TMPDIR` points at a directory the test watches,
//! so every temporary key directory the driver makes (`mktemp -d`) is visible.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::{AssetState, Model as Asset};
use certfleet_tests::device::*;
use certfleet_tests::*;
use std::os::unix::fs::PermissionsExt as _;
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

/// Writes the fake `openssl` into `bin`; stall markers go to `state`.
fn fake_openssl(bin: &Path, state: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        "#!/bin/sh\n\
         cn=\n\
         for a in \"$@\"; do case \"$a\" in /CN=*) cn=${{a#/CN=}};; esac; done\n\
         if [ \"$1\" = req ] && [ -n \"$cn\" ] && [ ! -e '{s}'/\"stalled-$cn\" ]; then\n\
           touch '{s}'/\"stalled-$cn\"; sleep 30\n\
         fi\n\
         exec /usr/bin/openssl \"$@\"\n",
        s = state.display()
    );
    let path = bin.join("openssl");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_command_and_a_job_timeout_are_retried_and_leave_no_temporary_key() {
    let stack = Stack::start();
    let env = ssh_env(&stack, "[worker]\njob_timeout = \"8s\"\n");
    let (bin, state, tmp) = (env.path("device-bin"), env.path("device-state"), env.path("device-tmp"));
    fake_openssl(&bin, &state);
    std::fs::create_dir_all(&state).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let set_env =
        format!("StrictModes no\nSetEnv PATH={}:/usr/local/bin:/usr/bin:/bin TMPDIR={}", bin.display(), tmp.display());
    let sshd = ExtraSshd::start(&stack, &[("StrictModes no", &set_env)]);
    let asset = |name: &str, command_timeout: Option<u64>| {
        let mut settings = serde_json::json!({"host": "127.0.0.1", "ssh_port": sshd.port,
            "host_key": stack.get("SSH_HOST_KEY_FINGERPRINT"),
            "cert_path": env.path(&format!("certs/{name}.crt")), "key_path": env.path(&format!("certs/{name}.key")),
            "reload_command": ["true"]});
        if let Some(secs) = command_timeout {
            settings["command_timeout_secs"] = secs.into();
        }
        serde_json::json!({"system_name": name, "common_name": format!("{name}.certfleet.test"),
            "subject_alternative_name": [format!("{name}.certfleet.test")],
            "certificate_authority": "internal", "host_platform": "linux", "settings": settings})
    };
    // `stall`: the command's own timeout (2 s) ends the stall well within the job timeout.
    // `slow`: the command may take 30 s, so the job timeout (8 s) fires mid-command.
    env.import(&serde_json::json!([asset("stall", Some(2)), asset("slow", None)]));
    let worker = env.spawn_logging("certfleet-worker", "worker", &["--drivers", "linux-ssh"], "info");
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);

    for name in ["stall", "slow"] {
        let a = settled(&env, name, Duration::from_secs(90)).await;
        assert_eq!(a.state, AssetState::Ok, "{name}: {:?}\n{}", a.last_error, worker.log_text());
        assert!(state.join(format!("stalled-{name}.certfleet.test")).exists(), "{name}: the device stalled once");
        let (crt, key) = (env.path(&format!("certs/{name}.crt")), env.path(&format!("certs/{name}.key")));
        let root = std::fs::read_to_string(env.path("ca/root/ca.crt")).unwrap();
        let cn = format!("{name}.certfleet.test");
        check_installed(&crt, &key, &root, &cn, &[&cn]);
    }
    let log = worker.log_text();
    assert!(log.contains("remote command timed out after 2s"), "the stalled command timed out:\n{log}");
    assert!(log.contains("job timed out after 8s"), "the job timeout fired:\n{log}");
    assert!(log.contains("will be retried"), "{log}");
    // Every temporary key directory the driver made on the device is gone.
    wait_for(Duration::from_secs(20), "the device's temporary directories to be removed", || async {
        (std::fs::read_dir(&tmp).unwrap().count() == 0).then_some(())
    })
    .await;
    assert!(files_with(env.path("certs").as_path(), &[".tmp"]).is_empty(), "no staged files left");
}
