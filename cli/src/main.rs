//! `certfleet`: the operator CLI (run the fleet in one process, manage the inventory,
//! rotate now, handle dead letters, watch queues).

mod commands;
mod import;
mod notify;
mod output;
mod remote;
mod show;
mod table;
mod users;

use certfleet_proto::Driver;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// certfleet: agentless certificate rotation for fleets of devices.
#[derive(Debug, Parser)]
#[command(name = "certfleet", version)]
pub struct Cli {
    /// Config file (default: certfleet.toml in the working directory, if present).
    #[arg(long, global = true, env = "CERTFLEET_CONFIG")]
    config: Option<PathBuf>,
    /// Go through the control-plane API at this URL instead of opening the database and
    /// the broker (needs `certfleet --server URL login`, or CERTFLEET_TOKEN).
    #[arg(long, global = true, env = "CERTFLEET_SERVER", value_name = "URL")]
    server: Option<String>,
    /// PEM file of extra roots to trust for --server (the internal CA's root, say).
    #[arg(long, global = true, env = "CERTFLEET_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the scheduler and a worker for all drivers in one process.
    Up {
        /// Drivers for the embedded worker, comma separated (default: all).
        #[arg(long, value_delimiter = ',')]
        drivers: Vec<Driver>,
        /// Jobs at once in the embedded worker.
        #[arg(long)]
        concurrency: Option<u16>,
    },
    /// Log in to the API at --server and keep the session token (mode 0600, under
    /// $XDG_CONFIG_HOME/certfleet). The password is prompted for, or read from stdin.
    Login {
        /// The account (default: $USER).
        username: Option<String>,
    },
    /// End the session kept for --server: the server stops accepting its token, and it is forgotten here.
    Logout,
    /// Manage the inventory.
    Assets {
        #[command(subcommand)]
        command: AssetsCommand,
    },
    /// Publish a rotation job for one asset now.
    Rotate {
        /// The asset's system_name.
        system_name: String,
    },
    /// Browse, retry or discard dead-lettered jobs.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Notification channels.
    Notify {
        #[command(subcommand)]
        command: notify::NotifyCommand,
    },
    /// Depth and consumers of each certfleet queue.
    Queues {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The rotation history of one asset: every job, newest first.
    History {
        /// The asset's system_name.
        system_name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The internal CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Control-plane users (bootstrap: `certfleet users create NAME --role admin`).
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// Control-plane API keys.
    ApiKeys {
        #[command(subcommand)]
        command: users::ApiKeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Print where the internal CA's root is, its subject, expiry and SHA-256 fingerprint.
    Show {
        /// The internal issuer's name (default: the only internal issuer configured).
        issuer: Option<String>,
        /// Print the root certificate itself (PEM), to distribute to clients.
        #[arg(long)]
        pem: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AssetsCommand {
    /// Import assets from a JSON array or a CSV file with a header (all rows or none).
    Import {
        /// The file.
        file: PathBuf,
        /// File format (default: from the file name).
        #[arg(long, value_enum)]
        format: Option<import::Format>,
    },
    /// List assets.
    List {
        /// Only assets due for rotation now.
        #[arg(long)]
        due: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// List pending dead letters.
    List {
        /// Include retried and discarded ones.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Republish a dead job (same job id, fresh attempt count), built from the asset's current row.
    Retry {
        /// The job id.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        job_id: Option<certfleet_proto::JobId>,
        /// Retry every pending dead letter.
        #[arg(long)]
        all: bool,
    },
    /// Drop a dead letter; the asset stays `dead` until rotated by hand.
    Discard {
        /// The job id.
        job_id: certfleet_proto::JobId,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certfleet: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
