//! Search indexes that also carry `certificate_expiration`: a search by one exact filter
//! plus `days_until_expiration` walks `(filter, id, certificate_expiration)` in id order
//! and tests the expiry in the index, reading only the rows it returns (measured: the
//! API's search p99 at 1M assets, `BENCHMARKS.md`).

use sea_orm_migration::prelude::*;

pub(super) struct M0007SearchCovering;

impl MigrationName for M0007SearchCovering {
    fn name(&self) -> &str {
        "m0007_search_covering"
    }
}

/// (old index, new index, filter column).
const REPLACED: &[(&str, &str, &str)] = &[
    ("assets_data_center_id", "assets_data_center_id_exp", "data_center"),
    ("assets_host_platform_id", "assets_host_platform_id_exp", "host_platform"),
    ("assets_state_id", "assets_state_id_exp", "state"),
    ("assets_ca_id", "assets_ca_id_exp", "certificate_authority"),
    ("assets_origin_id", "assets_origin_id_exp", "origin"),
];

#[async_trait::async_trait]
impl MigrationTrait for M0007SearchCovering {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, col) in REPLACED {
            m.create_index(
                Index::create()
                    .if_not_exists()
                    .name(*new)
                    .table("assets")
                    .col(*col)
                    .col("id")
                    .col("certificate_expiration")
                    .to_owned(),
            )
            .await?;
            m.drop_index(Index::drop().if_exists().name(*old).table("assets").to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, col) in REPLACED {
            m.create_index(Index::create().if_not_exists().name(*old).table("assets").col(*col).col("id").to_owned())
                .await?;
            m.drop_index(Index::drop().if_exists().name(*new).table("assets").to_owned()).await?;
        }
        Ok(())
    }
}
