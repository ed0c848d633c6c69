//! Inventory rows: validated import (all or nothing), listing and lookups.

use super::DbError;
use super::entity::asset::{self, AssetState};
use certfleet_proto::KeyAlgorithm;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;

/// One asset as operators write it (Ottr's field names). Unknown fields are rejected.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
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

/// Checks a row against the routing table (implemented by the scheduler's `Routes`).
pub trait RouteCheck: Send + Sync {
    /// `Err` with the field and rule when no route takes the row.
    fn check(&self, row: &AssetInput) -> Result<(), FieldError>;
}

/// What rows are validated against besides their own rules: the configured issuers and,
/// where the caller has it, the routing table.
#[derive(Clone, Copy)]
pub struct Known<'a> {
    /// Issuer names the config knows.
    pub issuers: &'a [&'a str],
    /// The routing table, when loaded.
    pub routes: Option<&'a dyn RouteCheck>,
}

impl<'a> Known<'a> {
    /// Also check every row against `routes`.
    pub fn with_routes(self, routes: &'a dyn RouteCheck) -> Self {
        Self { routes: Some(routes), ..self }
    }
}

impl<'a> From<&'a [&'a str]> for Known<'a> {
    fn from(issuers: &'a [&'a str]) -> Self {
        Self { issuers, routes: None }
    }
}

impl<'a, const N: usize> From<&'a [&'a str; N]> for Known<'a> {
    fn from(issuers: &'a [&'a str; N]) -> Self {
        Self { issuers, routes: None }
    }
}

impl<'a> From<&'a Vec<&'a str>> for Known<'a> {
    fn from(issuers: &'a Vec<&'a str>) -> Self {
        Self { issuers, routes: None }
    }
}

pub(crate) fn field_err(field: &'static str, reason: impl Into<String>) -> FieldError {
    FieldError { field, reason: reason.into() }
}

/// Checks that `name` is an FQDN (at least two labels of letters, digits and inner hyphens,
/// a non-numeric top label), optionally with `*` as its whole left-most label, or an IPv4 or
/// IPv6 address.
fn check_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.contains('*') {
        return Err(field_err(
            field,
            format!("\"{name}\": a wildcard may only be the whole left-most label (*.example.com)"),
        ));
    }
    let labels: Vec<&str> = body.strip_suffix('.').unwrap_or(body).split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    let ok = body.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(label_ok)
        && labels.last().is_some_and(|tld| !tld.chars().all(|c| c.is_ascii_digit()));
    if ok {
        Ok(())
    } else {
        Err(field_err(field, format!("\"{name}\" is not a fully qualified domain name or an IP address")))
    }
}

impl AssetInput {
    /// The SANs to request: as given, or `[common_name]` when none are given.
    pub fn sans(&self) -> Vec<String> {
        if self.subject_alternative_name.is_empty() {
            vec![self.common_name.clone()]
        } else {
            self.subject_alternative_name.clone()
        }
    }

    /// Validates the row against its own rules and what `known` holds (the configured
    /// issuers and, when given, the routing table).
    pub fn validate<'a>(&self, known: impl Into<Known<'a>>) -> Result<(), FieldError> {
        let known = known.into();
        let issuers = known.issuers;
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
            && ip.parse::<IpAddr>().is_err()
        {
            return Err(field_err("ip_address", format!("\"{ip}\" is not an IPv4 or IPv6 address")));
        }
        if let Some(alg) = &self.key_algorithm {
            alg.parse::<KeyAlgorithm>().map_err(|e| field_err("key_algorithm", e.to_string()))?;
        }
        if let Some(other) = self.settings.as_ref().filter(|v| !v.is_object()) {
            return Err(field_err("settings", format!("must be a JSON object, not {other}")));
        }
        known.routes.map_or(Ok(()), |routes| routes.check(self))
    }
}

/// Where a row came from: the wording of a missing or unknown field differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowSource {
    /// A JSON object (an import file's array item, or an API body).
    Json,
    /// A CSV line turned into an object (columns are fields).
    Csv,
}

/// The example given with a bad date.
const RFC3339_EXAMPLE: &str = "RFC 3339, for example 2027-01-31T00:00:00Z";

impl AssetInput {
    /// Parses one row object (row `index`, 0-based), naming the field on error: the one
    /// parser of the CLI's import files and the API's bodies.
    pub fn from_json(index: usize, value: serde_json::Value) -> Result<Self, RowError> {
        Self::from_row(index, value, RowSource::Json)
    }

