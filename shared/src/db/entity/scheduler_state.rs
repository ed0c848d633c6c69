//! `scheduler_state`: small named values the schedulers share (the policy fingerprint the
//! stored `next_due_at` values were computed with).

use sea_orm::entity::prelude::*;

/// One named value.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "scheduler_state")]
pub struct Model {
    /// The name.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// The value.
    pub value: String,
    /// Last change.
    pub updated_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
