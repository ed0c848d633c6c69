//! `certfleet users` and `certfleet api-keys`: bootstrap and manage control-plane accounts
//! straight in the inventory (the same `certfleet_api::accounts` functions as the API),
//! audited with the OS user as the actor.

use anyhow::Context as _;
use certfleet_api::accounts;
use certfleet_api::auth::{Caller, password};
use certfleet_shared::Config;
use certfleet_shared::db::entity::audit::ActorKind;
use certfleet_shared::db::entity::role::Role;
use certfleet_shared::db::{self, api_keys, users};
use clap::Subcommand;
use std::io::Read as _;

/// `certfleet users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user. The password is read from stdin; with --generate-password (or an
    /// empty stdin) one is generated and printed once.
    Create {
        /// Login name.
        name: String,
        /// Role: developer, privileged or admin.
        #[arg(long)]
        role: Role,
        /// Generate the password instead of reading stdin.
        #[arg(long)]
        generate_password: bool,
    },
    /// List users.
    List,
    /// Delete a user.
    Delete {
        /// Login name.
        name: String,
    },
}

/// `certfleet api-keys ...`
#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key; its secret is printed once.
    Create {
        /// Name (what uses it).
        name: String,
        /// Role: developer, privileged or admin.
        #[arg(long)]
        role: Role,
        /// Lifetime, for example 90d (default: no expiry).
        #[arg(long)]
        ttl: Option<humantime::Duration>,
    },
    /// List API keys (never their secrets).
    List,
    /// Revoke an API key by id.
    Revoke {
        /// The key id.
        id: String,
    },
}

/// The OS user running the CLI, as an audit actor.
pub fn os_caller() -> Caller {
    let name = std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").map_or_else(|_| "unknown".to_owned(), |m| format!("uid:{}", m.uid()))
    });
    Caller { actor: name, kind: ActorKind::OsUser, role: Role::Admin, source: None, request_id: None, session: None }
}

async fn open(config: &Config) -> anyhow::Result<sea_orm::DatabaseConnection> {
    Ok(db::connect(&config.database_url, config.connect_timeout).await?)
}

/// Runs `certfleet users ...`.
pub async fn users(config: &Config, cmd: UsersCommand) -> anyhow::Result<()> {
    let database = open(config).await?;
    match cmd {
        UsersCommand::Create { name, role, generate_password } => {
            let mut given = String::new();
            if !generate_password {
                std::io::stdin().read_to_string(&mut given).context("reading the password from stdin")?;
            }
            let given = given.trim_end_matches(['\r', '\n']).to_owned();
            let (pass, generated) = if given.is_empty() { (password::generate(), true) } else { (given, false) };
            accounts::create_user(&database, &os_caller(), &name, &pass, role).await?;
            println!("created user {name} with role {role}");
            if generated {
                println!("password (shown once): {pass}");
            }
        }
        UsersCommand::List => {
            println!("{:<24} {:<11} CREATED", "USERNAME", "ROLE");
            for u in users::list(&database).await? {
                println!("{:<24} {:<11} {}", u.username, u.role, u.created_at.format("%Y-%m-%d %H:%M:%SZ"));
            }
        }
        UsersCommand::Delete { name } => {
            accounts::delete_user(&database, &os_caller(), &name).await?;
            println!("deleted user {name}");
        }
    }
    Ok(())
}

/// Runs `certfleet api-keys ...`.
pub async fn api_keys(config: &Config, cmd: ApiKeysCommand) -> anyhow::Result<()> {
    let database = open(config).await?;
    match cmd {
        ApiKeysCommand::Create { name, role, ttl } => {
            let expires_at = match ttl {
                Some(d) => {
                    Some(chrono::Utc::now() + chrono::Duration::from_std(d.into()).context("--ttl is too long")?)
                }
                None => None,
            };
            let (key, secret) = accounts::create_api_key(&database, &os_caller(), &name, role, expires_at).await?;
            println!("created API key {} ({name}, role {role})", key.key_id);
            println!("secret (shown once): {secret}");
        }
        ApiKeysCommand::List => {
            println!("{:<18} {:<20} {:<11} {:<21} {:<21} STATUS", "ID", "NAME", "ROLE", "EXPIRES", "LAST USED");
            let fmt = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
            };
            for k in api_keys::list(&database).await? {
                let status = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!(
                    "{:<18} {:<20} {:<11} {:<21} {:<21} {status}",
                    k.key_id,
                    k.name,
                    k.role.as_str(),
                    fmt(k.expires_at),
                    fmt(k.last_used_at)
                );
            }
        }
        ApiKeysCommand::Revoke { id } => {
            accounts::revoke_api_key(&database, &os_caller(), &id).await?;
            println!("revoked API key {id}");
        }
    }
    Ok(())
}
