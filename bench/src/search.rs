//! `search`: `GET /api/v1/search` over a seeded inventory (filter by `data_center` +
//! `days_until_expiration`, `limit=100`), driven by `wrk` with N concurrent connections,
//! against the same query issued straight through `search::assets` from N tasks (the
//! baseline): p50 / p99 latency and requests per second, so the API's own cost shows as a
//! ratio.

use crate::env::BenchEnv;
use anyhow::{Context as _, bail};
use certfleet_shared::db::entity::asset::{self, AssetState};
use certfleet_shared::db::search::{self, AssetFilter};
use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::{ActiveValue::Set, ConnectionTrait as _};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Data centres the seeded assets spread over.
const DATA_CENTERS: u64 = 20;
/// Expiries spread over this many days from now.
const SPREAD_DAYS: u64 = 90;

fn row(i: u64) -> asset::ActiveModel {
    let now = Utc::now();
    // Spread expiries by minutes so that every day holds about the same number.
    let expires = now + ChronoDuration::minutes(((i * 7919) % (SPREAD_DAYS * 24 * 60)) as i64);
    asset::ActiveModel {
        system_name: Set(format!("s-{i:07}")),
        common_name: Set(format!("s-{i:07}.bench.test")),
        subject_alternative_name: Set(serde_json::json!([format!("s-{i:07}.bench.test")])),
        certificate_authority: Set("internal".into()),
        certificate_expiration: Set(Some(expires)),
        data_center: Set(Some(format!("dc{}", i % DATA_CENTERS))),
        host_platform: Set("local".into()),
        certificate_validation: Set(true),
        key_algorithm: Set("ecdsa-p256".into()),
        settings: Set(serde_json::json!({})),
        state: Set(AssetState::Ok),
        not_before: Set(Some(expires - ChronoDuration::days(90))),
        not_after: Set(Some(expires)),
        next_due_at: Set(Some(expires)),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// One measurement: (p50 ms, p99 ms, requests/s).
type Figures = (f64, f64, f64);

/// Parses wrk's `--latency` report.
fn parse_wrk(out: &str) -> anyhow::Result<Figures> {
    let ms = |v: &str| -> anyhow::Result<f64> {
        let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic()).context("latency unit")?);
        let n: f64 = num.parse()?;
        Ok(match unit {
            "us" => n / 1000.0,
            "ms" => n,
            "s" => n * 1000.0,
            other => bail!("unknown wrk unit {other}"),
        })
    };
    let pct = |p: &str| -> anyhow::Result<f64> {
        let line =
            out.lines().find(|l| l.trim_start().starts_with(p)).with_context(|| format!("no {p} in wrk output"))?;
        ms(line.split_whitespace().nth(1).context("latency value")?)
    };
    let rps: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .context("no Requests/sec in wrk output")?
        .trim()
        .parse()?;
    if let Some(line) = out.lines().find(|l| l.contains("Non-2xx")) {
        bail!("wrk saw failed requests: {line}");
    }
    Ok((pct("50%")?, pct("99%")?, rps))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The same query straight from `clients` tasks for `secs`.
async fn direct(env: &BenchEnv, clients: u16, secs: u64, days: u32, dc: &str) -> anyhow::Result<Figures> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let db = env.db().clone();
        let filter = AssetFilter {
            data_center: Some(dc.to_owned()),
            days_until_expiration: Some(days),
            ..AssetFilter::default()
        };
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let (rows, _) = search::assets(&db, &filter, 0, 100, Utc::now()).await?;
                anyhow::ensure!(!rows.is_empty(), "the filter matched nothing");
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by(f64::total_cmp);
    Ok((percentile(&all, 0.5), percentile(&all, 0.99), all.len() as f64 / secs as f64))
}

fn wrk(url: &str, token: &str, clients: u16, secs: u64) -> anyhow::Result<Figures> {
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{clients}"), &format!("-d{secs}s"), "--latency", "--timeout", "10s"])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    parse_wrk(&text)
}

