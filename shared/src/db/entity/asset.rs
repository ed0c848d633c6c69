//! `assets`: the inventory, one row per device certificate, keyed by `system_name`.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Where an asset stands in its rotation cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum AssetState {
    /// The certificate is current.
    #[sea_orm(string_value = "ok")]
    Ok,
    /// Imported or found due, not yet published.
    #[sea_orm(string_value = "due")]
    Due,
    /// A job is out; the lease in `lease_until` holds the asset.
    #[sea_orm(string_value = "in_flight")]
    InFlight,
    /// The last rotation was rolled back; retried after `failed_retry_after`.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// The last job went to the dead letters; waits for an operator.
    #[sea_orm(string_value = "dead")]
    Dead,
    /// No route leads to a driver; waits for the routes or the asset to change.
    #[sea_orm(string_value = "unroutable")]
    Unroutable,
}

impl AssetState {
    /// The database and JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Due => "due",
            Self::InFlight => "in_flight",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Unroutable => "unroutable",
        }
    }
}

/// One asset row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "assets")]
pub struct Model {
    /// Primary key.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique operator-facing name.
    #[sea_orm(unique)]
    pub system_name: String,
    /// Subject CN of the certificate.
    pub common_name: String,
    /// JSON array of SANs.
    pub subject_alternative_name: Json,
    /// Issuer name from config.
    pub certificate_authority: String,
    /// Known expiry (null = unknown).
    pub certificate_expiration: Option<DateTimeUtc>,
    /// Free-form location.
    pub data_center: Option<String>,
    /// Device model, used by routing.
    pub device_model: Option<String>,
    /// Platform, used by routing.
    pub host_platform: String,
    /// Address of the TLS service.
    pub ip_address: Option<String>,
    /// Port of the TLS service.
    pub port: Option<i32>,
    /// Where the row came from.
    pub origin: Option<String>,
    /// OS version, used by routing.
    pub os_version: Option<String>,
    /// Whether the current certificate is trusted on connect.
    pub certificate_validation: bool,
    /// Key algorithm of the device key.
    pub key_algorithm: String,
    /// Driver-specific settings object.
    pub settings: Json,
    /// Lifecycle state.
    pub state: AssetState,
    /// Last rotation: start of validity.
    pub not_before: Option<DateTimeUtc>,
    /// Last rotation: end of validity.
    pub not_after: Option<DateTimeUtc>,
    /// Last rotation: serial (hex).
    pub serial: Option<String>,
    /// Last rotation: SHA-256 fingerprint (hex).
    pub fingerprint_sha256: Option<String>,
    /// Last rotation: issuer DN.
    pub issuer_dn: Option<String>,
    /// Last error, if the last job failed.
    pub last_error: Option<String>,
    /// Until when that job holds the asset.
    pub lease_until: Option<DateTimeUtc>,
    /// Last rotation: ACME Renewal Information certificate id (RFC 9773), sent as `replaces`.
    pub ari_cert_id: Option<String>,
    /// Last rotation: start of the CA's suggested renewal window (RFC 9773).
    pub renewal_window_start: Option<DateTimeUtc>,
    /// Last rotation: end of the CA's suggested renewal window.
    pub renewal_window_end: Option<DateTimeUtc>,
    /// When the scheduler must next ask the policy chain about this asset: never later than
    /// the instant it becomes due; null while it waits for an operator (dead, unroutable).
    /// Writers set it exactly where they can and to "now" where the answer needs config;
    /// the scan reads only rows with `next_due_at <= now` and stores the computed time.
    pub next_due_at: Option<DateTimeUtc>,
    /// Last change.
    pub updated_at: DateTimeUtc,
    /// The last expiry threshold announced for the current certificate,
    /// `<fingerprint or exp:unix>/<seconds>` (0 seconds: expired).
    pub expiry_notice: Option<String>,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
