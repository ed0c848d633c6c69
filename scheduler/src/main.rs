//! `certfleet-scheduler`: scans the inventory, publishes due rotations, records results.

use certfleet_shared::metrics::{self, Process};
use certfleet_shared::shutdown;
use clap::Parser;
use std::path::PathBuf;

/// Scan the certificate inventory and publish rotation jobs for what is due.
#[derive(Debug, Parser)]
#[command(name = "certfleet-scheduler", version)]
struct Args {
    /// Config file (default: certfleet.toml in the working directory, if present).
    #[arg(long, env = "CERTFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Scan once, publish what is due, and exit (prints the counts as JSON).
    #[arg(long)]
    once: bool,
    /// With --once: the full pass over every row (checks every stored next_due_at)
    /// instead of the due-ordered scan.
    #[arg(long, requires = "once")]
    full: bool,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certfleet-scheduler: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (config, telemetry) = certfleet_shared::startup(args.config.as_deref(), "certfleet-scheduler")?;
    let opts = certfleet_scheduler::RunOptions { once: args.once, full: args.full };
    let cancel = shutdown::on_signals();
    if !args.once {
        metrics::serve(Process::Scheduler, &config.metrics, cancel.clone()).await?;
    }
    let report = certfleet_scheduler::run_with(&config, opts, cancel).await;
    telemetry.shutdown().await;
    if let Some(report) = report? {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}
