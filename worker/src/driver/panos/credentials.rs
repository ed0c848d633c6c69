//! PAN-OS API credentials, read from the worker's `[drivers.panos] credentials_file` (a TOML
//! table of named credentials, mode 0600 or stricter). Secrets are never printed: `Debug`
//! shows only the user name.

use super::super::DriverError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

/// One named credential: a user and password (exchanged for an API key with
/// `type=keygen`), or a ready API key.
#[derive(Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Credential {
    /// An API user; the driver asks the firewall for a key.
    Password {
        /// The administrator's name.
        username: String,
        /// Its password.
        password: String,
    },
    /// A ready API key.
    ApiKey {
        /// The key.
        api_key: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Password { username, .. } => write!(f, "Password {{ username: {username:?}, .. }}"),
            Credential::ApiKey { .. } => f.write_str("ApiKey { .. }"),
        }
    }
}

/// Reads credential `name` from `file`, after checking that only its owner can read it.
pub async fn load(file: Option<&Path>, name: &str) -> Result<Credential, DriverError> {
    let invalid = |m: String| DriverError::InvalidSettings(m);
    let file = file
        .ok_or_else(|| invalid("this worker has no [drivers.panos] credentials_file; panos assets need one".into()))?;
    let shown = file.display();
    let meta = tokio::fs::metadata(file).await.map_err(|e| invalid(format!("credentials file {shown}: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(invalid(format!("credentials file {shown} has mode {mode:o}; it must be 0600 or stricter")));
    }
    let text = tokio::fs::read_to_string(file).await.map_err(|e| invalid(format!("credentials file {shown}: {e}")))?;
    // The TOML error may quote the offending line, which could hold a secret: keep only where.
    let mut all: BTreeMap<String, Credential> = toml::from_str(&text).map_err(|e| {
        let at = e.span().map(|s| format!(" at byte {}", s.start)).unwrap_or_default();
        invalid(format!("credentials file {shown} is not a table of credentials{at}"))
    })?;
    all.remove(name).ok_or_else(|| invalid(format!("credentials file {shown} has no credential named {name:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_named_credentials_and_checks_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("panos.toml");
        let text = "[fw]\nusername = \"api\"\npassword = \"pw-secret\"\n[k]\napi_key = \"key-secret\"\n";
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(Some(&path), "fw").await, Err(DriverError::InvalidSettings(m)) if m.contains("644")));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let fw = load(Some(&path), "fw").await.unwrap();
        assert!(!format!("{fw:?}").contains("pw-secret"));
        assert!(matches!(load(Some(&path), "k").await.unwrap(), Credential::ApiKey { .. }));
        assert!(matches!(load(Some(&path), "nope").await, Err(DriverError::InvalidSettings(_))));
        assert!(matches!(load(None, "fw").await, Err(DriverError::InvalidSettings(_))));
        std::fs::write(&path, "[fw]\nusername = \"api\"\npasswd = \"pw-secret\"\n").unwrap();
        let err = load(Some(&path), "fw").await.unwrap_err().to_string();
        assert!(!err.contains("pw-secret"), "{err}");
    }
}
