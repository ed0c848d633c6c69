//! Schema migrations, applied at start-up by every process (idempotent).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

mod m0004_notifications;
mod m0005_due_scan;
mod m0006_workers;
mod m0007_search_covering;
mod m0008_revoked_tokens;
mod m0009_drop_redundant_index;
mod m0010_published_at;
mod m0011_trace_id;

/// The list of migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(M0001Initial),
            Box::new(M0002RenewalInfo),
            Box::new(M0003ControlPlane),
            Box::new(m0004_notifications::M0004Notifications),
            Box::new(m0005_due_scan::M0005DueScan),
            Box::new(m0006_workers::M0006Workers),
            Box::new(m0007_search_covering::M0007SearchCovering),
            Box::new(m0008_revoked_tokens::M0008RevokedTokens),
            Box::new(m0009_drop_redundant_index::M0009DropRedundantIndex),
            Box::new(m0010_published_at::M0010PublishedAt),
            Box::new(m0011_trace_id::M0011TraceId),
        ]
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

/// The control plane: users, API keys, the append-only audit log, and the indexes the
/// API's search filters on (keyset pagination by id stays fast at a million rows).
struct M0003ControlPlane;

impl MigrationName for M0003ControlPlane {
    fn name(&self) -> &str {
        "m0003_control_plane"
    }
}

/// Indexes on `assets` for `GET /api/v1/search`: (name, columns).
const SEARCH_INDEXES: &[(&str, &[&str])] = &[
    ("assets_data_center_id", &["data_center", "id"]),
    ("assets_host_platform_id", &["host_platform", "id"]),
    ("assets_state_id", &["state", "id"]),
    ("assets_ca_id", &["certificate_authority", "id"]),
    ("assets_origin_id", &["origin", "id"]),
    ("assets_ip_address", &["ip_address"]),
    ("assets_expiration", &["certificate_expiration"]),
];

#[async_trait::async_trait]
impl MigrationTrait for M0003ControlPlane {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("users")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("username"))
                .col(text("password_hash"))
                .col(string_len("role", 16))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("password_changed_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("api_keys")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string_uniq("key_id"))
                .col(string("name"))
                .col(string_len("role", 16))
                .col(string_len("secret_sha256", 64))
                .col(string("created_by"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("expires_at"))
                .col(timestamp_with_time_zone_null("last_used_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("audit")
                .if_not_exists()
                .col(big_pk_auto("id"))
                .col(string("actor"))
                .col(string_len("actor_kind", 16))
                .col(string_len_null("role", 16))
                .col(string_len("action", 64))
                .col(string_null("target"))
                .col(json("summary"))
                .col(string_null("source"))
                .col(string_null("request_id"))
                .col(timestamp_with_time_zone("at"))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("audit_actor_at", &["actor", "at"][..]),
            ("audit_action_target_at", &["action", "target", "at"][..]),
            ("audit_at", &["at"][..]),
        ]
        .into_iter()
        .chain(SEARCH_INDEXES.iter().copied())
        {
            let table = if name.starts_with("audit") { "audit" } else { "assets" };
            let mut index = Index::create();
            index.if_not_exists().name(name).table(table);
            for c in cols {
                index.col(*c);
            }
            m.create_index(index.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, _) in SEARCH_INDEXES {
            m.drop_index(Index::drop().if_exists().name(*name).table("assets").to_owned()).await?;
        }
        for t in ["audit", "api_keys", "users"] {
            m.drop_table(Table::drop().table(t).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
