//! The closed set of certfleet's metrics: every name, its kind, labels and help text in
//! one enum, so no metric name is a string scattered through the code, and
//! `docs/observability.md` is checked against it.

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down; set from a reading.
    Gauge,
    /// A distribution of durations, in seconds (`_seconds`).
    Histogram,
}

/// Every metric certfleet exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Assets per state, issuer and data center (scheduler, from the inventory).
    Assets,
    /// Certificates expiring within 2, 15 or 30 days, expired ones included (scheduler).
    CertificatesExpiring,
    /// Each asset's certificate expiry, as cert-manager exports it (scheduler; bounded by
    /// `metrics.per_asset_limit`).
    CertificateExpiration,
    /// Jobs finished by a worker, per driver, outcome and error class.
    Rotations,
    /// Time of each driver step (worker).
    RotationStepDuration,
    /// Jobs running now (worker).
    JobsInFlight,
    /// Jobs parked in a retry tier (worker).
    JobRetries,
    /// Dead letters waiting for an operator, per error class (scheduler, from the inventory).
    DeadLetters,
    /// ACME requests per action and HTTP status (worker).
    AcmeRequests,
    /// Time of ACME requests per action (worker).
    AcmeRequestDuration,
    /// Time from publishing a DNS-01 record until every authoritative server served it (worker).
    DnsPropagation,
    /// Time of one inventory scan (scheduler).
    ScanDuration,
    /// Assets found due by scans (scheduler).
    ScanDue,
    /// Time waiting for the broker's confirms of one batch of jobs (scheduler).
    PublishConfirm,
    /// Messages in each certfleet queue, ready or unacked (scheduler, from the broker).
    QueueMessages,
    /// Consumers of each certfleet queue (scheduler, from the broker).
    QueueConsumers,
    /// API requests per route template and status (API).
    ApiRequests,
    /// Time of API requests per route template (API).
    ApiRequestDuration,
    /// Notifications settled per channel and result (notifier, or the scheduler delivering them).
    Notifications,
    /// Always 1, labelled with the build's version (every process).
    BuildInfo,
}

