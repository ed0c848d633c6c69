//! `leader_lease`: one row per leader role (today `scheduler`): who holds it, its epoch
//! (bumped on every change of holder, fencing claims) and when it expires.

use sea_orm::entity::prelude::*;

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "leader_lease")]
pub struct Model {
    /// The role.
    #[sea_orm(primary_key, auto_increment = false)]
    pub name: String,
    /// The process holding it (empty: nobody yet).
    pub holder: String,
    /// Incremented whenever a process takes the lease.
    pub epoch: i64,
    /// The holder must renew before this.
    pub expires_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
