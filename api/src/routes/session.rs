//! `POST /user/v1/authenticate` (log in), `PUT /user/v1/authenticate` (change the
//! password) and `DELETE /user/v1/authenticate` (log out: the token stops working). Failed logins are audited and counted: after 5 for one username within 15
//! minutes the answer is 429 with `Retry-After`. An unknown username gets the same answer
//! after the same argon2 work (a dummy hash is verified), so existence never shows.

use crate::accounts::audit as audit_row;
use crate::auth::{Caller, Developer, origin, password};
use crate::error::{ApiError, Json};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use certfleet_shared::db::audit::{self, Action};
use certfleet_shared::db::entity::audit::ActorKind;
use certfleet_shared::db::entity::user;
use certfleet_shared::db::{sessions, users};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// Failed logins per username before throttling.
pub const MAX_FAILURES: u64 = 5;
/// The window they are counted in.
pub const WINDOW: chrono::Duration = chrono::Duration::minutes(15);
const FAILED: Action = Action::LoginFailed;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Username.
    pub username: String,
    /// Current password.
    pub password: String,
    /// New password: at least 12 characters, not the username.
    pub updated_password: String,
}

/// A session token.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenAnswer {
    /// Bearer token for `Authorization: Bearer ...`.
    pub token: String,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

/// Client address and request id of an unauthenticated request.
pub struct Origin(Option<String>, Option<String>);

impl FromRequestParts<AppState> for Origin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let (source, request_id) = origin(parts);
        Ok(Self(source, request_id))
    }
}

fn as_caller(username: &str, o: &Origin, user: Option<&user::Model>) -> Caller {
    Caller {
        actor: username.to_owned(),
        kind: ActorKind::User,
        role: user.map_or(certfleet_shared::db::entity::role::Role::Developer, |u| u.role),
        source: o.0.clone(),
        request_id: o.1.clone(),
        session: None,
    }
}

/// Checks throttling, then the password (against a dummy hash for an unknown user).
/// Returns the user on success; audits failures.
async fn check(state: &AppState, o: &Origin, username: &str, pass: &str) -> Result<user::Model, ApiError> {
    let now = Utc::now();
    let (failures, oldest) = audit::count_since(&state.db, FAILED, username, now - WINDOW).await?;
    if failures >= MAX_FAILURES {
        let retry_at = oldest.unwrap_or(now) + WINDOW;
        let retry_after = u64::try_from((retry_at - now).num_seconds()).unwrap_or(0).max(1);
        audit::record(&state.db, entry(username, o, Action::LoginThrottled, json!({"retry_after": retry_after})))
            .await?;
        return Err(ApiError::TooManyRequests {
            detail: format!("too many failed logins; try again in {retry_after} s"),
            retry_after,
        });
    }
    let user = users::find(&state.db, username).await?;
    let phc = user.as_ref().map_or_else(|| state.dummy_hash.clone(), |u| u.password_hash.clone());
    let ok = password::verify(pass.to_owned(), phc).await && user.is_some();
    match user {
        Some(u) if ok => Ok(u),
        _ => {
            audit::record(&state.db, entry(username, o, FAILED, json!({}))).await?;
            Err(ApiError::Unauthorized("invalid username or password".into()))
        }
    }
}

fn entry(username: &str, o: &Origin, action: Action, summary: serde_json::Value) -> audit::Entry {
    audit::Entry {
        actor: username.to_owned(),
        actor_kind: ActorKind::User,
        role: None,
        action,
        target: Some(username.to_owned()),
        summary,
        source: o.0.clone(),
        request_id: o.1.clone(),
    }
}

/// Logs in; answers a session token.
#[utoipa::path(post, path = "/user/v1/authenticate", tag = "session", request_body = Login,
    responses((status = 200, description = "Logged in", body = TokenAnswer)))]
pub async fn authenticate(
    State(state): State<AppState>,
    o: Origin,
    Json(body): Json<Login>,
) -> Result<Json<TokenAnswer>, ApiError> {
    let user = check(&state, &o, &body.username, &body.password).await?;
    let (token, expires_at) = state.signer.issue(&user.username, user.role, Utc::now()).map_err(ApiError::internal)?;
    audit_row(&state.db, &as_caller(&user.username, &o, Some(&user)), Action::LoginOk, Some(&user.username), json!({}))
        .await?;
    Ok(Json(TokenAnswer { token, expires_at }))
}

/// Changes the caller's own password (proved by the current one). Earlier tokens stop
/// working.
#[utoipa::path(put, path = "/user/v1/authenticate", tag = "session", request_body = PasswordChange,
    responses((status = 204, description = "Password changed")))]
pub async fn change_password(
    State(state): State<AppState>,
    o: Origin,
    Json(body): Json<PasswordChange>,
) -> Result<axum::http::StatusCode, ApiError> {
    let user = check(&state, &o, &body.username, &body.password).await?;
    password::check_rule(&user.username, &body.updated_password)
        .map_err(|rule| ApiError::field("updated_password", rule))?;
    let hash = password::hash(body.updated_password).await.map_err(ApiError::internal)?;
    // The change time is kept in whole seconds ahead of every earlier token's iat.
    users::set_password(&state.db, &user.username, &hash).await?;
    audit_row(
        &state.db,
        &as_caller(&user.username, &o, Some(&user)),
        Action::UserPassword,
        Some(&user.username),
        json!({}),
    )
    .await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Logs out: the session token this request carries stops working at once (an API key is
/// not a session; an ADMIN revokes it with `DELETE /admin/v1/api-keys/{id}`).
#[utoipa::path(delete, path = "/user/v1/authenticate", tag = "session", security(("bearer" = ["DEVELOPER"])),
    responses((status = 204, description = "Logged out: the token no longer works")))]
pub async fn logout(State(state): State<AppState>, who: Developer) -> Result<axum::http::StatusCode, ApiError> {
    end_session(&state, who.caller()).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Ends the caller's session token and audits the logout (the API's and the dashboard's).
pub async fn end_session(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let Some(token) = &caller.session else {
        return Err(ApiError::BadRequest {
            detail: "an API key is not a session and cannot log out; an ADMIN revokes it with \
                     DELETE /admin/v1/api-keys/{id}"
                .into(),
            errors: Vec::new(),
        });
    };
    sessions::revoke(&state.db, &token.jti, token.expires_at, Utc::now()).await?;
    audit_row(&state.db, caller, Action::Logout, Some(&caller.actor), json!({})).await?;
    Ok(())
}
