//! The dashboard in a real browser: the real `certfleet-api`, `certfleet-scheduler` and two
//! `certfleet-worker` processes over a fleet of 30 `local` assets, and Debian's headless
//! Chromium driven by playwright-core (`tests/dashboard/scenarios.mjs`): log in as ADMIN
//! and check the overview counts; retry a dead letter and watch the asset turn ok; discard
//! another; Rotate now and see the fingerprint change; as DEVELOPER see no write button
//! and have a forged POST refused with 403; a POST without the CSRF token refused; stop a
//! worker and see it shown as gone on Queues. Each scenario saves a screenshot in the
//! test's directory (`screenshots/`); set `CERTFLEET_SCREENSHOTS=DIR` to keep copies.
//!
//! The dead assets come from jobs dead-lettered onto `certfleet.dead` as a worker does it,
//! recorded by the real scheduler; the failed ones are written as the scheduler writes a
//! rollback. Devices are not broken for this: the point here is the dashboard, and the
//! worker paths that lead there have their own tests. Chromium, Node and playwright-core come from
//! `scripts/stack/install.sh`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::{Driver, Envelope, ErrorClass, JobId};
use certfleet_shared::amqp::{self, Outgoing, Publisher, headers, topology};
use certfleet_shared::db::entity::asset::{self, AssetState};
use certfleet_shared::db::{assets, job_from_asset};
use certfleet_tests::*;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const FLEET: usize = 30;
const DEAD: [&str; 4] = ["dev-000", "dev-001", "dev-002", "dev-003"];
const FAILED: [&str; 3] = ["dev-004", "dev-005", "dev-006"];
const PASSWORD: &str = "dashboard test password";

