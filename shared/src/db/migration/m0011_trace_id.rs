//! `rotations.trace_id`: the exported trace that published the job, so the dashboard's
//! asset history can link each rotation to the user's tracing UI. Existing rows have none.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(super) struct M0011TraceId;

impl MigrationName for M0011TraceId {
    fn name(&self) -> &str {
        "m0011_trace_id"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0011TraceId {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(Table::alter().table("rotations").add_column(string_len_null("trace_id", 32)).to_owned()).await
    }
}
