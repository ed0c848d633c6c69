//! `api_keys` repository: create, look up by key id, list, revoke, touch `last_used_at`.

use super::DbError;
use super::entity::api_key;
use super::entity::role::Role;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

/// A key to store (the secret is already hashed).
#[derive(Debug, Clone)]
pub struct NewKey<'a> {
    /// Public key id.
    pub key_id: &'a str,
    /// Name.
    pub name: &'a str,
    /// Role.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: &'a str,
    /// Who made it.
    pub created_by: &'a str,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Stores a new key.
pub async fn create(db: &impl ConnectionTrait, key: NewKey<'_>) -> Result<api_key::Model, DbError> {
    let row = api_key::ActiveModel {
        key_id: Set(key.key_id.to_owned()),
        name: Set(key.name.to_owned()),
        role: Set(key.role),
        secret_sha256: Set(key.secret_sha256.to_owned()),
        created_by: Set(key.created_by.to_owned()),
        created_at: Set(Utc::now()),
        expires_at: Set(key.expires_at),
        last_used_at: Set(None),
        revoked_at: Set(None),
        ..Default::default()
    };
    Ok(api_key::Entity::insert(row).exec_with_returning(db).await?)
}

/// One key by its public id, revoked or not.
pub async fn find(db: &impl ConnectionTrait, key_id: &str) -> Result<Option<api_key::Model>, DbError> {
    Ok(api_key::Entity::find().filter(api_key::Column::KeyId.eq(key_id)).one(db).await?)
}

/// Every key, newest first.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<api_key::Model>, DbError> {
    Ok(api_key::Entity::find().order_by_desc(api_key::Column::Id).all(db).await?)
}

/// Revokes a key (effective on its next request). Revoking twice is a no-op that still
/// finds the key; an unknown id is [`DbError::NotFound`].
pub async fn revoke(db: &impl ConnectionTrait, key_id: &str) -> Result<api_key::Model, DbError> {
    api_key::Entity::update_many()
        .col_expr(api_key::Column::RevokedAt, Expr::value(Utc::now()))
        .filter(api_key::Column::KeyId.eq(key_id))
        .filter(api_key::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    find(db, key_id).await?.ok_or_else(|| DbError::NotFound(format!("API key {key_id:?}")))
}

/// Records that the key was just used.
pub async fn touch(db: &impl ConnectionTrait, id: i64, now: DateTime<Utc>) -> Result<(), DbError> {
    api_key::Entity::update_many()
        .col_expr(api_key::Column::LastUsedAt, Expr::value(now))
        .filter(api_key::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
