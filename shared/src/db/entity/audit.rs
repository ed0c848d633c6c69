//! `audit`: the append-only log of every write (API and CLI). The repository has no
//! function that updates or deletes a row.

use super::role::Role;
use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A user with a session token (or a login attempt for a username).
    #[sea_orm(string_value = "user")]
    User,
    /// An API key.
    #[sea_orm(string_value = "api_key")]
    ApiKey,
    /// The operating-system user running the `certfleet` CLI.
    #[sea_orm(string_value = "os_user")]
    OsUser,
}

/// One audit row.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "audit")]
pub struct Model {
    /// Primary key (also the order of events).
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Username, API key name, or OS user.
    pub actor: String,
    /// Kind of actor.
    pub actor_kind: ActorKind,
    /// The actor's role (null for a failed login).
    pub role: Option<Role>,
    /// What was done, for example `asset.create` or `login.failed`.
    pub action: String,
    /// What it was done to (a system_name, username, key id, job id).
    pub target: Option<String>,
    /// What changed (JSON; never secrets).
    pub summary: Json,
    /// Client address (null for the CLI).
    pub source: Option<String>,
    /// Request id (also in the log).
    pub request_id: Option<String>,
    /// When.
    pub at: DateTimeUtc,
}

/// No relations are navigated through sea-orm.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
