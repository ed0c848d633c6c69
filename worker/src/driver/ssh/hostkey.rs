//! SSH host keys: the pin an asset carries (`ssh-ed25519 AAAA...` or `SHA256:...`), the
//! check run during key exchange, and what was observed (for trust on first use).

use super::DriverError;
use russh::client;
use russh::keys::{HashAlg, PublicKey, PublicKeyBase64 as _};
use std::fmt;
use std::sync::{Arc, OnceLock};

/// A pinned host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// The full public key (`ssh-ed25519 AAAA...`), compared key to key.
    Key(PublicKey),
    /// The OpenSSH SHA-256 fingerprint (`SHA256:base64`), as `ssh-keygen -l` prints it.
    Fingerprint(String),
}

impl HostKeyPin {
    /// Parses a pin: `SHA256:<base64>`, `<type> <base64> [comment]`, or a bare base64 blob.
    pub fn parse(text: &str) -> Result<Self, DriverError> {
        let text = text.trim();
        let bad = || {
            DriverError::InvalidSettings(format!(
                "host_key {text:?} is neither `<type> <base64>` nor `SHA256:<base64>`"
            ))
        };
        if let Some(fp) = text.strip_prefix("SHA256:") {
            let ok = !fp.is_empty() && fp.chars().all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/');
            return if ok { Ok(Self::Fingerprint(text.to_owned())) } else { Err(bad()) };
        }
        let mut parts = text.split_whitespace();
        let (kind, blob) = match (parts.next(), parts.next()) {
            (Some(kind), Some(blob)) => (Some(kind), blob),
            (Some(blob), None) => (None, blob),
            _ => return Err(bad()),
        };
        let key = russh::keys::parse_public_key_base64(blob).map_err(|_| bad())?;
        if let Some(kind) = kind
            && kind != key.algorithm().as_str()
        {
            return Err(DriverError::InvalidSettings(format!(
                "host_key says {kind} but holds a {} key",
                key.algorithm().as_str()
            )));
        }
        Ok(Self::Key(key))
    }

    /// Whether `key` is the pinned one.
    pub fn matches(&self, key: &PublicKey) -> bool {
        match self {
            Self::Key(pinned) => pinned.key_data() == key.key_data(),
            Self::Fingerprint(fp) => key.fingerprint(HashAlg::Sha256).to_string() == *fp,
        }
    }
}

impl fmt::Display for HostKeyPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(k) => f.write_str(&k.fingerprint(HashAlg::Sha256).to_string()),
            Self::Fingerprint(fp) => f.write_str(fp),
        }
    }
}

/// The host key a server presented.
#[derive(Debug, Clone)]
pub struct Observed {
    /// `ssh-ed25519 AAAA...` (no comment).
    pub openssh: String,
    /// `SHA256:...`.
    pub fingerprint: String,
    /// Whether it matched the pin (always true without a pin).
    pub accepted: bool,
}

/// The russh handler: accepts the server only if it presents the pinned key (or any key
/// when nothing is pinned), and records what it presented.
pub struct HostKeyCheck {
    /// The pin, if the asset has one.
    pub pin: Option<HostKeyPin>,
    /// Filled once, during the first key exchange.
    pub seen: Arc<OnceLock<Observed>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, presented: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = presented.public_key();
        let accepted = self.pin.as_ref().is_none_or(|pin| pin.matches(&key));
        let observed = Observed {
            openssh: format!("{} {}", key.algorithm().as_str(), key.public_key_base64()),
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            accepted,
        };
        // A rekey presents the same key again; the first one is what we checked.
        let first = self.seen.get_or_init(|| observed.clone());
        Ok(accepted && first.openssh == observed.openssh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";

    #[test]
    fn pins_parse_and_match() {
        let pin = HostKeyPin::parse(&format!("{KEY} host@example")).unwrap();
        let HostKeyPin::Key(key) = &pin else { panic!("a key pin") };
        assert!(pin.matches(key));
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        assert!(fp.starts_with("SHA256:"));
        assert!(HostKeyPin::parse(&fp).unwrap().matches(key));
        assert!(!HostKeyPin::parse("SHA256:AAAA").unwrap().matches(key));
        assert!(
            HostKeyPin::parse("ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ").is_err()
        );
        assert!(HostKeyPin::parse("not a key").is_err());
        assert!(HostKeyPin::parse("SHA256:$(reboot)").is_err());
    }
}
