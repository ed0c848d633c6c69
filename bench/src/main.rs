//! certfleet benchmarks: inventory scan, end-to-end rotation throughput (with RabbitMQ's own
//! publish-and-consume rate measured in the same run as the baseline), and idle worker RSS.
//! Results and method are recorded in BENCHMARKS.md; `bench/run.sh` runs them all.
// Harness code: process polling runs outside the measured services.
#![allow(clippy::disallowed_methods)]

mod baseline;
mod chaos;
mod dashboard;
mod env;
mod fleet;
mod import;
mod observe;
mod scale;
mod scan;
mod scan_warm;
mod search;

use clap::{Parser, Subcommand};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(name = "certfleet-bench")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// `certfleet-scheduler --once` over a seeded inventory: the due-ordered scan, the full
    /// pass (`--full`), and the recompute pass.
    Scan {
        /// `sqlite` or `postgres`.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// How many of the rows are due.
        #[arg(long, default_value_t = 1_000)]
        due: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also time the full pass in each run.
        #[arg(long)]
        full: bool,
    },
    /// Scheduler + N workers rotating `local` assets through the internal CA.
    E2e {
        #[arg(long, default_value_t = 10_000)]
        assets: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: u16,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The 10,000-asset e2e run with metrics off and on, interleaved (issue 13's cost).
    Observability {
        #[arg(long, default_value_t = 10_000)]
        assets: u64,
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: u16,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The dashboard's server time (Overview, Assets page 1 and page 500 of a filter).
    Dashboard {
        /// `sqlite` or `postgres`.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 100)]
        loads: usize,
    },
    /// RabbitMQ's own publish-and-consume rate (the baseline of the other benchmarks).
    Baseline {
        #[arg(long, default_value_t = 100_000)]
        messages: u64,
    },
    /// ACME issuance through Pebble + BIND9: certfleet (one worker) versus certbot and lego.
    Acme {
        #[arg(long, default_value_t = 200)]
        certs: u64,
        #[arg(long, default_value_t = 50)]
        concurrency: u16,
        /// Certificates each peer issues per mode (sequential, `xargs -P 8`).
        #[arg(long, default_value_t = 200)]
        peer_certs: u64,
    },
    /// One worker rotating simulated Linux devices over SSH versus a per-device baseline.
    Ssh {
        #[arg(long, default_value_t = 500)]
        devices: u64,
        #[arg(long, value_delimiter = ',', default_value = "50,200,500")]
        concurrency: Vec<u16>,
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// `GET /api/v1/search` under wrk against the same query issued directly.
    Search {
        /// `sqlite` or `postgres`.
        #[arg(long, default_value = "sqlite")]
        backend: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        /// Concurrent connections (wrk) and tasks (direct).
        #[arg(long, default_value_t = 32)]
        clients: u16,
        /// Seconds per measurement.
        #[arg(long, default_value_t = 15)]
        secs: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The same rotations of slow devices with 1, 2, 4 ... workers (PostgreSQL inventory).
    Scale {
        #[arg(long, default_value_t = 2_000)]
        assets: u64,
        #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
        workers: Vec<usize>,
        /// Jobs at once per worker.
        #[arg(long, default_value_t = 50)]
        concurrency: u16,
        /// Seconds each device's reload takes.
        #[arg(long, default_value_t = 1.0)]
        sleep_secs: f64,
        #[arg(long, default_value_t = 1)]
        runs: usize,
    },
    /// `certfleet assets import` of a generated CSV file.
    Import {
        /// `sqlite` or `postgres`.
        #[arg(long, default_value = "postgres")]
        backend: String,
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Workers, the scheduler, RabbitMQ and PostgreSQL killed and restarted during a run of
    /// `local` rotations (private broker and database), against a fault-free run.
    Chaos {
        #[arg(long, default_value_t = 100_000)]
        assets: u64,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: u16,
        /// Seconds between two worker SIGKILLs.
        #[arg(long, default_value_t = 10)]
        kill_every: u64,
    },
    /// RSS of a worker that has connected and sits idle.
    IdleRss {
        #[arg(long, default_value_t = 5)]
        settle_secs: u64,
    },
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Cmd::Scan { backend, rows, due, runs, full } => scan::scan(&backend, rows, due, runs, full).await,
        Cmd::E2e { assets, workers, concurrency, runs } => e2e(assets, workers, concurrency, runs).await,
        Cmd::Observability { assets, workers, concurrency, runs } => {
            observe::run(assets, workers, concurrency, runs).await
        }
        Cmd::Dashboard { backend, rows, loads } => dashboard::run(&backend, rows, loads).await,
        Cmd::Chaos { assets, workers, concurrency, kill_every } => {
            chaos::chaos(assets, workers, concurrency, kill_every).await
        }
        Cmd::IdleRss { settle_secs } => idle_rss(settle_secs).await,
        Cmd::Import { backend, rows, runs } => import::import(&backend, rows, runs).await,
        Cmd::Scale { assets, workers, concurrency, sleep_secs, runs } => {
            scale::scale(assets, &workers, concurrency, sleep_secs, runs).await
        }
        Cmd::Search { backend, rows, clients, secs, runs } => search::search(&backend, rows, clients, secs, runs).await,
        Cmd::Acme { certs, concurrency, peer_certs } => fleet::acme(certs, concurrency, peer_certs).await,
        Cmd::Ssh { devices, concurrency, runs } => fleet::ssh(devices, &concurrency, runs).await,
        Cmd::Baseline { messages } => {
            let env = env::BenchEnv::new("sqlite", "").await?;
            let rate = baseline::publish_consume_rate(&env.vhost_url, messages).await?;
            println!("baseline: {messages} messages, RabbitMQ publish+consume {rate:.0} msg/s");
            env.cleanup().await;
            Ok(())
        }
    }
}

async fn e2e(assets: u64, workers: usize, concurrency: u16, runs: usize) -> anyhow::Result<()> {
    let mut rates = Vec::new();
    let mut baselines = Vec::new();
    for run in 0..runs {
        let env = env::BenchEnv::new("sqlite", "scan_interval = \"1h\"\nscan_page_size = 5000\n").await?;
        env.seed_local(assets).await?;
        let base = baseline::publish_consume_rate(&env.vhost_url, assets).await?;
        let mut procs = Vec::new();
        for w in 0..workers {
            let c = concurrency.to_string();
            procs.push(
                env.spawn(
                    "certfleet-worker",
                    &["--drivers", "local", "--concurrency", &c, "--name", &format!("w{w}")],
                )?,
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let start = Instant::now();
        procs.push(env.spawn("certfleet-scheduler", &[])?);
        env.wait_rotated(assets, Duration::from_secs(600)).await?;
        let secs = start.elapsed().as_secs_f64();
        let rate = assets as f64 / secs;
        eprintln!(
            "run {run}: {assets} rotations in {secs:.2}s = {rate:.0}/s; RabbitMQ publish+consume baseline {base:.0} msg/s; ratio {:.2}",
            rate / base
        );
        rates.push(rate);
        baselines.push(base);
        for p in &mut procs {
            p.stop();
        }
        env.cleanup().await;
    }
    let (r, b) = (median(rates), median(baselines));
    println!(
        "e2e assets={assets} workers={workers} concurrency={concurrency} runs={runs}: median {r:.0} rotations/s; \
         RabbitMQ publish+consume baseline median {b:.0} msg/s; ratio {:.2}",
        r / b
    );
    Ok(())
}

async fn idle_rss(settle_secs: u64) -> anyhow::Result<()> {
    let env = env::BenchEnv::new("sqlite", "").await?;
    let mut worker = env.spawn("certfleet-worker", &["--drivers", "local"])?;
    tokio::time::sleep(Duration::from_secs(settle_secs)).await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", worker.pid()))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    println!(
        "idle worker after {settle_secs}s: VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB",
        field("VmRSS:") as f64 / 1024.0,
        field("VmHWM:") as f64 / 1024.0
    );
    worker.stop();
    env.cleanup().await;
    Ok(())
}
