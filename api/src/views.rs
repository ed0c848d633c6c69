//! The API's answer types (not the DB models): each built from its row in exactly one
//! `From` conversion, so no secret column (password hash, key hash) can leak.

use certfleet_proto::DeadKind;
use certfleet_shared::db::entity::{api_key, asset, audit, dead_letter, role::Role, rotation, user};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The certificate the last rotation installed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CertificateView {
    /// Start of validity.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity.
    pub not_after: Option<DateTime<Utc>>,
    /// Serial, hex.
    pub serial: Option<String>,
    /// SHA-256 fingerprint, hex.
    pub fingerprint_sha256: Option<String>,
    /// Issuer DN.
    pub issuer: Option<String>,
}

/// One asset.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssetView {
    /// Unique name.
    pub system_name: String,
    /// Subject CN.
    pub common_name: String,
    /// SANs.
    pub subject_alternative_name: Vec<String>,
    /// Issuer name.
    pub certificate_authority: String,
    /// Known expiry.
    pub certificate_expiration: Option<DateTime<Utc>>,
    /// Location.
    pub data_center: Option<String>,
    /// Device model.
    pub device_model: Option<String>,
    /// Platform.
    pub host_platform: String,
    /// TLS service address.
    pub ip_address: Option<String>,
    /// TLS service port.
    pub port: Option<i32>,
    /// Origin.
    pub origin: Option<String>,
    /// OS version.
    pub os_version: Option<String>,
    /// Trust the current certificate on connect.
    pub certificate_validation: bool,
    /// Device key algorithm.
    pub key_algorithm: String,
    /// Driver settings.
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Lifecycle state (`ok`, `due`, `in_flight`, `failed`, `dead`, `unroutable`).
    pub state: String,
    /// Last error.
    pub last_error: Option<String>,
    /// The current certificate.
    pub certificate: CertificateView,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<asset::Model> for AssetView {
    fn from(a: asset::Model) -> Self {
        Self {
            subject_alternative_name: serde_json::from_value(a.subject_alternative_name).unwrap_or_default(),
            system_name: a.system_name,
            common_name: a.common_name,
            certificate_authority: a.certificate_authority,
            certificate_expiration: a.certificate_expiration,
            data_center: a.data_center,
            device_model: a.device_model,
            host_platform: a.host_platform,
            ip_address: a.ip_address,
            port: a.port,
            origin: a.origin,
            os_version: a.os_version,
            certificate_validation: a.certificate_validation,
            key_algorithm: a.key_algorithm,
            settings: a.settings,
            state: a.state.as_str().to_owned(),
            last_error: a.last_error,
            certificate: CertificateView {
                not_before: a.not_before,
                not_after: a.not_after,
                serial: a.serial,
                fingerprint_sha256: a.fingerprint_sha256,
                issuer: a.issuer_dn,
            },
            updated_at: a.updated_at,
        }
    }
}

/// One history row.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotationView {
    /// The job id.
    pub job_id: uuid::Uuid,
    /// Asset primary key.
    pub asset_id: i64,
    /// Latest attempt.
    pub attempt: i32,
    /// Driver.
    pub driver: String,
    /// `queued`, `rotated`, `rolled_back`, `dead`, `discarded`.
    pub status: String,
    /// Error class.
    pub error_class: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// Worker.
    pub worker: Option<String>,
    /// Published at.
    pub queued_at: DateTime<Utc>,
    /// Finished at.
    pub finished_at: Option<DateTime<Utc>>,
    /// The OpenTelemetry trace (32 hex digits) of the scan or operator action that
    /// published it, when spans are exported and that trace was sampled.
    pub trace_id: Option<String>,
}

impl From<rotation::Model> for RotationView {
    fn from(r: rotation::Model) -> Self {
        Self {
            job_id: r.job_id,
            asset_id: r.asset_id,
            attempt: r.attempt,
            driver: r.driver,
            status: r.status.as_str().to_owned(),
            error_class: r.error_class,
            error_message: r.error_message,
            worker: r.worker,
            queued_at: r.queued_at,
            finished_at: r.finished_at,
            trace_id: r.trace_id,
        }
    }
}

