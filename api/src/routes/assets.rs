//! The inventory: create (one or many, all or none), partial update, delete, search,
//! read one with its history, the rotation history, and rotate now.

use crate::accounts::audit;
use crate::auth::{Developer, Privileged};
use crate::error::{ApiError, Json, Path, Query};
use crate::state::AppState;
use crate::views::{AssetView, RotationView};
use axum::extract::State;
use axum::http::StatusCode;
use certfleet_scheduler::manual::{self, ManualError};
use certfleet_scheduler::policy::PolicyInputs;
use certfleet_scheduler::routes::Routes;
use certfleet_shared::db::asset_edits::{self, AssetPatch, UpdateError};
use certfleet_shared::db::assets::{self, AssetInput, ImportError, Known};
use certfleet_shared::db::audit::Action;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::entity::rotation::RotationStatus;
use certfleet_shared::db::search::{self, AssetFilter, RotationFilter};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

/// One asset, or an array of them (all are written, or none).
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, clippy::large_enum_variant)] // a schema only: the body is parsed row by row to name bad fields
pub enum AssetsBody {
    /// One asset.
    One(AssetInput),
    /// Many assets.
    Many(Vec<AssetInput>),
}

/// What a create wrote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Created {
    /// Assets written.
    pub written: usize,
}

fn parse_rows(body: Value) -> Result<(Vec<AssetInput>, bool), ApiError> {
    let (items, single) = match body {
        Value::Array(items) => (items, false),
        obj @ Value::Object(_) => (vec![obj], true),
        _ => return Err(ApiError::field("(body)", "must be an asset object or an array of asset objects")),
    };
    if items.is_empty() {
        return Err(ApiError::field("(body)", "the array holds no asset"));
    }
    let mut rows = Vec::with_capacity(items.len());
    let mut bad = Vec::new();
    for (i, v) in items.into_iter().enumerate() {
        match AssetInput::from_json(i, v) {
            Ok(r) => rows.push(r),
            Err(e) => bad.push(e),
        }
    }
    if bad.is_empty() { Ok((rows, single)) } else { Err(ApiError::rows(&bad, single)) }
}

fn import_error(e: ImportError, single: bool) -> ApiError {
    match e {
        ImportError::Rows(rows) => ApiError::rows(&rows, single),
        ImportError::Exists(names) if names.is_empty() => {
            ApiError::Conflict("an asset with one of these system_names was created meanwhile".into())
        }
        ImportError::Exists(names) => ApiError::Conflict(format!("system_name already exists: {}", names.join(", "))),
        ImportError::Db(e) => e.into(),
    }
}

/// Options of a create.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// Replace assets whose `system_name` exists instead of answering 409, as
    /// `certfleet assets import` does (default false).
    pub upsert: Option<bool>,
}

/// Creates assets: one object or an array (all or none). A taken `system_name` is 409,
/// unless `upsert=true`.
#[utoipa::path(post, path = "/api/v1/assets", tag = "assets", security(("bearer" = ["PRIVILEGED"])),
    params(CreateQuery), request_body = AssetsBody,
    responses((status = 201, body = Created), (status = 409, body = crate::error::Problem)))]
pub async fn create(
    cap: Privileged,
    State(s): State<AppState>,
    Query(q): Query<CreateQuery>,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let (rows, single) = parse_rows(body)?;
    let upsert = q.upsert.unwrap_or(false);
    let (issuers, routes) = (s.issuers(), known_routes(&s).await?);
    let known = known(&issuers, routes.as_ref());
    let summary =
        if upsert { assets::import(&s.db, &rows, known).await } else { assets::create(&s.db, &rows, known).await }
            .map_err(|e| import_error(e, single))?;
    let names: Vec<&str> = rows.iter().map(|r| r.system_name.trim()).collect();
    let target = if single { names.first().copied() } else { None };
    let listed: Vec<&str> = names.iter().copied().take(100).collect();
    let summary_json = json!({"count": rows.len(), "system_names": listed, "upsert": upsert});
    audit(&s.db, cap.caller(), Action::AssetCreate, target, summary_json).await?;
    Ok((StatusCode::CREATED, Json(Created { written: summary.written })))
}

/// Updates one asset: only the fields given change (`null` clears an optional field).
#[utoipa::path(put, path = "/api/v1/assets", tag = "assets", security(("bearer" = ["PRIVILEGED"])),
    request_body = AssetPatch,
    responses((status = 200, body = AssetView), (status = 404, body = crate::error::Problem)))]
