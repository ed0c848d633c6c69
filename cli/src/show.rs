//! Read-only views: an asset's rotation history and the internal CA's root. The data come
//! from library functions (shared, worker) that the HTTP API calls too; this only formats.

use anyhow::bail;
use certfleet_shared::Config;
use certfleet_shared::config::IssuerConfig;
use certfleet_shared::db::asset_history;
use certfleet_worker::issuer::internal;
use sea_orm::DatabaseConnection;

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `certfleet history SYSTEM_NAME [--json]`, read from the database.
pub async fn history(db: &DatabaseConnection, system_name: &str, json: bool) -> anyhow::Result<()> {
    crate::output::history(asset_history::of_asset(db, system_name).await?, json)
}

/// `certfleet ca show [ISSUER] [--pem]`.
pub async fn ca(config: &Config, issuer: Option<&str>, pem: bool) -> anyhow::Result<()> {
    let internal: Vec<(&String, &certfleet_shared::config::InternalIssuerConfig)> = config
        .issuers
        .iter()
        .filter_map(|(name, c)| match c {
            IssuerConfig::Internal(i) => Some((name, i)),
            IssuerConfig::Acme(_) => None,
        })
        .collect();
    let names = || internal.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ");
    let (name, ca) = match issuer {
        Some(wanted) => match internal.iter().find(|(n, _)| n.as_str() == wanted) {
            Some(found) => *found,
            None if config.issuers.contains_key(wanted) => bail!("issuer {wanted} is not an internal CA"),
            None => bail!("no internal issuer named {wanted} (internal issuers: {})", names()),
        },
        None => match internal.as_slice() {
            [only] => *only,
            [] => bail!("no internal issuer is configured"),
            _ => bail!("several internal issuers are configured ({}); name one", names()),
        },
    };
    let root = internal::describe_root(ca).await?;
    if pem {
        print!("{}", root.pem);
        return Ok(());
    }
    println!("issuer:      {name} (internal)");
    println!("root:        {}", root.path.display());
    println!("subject:     {}", root.subject);
    println!("not after:   {}", time(root.not_after));
    println!("SHA-256:     {}", root.fingerprint_colons());
    println!("Distribute {} to clients; `certfleet ca show --pem` prints it.", root.path.display());
    Ok(())
}
