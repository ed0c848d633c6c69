//! Changing one asset in place: a partial update (only the fields given are written, so
//! two concurrent updates of different fields both survive), deletion, and the
//! certificate-validation switch.

use super::DbError;
use super::assets::{AssetInput, FieldError, Known, by_name};
use super::entity::asset;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, SimpleExpr};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use serde::{Deserialize, Deserializer, Serialize};

/// Reads a present field (even `null`) as `Some(..)`, so "absent" and "set to null" differ.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A partial update of one asset: `system_name` picks it, every other field is optional
/// and only the fields given change (`null` clears an optional field).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AssetPatch {
    /// The asset to change.
    pub system_name: String,
    /// Subject CN.
    #[serde(default)]
    pub common_name: Option<String>,
    /// SANs.
    #[serde(default)]
    pub subject_alternative_name: Option<Vec<String>>,
    /// Issuer name from config.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    /// Known expiry, RFC 3339.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<DateTime<Utc>>))]
    pub certificate_expiration: Option<Option<DateTime<Utc>>>,
    /// Location.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub data_center: Option<Option<String>>,
    /// Device model.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub device_model: Option<Option<String>>,
    /// Platform.
    #[serde(default)]
    pub host_platform: Option<String>,
    /// TLS service address (IPv4 or IPv6).
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub ip_address: Option<Option<String>>,
    /// TLS service port.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<i64>))]
    pub port: Option<Option<i64>>,
    /// Where the row came from.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub origin: Option<Option<String>>,
    /// OS version.
    #[serde(default, deserialize_with = "present")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub os_version: Option<Option<String>>,
    /// Trust the current certificate on connect.
    #[serde(default)]
    pub certificate_validation: Option<bool>,
    /// Device key algorithm.
    #[serde(default)]
    pub key_algorithm: Option<String>,
    /// Driver-specific settings object (replaced whole).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub settings: Option<serde_json::Value>,
}

impl AssetInput {
    /// The input fields of a stored asset.
    pub fn from_model(a: &asset::Model) -> Self {
        Self {
            system_name: a.system_name.clone(),
            common_name: a.common_name.clone(),
            subject_alternative_name: serde_json::from_value(a.subject_alternative_name.clone()).unwrap_or_default(),
            certificate_authority: a.certificate_authority.clone(),
            certificate_expiration: a.certificate_expiration,
            data_center: a.data_center.clone(),
            device_model: a.device_model.clone(),
            host_platform: a.host_platform.clone(),
            ip_address: a.ip_address.clone(),
            port: a.port.map(i64::from),
            origin: a.origin.clone(),
            os_version: a.os_version.clone(),
            certificate_validation: a.certificate_validation,
            key_algorithm: Some(a.key_algorithm.clone()),
            settings: Some(a.settings.clone()),
        }
    }
}

/// Why an update wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The merged asset is invalid.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The patch changes nothing.
    #[error("the update names no field to change")]
    Empty,
    /// The database failed, or the asset does not exist.
    #[error(transparent)]
    Db(#[from] DbError),
}

type Change = (asset::Column, SimpleExpr);

