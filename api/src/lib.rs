//! certfleet control plane: an HTTPS REST API (axum) with Ottr's endpoints and roles, an
//! OpenAPI 3.1 document derived from the handlers (utoipa), session tokens and API keys,
//! and an append-only audit log. It calls the same library functions as the CLI.

pub mod accounts;
pub mod auth;
pub mod broker;
pub mod dashboard;
pub mod error;
pub mod routes;
pub mod server;
pub mod state;
pub mod tls;
pub mod views;

use certfleet_shared::Config;
use state::{AppState, Inner};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Why the API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config forbids this setup.
    #[error("invalid configuration: api.{key}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// The database failed.
    #[error(transparent)]
    Db(#[from] certfleet_shared::db::DbError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The dummy hash could not be made.
    #[error("{0}")]
    Hash(String),
}

/// A bound, ready server: its address and whether it speaks TLS.
pub struct Bound {
    /// The address actually bound (port 0 resolved).
    pub addr: SocketAddr,
    /// HTTPS or plain HTTP.
    pub tls: bool,
    listener: tokio::net::TcpListener,
    app: axum::Router,
    tls_setup: Option<Arc<tls::Tls>>,
}

/// Checks the listen/TLS rule, opens the inventory and binds the listener.
pub async fn bind(config: &Config) -> Result<Bound, StartError> {
    let api = &config.api;
    let tls_setup = match (&api.tls_cert_file, &api.tls_key_file) {
        (Some(c), Some(k)) => {
            Some(Arc::new(tls::Tls::load(c, k).map_err(|reason| StartError::Config { key: "tls_cert_file", reason })?))
        }
        (None, None) => None,
        _ => {
            return Err(StartError::Config {
                key: "tls_cert_file",
                reason: "tls_cert_file and tls_key_file go together".into(),
            });
        }
    };
    if tls_setup.is_none() && !api.listen.ip().is_loopback() && !api.allow_plain_http {
        return Err(StartError::Config {
            key: "listen",
            reason: format!(
                "{} is not a loopback address: set tls_cert_file and tls_key_file, or allow_plain_http = true behind a TLS proxy",
                api.listen
            ),
        });
    }
    let signer = auth::token::Signer::load(api.token_signing_key_file.as_deref(), api.token_ttl)
        .map_err(|e| StartError::Config { key: "token_signing_key_file", reason: e.to_string() })?;
    let db = certfleet_shared::db::connect_pool(
        &config.database_url,
        config.connect_timeout,
        config.database_max_connections,
    )
    .await?;
    let management = match &config.amqp_management_url {
        Some(url) => Some(
            certfleet_shared::amqp::management::Management::new(url, config.amqp_url.first(), config.connect_timeout)
                .map_err(|e| StartError::Config { key: "amqp_management_url", reason: e.to_string() })?,
        ),
        None => None,
    };
    let dummy_hash = auth::password::hash(uuid::Uuid::new_v4().to_string()).await.map_err(StartError::Hash)?;
    let state = AppState(Arc::new(Inner {
        config: config.clone(),
        db,
        signer,
        broker: broker::Broker::new(config.amqp_url.clone(), management, config.connect_timeout),
        dummy_hash,
        summary: Default::default(),
    }));
    state.summary.warm(&state.db);
    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .map_err(|source| StartError::Bind { addr: api.listen, source })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind { addr: api.listen, source })?;
    Ok(Bound { addr, tls: tls_setup.is_some(), listener, app: routes::app(state), tls_setup })
}

impl Bound {
    /// Serves until `cancel`, then drains open connections.
    pub async fn serve(self, cancel: CancellationToken) {
        let scheme = if self.tls { "https" } else { "http" };
        tracing::info!(url = %format!("{scheme}://{}", self.addr), "API listening");
        tracing::info!(url = %format!("{scheme}://{}/", self.addr), "dashboard: open this URL in a browser");
        server::serve(self.listener, self.app, self.tls_setup, cancel).await;
    }
}

/// Binds and serves until `cancel` (what `certfleet-api` and `certfleet up` run).
pub async fn run(config: &Config, cancel: CancellationToken) -> Result<(), StartError> {
    bind(config).await?.serve(cancel).await;
    Ok(())
}

/// The OpenAPI document, without a server (for `certfleet-api --openapi`).
pub fn openapi_json() -> String {
    routes::openapi().to_pretty_json().unwrap_or_default()
}