pub async fn update(
    cap: Privileged,
    State(s): State<AppState>,
    Json(patch): Json<AssetPatch>,
) -> Result<Json<AssetView>, ApiError> {
    let (issuers, routes) = (s.issuers(), known_routes(&s).await?);
    let after = asset_edits::update(&s.db, &patch, known(&issuers, routes.as_ref())).await.map_err(|e| match e {
        UpdateError::Invalid(f) => ApiError::field(f.field, f.reason),
        UpdateError::Empty => ApiError::field("(body)", "names no field to change"),
        UpdateError::Db(e) => e.into(),
    })?;
    let mut changed = serde_json::to_value(&patch).unwrap_or_default();
    if let Some(map) = changed.as_object_mut() {
        map.retain(|k, v| k != "system_name" && !v.is_null());
        // Settings may hold device details; the audit says that they changed, not to what.
        if map.contains_key("settings") {
            map.insert("settings".into(), json!("(changed)"));
        }
    }
    audit(&s.db, cap.caller(), Action::AssetUpdate, Some(&after.system_name), changed).await?;
    Ok(Json(after.into()))
}

/// Deletes one asset (its history stays).
#[utoipa::path(delete, path = "/api/v1/assets/delete/{system_name}", tag = "assets",
    security(("bearer" = ["PRIVILEGED"])), params(("system_name" = String, Path, description = "The asset")),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem)))]
pub async fn delete(
    cap: Privileged,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let gone = asset_edits::delete(&s.db, &name).await?;
    audit(&s.db, cap.caller(), Action::AssetDelete, Some(&name), json!({"common_name": gone.common_name})).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Search filters (all optional, combined with AND) and the page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Exact platform.
    pub host_platform: Option<String>,
    /// Exact data center.
    pub data_center: Option<String>,
    /// Exact address.
    pub ip_address: Option<String>,
    /// Exact name.
    pub system_name: Option<String>,
    /// Expiring within this many days (or expired).
    #[param(minimum = 0, maximum = 36500)]
    pub days_until_expiration: Option<u32>,
    /// Exact origin.
    pub origin: Option<String>,
    /// Lifecycle state.
    #[param(value_type = Option<AssetState>, inline)]
    pub state: Option<AssetState>,
    /// Exact issuer name.
    pub certificate_authority: Option<String>,
    /// Substring of system_name or common_name.
    pub q: Option<String>,
    /// Only assets due for rotation now, by the scheduler's policy. A page may then hold
    /// fewer than `limit` items; follow `next_cursor` to the end.
    pub due: Option<bool>,
    /// Page size (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// The farthest expiry horizon a search takes (100 years).
const MAX_DAYS: u32 = 36_500;

/// A page of assets.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssetPage {
    /// Assets, in a stable order.
    pub items: Vec<AssetView>,
    /// Cursor of the next page, when there may be one.
    pub next_cursor: Option<i64>,
}

/// Searches the inventory (keyset pagination: pass `next_cursor` as `cursor`).
#[utoipa::path(get, path = "/api/v1/search", tag = "assets", security(("bearer" = ["DEVELOPER"])),
    params(SearchQuery), responses((status = 200, body = AssetPage)))]
pub async fn search_assets(
    _: Developer,
    State(s): State<AppState>,
    Query(q): Query<SearchQuery>,
) -> Result<Json<AssetPage>, ApiError> {
    let limit = crate::routes::limit(q.limit)?;
    let filter = AssetFilter {
        host_platform: q.host_platform,
        data_center: q.data_center,
        ip_address: q.ip_address,
        system_name: q.system_name,
        days_until_expiration: match q.days_until_expiration {
            Some(d) if d > MAX_DAYS => {
                return Err(ApiError::bad_param("days_until_expiration", format!("{d} is not in 0..={MAX_DAYS}")));
            }
            d => d,
        },
        origin: q.origin,
        state: q.state,
        certificate_authority: q.certificate_authority,
        q: q.q,
        decision_due: q.due.unwrap_or(false),
    };
    let now = Utc::now();
    let (mut rows, next_cursor) = search::assets(&s.db, &filter, q.cursor.unwrap_or(0), limit, now).await?;
    if filter.decision_due {
        let inputs = PolicyInputs::of(&s.config);
        rows.retain(|a| inputs.is_due(a, now));
    }
    Ok(Json(AssetPage { items: rows.into_iter().map(AssetView::from).collect(), next_cursor }))
}

/// One asset with its rotation history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssetDetail {
    /// The asset and its current certificate.
    pub asset: AssetView,
    /// Its rotations, newest first (at most 100).
    pub history: Vec<RotationView>,
}

/// Reads one asset, its current certificate and its rotation history.
#[utoipa::path(get, path = "/api/v1/assets/{system_name}", tag = "assets", security(("bearer" = ["DEVELOPER"])),
    params(("system_name" = String, Path, description = "The asset")),
    responses((status = 200, body = AssetDetail), (status = 404, body = crate::error::Problem)))]
