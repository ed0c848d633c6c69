//! `certfleet-api`: serves the control-plane API until SIGTERM or Ctrl-C.

use anyhow::Context as _;
use certfleet_shared::metrics::{self, Process};
use clap::Parser;
use std::path::PathBuf;

/// certfleet control-plane API.
#[derive(Debug, Parser)]
#[command(name = "certfleet-api", version)]
struct Args {
    /// Config file (default: certfleet.toml in the working directory, if present).
    #[arg(long, env = "CERTFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.openapi {
        println!("{}", certfleet_api::openapi_json());
        return Ok(());
    }
    let (config, telemetry) = certfleet_shared::startup(args.config.as_deref(), "certfleet-api")?;
    let cancel = certfleet_shared::shutdown::on_signals();
    metrics::serve(Process::Api, &config.metrics, cancel.clone()).await?;
    let ran = certfleet_api::run(&config, cancel).await.context("certfleet-api");
    telemetry.shutdown().await;
    ran
}
