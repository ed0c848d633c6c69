//! Dead letters: list and read (DEVELOPER), retry one, retry by filter, discard
//! (PRIVILEGED), through the same `retry_dead` and `dead_letters` functions as the CLI.

use crate::accounts::audit;
use crate::auth::{Developer, Privileged};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::assets::{JobAnswer, manual_error, routes};
use crate::state::AppState;
use crate::views::DeadLetterView;
use axum::extract::State;
use axum::http::StatusCode;
use certfleet_proto::JobId;
use certfleet_scheduler::manual;
use certfleet_shared::db::audit::Action;
use certfleet_shared::db::dead_letters;
use certfleet_shared::db::entity::dead_letter::DeadLetterStatus;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// Listing options.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DlqQuery {
    /// Include retried and discarded ones (default: pending only).
    pub all: Option<bool>,
}

fn job_id(text: &str) -> Result<JobId, ApiError> {
    text.parse::<uuid::Uuid>()
        .map(JobId)
        .map_err(|_| ApiError::bad_param("job_id", format!("\"{text}\" is not a UUID")))
}

/// Lists dead letters, newest first.
#[utoipa::path(get, path = "/api/v1/dlq", tag = "dlq", security(("bearer" = ["DEVELOPER"])), params(DlqQuery),
    responses((status = 200, body = Vec<DeadLetterView>)))]
pub async fn list(
    _: Developer,
    State(s): State<AppState>,
    Query(q): Query<DlqQuery>,
) -> Result<Json<Vec<DeadLetterView>>, ApiError> {
    let rows = dead_letters::list(&s.db, q.all.unwrap_or(false)).await?;
    Ok(Json(rows.into_iter().map(DeadLetterView::from).collect()))
}

/// Reads one dead letter.
#[utoipa::path(get, path = "/api/v1/dlq/{job_id}", tag = "dlq", security(("bearer" = ["DEVELOPER"])),
    params(("job_id" = uuid::Uuid, Path, description = "The job id")),
    responses((status = 200, body = DeadLetterView), (status = 404, body = crate::error::Problem)))]
pub async fn get(
    _: Developer,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterView>, ApiError> {
    Ok(Json(dead_letters::get(&s.db, job_id(&id)?).await?.into()))
}

async fn retry_ids(cap: &Privileged, s: &AppState, ids: &[JobId]) -> Result<RetryAnswer, ApiError> {
    let routes = routes(s).await?;
    let lease = s.config.lease;
    let mut answer = RetryAnswer { retried: Vec::new(), failed: Vec::new() };
    for id in ids {
        let r = s
            .broker
            .with_publisher(|p| {
                let (s, routes) = (s.clone(), &routes);
                async move { manual::retry_dead(&s.db, &p, routes, *id, lease).await.map_err(manual_error) }
            })
            .await;
        match r {
            Ok(job) => {
                audit(&s.db, cap.caller(), Action::DlqRetry, Some(&job.to_string()), json!({})).await?;
                answer.retried.push(job.to_string());
            }
            Err(e) if ids.len() == 1 => return Err(e),
            Err(e) => answer.failed.push(RetryFailure { job_id: id.to_string(), error: e.to_string() }),
        }
    }
    Ok(answer)
}

/// Republishes one dead job (same job id, fresh attempts, built from the asset's current row).
#[utoipa::path(post, path = "/api/v1/dlq/{job_id}/retry", tag = "dlq", security(("bearer" = ["PRIVILEGED"])),
    params(("job_id" = uuid::Uuid, Path, description = "The job id")),
    responses((status = 202, body = JobAnswer), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)))]
pub async fn retry_one(
    cap: Privileged,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobAnswer>), ApiError> {
    let id = job_id(&id)?;
    retry_ids(&cap, &s, &[id]).await?;
    Ok((StatusCode::ACCEPTED, Json(JobAnswer { job_id: id.to_string() })))
}

/// Which pending dead letters to retry; an empty filter with `all = true` retries all.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFilter {
    /// Retry every pending dead letter (needed when no other filter is given).
    #[serde(default)]
    pub all: bool,
    /// Only this asset.
    pub system_name: Option<String>,
    /// Only this driver.
    pub driver: Option<String>,
    /// Only this error class.
    pub error_class: Option<String>,
}

/// One dead letter that could not be retried.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetryFailure {
    /// The job id.
    pub job_id: String,
    /// Why.
    pub error: String,
}

/// What a retry did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetryAnswer {
    /// Job ids republished.
    pub retried: Vec<String>,
    /// Those that could not be.
    pub failed: Vec<RetryFailure>,
}

/// Retries the pending dead letters matching the filter.
#[utoipa::path(post, path = "/api/v1/dlq/retry", tag = "dlq", security(("bearer" = ["PRIVILEGED"])),
    request_body = RetryFilter, responses((status = 200, body = RetryAnswer)))]
pub async fn retry_many(
    cap: Privileged,
    State(s): State<AppState>,
    Json(f): Json<RetryFilter>,
) -> Result<Json<RetryAnswer>, ApiError> {
    if !f.all && f.system_name.is_none() && f.driver.is_none() && f.error_class.is_none() {
        return Err(ApiError::field("all", "give a filter (system_name, driver, error_class) or all = true"));
    }
    let ids: Vec<JobId> = dead_letters::list(&s.db, false)
        .await?
        .into_iter()
        .filter(|d| f.system_name.as_ref().is_none_or(|n| d.system_name.as_ref() == Some(n)))
        .filter(|d| f.driver.as_ref().is_none_or(|n| d.driver.as_ref() == Some(n)))
        .filter(|d| f.error_class.as_ref().is_none_or(|n| &d.error_class == n))
        .map(|d| JobId(d.job_id))
        .collect();
    if ids.is_empty() {
        return Ok(Json(RetryAnswer { retried: Vec::new(), failed: Vec::new() }));
    }
    let mut answer = RetryAnswer { retried: Vec::new(), failed: Vec::new() };
    // One by one, so one failure does not stop the others.
    for id in ids {
        match retry_ids(&cap, &s, &[id]).await {
            Ok(a) => answer.retried.extend(a.retried),
            Err(e @ ApiError::Internal(_)) => return Err(e),
            Err(e) => answer.failed.push(RetryFailure { job_id: id.to_string(), error: e.to_string() }),
        }
    }
    Ok(Json(answer))
}

/// Drops a dead letter; the asset stays `dead` until rotated by hand.
#[utoipa::path(post, path = "/api/v1/dlq/{job_id}/discard", tag = "dlq", security(("bearer" = ["PRIVILEGED"])),
    params(("job_id" = uuid::Uuid, Path, description = "The job id")),
    responses((status = 200, body = DeadLetterView), (status = 404, body = crate::error::Problem)))]
pub async fn discard(
    cap: Privileged,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DeadLetterView>, ApiError> {
    let id = job_id(&id)?;
    dead_letters::get(&s.db, id).await?;
    dead_letters::set_status(&s.db, id, DeadLetterStatus::Discarded).await?;
    audit(&s.db, cap.caller(), Action::DlqDiscard, Some(&id.to_string()), json!({})).await?;
    Ok(Json(dead_letters::get(&s.db, id).await?.into()))
}
