//! Schema migrations, applied at start-up by every process (idempotent).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

/// The list of migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(M0001Initial), Box::new(M0002RenewalInfo), Box::new(M0004Notifications)]
    }
}

struct M0001Initial;

impl MigrationName for M0001Initial {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0001Initial {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("assets")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("system_name"))
                .col(string("common_name"))
                .col(json("subject_alternative_name"))
                .col(string("certificate_authority"))
                .col(timestamp_with_time_zone_null("certificate_expiration"))
                .col(string_null("data_center"))
                .col(string_null("device_model"))
                .col(string("host_platform"))
                .col(string_null("ip_address"))
                .col(integer_null("port"))
                .col(string_null("origin"))
                .col(string_null("os_version"))
                .col(boolean("certificate_validation"))
                .col(string_len("key_algorithm", 16))
                .col(json("settings"))
                .col(string_len("state", 16))
                .col(timestamp_with_time_zone_null("not_before"))
                .col(timestamp_with_time_zone_null("not_after"))
                .col(string_null("serial"))
                .col(string_null("fingerprint_sha256"))
                .col(string_null("issuer_dn"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("rotations")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(uuid_uniq("job_id"))
                .col(big_integer("asset_id"))
                .col(integer("attempt"))
                .col(string_len("driver", 32))
                .col(string_len("status", 16))
                .col(string_null("error_class"))
                .col(text_null("error_message"))
                .col(string_null("worker"))
                .col(timestamp_with_time_zone("queued_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().if_not_exists().name("rotations_asset_id").table("rotations").col("asset_id").to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("dead_letters")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(uuid_uniq("job_id"))
                .col(big_integer_null("asset_id"))
                .col(string_null("system_name"))
                .col(string_null("driver"))
                .col(string("error_class"))
                .col(text("reason"))
                .col(integer("attempts"))
                .col(string_len("status", 16))
                .col(timestamp_with_time_zone("dead_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in ["dead_letters", "rotations", "assets"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}

/// ACME Renewal Information (RFC 9773): the installed certificate's ARI id (sent as the
/// next order's `replaces`) and the window the CA suggested, read by the scan policy.
struct M0002RenewalInfo;

impl MigrationName for M0002RenewalInfo {
    fn name(&self) -> &str {
        "m0002_renewal_info"
    }
}

/// The columns M0002 adds to `assets`.
const RENEWAL_INFO_COLUMNS: [&str; 3] = ["ari_cert_id", "renewal_window_start", "renewal_window_end"];

#[async_trait::async_trait]
impl MigrationTrait for M0002RenewalInfo {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One ALTER per column (SQLite takes one at a time); a column that is already there
        // (a concurrent start that lost the race) is skipped.
        for name in RENEWAL_INFO_COLUMNS {
            if m.has_column("assets", name).await? {
                continue;
            }
            let column = match name {
                "ari_cert_id" => string_null(name),
                _ => timestamp_with_time_zone_null(name),
            };
            m.alter_table(Table::alter().table("assets").add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in RENEWAL_INFO_COLUMNS {
            if m.has_column("assets", name).await? {
                m.alter_table(Table::alter().table("assets").drop_column(name).to_owned()).await?;
            }
        }
        Ok(())
    }
}

/// Notifications: `assets.expiry_notice` records the last expiry threshold announced for
/// the current certificate (`<fingerprint>/<seconds>`), so a threshold is announced once
/// per certificate, across scans and restarts; `dead_letters.kind` and `payload` let a
/// dead notification be listed and retried (the payload holds the event, never secrets).
struct M0004Notifications;

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
