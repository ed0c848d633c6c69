//! `audit` repository: append and read. On purpose there is no function that updates or
//! deletes a row; the log is append-only for the API and the CLI alike.

use super::DbError;
use super::entity::audit::{self, ActorKind};
use super::entity::role::Role;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

/// What an audit row records: a closed set, stored as its dotted name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A login succeeded.
    LoginOk,
    /// A login failed (bad username or password).
    LoginFailed,
    /// A login was refused by the throttle.
    LoginThrottled,
    /// A user logged out of the dashboard.
    Logout,
    /// A user changed their password.
    UserPassword,
    /// A user was created.
    UserCreate,
    /// A user was deleted.
    UserDelete,
    /// An API key was created.
    ApiKeyCreate,
    /// An API key was revoked.
    ApiKeyRevoke,
    /// Assets were created (API) or imported (CLI).
    AssetCreate,
    /// An asset was changed.
    AssetUpdate,
    /// An asset was deleted.
    AssetDelete,
    /// A rotation was asked for by hand.
    AssetRotate,
    /// Certificate validation was set or unset.
    AssetCertificateValidation,
    /// A dead letter was retried.
    DlqRetry,
    /// A dead letter was discarded.
    DlqDiscard,
}

impl Action {
    /// Every action, for the docs and the filters.
    pub const ALL: [Action; 16] = [
        Self::LoginOk,
        Self::LoginFailed,
        Self::LoginThrottled,
        Self::Logout,
        Self::UserPassword,
        Self::UserCreate,
        Self::UserDelete,
        Self::ApiKeyCreate,
        Self::ApiKeyRevoke,
        Self::AssetCreate,
        Self::AssetUpdate,
        Self::AssetDelete,
        Self::AssetRotate,
        Self::AssetCertificateValidation,
        Self::DlqRetry,
        Self::DlqDiscard,
    ];

    /// The stored name (`asset.create`, `login.failed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LoginOk => "login.ok",
            Self::LoginFailed => "login.failed",
            Self::LoginThrottled => "login.throttled",
            Self::Logout => "logout",
            Self::UserPassword => "user.password",
            Self::UserCreate => "user.create",
            Self::UserDelete => "user.delete",
            Self::ApiKeyCreate => "api_key.create",
            Self::ApiKeyRevoke => "api_key.revoke",
            Self::AssetCreate => "asset.create",
            Self::AssetUpdate => "asset.update",
            Self::AssetDelete => "asset.delete",
            Self::AssetRotate => "asset.rotate",
            Self::AssetCertificateValidation => "asset.certificate_validation",
            Self::DlqRetry => "dlq.retry",
            Self::DlqDiscard => "dlq.discard",
        }
    }
}

/// The schema of an action in the API's document: a string, one of [`Action::ALL`].
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Action {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::String).enum_values(Some(Self::ALL.map(Action::as_str))).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Action {}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| {
            format!("\"{s}\" is not an audit action (known: {})", Self::ALL.map(Action::as_str).join(", "))
        })
    }
}

/// One event to record.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Username, API key name, or OS user.
    pub actor: String,
    /// Kind of actor.
    pub actor_kind: ActorKind,
    /// The actor's role, when known.
    pub role: Option<Role>,
    /// What was done.
    pub action: Action,
    /// What it was done to.
    pub target: Option<String>,
    /// What changed (never secrets).
    pub summary: serde_json::Value,
    /// Client address.
    pub source: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
}

/// Appends one row.
pub async fn record(db: &impl ConnectionTrait, e: Entry) -> Result<(), DbError> {
    let row = audit::ActiveModel {
        actor: Set(e.actor),
        actor_kind: Set(e.actor_kind),
        role: Set(e.role),
        action: Set(e.action.as_str().to_owned()),
        target: Set(e.target),
        summary: Set(e.summary),
        source: Set(e.source),
        request_id: Set(e.request_id),
        at: Set(Utc::now()),
        ..Default::default()
    };
    audit::Entity::insert(row).exec_without_returning(db).await?;
    Ok(())
}

/// Filters of [`list`]; all optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Exact actor.
    pub actor: Option<String>,
    /// Exact action.
    pub action: Option<Action>,
    /// Exact target.
    pub target: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Rows with id below this (keyset cursor, newest first).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: u64,
}

/// Audit rows, newest first.
pub async fn list(db: &impl ConnectionTrait, f: &Filter) -> Result<Vec<audit::Model>, DbError> {
    let mut q = audit::Entity::find().order_by_desc(audit::Column::Id);
    if let Some(v) = &f.actor {
        q = q.filter(audit::Column::Actor.eq(v.as_str()));
    }
    if let Some(v) = f.action {
        q = q.filter(audit::Column::Action.eq(v.as_str()));
    }
    if let Some(v) = &f.target {
        q = q.filter(audit::Column::Target.eq(v.as_str()));
    }
    if let Some(v) = f.since {
        q = q.filter(audit::Column::At.gte(v));
    }
    if let Some(v) = f.before_id {
        q = q.filter(audit::Column::Id.lt(v));
    }
    Ok(q.limit(f.limit.max(1)).all(db).await?)
}

/// How many `action` rows for `target` since `since`, and the oldest one's time (the
/// login throttle counts failed logins this way, so it holds across restarts and replicas).
pub async fn count_since(
    db: &impl ConnectionTrait,
    action: Action,
    target: &str,
    since: DateTime<Utc>,
) -> Result<(u64, Option<DateTime<Utc>>), DbError> {
    let q = audit::Entity::find()
        .filter(audit::Column::Action.eq(action.as_str()))
        .filter(audit::Column::Target.eq(target))
        .filter(audit::Column::At.gte(since));
    let count = q.clone().count(db).await?;
    let oldest = q.order_by_asc(audit::Column::At).one(db).await?.map(|r| r.at);
    Ok((count, oldest))
}
