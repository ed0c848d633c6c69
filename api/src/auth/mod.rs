//! Authentication and the permission check, in one place. A request is authenticated once
//! into a [`Caller`]; the role is checked by the capability extractors [`Developer`],
//! [`Privileged`] and [`Admin`] (as lldap does with its handler types): the write
//! functions of `ops` take a `&Privileged` or `&Admin`, so a handler that did not extract
//! one cannot even call them.

pub mod keys;
pub mod password;
pub mod token;

use crate::error::{ApiError, request_id};
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use certfleet_shared::db::entity::audit::ActorKind;
use certfleet_shared::db::entity::role::Role;
use certfleet_shared::db::{api_keys, sessions, users};
use chrono::Utc;
use std::net::SocketAddr;

/// Who is calling, after authentication.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Username or API key name.
    pub actor: String,
    /// User or API key.
    pub kind: ActorKind,
    /// Effective role.
    pub role: Role,
    /// Client address.
    pub source: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// The session token it came with, if it came with one (not an API key).
    pub session: Option<SessionToken>,
}

/// The session token a caller authenticated with: what a logout ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionToken {
    /// The token's `jti`.
    pub jti: String,
    /// When it expires anyway.
    pub expires_at: chrono::DateTime<Utc>,
}

/// The client address and request id of a request, authenticated or not.
pub fn origin(parts: &Parts) -> (Option<String>, Option<String>) {
    let source = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    (source, request_id())
}

/// Authenticates the bearer of a request: an API key (`cfk_...`) or a session token.
async fn authenticate(parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
        ApiError::Unauthorized("authentication required: send `Authorization: Bearer <token>`".into())
    })?;
    let bearer = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
    authenticate_secret(bearer, parts, state).await
}

/// Authenticates a bearer secret (an API key or a session token), wherever it came from:
/// the `Authorization` header of the API or the session cookie of the dashboard.
pub async fn authenticate_secret(bearer: &str, parts: &Parts, state: &AppState) -> Result<Caller, ApiError> {
    let (source, request_id) = origin(parts);
    let now = Utc::now();
    if let Some((key_id, secret)) = keys::parse(bearer) {
        let bad = || ApiError::Unauthorized("the API key is not valid".into());
        let key = api_keys::find(&state.db, key_id).await?.ok_or_else(bad)?;
        if !keys::same(&keys::digest(secret), &key.secret_sha256) {
            return Err(bad());
        }
        if key.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("the API key has been revoked".into()));
        }
        if key.expires_at.is_some_and(|t| t <= now) {
            return Err(ApiError::Unauthorized("the API key has expired".into()));
        }
        api_keys::touch(&state.db, key.id, now).await?;
        return Ok(Caller {
            actor: key.name,
            kind: ActorKind::ApiKey,
            role: key.role,
            source,
            request_id,
            session: None,
        });
    }
    let claims = state.signer.check(bearer).map_err(ApiError::Unauthorized)?;
    // The account decides: a deleted user or a changed password ends its tokens, and a
    // changed role applies at once.
    let (user, revoked) =
        tokio::try_join!(users::find(&state.db, &claims.sub), sessions::is_revoked(&state.db, &claims.jti))?;
    let user = user.ok_or_else(|| ApiError::Unauthorized("the token's user no longer exists".into()))?;
    if revoked {
        return Err(ApiError::Unauthorized("this session was logged out; log in again".into()));
    }
    if claims.iat < user.password_changed_at.timestamp() {
        return Err(ApiError::Unauthorized(
            "the password was changed since this token was issued; log in again".into(),
        ));
    }
    let session =
        chrono::DateTime::from_timestamp(claims.exp, 0).map(|expires_at| SessionToken { jti: claims.jti, expires_at });
    Ok(Caller { actor: user.username, kind: ActorKind::User, role: user.role, source, request_id, session })
}

/// Authenticates and requires `needed`.
async fn require(parts: &Parts, state: &AppState, needed: Role) -> Result<Caller, ApiError> {
    check_role(authenticate(parts, state).await?, needed)
}

/// The one permission check: the caller's role must include `needed` (403 otherwise).
pub fn check_role(caller: Caller, needed: Role) -> Result<Caller, ApiError> {
    if !caller.role.includes(needed) {
        return Err(ApiError::Forbidden(format!(
            "this needs the {} role; {} has {}",
            needed.as_str().to_uppercase(),
            caller.actor,
            caller.role.as_str().to_uppercase()
        )));
    }
    Ok(caller)
}

macro_rules! capability {
    ($(#[$doc:meta])* $name:ident, $role:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(Caller);

        impl $name {
            /// The authenticated caller.
            pub fn caller(&self) -> &Caller {
                &self.0
            }

            /// The capability of an already authenticated caller (the dashboard's session),
            /// through the same [`check_role`] as the extractor.
            pub fn grant(caller: Caller) -> Result<Self, ApiError> {
                check_role(caller, $role).map($name)
            }
        }

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;
            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                require(parts, state, $role).await.map($name)
            }
        }
    };
}

capability!(
    /// DEVELOPER or higher: read access.
    Developer,
    Role::Developer
);
capability!(
    /// PRIVILEGED or higher: inventory writes, rotations, dead-letter actions.
    Privileged,
    Role::Privileged
);
capability!(
    /// ADMIN: users, API keys, certificate validation, the audit log.
    Admin,
    Role::Admin
);

impl Admin {
    /// An admin holds every privileged capability too (roles nest).
    pub fn privileged(&self) -> Privileged {
        Privileged(self.0.clone())
    }
}
