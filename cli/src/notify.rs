//! `certfleet notify test CHANNEL`: sends a test message straight through one channel
//! (not through the queue) and reports what the service answered.

use anyhow::bail;
use certfleet_proto::{EventKind, Notification};
use certfleet_scheduler::notify::channel::{ChannelError, Channels};
use certfleet_scheduler::notify::render::Links;
use certfleet_shared::Config;
use clap::Subcommand;

/// `certfleet notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test message through one channel and report the HTTP/SMTP outcome.
    Test {
        /// The channel's name in `[notify.channels]`.
        channel: String,
        /// The event the test message pretends to be (default rotation_dead).
        #[arg(long, default_value = "rotation_dead")]
        event: EventKind,
    },
}

/// Runs a `notify` subcommand.
pub async fn run(config: &Config, command: NotifyCommand) -> anyhow::Result<()> {
    match command {
        NotifyCommand::Test { channel, event } => test(config, &channel, event).await,
    }
}

async fn test(config: &Config, name: &str, event: EventKind) -> anyhow::Result<()> {
    let channels = Channels::build(&config.notify)?;
    let Some(channel) = channels.get(name) else {
        let known: Vec<&str> = channels.names().collect();
        bail!(
            "no channel named \"{name}\" (configured: {})",
            if known.is_empty() { "none".into() } else { known.join(", ") }
        );
    };
    let mut n = Notification::new(name, event, None, chrono::Utc::now());
    n.reason = Some("test message from `certfleet notify test`".into());
    match channel.send(&n, &Links::new(&config.api.base_url())).await {
        Ok(sent) => {
            println!("{name} ({}): delivered: {}", channel.kind(), sent.detail);
            Ok(())
        }
        Err(ChannelError::Retry { cause, .. }) => {
            bail!("{name} ({}): not delivered (would be retried): {cause}", channel.kind())
        }
        Err(ChannelError::Rejected(cause)) => bail!("{name} ({}): refused: {cause}", channel.kind()),
    }
}
