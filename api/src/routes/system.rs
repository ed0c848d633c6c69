//! Queues (DEVELOPER) and the unauthenticated probes `/healthz` and `/readyz`.

use crate::auth::Developer;
use crate::error::{ApiError, Json};
use crate::state::AppState;
use axum::extract::State;
use certfleet_shared::amqp::stats::{QueueStats, queue_stats_with};
use serde::Serialize;
use utoipa::ToSchema;

/// Ready messages and consumers of every certfleet queue; with `amqp_management_url`, also
/// the unacked count and the publish and deliver rates.
#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", security(("bearer" = ["DEVELOPER"])),
    responses((status = 200, body = Vec<QueueStats>)))]
pub async fn queues(_: Developer, State(s): State<AppState>) -> Result<Json<Vec<QueueStats>>, ApiError> {
    let conn = s.broker.connection().await?;
    let stats = queue_stats_with(&conn, s.broker.management(), s.broker.timeout()).await;
    let _ = conn.close(200, "done".into()).await;
    Ok(Json(stats.map_err(|e| {
        tracing::warn!(error = %e, "reading queue stats failed");
        ApiError::Unavailable("the broker is unavailable".into())
    })?))
}

/// A probe's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// The database and the broker are reachable (503 otherwise).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health)))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<Health>, ApiError> {
    let timeout = s.broker.timeout();
    match tokio::time::timeout(timeout, s.db.ping()).await {
        Ok(Ok(())) => {}
        _ => return Err(ApiError::Unavailable("the inventory database is not reachable".into())),
    }
    let conn = s.broker.connection().await?;
    let _ = conn.close(200, "ready".into()).await;
    Ok(Json(Health { status: "ok".into() }))
}