pub async fn get_asset(
    _: Developer,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AssetDetail>, ApiError> {
    let a = assets::by_name(&s.db, &name).await?;
    let filter = RotationFilter { asset_id: Some(a.id), ..RotationFilter::default() };
    let (history, _) = search::rotations(&s.db, &filter, None, 100).await?;
    Ok(Json(AssetDetail { asset: a.into(), history: history.into_iter().map(RotationView::from).collect() }))
}

/// Rotation history filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RotationsQuery {
    /// Only this asset.
    pub system_name: Option<String>,
    /// Only this status (`queued`, `rotated`, `rolled_back`, `dead`, `discarded`).
    #[param(value_type = Option<RotationStatus>, inline)]
    pub status: Option<RotationStatus>,
    /// Queued at or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Page size (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// A page of history rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotationPage {
    /// Rows, newest first.
    pub items: Vec<RotationView>,
    /// Cursor of the next page, when there may be one.
    pub next_cursor: Option<i64>,
}

/// The rotation history.
#[utoipa::path(get, path = "/api/v1/rotations", tag = "assets", security(("bearer" = ["DEVELOPER"])),
    params(RotationsQuery), responses((status = 200, body = RotationPage), (status = 404, body = crate::error::Problem)))]
pub async fn rotations(
    _: Developer,
    State(s): State<AppState>,
    Query(q): Query<RotationsQuery>,
) -> Result<Json<RotationPage>, ApiError> {
    let limit = crate::routes::limit(q.limit)?;
    let asset_id = match &q.system_name {
        Some(name) => Some(assets::by_name(&s.db, name).await?.id),
        None => None,
    };
    let filter = RotationFilter { asset_id, status: q.status, since: q.since };
    let (rows, next_cursor) = search::rotations(&s.db, &filter, q.cursor, limit).await?;
    Ok(Json(RotationPage { items: rows.into_iter().map(RotationView::from).collect(), next_cursor }))
}

/// A published job.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobAnswer {
    /// The job id.
    pub job_id: String,
}

/// Loads the routing table (the same file the scheduler uses).
pub async fn routes(s: &AppState) -> Result<Routes, ApiError> {
    let path = &s.config.routes_file;
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| ApiError::internal(format!("cannot read routes file {}: {e}", path.display())))?;
    Routes::parse(&text).map_err(|e| ApiError::internal(format!("invalid routes file {}: {e}", path.display())))
}

/// The routing table to check new and edited assets against, when the file exists.
async fn known_routes(s: &AppState) -> Result<Option<Routes>, ApiError> {
    let path = &s.config.routes_file;
    match tokio::fs::read_to_string(path).await {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ApiError::internal(format!("cannot read routes file {}: {e}", path.display()))),
        Ok(text) => Routes::parse(&text)
            .map(Some)
            .map_err(|e| ApiError::internal(format!("invalid routes file {}: {e}", path.display()))),
    }
}

fn known<'a>(issuers: &'a [&'a str], routes: Option<&'a Routes>) -> Known<'a> {
    let known = Known::from(issuers);
    match routes {
        Some(r) => known.with_routes(r),
        None => known,
    }
}

/// Maps an operator action's error.
pub fn manual_error(e: ManualError) -> ApiError {
    use certfleet_scheduler::SchedulerError;
    match e {
        ManualError::Scheduler(SchedulerError::Db(db)) => db.into(),
        ManualError::Scheduler(SchedulerError::Amqp(e)) => {
            tracing::warn!(error = %e, "broker failure");
            ApiError::Unavailable("the broker is unavailable".into())
        }
        ManualError::Scheduler(other) => ApiError::internal(other),
        e @ (ManualError::InFlight { .. } | ManualError::NotRetriable { .. }) => ApiError::Conflict(e.to_string()),
        e @ ManualError::Unroutable { .. } => ApiError::field("host_platform", e.to_string()),
        ManualError::Publish(reason) => ApiError::Unavailable(format!("the broker refused the job: {reason}")),
    }
}

/// Publishes a rotation job for the asset now (the same `rotate_now` as `certfleet rotate`).
#[utoipa::path(post, path = "/api/v1/certificate/rotate/{system_name}", tag = "assets",
    security(("bearer" = ["PRIVILEGED"])), params(("system_name" = String, Path, description = "The asset")),
    responses((status = 202, body = JobAnswer), (status = 404, body = crate::error::Problem),
        (status = 409, body = crate::error::Problem)))]
pub async fn rotate(
    cap: Privileged,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<JobAnswer>), ApiError> {
    assets::by_name(&s.db, &name).await?;
    let routes = routes(&s).await?;
    let lease = s.config.lease;
    let (st, n) = (s.clone(), name.clone());
    let job = s
        .broker
        .with_publisher(
            |p| async move { manual::rotate_now(&st.db, &p, &routes, &n, lease).await.map_err(manual_error) },
        )
        .await?;
    audit(&s.db, cap.caller(), Action::AssetRotate, Some(&name), json!({"job_id": job.to_string()})).await?;
    Ok((StatusCode::ACCEPTED, Json(JobAnswer { job_id: job.to_string() })))
}