/// One dead letter.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeadLetterView {
    /// The job id.
    pub job_id: uuid::Uuid,
    /// Asset name, when known.
    pub system_name: Option<String>,
    /// Driver, when known; for a dead notification, `notify:<channel>`.
    pub driver: Option<String>,
    /// `rotation`, or `notification` for a notification that could not be delivered (it
    /// can be discarded, not retried as a rotation).
    #[serde(default)]
    pub kind: DeadKindView,
    /// Error class.
    pub error_class: String,
    /// Reason.
    pub reason: String,
    /// Attempts made.
    pub attempts: i32,
    /// `pending`, `retried`, `discarded`.
    pub status: String,
    /// When it died.
    pub dead_at: DateTime<Utc>,
    /// Last operator action.
    pub updated_at: DateTime<Utc>,
}

/// What a dead letter was (the API's spelling of [`DeadKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadKindView {
    /// A rotation job: `retry` rotates the asset again.
    #[default]
    Rotation,
    /// A notification that could not be delivered: it can be discarded, not retried.
    Notification,
}

impl From<DeadKind> for DeadKindView {
    fn from(k: DeadKind) -> Self {
        match k {
            DeadKind::Rotation => Self::Rotation,
            DeadKind::Notification => Self::Notification,
        }
    }
}

impl From<dead_letter::Model> for DeadLetterView {
    fn from(d: dead_letter::Model) -> Self {
        use certfleet_shared::db::entity::dead_letter::DeadLetterStatus as S;
        let kind = certfleet_shared::db::dead_letters::kind(&d).into();
        Self {
            kind,
            job_id: d.job_id,
            system_name: d.system_name,
            driver: d.driver,
            error_class: d.error_class,
            reason: d.reason,
            attempts: d.attempts,
            status: match d.status {
                S::Pending => "pending",
                S::Retried => "retried",
                S::Discarded => "discarded",
            }
            .to_owned(),
            dead_at: d.dead_at,
            updated_at: d.updated_at,
        }
    }
}

/// One user (never the hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    /// Login name.
    pub username: String,
    /// Role.
    #[schema(value_type = RoleName)]
    pub role: Role,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Last password change.
    pub password_changed_at: DateTime<Utc>,
}

impl From<user::Model> for UserView {
    fn from(u: user::Model) -> Self {
        Self {
            username: u.username,
            role: u.role,
            created_at: u.created_at,
            password_changed_at: u.password_changed_at,
        }
    }
}

/// A role name.
#[derive(ToSchema)]
#[allow(dead_code, clippy::upper_case_acronyms)] // a schema only
pub enum RoleName {
    /// Read access.
    DEVELOPER,
    /// Writes.
    PRIVILEGED,
    /// Everything.
    ADMIN,
}

/// One API key (never the secret or its hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Public id (`DELETE /admin/v1/api-keys/{id}`).
    pub id: String,
    /// Name.
    pub name: String,
    /// Role.
    #[schema(value_type = RoleName)]
    pub role: Role,
    /// Who made it.
    pub created_by: String,
    /// Created at.
    pub created_at: DateTime<Utc>,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last use.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Revoked at.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<api_key::Model> for ApiKeyView {
    fn from(k: api_key::Model) -> Self {
        Self {
            id: k.key_id,
            name: k.name,
            role: k.role,
            created_by: k.created_by,
            created_at: k.created_at,
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// One audit row.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    /// Row id (order of events; `cursor` of the next page).
    pub id: i64,
    /// Username, key name or OS user.
    pub actor: String,
    /// `user`, `api_key` or `os_user`.
    pub actor_kind: String,
    /// The actor's role.
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<Role>,
    /// What was done.
    pub action: String,
    /// What it was done to.
    pub target: Option<String>,
    /// What changed.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Client address.
    pub source: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl From<audit::Model> for AuditView {
    fn from(a: audit::Model) -> Self {
        use certfleet_shared::db::entity::audit::ActorKind as K;
        Self {
            id: a.id,
            actor: a.actor,
            actor_kind: match a.actor_kind {
                K::User => "user",
                K::ApiKey => "api_key",
                K::OsUser => "os_user",
            }
            .to_owned(),
            role: a.role,
            action: a.action,
            target: a.target,
            summary: a.summary,
            source: a.source,
            request_id: a.request_id,
            at: a.at,
        }
    }
}
