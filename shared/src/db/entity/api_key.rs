//! `api_keys`: long-lived bearer secrets, each with a name, a role and an optional expiry.
//! Only the SHA-256 of the secret is stored (the secret is 256 random bits).

use super::role::Role;
use sea_orm::entity::prelude::*;

/// One API key.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Public key id (the part of the bearer before the secret).
    #[sea_orm(unique)]
    pub key_id: String,
    /// Operator-given name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Who made it.
    pub created_by: String,
    /// When it was made.
    pub created_at: DateTimeUtc,
    /// When it stops working (null = never).
    pub expires_at: Option<DateTimeUtc>,
    /// Last request made with it.
    pub last_used_at: Option<DateTimeUtc>,
    /// When it was revoked (null = active).
    pub revoked_at: Option<DateTimeUtc>,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
