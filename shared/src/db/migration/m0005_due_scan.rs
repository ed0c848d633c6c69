//! The due-ordered scan and the scheduler lease: `assets.next_due_at` (indexed), the
//! `scheduler_state` key/value table (the policy fingerprint) and `leader_lease`.

use chrono::Utc;
use sea_orm::{ConnectionTrait, Statement, Value};
use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(super) struct M0005DueScan;

impl MigrationName for M0005DueScan {
    fn name(&self) -> &str {
        "m0005_due_scan"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0005DueScan {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if !m.has_column("assets", "next_due_at").await? {
            m.alter_table(
                Table::alter().table("assets").add_column(timestamp_with_time_zone_null("next_due_at")).to_owned(),
            )
            .await?;
            // Every existing row is evaluated by the first scan, which stores its real time.
            // Bound as a value so that SQLite stores the same text format as every writer.
            let db = m.get_connection();
            let backend = db.get_database_backend();
            let sql = match backend {
                sea_orm::DbBackend::Postgres => "UPDATE assets SET next_due_at = $1",
                _ => "UPDATE assets SET next_due_at = ?",
            };
            db.execute_raw(Statement::from_sql_and_values(backend, sql, [Value::from(Utc::now())])).await?;
        }
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("assets_next_due_at")
                .table("assets")
                .col("next_due_at")
                .col("id")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("scheduler_state")
                .if_not_exists()
                .col(string_len("key", 64).primary_key())
                .col(text("value"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("leader_lease")
                .if_not_exists()
                .col(string_len("name", 64).primary_key())
                .col(string("holder"))
                .col(big_integer("epoch"))
                .col(timestamp_with_time_zone("expires_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["leader_lease", "scheduler_state"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        m.drop_index(Index::drop().if_exists().name("assets_next_due_at").table("assets").to_owned()).await?;
        if m.has_column("assets", "next_due_at").await? {
            m.alter_table(Table::alter().table("assets").drop_column("next_due_at").to_owned()).await?;
        }
        Ok(())
    }
}
