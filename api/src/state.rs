//! The shared state of every handler: config, inventory, token signer, broker handle.

use crate::auth::token::Signer;
use crate::broker::Broker;
use certfleet_shared::Config;
use sea_orm::DatabaseConnection;
use std::sync::Arc;

/// Cheap to clone; one per server.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    /// The configuration.
    pub config: Config,
    /// The inventory.
    pub db: DatabaseConnection,
    /// Session token signer.
    pub signer: Signer,
    /// The broker, connected on first use.
    pub broker: Broker,
    /// A valid argon2id hash of nothing, verified for unknown users so they cost the same.
    pub dummy_hash: String,
    /// The Overview's fleet counts, recounted when stale.
    pub summary: crate::dashboard::summary::Summary,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Issuer names from the config (for asset validation).
    pub fn issuers(&self) -> Vec<&str> {
        self.config.issuers.keys().map(String::as_str).collect()
    }
}
