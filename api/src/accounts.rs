//! Accounts and API keys, shared by the API and the `certfleet users` / `api-keys` CLI:
//! the name and password rules, hashing, and one audit row per change.

use crate::auth::{Caller, keys, password};
use certfleet_shared::db::audit::{self, Action};
use certfleet_shared::db::entity::role::Role;
use certfleet_shared::db::entity::{api_key, user};
use certfleet_shared::db::{DbError, api_keys, users};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use serde_json::json;

/// Why an account change did nothing.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field breaks its rule.
    #[error("field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// The rule.
        reason: String,
    },
    /// Database failure, not found, or a duplicate name.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Hashing failed.
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AccountError {
    AccountError::Invalid { field, reason: reason.into() }
}

/// Usernames: 1 to 64 of letters, digits, `.`, `_`, `-`, `@`.
pub fn check_username(name: &str) -> Result<(), AccountError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok { Ok(()) } else { Err(invalid("username", "must be 1 to 64 letters, digits, '.', '_', '-' or '@'")) }
}

/// Appends the audit row of `caller` doing `action` on `target`.
pub async fn audit(
    db: &DatabaseConnection,
    caller: &Caller,
    action: Action,
    target: Option<&str>,
    summary: serde_json::Value,
) -> Result<(), DbError> {
    audit::record(
        db,
        audit::Entry {
            actor: caller.actor.clone(),
            actor_kind: caller.kind,
            role: Some(caller.role),
            action,
            target: target.map(str::to_owned),
            summary,
            source: caller.source.clone(),
            request_id: caller.request_id.clone(),
        },
    )
    .await
}

/// Creates a user after checking the name and the password rule.
pub async fn create_user(
    db: &DatabaseConnection,
    by: &Caller,
    username: &str,
    pass: &str,
    role: Role,
) -> Result<user::Model, AccountError> {
    check_username(username)?;
    password::check_rule(username, pass).map_err(|rule| invalid("password", rule))?;
    let hash = password::hash(pass.to_owned()).await.map_err(AccountError::Hash)?;
    let user = users::create(db, username, &hash, role).await?;
    audit(db, by, Action::UserCreate, Some(username), json!({"role": role})).await?;
    Ok(user)
}

/// Deletes a user (their tokens stop working on the next request).
pub async fn delete_user(db: &DatabaseConnection, by: &Caller, username: &str) -> Result<(), AccountError> {
    users::delete(db, username).await?;
    audit(db, by, Action::UserDelete, Some(username), json!({})).await?;
    Ok(())
}

/// Creates an API key; returns it and the bearer secret, to be shown once.
pub async fn create_api_key(
    db: &DatabaseConnection,
    by: &Caller,
    name: &str,
    role: Role,
    expires_at: Option<DateTime<Utc>>,
) -> Result<(api_key::Model, String), AccountError> {
    if name.trim().is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(invalid("name", "must be 1 to 128 printable characters"));
    }
    if expires_at.is_some_and(|t| t <= Utc::now()) {
        return Err(invalid("ttl", "must be in the future"));
    }
    let minted = keys::mint();
    let key = api_keys::create(
        db,
        api_keys::NewKey {
            key_id: &minted.key_id,
            name,
            role,
            secret_sha256: &minted.secret_sha256,
            created_by: &by.actor,
            expires_at,
        },
    )
    .await?;
    audit(
        db,
        by,
        Action::ApiKeyCreate,
        Some(&key.key_id),
        json!({"name": name, "role": role, "expires_at": expires_at}),
    )
    .await?;
    Ok((key, minted.bearer))
}

/// Revokes an API key (effective on its next request).
pub async fn revoke_api_key(
    db: &DatabaseConnection,
    by: &Caller,
    key_id: &str,
) -> Result<api_key::Model, AccountError> {
    let key = api_keys::revoke(db, key_id).await?;
    audit(db, by, Action::ApiKeyRevoke, Some(key_id), json!({"name": key.name})).await?;
    Ok(key)
}

impl From<AccountError> for crate::error::ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid { field, reason } => Self::field(field, reason),
            AccountError::Db(db) => db.into(),
            AccountError::Hash(h) => Self::internal(h),
        }
    }
}
