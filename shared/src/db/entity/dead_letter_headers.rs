//! `dead_letter_headers`: the message properties and headers each dead letter arrived
//! with, shown on the dashboard's dead-letter page.

use sea_orm::entity::prelude::*;

/// The headers of one dead letter.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "dead_letter_headers")]
pub struct Model {
    /// The dead letter's job id.
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: Uuid,
    /// `{"properties": {...}, "headers": {...}}`.
    pub headers: Json,
    /// When they were recorded.
    pub recorded_at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
