//! `Role`: the closed set of control-plane roles, stored in `users.role` and `api_keys.role`.
//! Roles nest: ADMIN ⊃ PRIVILEGED ⊃ DEVELOPER (the derived order says so).

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A control-plane role (Ottr's three). `Developer < Privileged < Admin`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    /// Reads the inventory, history, dead letters and queues.
    #[sea_orm(string_value = "developer")]
    #[serde(alias = "developer")]
    Developer,
    /// Also writes assets, rotates, retries and discards dead letters.
    #[sea_orm(string_value = "privileged")]
    #[serde(alias = "privileged")]
    Privileged,
    /// Also manages users, API keys, certificate validation and reads the audit log.
    #[sea_orm(string_value = "admin")]
    #[serde(alias = "admin")]
    Admin,
}

impl Role {
    /// The spelling in the database, tokens and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Developer => "developer",
            Self::Privileged => "privileged",
            Self::Admin => "admin",
        }
    }

    /// Whether this role includes `needed`.
    pub fn includes(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "developer" => Ok(Self::Developer),
            "privileged" => Ok(Self::Privileged),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown role {other:?} (known: developer, privileged, admin)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Role;

    #[test]
    fn roles_nest() {
        assert!(Role::Admin.includes(Role::Privileged) && Role::Admin.includes(Role::Developer));
        assert!(Role::Privileged.includes(Role::Developer) && !Role::Privileged.includes(Role::Admin));
        assert!(!Role::Developer.includes(Role::Privileged));
        assert_eq!("ADMIN".parse::<Role>(), Ok(Role::Admin));
        assert!("root".parse::<Role>().unwrap_err().contains("developer, privileged, admin"));
    }
}
