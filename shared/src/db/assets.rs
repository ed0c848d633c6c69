//! Inventory rows: validated import (all or nothing), listing and lookups.

use super::DbError;
use super::entity::asset::{self, AssetState};
use certfleet_proto::KeyAlgorithm;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;

/// One asset as operators write it (Ottr's field names). Unknown fields are rejected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetInput {
    /// Unique key.
    pub system_name: String,
    /// Subject CN.
    pub common_name: String,
    /// SANs.
    #[serde(default)]
    pub subject_alternative_name: Vec<String>,
    /// Issuer name from config.
    pub certificate_authority: String,
    /// Known expiry, RFC 3339 (null = unknown).
    #[serde(default)]
    pub certificate_expiration: Option<DateTime<Utc>>,
    /// Location.
    #[serde(default)]
    pub data_center: Option<String>,
    /// Device model.
    #[serde(default)]
    pub device_model: Option<String>,
    /// Platform.
    pub host_platform: String,
    /// TLS service address.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// TLS service port.
    #[serde(default)]
    pub port: Option<i64>,
    /// Where the row came from.
    #[serde(default)]
    pub origin: Option<String>,
    /// OS version.
    #[serde(default)]
    pub os_version: Option<String>,
    /// Trust the current certificate on connect (default true).
    #[serde(default = "yes")]
    pub certificate_validation: bool,
    /// Device key algorithm (default `ecdsa-p256`).
    #[serde(default)]
    pub key_algorithm: Option<String>,
    /// Driver-specific settings object.
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
}

fn yes() -> bool {
    true
}

/// A field of one row that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct FieldError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn field_err(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError { field, reason: reason.into() }
}

/// Checks that `name` looks like a DNS name (wildcards allowed) or an IP address.
fn check_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok { Ok(()) } else { Err(field_err(field, format!("{name:?} is not a DNS name or IP address"))) }
}

impl AssetInput {
    /// Validates the row; `issuers` are the issuer names the config knows.
    pub fn validate(&self, issuers: &[&str]) -> Result<(), FieldError> {
        let name = self.system_name.trim();
        if name.is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
            return Err(field_err("system_name", "must be 1 to 255 printable characters"));
        }
        check_name("common_name", &self.common_name)?;
        for san in &self.subject_alternative_name {
            check_name("subject_alternative_name", san)?;
        }
        if !issuers.contains(&self.certificate_authority.as_str()) {
            return Err(field_err(
                "certificate_authority",
                format!("{:?} is not a configured issuer (known: {})", self.certificate_authority, issuers.join(", ")),
            ));
        }
        if self.host_platform.trim().is_empty() {
            return Err(field_err("host_platform", "must not be empty"));
        }
        if let Some(port) = self.port
            && !(1..=65_535).contains(&port)
        {
            return Err(field_err("port", format!("{port} is not in 1..=65535")));
        }
        if let Some(ip) = &self.ip_address
            && (ip.is_empty() || ip.chars().any(char::is_whitespace))
        {
            return Err(field_err("ip_address", format!("{ip:?} is not an address or host name")));
        }
        if let Some(alg) = &self.key_algorithm {
            alg.parse::<KeyAlgorithm>().map_err(|e| field_err("key_algorithm", e.to_string()))?;
        }
        match &self.settings {
            None | Some(serde_json::Value::Object(_)) => Ok(()),
            Some(other) => Err(field_err("settings", format!("must be a JSON object, not {other}"))),
        }
    }
}

/// A bad row in an import file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("row {row}{}: {error}", name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default())]
pub struct RowError {
    /// 1-based row number (data rows, the CSV header not counted).
    pub row: usize,
    /// The row's system_name, when it had one.
    pub name: Option<String>,
    /// What is wrong.
    pub error: FieldError,
}

/// Validates every row; returns every bad row (or none). Duplicate names are bad rows too.
pub fn validate_all(rows: &[AssetInput], issuers: &[&str]) -> Vec<RowError> {
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let named = |error| RowError { row: i + 1, name: Some(row.system_name.clone()), error };
        if let Err(e) = row.validate(issuers) {
            errors.push(named(e));
        } else if !seen.insert(row.system_name.trim()) {
            errors.push(named(field_err("system_name", "appears more than once in the file")));
        }
    }
    errors
}

