//! `users` repository: accounts of the control plane. Hashing happens in the caller
//! (`certfleet_api::password`); this layer only stores PHC strings.

use super::DbError;
use super::entity::role::Role;
use super::entity::user;
use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, SqlErr};

/// Creates a user; [`DbError::Conflict`] when the name is taken.
pub async fn create(
    db: &impl ConnectionTrait,
    username: &str,
    password_hash: &str,
    role: Role,
) -> Result<user::Model, DbError> {
    let now = Utc::now();
    let row = user::ActiveModel {
        username: Set(username.to_owned()),
        password_hash: Set(password_hash.to_owned()),
        role: Set(role),
        created_at: Set(now),
        password_changed_at: Set(now),
        ..Default::default()
    };
    user::Entity::insert(row).exec_with_returning(db).await.map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => DbError::Conflict(format!("user {username:?} already exists")),
        _ => DbError::Query(e),
    })
}

/// One user by name, if any.
pub async fn find(db: &impl ConnectionTrait, username: &str) -> Result<Option<user::Model>, DbError> {
    Ok(user::Entity::find().filter(user::Column::Username.eq(username)).one(db).await?)
}

/// Every user, by name.
pub async fn list(db: &impl ConnectionTrait) -> Result<Vec<user::Model>, DbError> {
    Ok(user::Entity::find().order_by_asc(user::Column::Username).all(db).await?)
}

/// Replaces a user's password hash.
pub async fn set_password(db: &impl ConnectionTrait, username: &str, password_hash: &str) -> Result<(), DbError> {
    let done = user::Entity::update_many()
        .col_expr(user::Column::PasswordHash, Expr::value(password_hash))
        .col_expr(user::Column::PasswordChangedAt, Expr::value(Utc::now()))
        .filter(user::Column::Username.eq(username))
        .exec(db)
        .await?;
    if done.rows_affected == 0 {
        return Err(DbError::NotFound(format!("user {username:?}")));
    }
    Ok(())
}

/// Deletes a user.
pub async fn delete(db: &impl ConnectionTrait, username: &str) -> Result<(), DbError> {
    let done = user::Entity::delete_many().filter(user::Column::Username.eq(username)).exec(db).await?;
    if done.rows_affected == 0 {
        return Err(DbError::NotFound(format!("user {username:?}")));
    }
    Ok(())
}
