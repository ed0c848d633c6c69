//! `revoked_tokens`: the `jti` of every session token ended by a logout, until it expires.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub(super) struct M0008RevokedTokens;

impl MigrationName for M0008RevokedTokens {
    fn name(&self) -> &str {
        "m0008_revoked_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for M0008RevokedTokens {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("revoked_tokens")
                .if_not_exists()
                .col(string_len("jti", 64).primary_key())
                .col(timestamp_with_time_zone("expires_at"))
                .to_owned(),
        )
        .await?;
        // Expired rows are deleted by range at each logout.
        m.create_index(
            Index::create()
                .if_not_exists()
                .name("revoked_tokens_expires_at")
                .table("revoked_tokens")
                .col("expires_at")
                .to_owned(),
        )
        .await
    }
}