fn playwright_dir() -> PathBuf {
    PathBuf::from(std::env::var("CERTFLEET_PLAYWRIGHT_DIR").unwrap_or_else(|_| "/var/tmp/certfleet-playwright".into()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn create_user(env: &TestEnv, name: &str, role: &str) {
    let mut child = command("certfleet")
        .arg("--config")
        .arg(&env.config)
        .args(["users", "create", name, "--role", role])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(PASSWORD.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "users create {name}: {}", String::from_utf8_lossy(&out.stderr));
}

fn fleet(env: &TestEnv) -> serde_json::Value {
    (0..FLEET)
        .map(|i| {
            let name = format!("dev-{i:03}");
            serde_json::json!({
                "system_name": name,
                "common_name": format!("{name}.fleet.test"),
                "certificate_authority": "internal",
                "host_platform": "local",
                "data_center": if i % 2 == 0 { "dc1" } else { "dc2" },
                "settings": env.local_settings(&name),
            })
        })
        .collect()
}

async fn count(env: &TestEnv, state: AssetState) -> usize {
    let db = env.db().await;
    let n = assets::list(&db).await.map(|a| a.iter().filter(|a| a.state == state).count()).unwrap_or(0);
    db.close().await.ok();
    n
}

fn require(path: &Path, what: &str) {
    assert!(path.exists(), "{what} ({}) is missing: run scripts/stack/install.sh", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    require(Path::new("/usr/bin/chromium"), "Debian's chromium");
    require(&playwright_dir().join("node_modules/playwright-core/package.json"), "playwright-core");
    let port = free_port();
    let env = TestEnv::new(&format!(
        "amqp_management_url = \"http://127.0.0.1:15672\"\n[worker]\nheartbeat_interval = \"1s\"\n[api]\nlisten = \"127.0.0.1:{port}\"\n"
    ));
    env.import(&fleet(&env));
    create_user(&env, "ops-admin", "admin");
    create_user(&env, "ops-dev", "developer");
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let _worker_a = env.spawn("certfleet-worker", "worker-a", &["--drivers", "local", "--name", "worker-a"]);
    let worker_b = env.spawn("certfleet-worker", "worker-b", &["--drivers", "local", "--name", "worker-b"]);
    let api = env.spawn("certfleet-api", "api", &[]);
    wait_for(Duration::from_secs(120), "every asset rotated", || async {
        (count(&env, AssetState::Ok).await == FLEET).then_some(())
    })
    .await;
    wait_for(Duration::from_secs(30), "the API listening", || async {
        api.log_text().contains("API listening").then_some(())
    })
    .await;

    // Some dead: each a job dead-lettered as a worker does it (to `certfleet.dead`, with the
    // class, reason and attempt headers), recorded by the real scheduler.
    let db = env.db().await;
    let timeout = Duration::from_secs(10);
    let conn = amqp::connect(&env.vhost.url.as_str().into(), "dashboard-test", timeout).await.unwrap();
    let publisher = Publisher::open(&conn, timeout).await.unwrap();
    for name in DEAD {
        let a = assets::by_name(&db, name).await.unwrap();
        let job = job_from_asset(&a, Driver::Local, JobId::new(), 5, chrono::Utc::now()).unwrap();
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let props = headers::dead_properties(
            &headers::job_properties(&job, tp),
            ErrorClass::Auth,
            "the device refused the key",
            5,
            tp,
        );
        let body = Envelope::encode(&job);
        let msg = Outgoing { exchange: topology::DEAD_EXCHANGE, routing_key: "local", body: &body, properties: props };
        publisher.publish(msg).await.unwrap();
    }
    let _ = conn.close(200, "done".into()).await;
    wait_for(Duration::from_secs(60), "the dead letters recorded", || async {
        (count(&env, AssetState::Dead).await == DEAD.len()).then_some(())
    })
    .await;
    // Some failed: rolled back, retried after `failed_retry_after` (1 h here), as the
    // scheduler stores it.
    asset::Entity::update_many()
        .col_expr(asset::Column::State, Expr::value(AssetState::Failed.as_str()))
        .col_expr(asset::Column::LastError, Expr::value("reload failed; the previous certificate was restored"))
        .col_expr(asset::Column::NextDueAt, Expr::value(chrono::Utc::now() + chrono::Duration::hours(1)))
        .filter(asset::Column::SystemName.is_in(FAILED))
        .exec(&db)
        .await
        .unwrap();
    db.close().await.ok();

    let shots = env.path("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let expect = serde_json::json!({
        "total": FLEET, "ok": FLEET - DEAD.len() - FAILED.len(), "failed": FAILED.len(), "dead": DEAD.len(),
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard/scenarios.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("ADMIN_USER", "ops-admin")
        .env("DEV_USER", "ops-dev")
        .env("PASSWORD", PASSWORD)
        .env("EXPECT", expect.to_string())
        .env("RETRY_ASSET", DEAD[0])
        .env("DISCARD_ASSET", DEAD[1])
        .env("ROTATE_ASSET", "dev-020")
        .env("STOP_WORKER", "worker-b")
        .env("STOP_WORKER_PID", worker_b.pid().to_string())
        .env("SCREENSHOTS", &shots)
        .env("PLAYWRIGHT_DIR", playwright_dir())
        .env("USER_DATA_DIR", env.path("chromium-profile"))
        .output()
        .expect("node must be installed (scripts/stack/install.sh)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    if let Ok(keep) = std::env::var("CERTFLEET_SCREENSHOTS") {
        std::fs::create_dir_all(&keep).unwrap();
        for e in std::fs::read_dir(&shots).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), Path::new(&keep).join(e.file_name())).unwrap();
        }
    }

    assert!(
        out.status.success(),
        "browser scenarios failed:\n{stdout}\n{}\napi log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        api.log_text()
    );
    for scenario in
        ["overview", "retry", "discard", "dead-detail", "rotate", "csrf", "audit", "developer", "queues", "worker-gone"]
    {
        assert!(stdout.contains(&format!("ok {scenario}")), "scenario {scenario} did not report:\n{stdout}");
        assert!(shots.join(format!("{scenario}.png")).exists(), "screenshot of {scenario}");
    }
    drop(worker_b);
}
