//! Drops `assets_expiration` (`certificate_expiration` alone): M0006's
//! `assets_expiration_ca` (`certificate_expiration, certificate_authority`) answers every
//! query it did, and each index costs every claim, result and import a write per row
//! (measured in `BENCHMARKS.md`, "The due-ordered scan").

use sea_orm_migration::prelude::*;

pub(super) struct M0009DropRedundantIndex;

impl MigrationName for M0009DropRedundantIndex {
    fn name(&self) -> &str {
        "m0009_drop_redundant_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0009DropRedundantIndex {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().if_exists().name("assets_expiration").table("assets").to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("assets_expiration")
                .table("assets")
                .col("certificate_expiration")
                .to_owned(),
        )
        .await
    }
}
