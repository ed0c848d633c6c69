//! The rotation job: what the scheduler asks a worker to do for one asset.

use crate::{AssetId, Driver, JobId, KeyAlgorithm};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Rotate the certificate of one asset, end to end.
///
/// Built from an inventory row in exactly one place (`certfleet_shared::db::job_from_asset`).
/// It never carries secrets: `settings` is the asset's driver settings, which hold paths and
/// names, never keys or passwords.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationJob {
    /// Idempotency key; stays the same across redeliveries, retries and dead-letter retries.
    pub job_id: JobId,
    /// 1 for the first try; incremented by each delayed retry; reset by a dead-letter retry.
    pub attempt: u32,
    /// The inventory row this job is for.
    pub asset_id: AssetId,
    /// The asset's unique name.
    pub system_name: String,
    /// The driver that must run the job (also the routing key).
    pub driver: Driver,
    /// The issuer's name in the workers' config.
    pub issuer: String,
    /// Subject common name of the new certificate.
    pub common_name: String,
    /// Subject alternative names (DNS names or IP addresses).
    pub subject_alternative_names: Vec<String>,
    /// Address of the device's TLS service, for validation.
    pub ip_address: Option<String>,
    /// Port of the device's TLS service, for validation.
    pub port: Option<u16>,
    /// Algorithm of the key the device generates.
    pub key_algorithm: KeyAlgorithm,
    /// Whether the device's current certificate is trusted when connecting to its management API.
    pub certificate_validation: bool,
    /// Driver-specific settings (paths, commands, profile names). Never secrets.
    pub settings: serde_json::Value,
    /// Do not start before this instant (set on delayed retries that outlast a retry tier).
    pub not_before: Option<DateTime<Utc>>,
    /// When the scheduler (or an operator retry) published this job.
    pub published_at: DateTime<Utc>,
    /// The ARI certificate identifier (RFC 9773 section 4.1) of the certificate this job
    /// replaces; an ACME issuer passes it as the new order's `replaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}