    /// Like [`AssetInput::from_json`], worded for `source` (a CSV names columns).
    pub fn from_row(index: usize, value: serde_json::Value, source: RowSource) -> Result<Self, RowError> {
        let name = value.get("system_name").and_then(serde_json::Value::as_str).map(str::to_owned);
        let original = value.clone();
        serde_path_to_error::deserialize::<_, AssetInput>(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            let (field, reason) = if let Some(rest) = inner.strip_prefix("unknown field ") {
                let what = if source == RowSource::Csv { "unknown column" } else { "unknown field" };
                ("(unknown)", format!("{what} {rest}"))
            } else if let Some(missing) = inner.strip_prefix("missing field ") {
                let column = static_field(missing.trim_matches('`')).unwrap_or("(row)");
                let reason = match source {
                    RowSource::Csv => "required, but the column is missing or the cell is empty",
                    RowSource::Json => "required, but missing",
                };
                (column, reason.to_owned())
            } else {
                let field = static_field(&path).unwrap_or("(row)");
                match original.get(field) {
                    Some(serde_json::Value::String(bad)) if field == "certificate_expiration" => {
                        (field, format!("\"{bad}\" is not a date and time in {RFC3339_EXAMPLE} ({inner})"))
                    }
                    _ => (field, inner),
                }
            };
            RowError { row: index + 1, name, error: FieldError { field, reason } }
        })
    }
}

/// Field names are a closed set; map a path (or a CSV column) back to its static name.
pub fn static_field(path: &str) -> Option<&'static str> {
    const FIELDS: &[&str] = &[
        "system_name",
        "common_name",
        "subject_alternative_name",
        "certificate_authority",
        "certificate_expiration",
        "data_center",
        "device_model",
        "host_platform",
        "ip_address",
        "port",
        "origin",
        "os_version",
        "certificate_validation",
        "key_algorithm",
        "settings",
    ];
    let head = path.split(['.', '[']).next().unwrap_or("");
    FIELDS.iter().copied().find(|f| *f == head)
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
pub fn validate_all<'a>(rows: &[AssetInput], known: impl Into<Known<'a>>) -> Vec<RowError> {
    let known = known.into();
    let mut seen = HashSet::new();
    let mut errors = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let named = |error| RowError { row: i + 1, name: Some(row.system_name.clone()), error };
        if let Err(e) = row.validate(known) {
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

pub(crate) fn active_model(row: &AssetInput, now: DateTime<Utc>) -> asset::ActiveModel {
    asset::ActiveModel {
        system_name: Set(row.system_name.trim().to_owned()),
        common_name: Set(row.common_name.clone()),
        subject_alternative_name: Set(serde_json::json!(row.sans())),
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
        // Imported or updated: the scheduler asks the policy at its next scan.
        next_due_at: Set(Some(now)),
        updated_at: Set(now),
        ..Default::default()
    }
}

/// Validates and writes `rows` in one transaction: all rows or none. Existing assets
/// (same `system_name`) get their inventory fields updated; unroutable ones become due again.
/// A file too large to hold is streamed through [`super::bulk::Importer`] instead.
pub async fn import(
    db: &DatabaseConnection,
    rows: &[AssetInput],
    known: impl Into<Known<'_>>,
) -> Result<ImportSummary, ImportError> {
    let mut importer = super::bulk::Importer::begin(db, known).await?;
    for row in rows {
        importer.push(Ok(row.clone())).await?;
    }
    importer.finish().await
}

/// Like [`import`], but every `system_name` must be new: [`ImportError::Exists`] names the
/// ones that are taken, and nothing is written (the API's `POST /api/v1/assets`).
pub async fn create(
    db: &DatabaseConnection,
    rows: &[AssetInput],
    known: impl Into<Known<'_>>,
) -> Result<ImportSummary, ImportError> {
    let errors = validate_all(rows, known);
    if !errors.is_empty() {
        return Err(ImportError::Rows(errors));
    }
    let now = Utc::now();
    let txn = db.begin().await.map_err(DbError::from)?;
    let names: Vec<String> = rows.iter().map(|r| r.system_name.trim().to_owned()).collect();
    let mut taken = Vec::new();
    for chunk in names.chunks(500) {
        use sea_orm::QuerySelect;
        let found: Vec<String> = asset::Entity::find()
            .select_only()
            .column(asset::Column::SystemName)
            .filter(asset::Column::SystemName.is_in(chunk.iter().cloned()))
            .into_tuple()
            .all(&txn)
            .await
            .map_err(DbError::from)?;
        taken.extend(found);
    }
    if !taken.is_empty() {
        taken.sort();
        return Err(ImportError::Exists(taken));
    }
    for chunk in rows.chunks(super::bulk::ROWS_PER_INSERT) {
        asset::Entity::insert_many(chunk.iter().map(|r| active_model(r, now)))
            .exec_without_returning(&txn)
            .await
            .map_err(|e| match e.sql_err() {
                // A concurrent create of the same name won the race.
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => ImportError::Exists(Vec::new()),
                _ => ImportError::Db(e.into()),
            })?;
    }
    txn.commit().await.map_err(DbError::from)?;
    Ok(ImportSummary { written: rows.len() })
}

/// An import that wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Some rows are invalid; every bad row is listed.
    #[error("{} invalid row(s), nothing imported:\n  {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Rows(Vec<RowError>),
    /// Some `system_name`s exist already (create only); nothing was written.
    #[error("asset(s) already exist: {}", .0.join(", "))]
    Exists(Vec<String>),
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
