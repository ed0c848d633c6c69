//! Metrics end to end, against real services: the real scheduler, worker and API binaries
//! serve `/metrics`; a real Prometheus (Debian's package, started on 127.0.0.1) scrapes
//! them while 20 assets rotate (2 forced dead), and PromQL through its HTTP API sees what
//! happened. `promtool` checks and unit-tests the shipped alert rules. A 10,000-asset
//! fleet shows the per-asset limit at work. No scrape may show a secret of the run.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::{assets, dead_letters};
use certfleet_tests::prometheus::{Prometheus, client, metrics_addr, promtool, scrape};
use certfleet_tests::*;
use std::path::Path;
use std::time::Duration;

/// `[metrics]` with every endpoint on a port of its own choosing (the test reads it from
/// the process log), a fast refresh, and the API on a free port.
const METRICS: &str = "[metrics]\nscheduler_listen = \"127.0.0.1:0\"\nworker_listen = \"127.0.0.1:0\"\n\
                       api_listen = \"127.0.0.1:0\"\nrefresh_interval = \"2s\"\n[api]\nlisten = \"127.0.0.1:0\"\n";

fn fleet(env: &TestEnv, good: usize, broken: usize) -> serde_json::Value {
    let mut rows = Vec::new();
    for i in 0..good {
        let name = format!("dev-{i:03}");
        rows.push(serde_json::json!({
            "system_name": name,
            "common_name": format!("{name}.fleet.test"),
            "certificate_authority": "internal",
            "host_platform": "local",
            "data_center": "dc1",
            "settings": env.local_settings(&name),
        }));
    }
    for i in 0..broken {
        // Its directory does not exist: the local driver refuses it for good (invalid input).
        let name = format!("broken-{i}");
        rows.push(serde_json::json!({
            "system_name": name,
            "common_name": format!("{name}.fleet.test"),
            "certificate_authority": "internal",
            "host_platform": "local",
            "data_center": "dc2",
            "settings": {
                "cert_path": env.path(&format!("missing/{name}.crt")),
                "key_path": env.path(&format!("missing/{name}.key")),
            },
        }));
    }
    serde_json::Value::Array(rows)
}

/// Text that must never appear in a scrape: the broker URL and password, the database URL,
/// and every private key of the run (the CA's and the devices'), line by line.
fn secrets(env: &TestEnv) -> Vec<String> {
    let mut out = vec![env.vhost.url.clone(), "guest:guest".to_owned(), env.db_url.clone()];
    let mut keys = vec![env.path("ca/root/ca.key")];
    if let Ok(dir) = std::fs::read_dir(env.path("certs")) {
        keys.extend(dir.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "key")));
    }
    for key in keys {
        let pem = std::fs::read_to_string(&key).unwrap_or_default();
        out.extend(pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_owned));
    }
    out
}

