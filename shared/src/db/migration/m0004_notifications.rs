//! Notifications: `assets.expiry_notice` records the last expiry threshold announced for
//! the current certificate (`<fingerprint>/<seconds>`), so a threshold is announced once
//! per certificate, across scans and restarts; `dead_letters.kind` and `payload` let a
//! dead notification be listed and retried (the payload holds the event, never secrets).
//! Independent of M0005: it runs before it on fresh databases and after it on databases
//! that already have M0005 (each column is added only if missing).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(super) struct M0004Notifications;

impl MigrationName for M0004Notifications {
    fn name(&self) -> &str {
        "m0004_notifications"
    }
}

/// The columns M0004 adds, by table.
const NOTIFICATION_COLUMNS: [(&str, &str); 3] =
    [("assets", "expiry_notice"), ("dead_letters", "kind"), ("dead_letters", "payload")];

#[async_trait::async_trait]
impl MigrationTrait for M0004Notifications {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, name) in NOTIFICATION_COLUMNS {
            if m.has_column(table, name).await? {
                continue;
            }
            let column = match name {
                "payload" => text_null(name),
                _ => string_null(name),
            };
            m.alter_table(Table::alter().table(table).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (table, name) in NOTIFICATION_COLUMNS {
            if m.has_column(table, name).await? {
                m.alter_table(Table::alter().table(table).drop_column(name).to_owned()).await?;
            }
        }
        Ok(())
    }
}
