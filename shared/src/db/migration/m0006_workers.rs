//! For the dashboard: the `workers` table (the last heartbeat of every worker, for the
//! Queues page) and `dead_letter_headers` (the properties and headers each dead letter
//! arrived with, for its detail page), plus two indexes for the Overview's aggregates.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(super) struct M0006Workers;

impl MigrationName for M0006Workers {
    fn name(&self) -> &str {
        "m0006_workers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0006Workers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("workers")
                .if_not_exists()
                .col(string_len("worker_id", 255).primary_key())
                .col(json("drivers"))
                .col(integer("concurrency"))
                .col(integer("in_flight"))
                .col(big_integer("interval_ms"))
                .col(timestamp_with_time_zone("started_at"))
                .col(timestamp_with_time_zone("last_seen"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("dead_letter_headers")
                .if_not_exists()
                .col(uuid("job_id").primary_key())
                .col(json("headers"))
                .col(timestamp_with_time_zone("recorded_at"))
                .to_owned(),
        )
        .await?;
        // The Overview's aggregates, answered from indexes alone: the expiry histogram per
        // issuer, and the last day's rotations per status.
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("assets_expiration_ca")
                .table("assets")
                .col("certificate_expiration")
                .col("certificate_authority")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("rotations_queued_at_status")
                .table("rotations")
                .col("queued_at")
                .col("status")
                .to_owned(),
        )
        .await
    }
}