fn assert_no_secret(text: &str, secrets: &[String], what: &str) {
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} shows a secret of the run: {s}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_sees_eighteen_rotations_and_two_dead_letters() {
    let env = TestEnv::new(METRICS);
    env.import(&fleet(&env, 18, 2));
    let worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local", "--concurrency", "4", "--name", "w1"]);
    let api = env.spawn("certfleet-api", "api", &[]);
    let scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let targets = [
        ("scheduler", metrics_addr(&scheduler, Duration::from_secs(30)).unwrap()),
        ("worker", metrics_addr(&worker, Duration::from_secs(30)).unwrap()),
        ("api", metrics_addr(&api, Duration::from_secs(30)).unwrap()),
    ];
    let prom = Prometheus::start(&targets).unwrap();

    // The inventory's view first: 18 rotated, 2 dead letters recorded.
    wait_for(Duration::from_secs(120), "18 assets rotated and 2 dead letters recorded", || async {
        let db = env.db().await;
        let ok = assets::list(&db).await.map(|a| a.iter().filter(|a| a.state == AssetState::Ok).count()).unwrap_or(0);
        let dead = dead_letters::list(&db, false).await.map(|d| d.len()).unwrap_or(0);
        db.close().await.ok();
        (ok == 18 && dead == 2).then_some(())
    })
    .await;
    // A request to the API, so its counters have something to count.
    let api_addr = api.log_text().lines().filter(|l| l.contains("API listening")).find_map(|l| {
        let start = l.find("http://")? + "http://".len();
        let rest = &l[start..];
        let end = rest.find(|c: char| c == '/' || c == '\x1b' || c.is_whitespace()).unwrap_or(rest.len());
        rest[..end].parse::<std::net::SocketAddr>().ok()
    });
    let api_addr = api_addr.expect("the API logs its URL");
    let health = client().unwrap().get(format!("http://{api_addr}/healthz")).send().await.unwrap();
    assert!(health.status().is_success());

    // Then Prometheus's, through PromQL.
    let sum = |q: &'static str| {
        let prom = &prom;
        async move { prom.scalar(q).await }
    };
    wait_for(Duration::from_secs(60), "Prometheus to see 18 rotated, 2 dead and 2 dead letters", || async {
        let rotated = sum(r#"sum(certfleet_rotations_total{outcome="rotated"})"#).await;
        let dead = sum(r#"sum(certfleet_rotations_total{outcome="dead"})"#).await;
        let letters = sum("sum(certfleet_dead_letters)").await;
        let health = sum(r#"sum(certfleet_api_requests_total{route="/healthz", status="200"})"#).await;
        (rotated == Some(18.0) && dead == Some(2.0) && letters == Some(2.0) && health >= Some(1.0)).then_some(())
    })
    .await;
    let by_class = prom.query(r#"sum by (class) (certfleet_dead_letters)"#).await.unwrap();
    assert_eq!(by_class.len(), 1, "{by_class:?}");
    assert_eq!((by_class[0].0["class"].as_str(), by_class[0].1), (Some("invalid_input"), 2.0));
    let dead_class = prom.query(r#"sum by (error_class) (certfleet_rotations_total{outcome="dead"})"#).await.unwrap();
    assert_eq!(dead_class[0].0["error_class"], "invalid_input", "{dead_class:?}");
    // Every rotated asset was signed once; every target is up and says which process it is.
    let signed = prom
        .scalar(r#"sum(certfleet_rotation_step_duration_seconds_count{driver="local", step="sign"})"#)
        .await
        .unwrap();
    assert_eq!(signed, 18.0);
    let up = prom.query("up").await.unwrap();
    assert_eq!(up.len(), 3, "{up:?}");
    assert!(up.iter().all(|(_, v)| *v == 1.0), "every target scraped: {up:?}");
    let mut processes: Vec<String> = prom
        .query("certfleet_build_info")
        .await
        .unwrap()
        .into_iter()
        .map(|(m, _)| m["process"].as_str().unwrap_or_default().to_owned())
        .collect();
    processes.sort();
    assert_eq!(processes, ["api", "scheduler", "worker"]);
    let ok = prom.scalar(r#"sum(certfleet_assets{state="ok", data_center="dc1"})"#).await;
    assert_eq!(ok, Some(18.0));
    let consumers = prom.scalar(r#"certfleet_queue_consumers{queue="certfleet.jobs.local"}"#).await;
    assert_eq!(consumers, Some(1.0), "the one worker consumes the local queue");

    let secrets = secrets(&env);
    for (name, addr) in targets {
        assert_no_secret(&scrape(addr).await.unwrap(), &secrets, &format!("the {name}'s /metrics"));
    }
}

#[test]
fn promtool_checks_and_tests_the_shipped_rules() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let checked = promtool(&dir, &["check", "rules", "alerts.yaml"]).unwrap();
    assert!(checked.contains("SUCCESS: 8 rules found"), "{checked}");
    let tested = promtool(&dir, &["test", "rules", "alerts_test.yaml"]).unwrap();
    assert!(tested.contains("SUCCESS"), "{tested}");
    promtool(&dir, &["check", "config", "prometheus.yml"]).unwrap();
    // Every alert the rules define has a unit test that fires it.
    let rules = std::fs::read_to_string(dir.join("alerts.yaml")).unwrap();
    let tests = std::fs::read_to_string(dir.join("alerts_test.yaml")).unwrap();
    for alert in rules.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tests.contains(&format!("alertname: {alert}")), "{alert} has no promtool test");
    }
}

/// Imports `n` assets that are not due (far expiry) plus `expired` already expired ones.
fn big_fleet(env: &TestEnv, n: usize, expired: usize) {
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let name = format!("big-{i:05}");
            serde_json::json!({
                "system_name": name,
                "common_name": format!("{name}.fleet.test"),
                "certificate_authority": "internal",
                "host_platform": "local",
                "data_center": format!("dc{}", i % 3),
                "certificate_expiration": if i < expired { "2020-01-01T00:00:00Z" } else { "2099-01-01T00:00:00Z" },
                "settings": env.local_settings(&name),
            })
        })
        .collect();
    env.import(&serde_json::Value::Array(rows));
}

/// Scrapes the scheduler until the fleet gauges are there; returns the exposition.
async fn fleet_scrape(env: &TestEnv, per_asset_limit: &str) -> String {
    let label = format!("scheduler-{per_asset_limit}");
    // The first refresh comes at start; a long interval keeps 10,000 series from expiring
    // (3 intervals) while a loaded machine is slow to set them all again.
    let vars =
        [("CERTFLEET_METRICS__PER_ASSET_LIMIT", per_asset_limit), ("CERTFLEET_METRICS__REFRESH_INTERVAL", "60s")];
    let mut proc = env.spawn_with_env("certfleet-scheduler", &label, &[], &vars);
    let addr = metrics_addr(&proc, Duration::from_secs(30)).unwrap();
    let text = wait_for(Duration::from_secs(60), "the fleet gauges in the scrape", || async {
        let text = scrape(addr).await.ok()?;
        let total: f64 = series(&text, "certfleet_assets{").iter().sum();
        // The queue gauges are set last in a refresh: with them, the per-asset ones are in.
        let refreshed = !series(&text, "certfleet_queue_consumers{").is_empty();
        (total == 10_000.0 && refreshed).then_some(text)
    })
    .await;
    assert!(proc.terminate(Duration::from_secs(20)), "the scheduler stops cleanly");
    text
}

/// The values of the series whose line starts with `prefix`.
fn series(text: &str, prefix: &str) -> Vec<f64> {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_asset_fleet_respects_the_per_asset_limit() {
    let env = TestEnv::new(METRICS);
    big_fleet(&env, 10_000, 5);
    let secrets = secrets(&env);

    // At the default limit (10,000) the fleet is exported per asset.
    let text = fleet_scrape(&env, "10000").await;
    let per_asset = series(&text, "certfleet_certificate_expiration_timestamp_seconds{");
    assert_eq!(per_asset.len(), 10_000);
    let expired =
        series(&text, "certfleet_certificate_expiration_timestamp_seconds{").iter().filter(|t| **t < 1.7e9).count();
    assert_eq!(expired, 5, "the expired ones carry their 2020 timestamp");
    let within_0d: f64 = text
        .lines()
        .filter(|l| l.starts_with("certfleet_certificates_expiring{") && l.contains("within=\"0d\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(within_0d, 5.0);
    assert_no_secret(&text, &secrets, "the scheduler's /metrics");

    // One below the fleet's size: no per-asset series at all, the aggregates stay.
    let text = fleet_scrape(&env, "9999").await;
    assert!(
        series(&text, "certfleet_certificate_expiration_timestamp_seconds{").is_empty(),
        "no per-asset series past the limit"
    );
    let series_count = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count();
    assert!(series_count < 500, "past the limit the exposition stays small ({series_count} series)");
    assert_no_secret(&text, &secrets, "the scheduler's /metrics");
}
