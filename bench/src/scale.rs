//! `scale`: the same rotations with 1, 2, 4 ... worker processes when devices are slow
//! (`local` assets whose reload command sleeps), for throughput per worker against the
//! one-worker run, with the CPU each process used. The scheduler has published every job
//! before the workers start, so the time is the workers' alone.

use crate::env::{BenchEnv, Proc};
use crate::median;
use certfleet_shared::db::entity::asset;
use std::time::{Duration, Instant};

/// CPU seconds (user + system) a process has used, from `/proc/PID/stat`.
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or_default();
    (ticks(11) + ticks(12)) / 100.0 // utime, stime (fields 14, 15), at USER_HZ = 100
}

fn broker_pid() -> Option<u32> {
    // The machine's node runs as the rabbitmq user (test nodes of other work run as root).
    let out = std::process::Command::new("pgrep").args(["-u", "rabbitmq", "beam.smp"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next()?.trim().parse().ok()
}

/// PostgreSQL's counters for the inventory database: (commits, rows inserted, rows
/// updated, WAL bytes so far).
async fn pg_counters(env: &BenchEnv) -> anyhow::Result<(f64, f64, f64, f64)> {
    use sea_orm::{ConnectionTrait as _, Statement};
    let db = env.db();
    let _ = db.execute_unprepared("SELECT pg_stat_force_next_flush()").await;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT xact_commit::float8 AS c, tup_inserted::float8 AS i, tup_updated::float8 AS u, \
             pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS w \
             FROM pg_stat_database WHERE datname = current_database()",
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("no pg_stat_database row"))?;
    Ok((row.try_get("", "c")?, row.try_get("", "i")?, row.try_get("", "u")?, row.try_get("", "w")?))
}

struct Run {
    per_rotation: (f64, f64, f64, f64),
    rate: f64,
    worker_cpu: f64,
    scheduler_cpu: f64,
    broker_cpu: f64,
    secs: f64,
}

async fn one(assets: u64, workers: usize, concurrency: u16, sleep_secs: f64) -> anyhow::Result<Run> {
    let env = BenchEnv::new("postgres", "scan_interval = \"2s\"\nscan_page_size = 5000\n").await?;
    let reload = format!("sleep {sleep_secs}");
    env.seed_fleet(assets, "internal", "local", |i| {
        let certs = env.dir.path().join("certs");
        let settings = serde_json::json!({
            "cert_path": certs.join(format!("a-{i}.crt")),
            "key_path": certs.join(format!("a-{i}.key")),
            "reload_command": reload,
        });
        (format!("a-{i}.bench.test"), settings)
    })
    .await?;
    // The scheduler publishes every job first, so the clock measures the workers alone.
    let mut scheduler = env.spawn("certfleet-scheduler", &[])?;
    env.wait_state(asset::AssetState::InFlight, assets, Duration::from_secs(300)).await?;
    let broker = broker_pid();
    let broker_before = broker.map_or(0.0, cpu_secs);
    let scheduler_before = cpu_secs(scheduler.pid());
    let before = pg_counters(&env).await?;
    let start = Instant::now();
    let mut procs: Vec<Proc> = Vec::new();
    for w in 0..workers {
        let c = concurrency.to_string();
        procs.push(
            env.spawn("certfleet-worker", &["--drivers", "local", "--concurrency", &c, "--name", &format!("w{w}")])?,
        );
    }
    env.wait_rotated(assets, Duration::from_secs(1200)).await?;
    let secs = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(1500)).await; // let the counters flush
    let after = pg_counters(&env).await?;
    let n = assets as f64;
    let run = Run {
        per_rotation: (
            (after.0 - before.0) / n,
            (after.1 - before.1) / n,
            (after.2 - before.2) / n,
            (after.3 - before.3) / n,
        ),
        rate: assets as f64 / secs,
        worker_cpu: procs.iter().map(|p| cpu_secs(p.pid())).sum(),
        scheduler_cpu: cpu_secs(scheduler.pid()) - scheduler_before,
        broker_cpu: broker.map_or(0.0, cpu_secs) - broker_before,
        secs,
    };
    scheduler.stop();
    for p in &mut procs {
        p.stop();
    }
    env.cleanup().await;
    Ok(run)
}

/// Runs the benchmark and prints one JSON line per worker count.
pub async fn scale(
    assets: u64,
    workers: &[usize],
    concurrency: u16,
    sleep_secs: f64,
    runs: usize,
) -> anyhow::Result<()> {
    let mut one_worker_rate = None;
    for &w in workers {
        let mut results = Vec::new();
        for run in 0..runs {
            let r = one(assets, w, concurrency, sleep_secs).await?;
            eprintln!(
                "workers={w} run {run}: {assets} in {:.1}s = {:.1}/s; CPU s: workers {:.1}, scheduler {:.1}, broker {:.1}",
                r.secs, r.rate, r.worker_cpu, r.scheduler_cpu, r.broker_cpu
            );
            results.push(r);
        }
        let rate = median(results.iter().map(|r| r.rate).collect());
        let base = *one_worker_rate.get_or_insert(rate / w as f64);
        let secs = median(results.iter().map(|r| r.secs).collect());
        let cpu = |f: fn(&Run) -> f64| median(results.iter().map(f).collect());
        println!(
            "{}",
            serde_json::json!({
                "bench": "scale", "assets": assets, "workers": w, "concurrency": concurrency, "sleep_secs": sleep_secs,
                "runs": runs, "rotations_per_sec": rate, "per_worker_ratio": rate / w as f64 / base,
                "ideal_rotations_per_sec": w as f64 * f64::from(concurrency) / sleep_secs,
                "worker_cpu_secs": cpu(|r| r.worker_cpu), "scheduler_cpu_secs": cpu(|r| r.scheduler_cpu),
                "broker_cpu_secs": cpu(|r| r.broker_cpu), "wall_secs": secs,
                "cores_busy": (cpu(|r| r.worker_cpu) + cpu(|r| r.scheduler_cpu) + cpu(|r| r.broker_cpu)) / secs,
                "db_commits_per_rotation": cpu(|r| r.per_rotation.0), "db_rows_inserted_per_rotation": cpu(|r| r.per_rotation.1),
                "db_rows_updated_per_rotation": cpu(|r| r.per_rotation.2), "db_wal_bytes_per_rotation": cpu(|r| r.per_rotation.3),
            })
        );
    }
    Ok(())
}
