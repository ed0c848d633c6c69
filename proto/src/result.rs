//! The rotation result a worker sends back on the reply queue.

use crate::{AssetId, Driver, JobId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a worker reports once a job has reached an end on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationResult {
    /// The job this answers (the request's `correlation_id` too).
    pub job_id: JobId,
    /// The attempt that produced this result.
    pub attempt: u32,
    /// The inventory row.
    pub asset_id: AssetId,
    /// The asset's unique name.
    pub system_name: String,
    /// The driver that ran the job.
    pub driver: Driver,
    /// How it ended.
    pub outcome: RotationOutcome,
    /// Name of the worker that ran it (host and pid).
    pub worker: String,
    /// When the job started on the worker.
    pub started_at: DateTime<Utc>,
    /// When the worker finished.
    pub finished_at: DateTime<Utc>,
    /// The device's SSH host key (`ssh-ed25519 AAAA...`) when the asset pinned none and the
    /// worker trusted it on first use. The scheduler stores it as the asset's pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_host_key: Option<String>,
}

/// How a rotation ended on the device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum RotationOutcome {
    /// The new certificate is installed and was validated.
    Rotated {
        /// What is now installed.
        certificate: CertificateInfo,
    },
    /// A failure after install; the previous certificate and key were restored.
    RolledBack {
        /// Why the rotation was undone (never contains secrets).
        cause: String,
    },
}

impl RotationOutcome {
    /// The outcome's name, as in the wire format's `status` (`rotated`, `rolled_back`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Rotated { .. } => "rotated",
            Self::RolledBack { .. } => "rolled_back",
        }
    }
}

/// Facts about an installed certificate, as read back from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateInfo {
    /// Serial number, lower-case hex.
    pub serial: String,
    /// SHA-256 of the DER certificate, lower-case hex.
    pub sha256_fingerprint: String,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// Issuer distinguished name, RFC 4514 style.
    pub issuer: String,
    /// The ACME Renewal Information certificate identifier (RFC 9773 section 4.1:
    /// base64url(AKI keyIdentifier) "." base64url(serial)), when the issuer is an ACME CA.
    /// The next order for this asset names it in `replaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ari_cert_id: Option<String>,
    /// The renewal window the CA suggested (RFC 9773 section 4.2), when it offers ARI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renewal_window: Option<RenewalWindow>,
}

/// A CA's suggested renewal window (RFC 9773 `suggestedWindow`): renew at some instant in
/// `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalWindow {
    /// Earliest suggested renewal time.
    pub start: DateTime<Utc>,
    /// End of the window: renew before this.
    pub end: DateTime<Utc>,
    /// A page the CA offers to explain the window (for example a revocation notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation_url: Option<String>,
}

/// Why a job failed, as recorded in the history and dead-letter headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// The message could not be decoded.
    Malformed,
    /// Settings or asset fields are invalid.
    InvalidInput,
    /// No driver or issuer by that name on this worker.
    Unsupported,
    /// The device or CA refused the credentials.
    Auth,
    /// A fault that may pass (timeout, refused connection, rate limit).
    Transient,
    /// Retries were exhausted.
    RetriesExhausted,
    /// The broker's delivery limit was reached (the job kept crashing its workers).
    DeliveryLimit,
    /// The CA refused the request for good.
    Rejected,
    /// A check made before asking the CA failed (a missing CNAME delegation): the CA was
    /// never asked; fix the setup, then retry.
    Preflight,
    /// A failure after install that was rolled back.
    RolledBack,
    /// Anything else.
    Internal,
}

impl ErrorClass {
    /// The snake_case spelling used in headers and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::InvalidInput => "invalid_input",
            Self::Unsupported => "unsupported",
            Self::Auth => "auth",
            Self::Transient => "transient",
            Self::RetriesExhausted => "retries_exhausted",
            Self::DeliveryLimit => "delivery_limit",
            Self::Rejected => "rejected",
            Self::Preflight => "preflight",
            Self::RolledBack => "rolled_back",
            Self::Internal => "internal",
        }
    }

    /// Parses the snake_case spelling; unknown text maps to [`ErrorClass::Internal`].
    pub fn parse_lossy(s: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).unwrap_or(Self::Internal)
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a dead letter was: a rotation job, or a notification that could not be delivered
/// (it names a channel, not an asset to rotate again). Spelled in the `x-certfleet-kind`
/// header, the `dead_letters.kind` column (NULL for a rotation: rows from before
/// notifications existed have none) and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadKind {
    /// A rotation job.
    #[default]
    Rotation,
    /// A notification for one channel.
    Notification,
}

impl DeadKind {
    /// The snake_case spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotation => "rotation",
            Self::Notification => "notification",
        }
    }

    /// Reads the header or column: `notification`, or anything else (absent) a rotation.
    pub fn from_stored(v: Option<&str>) -> Self {
        match v {
            Some("notification") => Self::Notification,
            _ => Self::Rotation,
        }
    }

    /// The column value: NULL for a rotation.
    pub fn to_stored(self) -> Option<String> {
        match self {
            Self::Rotation => None,
            Self::Notification => Some(self.as_str().to_owned()),
        }
    }
}

impl std::fmt::Display for DeadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod dead_kind_tests {
    use super::DeadKind;

    #[test]
    fn stored_spelling_round_trips() {
        for k in [DeadKind::Rotation, DeadKind::Notification] {
            assert_eq!(DeadKind::from_stored(k.to_stored().as_deref()), k);
        }
        assert_eq!(DeadKind::from_stored(None), DeadKind::Rotation);
        assert_eq!(DeadKind::from_stored(Some("notification")), DeadKind::Notification);
        assert_eq!(serde_json::to_string(&DeadKind::Notification).unwrap(), "\"notification\"");
    }
}
