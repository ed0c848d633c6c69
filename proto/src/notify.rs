//! Notifications: an event about an asset (a dead rotation, an expiring certificate, ...)
//! addressed to one notification channel, as it travels on `certfleet.notify`.

use crate::driver::closed_enum;
use crate::{AssetId, ErrorClass, JobId, UnknownVariant};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

closed_enum!(
    /// What happened. A new kind of event (for example unmanaged certificates found by
    /// discovery) is one more variant here plus its [`EventKind::severity`].
    EventKind, "event", {
        /// A rotation job was dead-lettered.
        RotationDead => "rotation_dead",
        /// A device rejected the new certificate and the previous one was restored.
        RotationRolledBack => "rotation_rolled_back",
        /// No route leads from the asset to a driver.
        AssetUnroutable => "asset_unroutable",
        /// The certificate's not_after crossed an expiry threshold.
        CertificateExpiring => "certificate_expiring",
        /// The certificate is past its not_after and still in the inventory.
        CertificateExpired => "certificate_expired",
        /// A rotation succeeded (opt-in; it also resolves PagerDuty incidents).
        RotationSucceeded => "rotation_succeeded",
    }
);

closed_enum!(
    /// How urgent an event is; rules can ask for a minimum severity.
    Severity, "severity", {
        /// For the record.
        Info => "info",
        /// Needs a look soon.
        Warning => "warning",
        /// Something failed.
        Error => "error",
        /// Service is at risk now.
        Critical => "critical",
    }
);

/// The expiry threshold under which `certificate_expiring` becomes critical (and pages).
pub const CRITICAL_EXPIRY_SECONDS: u64 = 2 * 86_400;

impl EventKind {
    /// The kinds that are delivered without a rule naming them explicitly.
    pub fn on_by_default(self) -> bool {
        !matches!(self, Self::RotationSucceeded)
    }

    /// The severity of this kind; `threshold_seconds` refines `certificate_expiring`.
    pub fn severity(self, threshold_seconds: Option<u64>) -> Severity {
        match self {
            Self::RotationDead | Self::CertificateExpired => Severity::Critical,
            Self::RotationRolledBack => Severity::Error,
            Self::AssetUnroutable => Severity::Warning,
            Self::CertificateExpiring => match threshold_seconds {
                Some(t) if t <= CRITICAL_EXPIRY_SECONDS => Severity::Critical,
                _ => Severity::Warning,
            },
            Self::RotationSucceeded => Severity::Info,
        }
    }
}

/// Identifies one notification (one event for one channel); receivers can use it to
/// drop a redelivery. Retries and dead-letter retries keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NotificationId(pub Uuid);

impl NotificationId {
    /// A fresh random id.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for NotificationId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for NotificationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The asset fields a person needs to act (Ottr's fields). Never secrets or settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSummary {
    /// The inventory row.
    pub asset_id: AssetId,
    /// The asset's unique name.
    pub system_name: String,
    /// Subject CN.
    pub common_name: String,
    /// Management or service address.
    pub ip_address: Option<String>,
    /// Platform (routes map it to a driver).
    pub host_platform: String,
    /// OS version.
    pub os_version: Option<String>,
    /// Data center.
    pub data_center: Option<String>,
    /// Device model.
    pub device_model: Option<String>,
    /// Issuer name from config.
    pub certificate_authority: String,
    /// End of validity of the current certificate, when known.
    pub certificate_expiration: Option<DateTime<Utc>>,
}

/// One reason and how many events gave it, in a digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonCount {
    /// The reason text.
    pub reason: String,
    /// Events with it.
    pub count: u64,
}

/// Many events of one kind for one channel, sent as one message (storm control).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// Events summarized.
    pub count: u64,
    /// Start of the window they arrived in.
    pub window_start: DateTime<Utc>,
    /// The most frequent reasons, most frequent first.
    pub top_reasons: Vec<ReasonCount>,
    /// The first assets, by arrival (at most 10).
    pub assets: Vec<String>,
}

/// An event addressed to one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    /// Idempotency key of this delivery.
    pub id: NotificationId,
    /// The channel's name in `[notify.channels]`.
    pub channel: String,
    /// 1 for the first try; incremented by each delayed retry.
    pub attempt: u32,
    /// What happened.
    pub event: EventKind,
    /// How urgent it is.
    pub severity: Severity,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The asset (absent for a digest and a test message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<AssetSummary>,
    /// The job, for rotation events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<JobId>,
    /// The error class, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    /// Why, in words, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Attempts made, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The expiry threshold crossed, for `certificate_expiring`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_seconds: Option<u64>,
    /// SHA-256 fingerprint of the certificate concerned, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Set when this message summarizes many events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Do not deliver before this instant (a Retry-After longer than the retry tiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<DateTime<Utc>>,
}

impl Notification {
    /// A first-attempt notification of `event` about `asset` for `channel`.
    pub fn new(channel: &str, event: EventKind, asset: Option<AssetSummary>, now: DateTime<Utc>) -> Self {
        Self {
            id: NotificationId::new(),
            channel: channel.to_owned(),
            attempt: 1,
            event,
            severity: event.severity(None),
            occurred_at: now,
            asset,
            job_id: None,
            error_class: None,
            reason: None,
            attempts: None,
            threshold_seconds: None,
            fingerprint: None,
            digest: None,
            not_before: None,
        }
    }

    /// The asset's name, or `-`.
    pub fn system_name(&self) -> &str {
        self.asset.as_ref().map_or("-", |a| a.system_name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_under_two_days_is_critical() {
        assert_eq!(EventKind::CertificateExpiring.severity(Some(30 * 86_400)), Severity::Warning);
        assert_eq!(EventKind::CertificateExpiring.severity(Some(2 * 86_400)), Severity::Critical);
        assert!(Severity::Critical > Severity::Warning);
        assert!(!EventKind::RotationSucceeded.on_by_default());
        assert_eq!("rotation_dead".parse::<EventKind>(), Ok(EventKind::RotationDead));
    }
}
