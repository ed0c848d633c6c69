//! `rotations.published_at`: when the broker confirmed the job. A job recorded `queued` but
//! never confirmed was stranded by a scheduler that died mid-publish; the next leader
//! publishes it again under its own id (`scheduler::recover`). Existing rows count as
//! published when they were queued.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(super) struct M0010PublishedAt;

impl MigrationName for M0010PublishedAt {
    fn name(&self) -> &str {
        "m0010_published_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0010PublishedAt {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter().table("rotations").add_column(timestamp_with_time_zone_null("published_at")).to_owned(),
        )
        .await?;
        m.get_connection().execute_unprepared("UPDATE rotations SET published_at = queued_at").await?;
        Ok(())
    }
}
