//! The routing table (`routes.toml`): which driver serves an asset, from its platform,
//! OS version (glob), issuer and device model. The first matching route wins.
//!
//! ```toml
//! [[route]]
//! host_platform = "linux"          # required, exact (case-insensitive)
//! os_version = "debian-*"          # optional glob, default "*"
//! certificate_authority = "internal" # optional, default any
//! device_model = ["r640", "r650"]  # optional list, default any
//! driver = "local"
//! ```

use certfleet_proto::Driver;
use certfleet_shared::db::assets::{AssetInput, FieldError, RouteCheck};
use certfleet_shared::db::entity::asset;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A routing table that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RoutesError {
    /// The file could not be read.
    #[error("cannot read routes file {path}: {cause}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error (in the message, not a `source()`, so a chain never repeats it).
        cause: std::io::Error,
    },
    /// The file is not a valid routing table.
    #[error("invalid routes file {path}: {reason}")]
    Invalid {
        /// The path.
        path: PathBuf,
        /// What is wrong (names the route and field).
        reason: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    host_platform: String,
    #[serde(default)]
    os_version: Option<String>,
    #[serde(default)]
    certificate_authority: Option<String>,
    #[serde(default)]
    device_model: Option<Vec<String>>,
    driver: Driver,
}

/// One route.
#[derive(Debug, Clone)]
pub struct Route {
    host_platform: String,
    os_version: Option<glob::Pattern>,
    certificate_authority: Option<String>,
    device_model: Option<Vec<String>>,
    /// The driver it leads to.
    pub driver: Driver,
}

/// The asset fields routing looks at.
#[derive(Debug, Clone, Copy)]
pub struct RouteKey<'a> {
    /// Platform.
    pub host_platform: &'a str,
    /// OS version ("" if unknown).
    pub os_version: &'a str,
    /// Issuer name.
    pub certificate_authority: &'a str,
    /// Device model, if known.
    pub device_model: Option<&'a str>,
}

impl<'a> From<&'a asset::Model> for RouteKey<'a> {
    fn from(a: &'a asset::Model) -> Self {
        Self {
            host_platform: &a.host_platform,
            os_version: a.os_version.as_deref().unwrap_or(""),
            certificate_authority: &a.certificate_authority,
            device_model: a.device_model.as_deref(),
        }
    }
}

impl<'a> From<&'a AssetInput> for RouteKey<'a> {
    fn from(a: &'a AssetInput) -> Self {
        Self {
            host_platform: a.host_platform.trim(),
            os_version: a.os_version.as_deref().unwrap_or(""),
            certificate_authority: a.certificate_authority.trim(),
            device_model: a.device_model.as_deref(),
        }
    }
}

/// Imports and edits are refused when no route takes the asset, naming the platform: the
/// scheduler would only mark it unroutable.
impl RouteCheck for Routes {
    fn check(&self, row: &AssetInput) -> Result<(), FieldError> {
        self.route(row)
            .map(|_| ())
            .map_err(|why| FieldError { field: "host_platform", reason: format!("{why} in the routing table") })
    }
}

impl Route {
    fn matches(&self, a: &RouteKey<'_>) -> bool {
        self.host_platform.eq_ignore_ascii_case(a.host_platform)
            && self.os_version.as_ref().is_none_or(|p| p.matches(a.os_version))
            && self.certificate_authority.as_ref().is_none_or(|ca| ca == a.certificate_authority)
            && self
                .device_model
                .as_ref()
                .is_none_or(|models| a.device_model.is_some_and(|m| models.iter().any(|x| x.eq_ignore_ascii_case(m))))
    }
}

