//! Logged-out session tokens: a logout records the token's `jti` until the token would have
//! expired, and authentication refuses a recorded one. Expired records are dropped at each
//! logout, so the table holds at most the logouts of one token lifetime.

use super::DbError;
use super::entity::revoked_token;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

/// Ends the token `jti` (valid until `expires_at`); idempotent.
pub async fn revoke(
    db: &impl ConnectionTrait,
    jti: &str,
    expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), DbError> {
    revoked_token::Entity::delete_many().filter(revoked_token::Column::ExpiresAt.lt(now)).exec(db).await?;
    if expires_at <= now {
        return Ok(());
    }
    let row = revoked_token::ActiveModel { jti: Set(jti.to_owned()), expires_at: Set(expires_at) };
    revoked_token::Entity::insert(row)
        .on_conflict(OnConflict::column(revoked_token::Column::Jti).do_nothing().to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Whether the token `jti` was logged out.
pub async fn is_revoked(db: &impl ConnectionTrait, jti: &str) -> Result<bool, DbError> {
    Ok(revoked_token::Entity::find_by_id(jti.to_owned()).one(db).await?.is_some())
}