/// What an import did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImportSummary {
    /// Rows written (new or updated).
    pub written: usize,
}

fn active_model(row: &AssetInput, now: DateTime<Utc>) -> asset::ActiveModel {
    asset::ActiveModel {
        system_name: Set(row.system_name.trim().to_owned()),
        common_name: Set(row.common_name.clone()),
        subject_alternative_name: Set(serde_json::json!(row.subject_alternative_name)),
        certificate_authority: Set(row.certificate_authority.clone()),
        certificate_expiration: Set(row.certificate_expiration),
        data_center: Set(row.data_center.clone()),
        device_model: Set(row.device_model.clone()),
        host_platform: Set(row.host_platform.clone()),
        ip_address: Set(row.ip_address.clone()),
        port: Set(row.port.and_then(|p| i32::try_from(p).ok())),
        origin: Set(row.origin.clone()),
        os_version: Set(row.os_version.clone()),
        certificate_validation: Set(row.certificate_validation),
        key_algorithm: Set(row.key_algorithm.clone().unwrap_or_else(|| KeyAlgorithm::default().as_str().to_owned())),
        settings: Set(row.settings.clone().unwrap_or_else(|| serde_json::json!({}))),
        state: Set(AssetState::Due),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Columns an import may overwrite on an existing asset; rotation state is kept.
const IMPORTED_COLUMNS: &[asset::Column] = &[
    asset::Column::CommonName,
    asset::Column::SubjectAlternativeName,
    asset::Column::CertificateAuthority,
    asset::Column::CertificateExpiration,
    asset::Column::DataCenter,
    asset::Column::DeviceModel,
    asset::Column::HostPlatform,
    asset::Column::IpAddress,
    asset::Column::Port,
    asset::Column::Origin,
    asset::Column::OsVersion,
    asset::Column::CertificateValidation,
    asset::Column::KeyAlgorithm,
    asset::Column::Settings,
    asset::Column::UpdatedAt,
];

/// Validates and writes `rows` in one transaction: all rows or none. Existing assets
/// (same `system_name`) get their inventory fields updated; unroutable ones become due again.
pub async fn import(
    db: &DatabaseConnection,
    rows: &[AssetInput],
    issuers: &[&str],
) -> Result<ImportSummary, ImportError> {
    let errors = validate_all(rows, issuers);
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }
    let now = Utc::now();
    let txn = db.begin().await.map_err(DbError::from)?;
    for chunk in rows.chunks(500) {
        asset::Entity::insert_many(chunk.iter().map(|r| active_model(r, now)))
            .on_conflict(
                OnConflict::column(asset::Column::SystemName)
                    .update_columns(IMPORTED_COLUMNS.iter().copied())
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await
            .map_err(DbError::from)?;
    }
    let names: Vec<String> = rows.iter().map(|r| r.system_name.trim().to_owned()).collect();
    for chunk in names.chunks(500) {
        reset_unroutable(&txn, chunk, now).await?;
    }
    txn.commit().await.map_err(DbError::from)?;
    Ok(ImportSummary { written: rows.len() })
}

async fn reset_unroutable(db: &impl ConnectionTrait, names: &[String], now: DateTime<Utc>) -> Result<(), DbError> {
    asset::Entity::update_many()
        .col_expr(asset::Column::State, AssetState::Due.as_str().into())
        .col_expr(asset::Column::LastError, sea_orm::sea_query::Expr::value(Option::<String>::None))
        .col_expr(asset::Column::UpdatedAt, now.into())
        .filter(asset::Column::SystemName.is_in(names.iter().cloned()))
        .filter(asset::Column::State.eq(AssetState::Unroutable))
        .exec(db)
        .await?;
    Ok(())
}

/// An import that wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some rows are invalid; every bad row is listed.
    #[error("{} invalid row(s), nothing imported:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Rows(Vec<RowError>),
    /// The database failed; the transaction was rolled back.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// All assets ordered by name (for the CLI; the scheduler pages instead).
pub async fn list(db: &DatabaseConnection) -> Result<Vec<asset::Model>, DbError> {
    Ok(asset::Entity::find().order_by_asc(asset::Column::SystemName).all(db).await?)
}

/// One asset by name.
pub async fn by_name(db: &impl ConnectionTrait, name: &str) -> Result<asset::Model, DbError> {
    asset::Entity::find()
        .filter(asset::Column::SystemName.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| DbError::NotFound(format!("asset {name:?}")))
}

/// The columns a scan decides on: a handful, so a scan of a large inventory decodes as
/// little as it can. Routing and job building use the full rows of the claimed assets.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanRow {
    /// Primary key.
    pub id: i64,
    /// Lifecycle state.
    pub state: AssetState,
    /// Lease or next-try time.
    pub lease_until: Option<DateTime<Utc>>,
    /// Start of validity of the current certificate.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity of the current certificate.
    pub not_after: Option<DateTime<Utc>>,
    /// Imported expiry.
    pub certificate_expiration: Option<DateTime<Utc>>,
    /// Issuer name.
    pub certificate_authority: String,
    /// ARI certificate id of the current certificate (seeds its renewal time in the window).
    pub ari_cert_id: Option<String>,
    /// The CA's suggested renewal window, start.
    pub renewal_window_start: Option<DateTime<Utc>>,
    /// The CA's suggested renewal window, end.
    pub renewal_window_end: Option<DateTime<Utc>>,
    /// SHA-256 fingerprint of the current certificate (the expiry watch's dedup key).
    pub fingerprint_sha256: Option<String>,
    /// The last expiry threshold announced for the current certificate.
    pub expiry_notice: Option<String>,
}

type ScanTuple = (
    i64,
    AssetState,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<String>,
);

/// A page of scan rows with `id > after`, in id order (keyset pagination). Columns are
/// read by position, not by name.
pub async fn scan_page(db: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<ScanRow>, DbError> {
    use asset::Column as C;
    use sea_orm::QuerySelect;
    let rows: Vec<ScanTuple> = asset::Entity::find()
        .select_only()
        .columns([
            C::Id,
            C::State,
            C::LeaseUntil,
            C::NotBefore,
            C::NotAfter,
            C::CertificateExpiration,
            C::CertificateAuthority,
            C::AriCertId,
            C::RenewalWindowStart,
            C::RenewalWindowEnd,
            C::FingerprintSha256,
            C::ExpiryNotice,
        ])
        .filter(C::Id.gt(after))
        .order_by_asc(C::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                id,
                state,
                lease_until,
                not_before,
                not_after,
                certificate_expiration,
                certificate_authority,
                ari_cert_id,
                renewal_window_start,
                renewal_window_end,
                fingerprint_sha256,
                expiry_notice,
            )| ScanRow {
                id,
                state,
                lease_until,
                not_before,
                not_after,
                certificate_expiration,
                certificate_authority,
                ari_cert_id,
                renewal_window_start,
                renewal_window_end,
                fingerprint_sha256,
                expiry_notice,
            },
        )
        .collect())
}

