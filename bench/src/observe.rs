//! The cost of observability: the 10,000-asset `local` end-to-end run with metrics and
//! tracing off, with every process's `/metrics` endpoint on, and with both on (every trace
//! sampled, exported over OTLP/HTTP to a local receiver), the variants interleaved run by
//! run (the machine is shared and noisy) and compared by their medians.

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
    /// `Metrics`, plus every span exported (`sample_ratio = 1.0`) to the receiver of
    /// `certfleet_tests::otlp` on 127.0.0.1, which decodes and keeps them.
    Traced,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Off => "off",
            Variant::Metrics => "metrics",
            Variant::Traced => "metrics+traces",
        }
    }

    fn config(self, otlp: &str) -> String {
        let base = "scan_interval = \"1h\"\nscan_page_size = 5000\n";
        let metrics = "[metrics]\nscheduler_listen = \"127.0.0.1:0\"\nworker_listen = \"127.0.0.1:0\"\n\
                       refresh_interval = \"1s\"\n";
        match self {
            Variant::Off => base.to_owned(),
            Variant::Metrics => format!("{base}{metrics}"),
            Variant::Traced => format!("{base}{metrics}[telemetry]\notlp_endpoint = \"{otlp}\"\nsample_ratio = 1.0\n"),
        }
    }
}

async fn once(variant: Variant, otlp: &str, assets: u64, workers: usize, concurrency: u16) -> anyhow::Result<f64> {
    let env = BenchEnv::new("sqlite", &variant.config(otlp)).await?;
    env.seed_local(assets).await?;
    let mut procs = Vec::new();
    for w in 0..workers {
        let c = concurrency.to_string();
        procs.push(
            env.spawn("certfleet-worker", &["--drivers", "local", "--concurrency", &c, "--name", &format!("w{w}")])?,
        );
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
    let variants = [Variant::Off, Variant::Metrics, Variant::Traced];
    let sink = certfleet_tests::otlp::OtlpSink::start().await?;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for run in 0..runs {
        for (i, v) in variants.iter().enumerate() {
            let before = sink.spans_received();
            let rate = once(*v, &sink.endpoint(), assets, workers, concurrency).await?;
            let spans = sink.spans_received() - before;
            eprintln!("run {run} {}: {rate:.0} rotations/s, {spans} spans received", v.name());
            rates[i].push(rate);
        }
        sink.clear();
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
