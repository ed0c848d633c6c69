//! The one conversion from an inventory row to a rotation job.

use super::entity::asset;
use certfleet_proto::{AssetId, Driver, JobId, KeyAlgorithm, RotationJob, UnknownVariant};
use chrono::{DateTime, Utc};

/// An asset row that cannot become a job (the row was edited outside `assets import`).
#[derive(Debug, thiserror::Error)]
pub enum JobBuildError {
    /// `subject_alternative_name` is not an array of strings.
    #[error("asset {0:?}: subject_alternative_name is not an array of strings")]
    Sans(String),
    /// `key_algorithm` is not a known algorithm.
    #[error("asset {0:?}: {1}")]
    KeyAlgorithm(String, UnknownVariant),
    /// `port` is outside 1..=65535.
    #[error("asset {0:?}: port {1} is not in 1..=65535")]
    Port(String, i32),
}

/// Builds the job for `asset`, routed to `driver`. This is the only place a database row
/// turns into a wire message: the row itself is never published.
pub fn job_from_asset(
    asset: &asset::Model,
    driver: Driver,
    job_id: JobId,
    attempt: u32,
    now: DateTime<Utc>,
) -> Result<RotationJob, JobBuildError> {
    let sans: Vec<String> = serde_json::from_value(asset.subject_alternative_name.clone())
        .map_err(|_| JobBuildError::Sans(asset.system_name.clone()))?;
    let key_algorithm: KeyAlgorithm =
        asset.key_algorithm.parse().map_err(|e| JobBuildError::KeyAlgorithm(asset.system_name.clone(), e))?;
    let port = asset
        .port
        .map(|p| u16::try_from(p).ok().filter(|p| *p > 0).ok_or(JobBuildError::Port(asset.system_name.clone(), p)))
        .transpose()?;
    Ok(RotationJob {
        job_id,
        attempt,
        asset_id: AssetId(asset.id),
        system_name: asset.system_name.clone(),
        driver,
        issuer: asset.certificate_authority.clone(),
        common_name: asset.common_name.clone(),
        subject_alternative_names: sans,
        ip_address: asset.ip_address.clone(),
        port,
        key_algorithm,
        certificate_validation: asset.certificate_validation,
        settings: asset.settings.clone(),
        not_before: None,
        published_at: now,
        replaces: asset.ari_cert_id.clone(),
    })
}