async fn login(base: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the API did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answer: serde_json::Value = client
        .post(format!("{base}/user/v1/authenticate"))
        .json(&serde_json::json!({"username": "bench", "password": "benchmark password"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(answer["token"].as_str().context("no token")?.to_owned())
}

/// Runs the benchmark and prints one JSON line with the medians of `runs`.
pub async fn search(backend: &str, rows: u64, clients: u16, secs: u64, runs: usize) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env = BenchEnv::new(backend, &format!("[api]\nlisten = \"127.0.0.1:{port}\"\n")).await?;
    let t = Instant::now();
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..rows {
        batch.push(row(i));
        if batch.len() == 20_000 {
            env.insert(std::mem::take(&mut batch)).await?;
        }
    }
    env.insert(batch).await?;
    // As autovacuum would have by now; SQLite gets no ANALYZE, as in production (the
    // product never runs it; see the dashboard benchmark for what statistics do there).
    if backend == "postgres" {
        env.db().execute_unprepared("VACUUM ANALYZE assets").await?;
    }
    eprintln!("seeded {rows} assets in {:.1} s", t.elapsed().as_secs_f64());
    let mut create = env.command("certfleet")?;
    create.args(["users", "create", "bench", "--role", "developer"]).stdin(Stdio::piped()).stdout(Stdio::null());
    let mut child = create.spawn()?;
    child.stdin.take().context("stdin")?.write_all(b"benchmark password")?;
    anyhow::ensure!(child.wait()?.success(), "creating the bench user failed");
    let mut api = env.spawn("certfleet-api", &[])?;
    let base = format!("http://127.0.0.1:{port}");
    let token = login(&base).await?;
    let (days, dc) = (14_u32, "dc3");
    let url = format!("{base}/api/v1/search?data_center={dc}&days_until_expiration={days}&limit=100");
    let mut api_runs = Vec::new();
    let mut sql_runs = Vec::new();
    for run in 0..runs {
        let a = wrk(&url, &token, clients, secs)?;
        let d = direct(&env, clients, secs, days, dc).await?;
        eprintln!(
            "run {run}: API p50 {:.2} ms p99 {:.2} ms {:.0} req/s | SQL p50 {:.2} ms p99 {:.2} ms {:.0} q/s",
            a.0, a.1, a.2, d.0, d.1, d.2
        );
        api_runs.push(a);
        sql_runs.push(d);
    }
    api.stop();
    let med = |v: &[Figures], f: fn(&Figures) -> f64| crate::median(v.iter().map(f).collect());
    let summary = serde_json::json!({
        "bench": "search", "backend": backend, "rows": rows, "clients": clients, "secs": secs, "runs": runs,
        "api_p50_ms": med(&api_runs, |f| f.0), "api_p99_ms": med(&api_runs, |f| f.1), "api_rps": med(&api_runs, |f| f.2),
        "sql_p50_ms": med(&sql_runs, |f| f.0), "sql_p99_ms": med(&sql_runs, |f| f.1), "sql_qps": med(&sql_runs, |f| f.2),
        "api_p99_spread_ms": [api_runs.iter().map(|f| f.1).fold(f64::MAX, f64::min), api_runs.iter().map(|f| f.1).fold(0.0, f64::max)],
        "rps_ratio_api_to_sql": med(&api_runs, |f| f.2) / med(&sql_runs, |f| f.2),
    });
    println!("{summary}");
    env.cleanup().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_report_parses() {
        let out = "  Latency Distribution\n     50%  812.00us\n     75%    1.20ms\n     90%    2.00ms\n     99%   12.34ms\n\
                   12345 requests in 10.00s, 1.2MB read\nRequests/sec:   1234.50\nTransfer/sec:    120KB\n";
        assert_eq!(parse_wrk(out).unwrap(), (0.812, 12.34, 1234.5));
        assert!(parse_wrk(&format!("{out}  Non-2xx or 3xx responses: 4\n")).is_err());
    }
}