impl Metric {
    /// Every metric, in documentation order.
    pub const ALL: &'static [Metric] = &[
        Metric::Assets,
        Metric::CertificatesExpiring,
        Metric::CertificateExpiration,
        Metric::Rotations,
        Metric::RotationStepDuration,
        Metric::JobsInFlight,
        Metric::JobRetries,
        Metric::DeadLetters,
        Metric::AcmeRequests,
        Metric::AcmeRequestDuration,
        Metric::DnsPropagation,
        Metric::ScanDuration,
        Metric::ScanDue,
        Metric::PublishConfirm,
        Metric::QueueMessages,
        Metric::QueueConsumers,
        Metric::ApiRequests,
        Metric::ApiRequestDuration,
        Metric::Notifications,
        Metric::BuildInfo,
    ];

    /// The exported name.
    pub const fn name(self) -> &'static str {
        match self {
            Metric::Assets => "certfleet_assets",
            Metric::CertificatesExpiring => "certfleet_certificates_expiring",
            Metric::CertificateExpiration => "certfleet_certificate_expiration_timestamp_seconds",
            Metric::Rotations => "certfleet_rotations_total",
            Metric::RotationStepDuration => "certfleet_rotation_step_duration_seconds",
            Metric::JobsInFlight => "certfleet_jobs_in_flight",
            Metric::JobRetries => "certfleet_job_retries_total",
            Metric::DeadLetters => "certfleet_dead_letters",
            Metric::AcmeRequests => "certfleet_acme_requests_total",
            Metric::AcmeRequestDuration => "certfleet_acme_request_duration_seconds",
            Metric::DnsPropagation => "certfleet_dns_propagation_seconds",
            Metric::ScanDuration => "certfleet_scan_duration_seconds",
            Metric::ScanDue => "certfleet_scan_due_total",
            Metric::PublishConfirm => "certfleet_publish_confirm_seconds",
            Metric::QueueMessages => "certfleet_queue_messages",
            Metric::QueueConsumers => "certfleet_queue_consumers",
            Metric::ApiRequests => "certfleet_api_requests_total",
            Metric::ApiRequestDuration => "certfleet_api_request_duration_seconds",
            Metric::Notifications => "certfleet_notifications_total",
            Metric::BuildInfo => "certfleet_build_info",
        }
    }

    /// Its kind.
    pub const fn kind(self) -> Kind {
        match self {
            Metric::Rotations
            | Metric::JobRetries
            | Metric::AcmeRequests
            | Metric::ScanDue
            | Metric::ApiRequests
            | Metric::Notifications => Kind::Counter,
            Metric::RotationStepDuration
            | Metric::AcmeRequestDuration
            | Metric::DnsPropagation
            | Metric::ScanDuration
            | Metric::PublishConfirm
            | Metric::ApiRequestDuration => Kind::Histogram,
            Metric::Assets
            | Metric::CertificatesExpiring
            | Metric::CertificateExpiration
            | Metric::JobsInFlight
            | Metric::DeadLetters
            | Metric::QueueMessages
            | Metric::QueueConsumers
            | Metric::BuildInfo => Kind::Gauge,
        }
    }

    /// Its label names. Every value is from a bounded set (a state, a driver, a route
    /// template, a configured name) and never a secret or free text.
    pub const fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::Assets => &["state", "certificate_authority", "data_center"],
            Metric::CertificatesExpiring => &["within", "certificate_authority", "data_center"],
            Metric::CertificateExpiration => &["system_name", "certificate_authority", "data_center"],
            Metric::Rotations => &["driver", "outcome", "error_class"],
            Metric::RotationStepDuration => &["driver", "step"],
            Metric::JobsInFlight => &["driver"],
            Metric::JobRetries => &["driver", "tier"],
            Metric::DeadLetters => &["class"],
            Metric::AcmeRequests => &["action", "status"],
            Metric::AcmeRequestDuration => &["action"],
            Metric::DnsPropagation => &[],
            Metric::ScanDuration => &["mode"],
            Metric::ScanDue => &[],
            Metric::PublishConfirm => &[],
            Metric::QueueMessages => &["queue", "state"],
            Metric::QueueConsumers => &["queue"],
            Metric::ApiRequests => &["route", "status"],
            Metric::ApiRequestDuration => &["route"],
            Metric::Notifications => &["channel", "result"],
            Metric::BuildInfo => &["version", "process"],
        }
    }

    /// The `# HELP` text.
    pub const fn help(self) -> &'static str {
        match self {
            Metric::Assets => "Assets in the inventory, per state, issuer and data center.",
            Metric::CertificatesExpiring => {
                "Certificates expiring within 2, 15 or 30 days (expired ones included), per issuer and data center."
            }
            Metric::CertificateExpiration => "The certificate's notAfter, as a Unix timestamp, per asset.",
            Metric::Rotations => "Jobs finished by workers, per driver, outcome and error class.",
            Metric::RotationStepDuration => "Duration of each driver step of a rotation.",
            Metric::JobsInFlight => "Jobs running on this worker now.",
            Metric::JobRetries => "Jobs parked in a delayed-retry tier.",
            Metric::DeadLetters => "Dead letters waiting for an operator (retry or discard), per error class.",
            Metric::AcmeRequests => "ACME requests, per action and HTTP status.",
            Metric::AcmeRequestDuration => "Duration of ACME requests, per action.",
            Metric::DnsPropagation => "Time until a DNS-01 record was served by every authoritative server.",
            Metric::ScanDuration => "Duration of one inventory scan.",
            Metric::ScanDue => "Assets found due by scans.",
            Metric::PublishConfirm => "Time waiting for the broker's confirms of one batch of published jobs.",
            Metric::QueueMessages => "Messages in each certfleet queue, ready or unacked.",
            Metric::QueueConsumers => "Consumers attached to each certfleet queue.",
            Metric::ApiRequests => "API requests, per route template and HTTP status.",
            Metric::ApiRequestDuration => "Duration of API requests, per route template.",
            Metric::Notifications => "Notifications settled, per channel and result.",
            Metric::BuildInfo => "Always 1; the labels name the build's version and the process.",
        }
    }
}

/// Driver steps timed by [`Metric::RotationStepDuration`] (its `step` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Connecting to the device.
    Open,
    /// Key and CSR on the device.
    GenerateCsr,
    /// The issuer signing the CSR.
    Sign,
    /// Writing certificate and key.
    Install,
    /// Making the device use them.
    Activate,
    /// Checking what the device now serves.
    Validate,
    /// Restoring the previous certificate and key.
    Rollback,
}

impl Step {
    /// Every step, in pipeline order.
    pub const ALL: &'static [Step] =
        &[Step::Open, Step::GenerateCsr, Step::Sign, Step::Install, Step::Activate, Step::Validate, Step::Rollback];

    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Step::Open => "open",
            Step::GenerateCsr => "generate_csr",
            Step::Sign => "sign",
            Step::Install => "install",
            Step::Activate => "activate",
            Step::Validate => "validate",
            Step::Rollback => "rollback",
        }
    }
}

/// The `outcome` label of [`Metric::Rotations`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationOutcome {
    /// Installed and validated.
    Rotated,
    /// Failed after install; the previous certificate was restored.
    RolledBack,
    /// A passing fault; parked for a delayed retry.
    Retried,
    /// Sent to the dead letters.
    Dead,
}

impl RotationOutcome {
    /// The label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            RotationOutcome::Rotated => "rotated",
            RotationOutcome::RolledBack => "rolled_back",
            RotationOutcome::Retried => "retried",
            RotationOutcome::Dead => "dead",
        }
    }
}
