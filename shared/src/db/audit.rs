//! `audit` repository: append and read. On purpose there is no function that updates or
//! deletes a row; the log is append-only for the API and the CLI alike.

use super::DbError;
use super::entity::audit::{self, ActorKind};
use super::entity::role::Role;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

/// One event to record.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Username, API key name, or OS user.
    pub actor: String,
    /// Kind of actor.
    pub actor_kind: ActorKind,
    /// The actor's role, when known.
    pub role: Option<Role>,
    /// What was done (`asset.create`, `login.failed`, ...).
    pub action: &'static str,
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
        action: Set(e.action.to_owned()),
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
    pub action: Option<String>,
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
    if let Some(v) = &f.action {
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
    action: &str,
    target: &str,
    since: DateTime<Utc>,
) -> Result<(u64, Option<DateTime<Utc>>), DbError> {
    let q = audit::Entity::find()
        .filter(audit::Column::Action.eq(action))
        .filter(audit::Column::Target.eq(target))
        .filter(audit::Column::At.gte(since));
    let count = q.clone().count(db).await?;
    let oldest = q.order_by_asc(audit::Column::At).one(db).await?.map(|r| r.at);
    Ok((count, oldest))
}
