//! Shell safety for commands run on devices: every argument is single-quoted, and names
//! that reach a command line are checked against a small safe set first (anything else is
//! `InvalidSettings`), so neither settings nor certificate names can inject commands.

use super::DriverError;
use std::net::IpAddr;

/// Single-quotes `arg` for a POSIX shell.
pub fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Checks an absolute device path: `/` then letters, digits and `._-+@%/` only, no `..`.
pub fn check_path(setting: &str, path: &str) -> Result<(), DriverError> {
    let safe = path.starts_with('/')
        && path.len() > 1
        && !path.ends_with('/')
        && path.chars().all(|c| c.is_ascii_alphanumeric() || "._-+@%/".contains(c))
        && !path.split('/').any(|part| part == "..");
    if safe {
        Ok(())
    } else {
        Err(DriverError::InvalidSettings(format!(
            "{setting} {path:?} must be an absolute path of letters, digits and ._-+@%/ (no ..)"
        )))
    }
}

/// A subject name for the CSR: an IP address, or a DNS name of letters, digits, `-`, `.`
/// and a leading `*.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectName {
    /// `DNS:<name>`.
    Dns(String),
    /// `IP:<address>`.
    Ip(IpAddr),
}

impl SubjectName {
    /// Parses and checks one name from the job.
    pub fn parse(name: &str) -> Result<Self, DriverError> {
        if let Ok(ip) = name.parse::<IpAddr>() {
            return Ok(Self::Ip(ip));
        }
        let body = name.strip_prefix("*.").unwrap_or(name);
        let ok = !body.is_empty()
            && name.len() <= 253
            && body.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            && !body.starts_with(['.', '-']);
        if ok {
            Ok(Self::Dns(name.to_owned()))
        } else {
            Err(DriverError::InvalidSettings(format!(
                "name {name:?} is neither an IP address nor a DNS name of letters, digits, '-' and '.'"
            )))
        }
    }

    /// The `subjectAltName` entry (`DNS:x` or `IP:x`).
    pub fn san_entry(&self) -> String {
        match self {
            Self::Dns(d) => format!("DNS:{d}"),
            Self::Ip(ip) => format!("IP:{ip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_safe_sets() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert!(check_path("cert_path", "/etc/ssl/site.crt").is_ok());
        for bad in ["etc/x", "/etc/$(reboot)", "/a b", "/etc/../x", "/etc/", "/x;y", "/x'y"] {
            assert!(check_path("cert_path", bad).is_err(), "{bad}");
        }
        assert_eq!(SubjectName::parse("127.0.0.1").unwrap().san_entry(), "IP:127.0.0.1");
        assert_eq!(SubjectName::parse("*.web.test").unwrap().san_entry(), "DNS:*.web.test");
        for bad in ["a b", "x/y", "$(id)", "-x", "", "a,b", "a'b"] {
            assert!(SubjectName::parse(bad).is_err(), "{bad}");
        }
    }
}
