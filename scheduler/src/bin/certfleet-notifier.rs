//! `certfleet-notifier`: the notifier on its own (set `notify.deliver_in_scheduler = false`
//! for the schedulers then): delivers `certfleet.notify` to the configured channels.

use certfleet_shared::metrics::{self, Process};
use certfleet_shared::shutdown;
use clap::Parser;
use std::path::PathBuf;

/// Deliver certfleet notifications (Slack, webhooks, e-mail, PagerDuty).
#[derive(Debug, Parser)]
#[command(name = "certfleet-notifier", version)]
struct Args {
    /// Config file (default: certfleet.toml in the working directory, if present).
    #[arg(long, env = "CERTFLEET_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match real_main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certfleet-notifier: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (config, telemetry) = certfleet_shared::startup(args.config.as_deref(), "certfleet-notifier")?;
    let cancel = shutdown::on_signals();
    metrics::serve(Process::Notifier, &config.metrics, cancel.clone()).await?;
    let ran = certfleet_scheduler::notify::run_standalone(&config, cancel).await;
    telemetry.shutdown().await;
    Ok(ran?)
}
