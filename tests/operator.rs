//! What an operator reads, through the real binaries: a failing reload command's wording
//! in `last_error` (rolled back, and dead when the rollback's reload fails too),
//! `certfleet history` for both, `certfleet ca show` against `openssl`, aligned
//! `assets list` columns with a long issuer name, and the example CSV importing as written.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_tests::*;
use std::time::Duration;

/// A second internal issuer with a name longer than the old fixed ISSUER column.
const LONG_ISSUER: &str = "internal-ca-production-eu";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_failures_read_as_sentences_and_history_shows_every_job() {
    let env = TestEnv::new("");
    let flag = env.path("reloaded-once");
    // Fails (silently) the first time only, so the rollback's reload succeeds: `failed`.
    let flaky = format!("[ -e {0} ] || {{ touch {0}; exit 1; }}", flag.display());
    let mut flaky_settings = env.local_settings("flaky");
    flaky_settings["reload_command"] = serde_json::json!(flaky);
    // Fails on the rollback as well: `dead`.
    let mut false_settings = env.local_settings("stuck");
    false_settings["reload_command"] = serde_json::json!("false");
    let asset = |name: &str, settings: serde_json::Value| {
        serde_json::json!({"system_name": name, "common_name": format!("{name}.fleet.test"),
            "certificate_authority": "internal", "host_platform": "local", "settings": settings})
    };
    env.import(&serde_json::json!([asset("flaky", flaky_settings), asset("stuck", false_settings)]));
    let worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let db = env.db().await;
    let settled = |name: &'static str, want: AssetState| {
        let db = db.clone();
        async move {
            wait_for(Duration::from_secs(60), &format!("{name} to be {}", want.as_str()), || async {
                let a = assets::by_name(&db, name).await.unwrap();
                (a.state == want).then_some(a)
            })
            .await
        }
    };
    let flaky_row = settled("flaky", AssetState::Failed).await;
    let expected = format!("reload command \"{flaky}\" exited with status 1 (no output)");
    assert_eq!(flaky_row.last_error.as_deref(), Some(expected.as_str()), "{}", worker.log_text());
    let stuck = settled("stuck", AssetState::Dead).await;
    let once = "reload command \"false\" exited with status 1 (no output)";
    let stuck_error = stuck.last_error.unwrap();
    assert!(stuck_error.contains(&format!("rollback failed after \"{once}\": {once}")), "{stuck_error}");

    let history: serde_json::Value = serde_json::from_str(&env.cli_ok(&["history", "flaky", "--json"])).unwrap();
    assert_eq!((history["system_name"].as_str(), history["state"].as_str()), (Some("flaky"), Some("failed")));
    let job = &history["jobs"][0];
    assert_eq!(history["jobs"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!((job["outcome"].as_str(), job["error_class"].as_str()), (Some("rolled_back"), Some("rolled_back")));
    assert_eq!((job["attempts"].as_i64(), job["error"].as_str()), (Some(1), Some(expected.as_str())));
    assert!(job["worker"].as_str().is_some_and(|w| !w.is_empty()) && job["finished_at"].is_string(), "{job}");
    let text = env.cli_ok(&["history", "stuck"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "stuck: dead, 1 job(s)", "{text}");
    assert!(lines[1].starts_with("QUEUED ") && lines[1].ends_with(" ERROR"), "{text}");
    assert!(lines[2].contains(" dead ") && lines[2].contains(" internal ") && lines[2].contains(once), "{text}");
    for out in [text.as_str(), &env.cli_ok(&["history", "flaky"])] {
        certfleet_shared::messages::check_text(out).unwrap();
    }
    let missing = env.cli(&["history", "nope"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("asset \"nope\" not found"));

    // The worker created the internal root; `ca show` names it and agrees with openssl.
    let root = env.path("ca/root/ca.crt");
    let shown = env.cli_ok(&["ca", "show"]);
    let openssl = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&root)
        .output()
        .unwrap();
    let openssl = String::from_utf8_lossy(&openssl.stdout);
    let fingerprint = openssl.trim().rsplit('=').next().unwrap();
    assert_eq!(fingerprint.len(), 95, "{openssl}");
    assert!(shown.contains(&format!("SHA-256:     {fingerprint}")), "{shown}\n{openssl}");
    assert!(shown.contains(&format!("root:        {}", root.display())), "{shown}");
    assert!(shown.contains("certfleet internal root"), "{shown}");
    assert_eq!(env.cli_ok(&["ca", "show", "--pem"]), std::fs::read_to_string(&root).unwrap());
    let out = env.cli(&["ca", "show", "nope"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no internal issuer named nope"));
}

/// `certfleet ca show` before any worker made the root says where it will be.
#[test]
fn ca_show_before_the_root_exists_says_where_it_will_be() {
    let env = TestEnv::new("");
    let out = env.cli(&["ca", "show"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&env.path("ca/root/ca.crt").display().to_string()) && err.contains("first worker"), "{err}");
}

/// `examples/assets.csv` imports as written: SANs split on `;`, `,` and spaces, `settings`
/// cells are JSON objects, every row routes with `examples/routes.toml`; and `assets list`
/// stays aligned with a long issuer name.
#[test]
fn the_example_csv_imports_and_the_list_stays_aligned() {
    let env = TestEnv::new(&format!("[issuers.{LONG_ISSUER}]\nkind = \"internal\"\nca_dir = \"ca-long\"\n"));
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    // The example inventory routes with the example routing table (imports are checked
    // against the routes), plus a route for the long issuer's platform.
    let routes = std::fs::read_to_string(examples.join("routes.toml")).unwrap();
    std::fs::write(env.path("routes.toml"), routes).unwrap();
    let example = examples.join("assets.csv");
    assert!(env.cli_ok(&["assets", "import", example.to_str().unwrap()]).contains("imported 3 asset(s)"));
    let rows: Vec<serde_json::Value> = serde_json::from_str(&env.cli_ok(&["assets", "list", "--json"])).unwrap();
    let by_name = |n: &str| rows.iter().find(|r| r["system_name"] == n).unwrap().clone();
    let sans = |n: &str| by_name(n)["subject_alternative_name"].clone();
    assert_eq!(sans("web-01"), serde_json::json!(["web-01.example.com", "www.example.com"]));
    assert_eq!(sans("lb-01"), serde_json::json!(["lb.example.com", "api.example.com"]));
    assert_eq!(sans("files-01"), serde_json::json!(["files.example.com", "static.example.com"]));
    assert_eq!(by_name("web-01")["settings"]["reload_command"], "systemctl reload nginx");
    assert_eq!(by_name("files-01")["settings"]["reload_command"], serde_json::json!(["systemctl", "reload", "caddy"]));
    assert_eq!(by_name("lb-01")["settings"]["socket_path"], "/run/haproxy/admin.sock");

    let csv = env.path("long.csv");
    std::fs::write(
        &csv,
        format!(
            "system_name,common_name,certificate_authority,host_platform\nlong-issuer,l.test,{LONG_ISSUER},local\n"
        ),
    )
    .unwrap();
    env.cli_ok(&["assets", "import", csv.to_str().unwrap()]);
    let table = env.cli_ok(&["assets", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    let header = lines[0];
    let (issuer_col, after_col) = (header.find("ISSUER").unwrap(), header.find("NOT_AFTER").unwrap());
    for line in &lines[1..] {
        let issuer = line[issuer_col..].split_whitespace().next().unwrap();
        assert!(["internal", LONG_ISSUER].contains(&issuer), "{table}");
        assert_eq!(line.as_bytes()[after_col - 1], b' ', "{table}");
        assert!(line[after_col..].starts_with(|c: char| c.is_ascii_digit() || c == '-'), "{table}");
    }
}