/// The patched columns, and the merged input to validate.
fn changes(patch: &AssetPatch, merged: &mut AssetInput) -> Vec<Change> {
    use asset::Column as C;
    let mut out: Vec<Change> = Vec::new();
    if let Some(v) = &patch.common_name {
        merged.common_name.clone_from(v);
        out.push((C::CommonName, Expr::value(v.clone())));
    }
    if let Some(v) = &patch.subject_alternative_name {
        merged.subject_alternative_name.clone_from(v);
    }
    if patch.subject_alternative_name.is_some() || patch.common_name.is_some() {
        out.push((C::SubjectAlternativeName, Expr::value(serde_json::json!(merged.sans()))));
    }
    if let Some(v) = &patch.certificate_authority {
        merged.certificate_authority.clone_from(v);
        out.push((C::CertificateAuthority, Expr::value(v.clone())));
    }
    if let Some(v) = patch.certificate_expiration {
        merged.certificate_expiration = v;
        out.push((C::CertificateExpiration, Expr::value(v)));
    }
    let optional = [
        (C::DataCenter, &patch.data_center, &mut merged.data_center),
        (C::DeviceModel, &patch.device_model, &mut merged.device_model),
        (C::IpAddress, &patch.ip_address, &mut merged.ip_address),
        (C::Origin, &patch.origin, &mut merged.origin),
        (C::OsVersion, &patch.os_version, &mut merged.os_version),
    ];
    for (col, given, field) in optional {
        if let Some(v) = given {
            field.clone_from(v);
            out.push((col, Expr::value(v.clone())));
        }
    }
    if let Some(v) = &patch.host_platform {
        merged.host_platform.clone_from(v);
        out.push((C::HostPlatform, Expr::value(v.clone())));
    }
    if let Some(v) = patch.port {
        merged.port = v;
        out.push((C::Port, Expr::value(v.and_then(|p| i32::try_from(p).ok()))));
    }
    if let Some(v) = patch.certificate_validation {
        merged.certificate_validation = v;
        out.push((C::CertificateValidation, Expr::value(v)));
    }
    if let Some(v) = &patch.key_algorithm {
        merged.key_algorithm = Some(v.clone());
        out.push((C::KeyAlgorithm, Expr::value(v.clone())));
    }
    if let Some(v) = &patch.settings {
        merged.settings = Some(v.clone());
        out.push((C::Settings, Expr::value(v.clone())));
    }
    out
}

/// Applies `patch`: the asset with the patch applied must validate, and only the patched
/// columns are written, in one `UPDATE`. Returns the asset as stored afterwards.
pub async fn update(
    db: &DatabaseConnection,
    patch: &AssetPatch,
    known: Known<'_>,
) -> Result<asset::Model, UpdateError> {
    let txn = db.begin().await.map_err(DbError::from)?;
    // Write first: the transaction takes the row lock (PostgreSQL) or the write lock
    // (SQLite, where a read lock upgraded later would fail with SQLITE_BUSY at once), so
    // concurrent updates of one asset run one after the other.
    let touched = asset::Entity::update_many()
        .col_expr(asset::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(asset::Column::SystemName.eq(patch.system_name.trim()))
        .exec(&txn)
        .await
        .map_err(DbError::from)?;
    if touched.rows_affected == 0 {
        return Err(DbError::NotFound(format!("asset \"{}\"", patch.system_name.trim())).into());
    }
    let current = by_name(&txn, patch.system_name.trim()).await?;
    let mut merged = AssetInput::from_model(&current);
    let cols = changes(patch, &mut merged);
    if cols.is_empty() {
        return Err(UpdateError::Empty);
    }
    merged.validate(known)?;
    let mut q = asset::Entity::update_many();
    for (col, value) in cols {
        q = q.col_expr(col, value);
    }
    // The edit may change the policy's inputs (expiry, issuer): decide at the next scan.
    q.col_expr(asset::Column::NextDueAt, Expr::value(Utc::now()))
        .col_expr(asset::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(asset::Column::Id.eq(current.id))
        .exec(&txn)
        .await
        .map_err(DbError::from)?;
    let after = by_name(&txn, &current.system_name).await?;
    txn.commit().await.map_err(DbError::from)?;
    Ok(after)
}

/// Deletes one asset (its history rows stay, for the record).
pub async fn delete(db: &DatabaseConnection, system_name: &str) -> Result<asset::Model, DbError> {
    let row = by_name(db, system_name).await?;
    asset::Entity::delete_by_id(row.id).exec(db).await?;
    Ok(row)
}

/// Sets `certificate_validation` of one asset.
pub async fn set_validation(db: &DatabaseConnection, system_name: &str, on: bool) -> Result<asset::Model, DbError> {
    let done = asset::Entity::update_many()
        .col_expr(asset::Column::CertificateValidation, Expr::value(on))
        .col_expr(asset::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(asset::Column::SystemName.eq(system_name))
        .exec(db)
        .await?;
    if done.rows_affected == 0 {
        return Err(DbError::NotFound(format!("asset \"{system_name}\"")));
    }
    by_name(db, system_name).await
}