/// A page of assets with `id > after`, in id order (keyset pagination).
pub async fn page(db: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<asset::Model>, DbError> {
    use sea_orm::QuerySelect;
    Ok(asset::Entity::find()
        .filter(asset::Column::Id.gt(after))
        .order_by_asc(asset::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// Assets by id (for the few rows a scan found something to announce about).
pub async fn by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> Result<Vec<asset::Model>, DbError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(asset::Entity::find().filter(asset::Column::Id.is_in(ids.iter().copied())).all(db).await?)
}

/// Records `notice` as the last expiry threshold announced for asset `id`, if its notice
/// is still `previous` (compare-and-set). Returns false when another scheduler (or an
/// earlier scan) recorded something else first: then it is not announced again.
pub async fn mark_expiry_notice(
    db: &impl ConnectionTrait,
    id: i64,
    previous: Option<&str>,
    notice: Option<&str>,
) -> Result<bool, DbError> {
    use sea_orm::sea_query::Expr;
    let mut q = asset::Entity::update_many()
        .col_expr(asset::Column::ExpiryNotice, Expr::value(notice.map(str::to_owned)))
        .filter(asset::Column::Id.eq(id));
    q = match previous {
        Some(p) => q.filter(asset::Column::ExpiryNotice.eq(p)),
        None => q.filter(asset::Column::ExpiryNotice.is_null()),
    };
    Ok(q.exec(db).await?.rows_affected == 1)
}
