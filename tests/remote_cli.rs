//! The CLI through the control-plane API (`certfleet --server URL`), against a live
//! `certfleet-api`, scheduler and worker: an operator whose CLI cannot reach the database
//! or the broker (both point at nothing) logs in, imports (all or none, with the row and
//! field named), lists, rotates, sees and retries a dead letter, and reads history; a
//! token of too low a role and a bad token are refused in words. The writes are audited
//! with the API user as the actor, and local CLI writes with the OS user.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::{assets, audit};
use certfleet_tests::*;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `certfleet` with `stdin` fed in; `env` adds variables.
fn run_with_stdin(mut cmd: std::process::Command, stdin: &str) -> Output {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run certfleet");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The operator's laptop: no config file, an inventory URL and a broker URL that lead
/// nowhere, its own config dir for the saved session.
struct Laptop {
    server: String,
    home: PathBuf,
}

impl Laptop {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = command("certfleet");
        cmd.arg("--server")
            .arg(&self.server)
            .args(args)
            .current_dir(&self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("CERTFLEET_DATABASE_URL", "sqlite:///nonexistent-dir/inventory.db")
            .env("CERTFLEET_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/%2f")
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run certfleet")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "certfleet --server {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        certfleet_shared::messages::check_text(&text).unwrap();
        text
    }

    fn fails(&self, args: &[&str], token: Option<&str>) -> String {
        let mut cmd = self.command(args);
        if let Some(t) = token {
            cmd.env("CERTFLEET_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success(), "certfleet --server {args:?} should fail");
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        certfleet_shared::messages::check_text(&text).unwrap();
        text
    }
}

fn asset(env: &TestEnv, name: &str, reload: &str) -> serde_json::Value {
    let mut settings = env.local_settings(name);
    settings["reload_command"] = serde_json::json!(reload);
    serde_json::json!({"system_name": name, "common_name": format!("{name}.fleet.test"),
        "certificate_authority": "internal", "host_platform": "local", "settings": settings})
}

fn write_json(path: &Path, value: &serde_json::Value) -> String {
    std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
    path.to_str().unwrap().to_owned()
}

async fn state_of(env: &TestEnv, name: &'static str, want: AssetState) -> certfleet_shared::db::entity::asset::Model {
    let db = env.db().await;
    wait_for(Duration::from_secs(60), &format!("{name} to be {}", want.as_str()), || async {
        let a = assets::by_name(&db, name).await.unwrap();
        (a.state == want).then_some(a)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_without_database_access_works_through_the_api() {
    let port = free_port();
    let env = TestEnv::new(&format!("[api]\nlisten = \"127.0.0.1:{port}\"\n"));
    let mut create = command("certfleet");
    create.arg("--config").arg(&env.config).args(["users", "create", "alice", "--role", "privileged"]);
    let made = run_with_stdin(create, "correct horse battery staple\n");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let dev_key = {
        let out = env.cli_ok(&["api-keys", "create", "reader", "--role", "developer"]);
        out.lines().find_map(|l| l.strip_prefix("secret (shown once): ")).unwrap().to_owned()
    };
    let api = env.spawn("certfleet-api", "api", &[]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    let server = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let http = reqwest::Client::new();
    wait_for(Duration::from_secs(30), "the API to answer /healthz", || async {
        http.get(format!("{server}/healthz")).send().await.ok().filter(|r| r.status().is_success())
    })
    .await;
    let laptop = Laptop { server: server.clone(), home: env.path("laptop") };
    std::fs::create_dir_all(&laptop.home).unwrap();

    // Not logged in yet: the CLI says how to.
    let anonymous = laptop.fails(&["assets", "list"], None);
    assert!(anonymous.contains(&format!("not logged in to {server}")) && anonymous.contains("login"), "{anonymous}");
    let wrong = run_with_stdin(laptop.command(&["login", "alice"]), "not the password\n");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("refused the credentials"), "{wrong:?}");
    let login = run_with_stdin(laptop.command(&["login", "alice"]), "correct horse battery staple\n");
    assert!(login.status.success(), "{}", String::from_utf8_lossy(&login.stderr));
    assert!(String::from_utf8_lossy(&login.stdout).starts_with(&format!("logged in to {server} as alice until ")));
    let saved = laptop.home.join("config/certfleet/sessions.json");
    assert_eq!(std::fs::metadata(&saved).unwrap().permissions().mode() & 0o777, 0o600);

    // A bad row is named with the local import's wording; an unknown issuer is named by
    // the server; either way nothing is written.
    let mut bad = asset(&env, "typo", "true");
    bad["port"] = serde_json::json!("https");
    let file = write_json(&env.path("bad.json"), &serde_json::json!([asset(&env, "fine", "true"), bad]));
    let refused = laptop.fails(&["assets", "import", &file], None);
    assert!(refused.contains("1 invalid row(s), nothing imported") && refused.contains("row 2 (typo): field `port`"));
    let mut unknown = asset(&env, "elsewhere", "true");
    unknown["certificate_authority"] = serde_json::json!("nope");
    let file = write_json(&env.path("unknown.json"), &serde_json::json!([asset(&env, "fine", "true"), unknown]));
    let refused = laptop.fails(&["assets", "import", &file], None);
    assert!(refused.contains("row 2 (elsewhere): field `certificate_authority`"), "{refused}");
    let mut unroutable = asset(&env, "lost", "true");
    unroutable["host_platform"] = serde_json::json!("mainframe");
    let file = write_json(&env.path("lost.json"), &serde_json::json!([unroutable]));
    let refused = laptop.fails(&["assets", "import", &file], None);
    assert!(refused.contains("row 1 (lost): field `host_platform`: no route matches"), "{refused}");
    assert_eq!(laptop.ok(&["assets", "list", "--json"]).trim(), "[]");

    // Import two: one rotates, one is dead (its reload and the rollback's reload fail).
    let fleet = env.path("fleet.json");
    let file = write_json(&fleet, &serde_json::json!([asset(&env, "good", "true"), asset(&env, "stuck", "false")]));
    assert!(laptop.ok(&["assets", "import", &file]).contains("imported 2 asset(s)"));
    let listed: Vec<serde_json::Value> = serde_json::from_str(&laptop.ok(&["assets", "list", "--json"])).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let first = state_of(&env, "good", AssetState::Ok).await;
    state_of(&env, "stuck", AssetState::Dead).await;
    let table = laptop.ok(&["assets", "list"]);
    assert!(table.lines().any(|l| l.starts_with("good ") && l.contains(" ok ")), "{table}");

    // The dead letter, seen and retried remotely after the asset is fixed by a re-import.
    let letters = wait_for(Duration::from_secs(30), "the dead letter", || async {
        let l: Vec<serde_json::Value> = serde_json::from_str(&laptop.ok(&["dlq", "list", "--json"])).unwrap();
        (!l.is_empty()).then_some(l)
    })
    .await;
    assert_eq!(letters[0]["system_name"], "stuck", "{letters:?}");
    let job = letters[0]["job_id"].as_str().unwrap().to_owned();
    let file = write_json(&fleet, &serde_json::json!([asset(&env, "good", "true"), asset(&env, "stuck", "true")]));
    assert!(laptop.ok(&["assets", "import", &file]).contains("imported 2 asset(s)"), "re-import updates");
    assert_eq!(laptop.ok(&["dlq", "retry", &job]).trim(), format!("retried {job}"));
    state_of(&env, "stuck", AssetState::Ok).await;
    assert!(laptop.ok(&["dlq", "list"]).lines().count() <= 1, "no pending letter left");

    // Rotate now; the history shows both jobs.
    let published = laptop.ok(&["rotate", "good"]);
    assert!(published.starts_with("published job ") && published.trim().ends_with(" for good"), "{published}");
    let db = env.db().await;
    wait_for(Duration::from_secs(60), "good's new certificate", || async {
        let a = assets::by_name(&db, "good").await.unwrap();
        (a.state == AssetState::Ok && a.fingerprint_sha256 != first.fingerprint_sha256).then_some(())
    })
    .await;
    let history: serde_json::Value = serde_json::from_str(&laptop.ok(&["history", "good", "--json"])).unwrap();
    let jobs = history["jobs"].as_array().unwrap();
    assert_eq!((history["state"].as_str(), jobs.len()), (Some("ok"), 2), "{history}");
    assert!(jobs.iter().all(|j| j["outcome"] == "rotated"), "{history}");
    let text = laptop.ok(&["history", "good"]);
    assert!(text.starts_with("good: ok, 2 job(s)\nQUEUED "), "{text}");
    let queues: Vec<serde_json::Value> = serde_json::from_str(&laptop.ok(&["queues", "--json"])).unwrap();
    assert!(queues.iter().any(|q| q["queue"] == "certfleet.jobs.local" && q["consumers"] == 1), "{queues:?}");

    // A DEVELOPER key may read but not rotate; a bad token is refused.
    assert!(laptop.command(&["dlq", "list"]).env("CERTFLEET_TOKEN", &dev_key).output().unwrap().status.success());
    let denied = laptop.fails(&["rotate", "good"], Some(&dev_key));
    assert!(denied.contains("your role may not do this"), "{denied}");
    let bogus = laptop.fails(&["dlq", "list"], Some("cfk_0000_nothing"));
    assert!(bogus.contains("refused the credentials"), "{bogus}");

    // A local write is audited with the OS user; the remote ones with alice.
    env.cli_ok(&["rotate", "stuck"]);
    let rows = audit::list(&db, &audit::Filter { limit: 100, ..audit::Filter::default() }).await.unwrap();
    let by = |actor: &str, action: &str| rows.iter().filter(|r| r.actor == actor && r.action == action).count();
    assert_eq!(by("alice", "login.ok"), 1, "{rows:?}");
    assert_eq!(by("alice", "asset.create"), 2, "two imports went through: {rows:?}");
    assert_eq!((by("alice", "dlq.retry"), by("alice", "asset.rotate")), (1, 1), "{rows:?}");
    let os_user = rows.iter().find(|r| r.action == "asset.rotate" && r.actor != "alice").expect("the local rotate");
    assert_eq!(os_user.target.as_deref(), Some("stuck"));

    // Logging out ends the token on the server and forgets it here: the same token, sent
    // again, is refused, and the logout is audited.
    let sessions: serde_json::Value = serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let token = sessions["sessions"][&server]["token"].as_str().expect("the saved token").to_owned();
    assert_eq!(laptop.ok(&["logout"]).trim(), format!("logged out of {server}"));
    assert!(laptop.fails(&["assets", "list"], None).contains("not logged in"));
    let ended = laptop.fails(&["assets", "list"], Some(&token));
    assert!(ended.contains("this session was logged out; log in again"), "{ended}");
    let rows = audit::list(&db, &audit::Filter { limit: 100, ..audit::Filter::default() }).await.unwrap();
    assert_eq!(rows.iter().filter(|r| r.actor == "alice" && r.action == "logout").count(), 1, "{rows:?}");
    drop(api);
}
