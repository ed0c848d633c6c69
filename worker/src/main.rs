//! `certfleet-worker`: consumes rotation jobs for the drivers it is tagged with.

use anyhow::Context as _;
use certfleet_proto::Driver;
use certfleet_shared::metrics::{self, Process};
use certfleet_shared::shutdown;
use certfleet_worker::{WorkerOptions, run};
use clap::Parser;
use std::path::PathBuf;

/// Rotate certificates: consume jobs from RabbitMQ and run them through drivers and issuers.
#[derive(Debug, Parser)]
#[command(name = "certfleet-worker", version)]
struct Args {
    /// Config file (default: certfleet.toml in the working directory, if present).
    #[arg(long, env = "CERTFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Drivers to serve, comma separated (default: worker.drivers, or all).
    #[arg(long, value_delimiter = ',')]
    drivers: Vec<Driver>,
    /// Jobs at once; also the AMQP prefetch (default: worker.concurrency).
    #[arg(long)]
    concurrency: Option<u16>,
    /// Worker name in results and in the broker's connection list.
    #[arg(long)]
    name: Option<String>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certfleet-worker: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (config, telemetry) = certfleet_shared::startup(args.config.as_deref(), "certfleet-worker")?;
    if args.concurrency == Some(0) {
        anyhow::bail!("--concurrency must be at least 1");
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let name = args.name.unwrap_or_else(|| format!("worker-{}-{}", host.trim(), std::process::id()));
    let opts = WorkerOptions { drivers: args.drivers, concurrency: args.concurrency, name };
    let cancel = shutdown::on_signals();
    metrics::serve(Process::Worker, &config.metrics, cancel.clone()).await?;
    let ran = run(&config, opts, cancel).await.context("worker failed");
    telemetry.shutdown().await;
    ran
}
