//! ADMIN endpoints: users, API keys, the certificate-validation switch, the audit log.

use crate::accounts;
use crate::auth::Admin;
use crate::error::{ApiError, Json, Path, Query};
use crate::state::AppState;
use crate::views::{ApiKeyView, AssetView, AuditView, UserView};
use axum::extract::State;
use axum::http::StatusCode;
use certfleet_shared::db::audit::{self, Action};
use certfleet_shared::db::entity::role::Role;
use certfleet_shared::db::{api_keys, asset_edits, users};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: 1 to 64 letters, digits, `.`, `_`, `-` or `@`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._@-]+$")]
    pub username: String,
    /// Password: at least 12 characters, not the username.
    #[schema(min_length = 12)]
    pub password: String,
    /// Role.
    #[schema(value_type = crate::views::RoleName)]
    pub role: Role,
}

/// Lists users.
#[utoipa::path(get, path = "/admin/v1/users", tag = "admin", security(("bearer" = ["ADMIN"])),
    responses((status = 200, body = Vec<UserView>)))]
pub async fn list_users(_: Admin, State(s): State<AppState>) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(users::list(&s.db).await?.into_iter().map(UserView::from).collect()))
}

/// Creates a user.
#[utoipa::path(post, path = "/admin/v1/users", tag = "admin", security(("bearer" = ["ADMIN"])),
    request_body = NewUser, responses((status = 201, body = UserView), (status = 409, body = crate::error::Problem)))]
pub async fn create_user(
    cap: Admin,
    State(s): State<AppState>,
    Json(body): Json<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let u = accounts::create_user(&s.db, cap.caller(), &body.username, &body.password, body.role).await?;
    Ok((StatusCode::CREATED, Json(u.into())))
}

/// Deletes a user.
#[utoipa::path(delete, path = "/admin/v1/users/{username}", tag = "admin", security(("bearer" = ["ADMIN"])),
    params(("username" = String, Path, description = "Login name")),
    responses((status = 204, description = "Deleted"), (status = 404, body = crate::error::Problem)))]
pub async fn delete_user(
    cap: Admin,
    State(s): State<AppState>,
    Path(username): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts::delete_user(&s.db, cap.caller(), &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new API key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// Name (what uses it): 1 to 128 printable characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f]+$")]
    pub name: String,
    /// Role.
    #[schema(value_type = crate::views::RoleName)]
    pub role: Role,
    /// Lifetime, for example `90d` or `12h` (default: no expiry).
    #[serde(default)]
    pub ttl: Option<String>,
}

/// A created API key, with its secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key.
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The bearer secret: `Authorization: Bearer <secret>`. Not retrievable later.
    pub secret: String,
}

/// Lists API keys (never their secrets).
#[utoipa::path(get, path = "/admin/v1/api-keys", tag = "admin", security(("bearer" = ["ADMIN"])),
    responses((status = 200, body = Vec<ApiKeyView>)))]
pub async fn list_keys(_: Admin, State(s): State<AppState>) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    Ok(Json(api_keys::list(&s.db).await?.into_iter().map(ApiKeyView::from).collect()))
}

/// Creates an API key.
#[utoipa::path(post, path = "/admin/v1/api-keys", tag = "admin", security(("bearer" = ["ADMIN"])),
    request_body = NewApiKey, responses((status = 201, body = CreatedApiKey)))]
pub async fn create_key(
    cap: Admin,
    State(s): State<AppState>,
    Json(body): Json<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let expires_at = match body.ttl.as_deref() {
        None => None,
        Some(t) => {
            let d = humantime::parse_duration(t)
                .map_err(|e| ApiError::field("ttl", format!("\"{t}\" is not a duration like 90d or 12h: {e}")))?;
            let d = chrono::Duration::from_std(d).map_err(|_| ApiError::field("ttl", "is too long"))?;
            Some(Utc::now().checked_add_signed(d).ok_or_else(|| ApiError::field("ttl", "is too long"))?)
        }
    };
    let (key, secret) = accounts::create_api_key(&s.db, cap.caller(), &body.name, body.role, expires_at).await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key: key.into(), secret })))
}

/// Revokes an API key; its next request is refused.
#[utoipa::path(delete, path = "/admin/v1/api-keys/{id}", tag = "admin", security(("bearer" = ["ADMIN"])),
    params(("id" = String, Path, description = "The key's public id")),
    responses((status = 200, body = ApiKeyView), (status = 404, body = crate::error::Problem)))]
pub async fn revoke_key(
    cap: Admin,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyView>, ApiError> {
    Ok(Json(accounts::revoke_api_key(&s.db, cap.caller(), &id).await?.into()))
}

async fn set_validation(cap: &Admin, s: &AppState, name: &str, on: bool) -> Result<Json<AssetView>, ApiError> {
    let a = asset_edits::set_validation(&s.db, name, on).await?;
    accounts::audit(
        &s.db,
        cap.caller(),
        Action::AssetCertificateValidation,
        Some(name),
        json!({"certificate_validation": on}),
    )
    .await?;
    Ok(Json(a.into()))
}

/// Trusts the asset's current certificate again on connect.
#[utoipa::path(patch, path = "/admin/v1/management/certificate-validation/set/{system_name}", tag = "admin",
    security(("bearer" = ["ADMIN"])), params(("system_name" = String, Path, description = "The asset")),
    responses((status = 200, body = AssetView), (status = 404, body = crate::error::Problem)))]
pub async fn validation_set(
    cap: Admin,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    set_validation(&cap, &s, &name, true).await
}

/// Stops trusting the asset's current certificate on connect.
#[utoipa::path(patch, path = "/admin/v1/management/certificate-validation/unset/{system_name}", tag = "admin",
    security(("bearer" = ["ADMIN"])), params(("system_name" = String, Path, description = "The asset")),
    responses((status = 200, body = AssetView), (status = 404, body = crate::error::Problem)))]
pub async fn validation_unset(
    cap: Admin,
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    set_validation(&cap, &s, &name, false).await
}

/// Audit log filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action.
    #[param(value_type = Option<Action>, inline)]
    pub action: Option<String>,
    /// Exact target.
    pub target: Option<String>,
    /// At or after (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Page size (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
}

/// A page of audit rows, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Rows.
    pub items: Vec<AuditView>,
    /// Cursor of the next page, when there may be one.
    pub next_cursor: Option<i64>,
}

/// Reads the audit log (read only: nothing can change it).
#[utoipa::path(get, path = "/admin/v1/audit", tag = "admin", security(("bearer" = ["ADMIN"])),
    params(AuditQuery), responses((status = 200, body = AuditPage)))]
pub async fn audit_log(
    _: Admin,
    State(s): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = crate::routes::limit(q.limit)?;
    let action =
        q.action.as_deref().map(str::parse::<Action>).transpose().map_err(|e| ApiError::bad_param("action", e))?;
    let rows = audit::list(
        &s.db,
        &audit::Filter { actor: q.actor, action, target: q.target, since: q.since, before_id: q.cursor, limit },
    )
    .await?;
    let next_cursor = if rows.len() as u64 == limit { rows.last().map(|r| r.id) } else { None };
    Ok(Json(AuditPage { items: rows.into_iter().map(AuditView::from).collect(), next_cursor }))
}