/// The loaded routing table.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    /// Loads and checks a routes file.
    pub fn load(path: &Path) -> Result<Self, RoutesError> {
        let text = std::fs::read_to_string(path).map_err(|cause| RoutesError::Read { path: path.to_owned(), cause })?;
        Self::parse(&text).map_err(|reason| RoutesError::Invalid { path: path.to_owned(), reason })
    }

    /// Loads the routes file if there is one (imports are checked against it; before it
    /// exists nothing routes, and the scheduler refuses to start).
    pub fn load_if_present(path: &Path) -> Result<Option<Self>, RoutesError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            _ => Self::load(path).map(Some),
        }
    }

    /// Parses a routing table from TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut routes = Vec::with_capacity(file.route.len());
        for (i, r) in file.route.into_iter().enumerate() {
            let os_version = r
                .os_version
                .map(|g| glob::Pattern::new(&g).map_err(|e| format!("route {}: os_version {g:?}: {e}", i + 1)))
                .transpose()?;
            if r.host_platform.trim().is_empty() {
                return Err(format!("route {}: host_platform must not be empty", i + 1));
            }
            routes.push(Route {
                host_platform: r.host_platform,
                os_version,
                certificate_authority: r.certificate_authority,
                device_model: r.device_model,
                driver: r.driver,
            });
        }
        Ok(Self(routes))
    }

    /// The driver for `asset`, or why there is none.
    pub fn route<'a>(&self, asset: impl Into<RouteKey<'a>>) -> Result<Driver, String> {
        let key = asset.into();
        self.0.iter().find(|r| r.matches(&key)).map(|r| r.driver).ok_or_else(|| {
            format!(
                "no route matches host_platform={:?} os_version={:?} certificate_authority={:?} device_model={:?}",
                key.host_platform,
                key.os_version,
                key.certificate_authority,
                key.device_model.unwrap_or("")
            )
        })
    }

    /// Every driver some route leads to.
    pub fn drivers(&self) -> Vec<Driver> {
        let mut d: Vec<Driver> = self.0.iter().map(|r| r.driver).collect();
        d.sort();
        d.dedup();
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(platform: &str, os: Option<&str>, ca: &str, model: Option<&str>) -> asset::Model {
        asset::Model {
            id: 1,
            system_name: "a".into(),
            common_name: "a.test".into(),
            subject_alternative_name: serde_json::json!([]),
            certificate_authority: ca.into(),
            certificate_expiration: None,
            data_center: None,
            device_model: model.map(Into::into),
            host_platform: platform.into(),
            ip_address: None,
            port: None,
            origin: None,
            os_version: os.map(Into::into),
            certificate_validation: true,
            key_algorithm: "ecdsa-p256".into(),
            settings: serde_json::json!({}),
            state: certfleet_shared::db::entity::asset::AssetState::Due,
            not_before: None,
            not_after: None,
            serial: None,
            fingerprint_sha256: None,
            issuer_dn: None,
            last_error: None,
            lease_until: None,
            ari_cert_id: None,
            renewal_window_start: None,
            renewal_window_end: None,
            next_due_at: None,
            updated_at: chrono::Utc::now(),
            expiry_notice: None,
        }
    }

    const TABLE: &str = r#"
        [[route]]
        host_platform = "linux"
        os_version = "debian-1[12]*"
        certificate_authority = "internal"
        device_model = ["r640"]
        driver = "local"

        [[route]]
        host_platform = "files"
        driver = "local"
    "#;

    #[test]
    fn first_matching_route_wins_with_globs_and_lists() {
        let routes = Routes::parse(TABLE).unwrap();
        assert_eq!(routes.route(&asset("Linux", Some("debian-12.4"), "internal", Some("R640"))), Ok(Driver::Local));
        assert_eq!(routes.route(&asset("files", None, "acme", None)), Ok(Driver::Local));
        let miss = routes.route(&asset("linux", Some("debian-10"), "internal", Some("r640"))).unwrap_err();
        assert!(miss.contains("os_version=\"debian-10\""), "{miss}");
        assert!(routes.route(&asset("linux", Some("debian-12"), "internal", None)).is_err());
        assert!(routes.route(&asset("linux", Some("debian-12"), "acme", Some("r640"))).is_err());
    }

    #[test]
    fn bad_tables_name_the_problem() {
        let err = Routes::parse("[[route]]\nhost_platform = \"x\"\ndriver = \"telnet\"").unwrap_err();
        assert!(err.contains("telnet"), "{err}");
        let err =
            Routes::parse("[[route]]\nhost_platform = \"x\"\nos_version = \"[\"\ndriver = \"local\"").unwrap_err();
        assert!(err.contains("route 1: os_version"), "{err}");
        let err = Routes::parse("[[route]]\nhost_platfrom = \"x\"\ndriver = \"local\"").unwrap_err();
        assert!(err.contains("host_platfrom"), "{err}");
    }
}
