//! The cost of observability: the 10,000-asset `local` end-to-end run with metrics off and
//! with every process's `/metrics` endpoint on, the variants interleaved run by run (the
//! machine is shared and noisy) and compared by their medians.

use crate::env::BenchEnv;
use crate::median;
use std::time::{Duration, Instant};

/// One variant of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// No `[metrics]` endpoint: the `metrics` macros record into no recorder.
    Off,
    /// Every process serves `/metrics` (scheduler, workers) and records everything; the
    /// scheduler refreshes the fleet gauges every second.
    Metrics,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Off => "off",
            Variant::Metrics => "metrics",
        }
    }

    fn config(self) -> &'static str {
        match self {
            Variant::Off => "scan_interval = \"1h\"\nscan_page_size = 5000\n",
            Variant::Metrics => {
                "scan_interval = \"1h\"\nscan_page_size = 5000\n[metrics]\nscheduler_listen = \"127.0.0.1:0\"\n\
                 worker_listen = \"127.0.0.1:0\"\nrefresh_interval = \"1s\"\n"
            }
        }
    }
}

async fn once(variant: Variant, assets: u64, workers: usize, concurrency: u16) -> anyhow::Result<f64> {
    let env = BenchEnv::new("sqlite", variant.config()).await?;
    env.seed_local(assets).await?;
    let mut procs = Vec::new();
    for w in 0..workers {
        let c = concurrency.to_string();
        procs.push(env.spawn("certfleet-worker", &["--drivers", "local", "--concurrency", &c, "--name", &format!("w{w}")])?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    procs.push(env.spawn("certfleet-scheduler", &[])?);
    env.wait_rotated(assets, Duration::from_secs(900)).await?;
    let rate = assets as f64 / start.elapsed().as_secs_f64();
    for p in &mut procs {
        p.stop();
    }
    env.cleanup().await;
    Ok(rate)
}

/// Runs each variant `runs` times, interleaved, and prints the medians and their ratio.
pub async fn run(assets: u64, workers: usize, concurrency: u16, runs: usize) -> anyhow::Result<()> {
    let variants = [Variant::Off, Variant::Metrics];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for run in 0..runs {
        for (i, v) in variants.iter().enumerate() {
            let rate = once(*v, assets, workers, concurrency).await?;
            eprintln!("run {run} {}: {rate:.0} rotations/s", v.name());
            rates[i].push(rate);
        }
    }
    let medians: Vec<f64> = rates.into_iter().map(median).collect();
    let off = medians[0];
    let summary: Vec<String> = variants
        .iter()
        .zip(&medians)
        .map(|(v, m)| format!("{} {m:.0}/s ({:+.1}%)", v.name(), (m / off - 1.0) * 100.0))
        .collect();
    println!(
        "observability assets={assets} workers={workers} concurrency={concurrency} runs={runs} (interleaved): medians {}",
        summary.join(", ")
    );
    Ok(())
}
