//! `amqp_url`: one broker URL or several nodes of one cluster, tried in order and failed over
//! on connection loss. Written as a string (commas separate several URLs, as in the
//! `CERTFLEET_AMQP_URL` variable) or as a TOML array. Never printed with its passwords.

use crate::redact::redact_url;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// The broker URLs of `amqp_url`, in the order they are tried. Never empty once validated.
#[derive(Clone, PartialEq, Eq)]
pub struct AmqpUrls(Vec<String>);

impl AmqpUrls {
    /// URLs from a list; each entry may itself hold comma-separated URLs.
    pub fn new<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> Self {
        Self(
            urls.into_iter()
                .flat_map(|u| u.as_ref().split(',').map(|s| s.trim().to_owned()).collect::<Vec<_>>())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    }

    /// The URLs, in order (with their passwords: for connecting only).
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The first URL (empty when there is none). Every URL of a validated list has the same
    /// user, password and vhost, so this one names them for the whole cluster.
    pub fn first(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }

    /// The URLs with passwords hidden, comma-separated: for logs and error messages.
    pub fn redacted(&self) -> String {
        self.0.iter().map(|u| redact_url(u)).collect::<Vec<_>>().join(", ")
    }

    /// Checks that there is at least one URL, that each parses as `amqp://` or `amqps://`,
    /// and that all of them name the same scheme, user, password and vhost (they are nodes
    /// of one cluster, and recovery re-opens the same session on another node).
    pub fn validate(&self) -> Result<(), String> {
        let Some(first) = self.0.first() else { return Err("no broker URL given".to_owned()) };
        let parse = |u: &str| -> Result<url::Url, String> {
            let parsed = url::Url::parse(u).map_err(|e| format!("{} does not parse: {e}", redact_url(u)))?;
            if !matches!(parsed.scheme(), "amqp" | "amqps") {
                return Err(format!("{} is not an amqp:// or amqps:// URL", redact_url(u)));
            }
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(format!("{} names no host", redact_url(u)));
            }
            Ok(parsed)
        };
        let session = |p: &url::Url| {
            (p.scheme().to_owned(), p.username().to_owned(), p.password().map(str::to_owned), p.path().to_owned())
        };
        let want = session(&parse(first)?);
        for u in &self.0[1..] {
            if session(&parse(u)?) != want {
                return Err(format!(
                    "{} differs from {} in scheme, user, password or vhost; the URLs of one cluster \
                     differ only in host and port",
                    redact_url(u),
                    redact_url(first)
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for AmqpUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for AmqpUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl From<&str> for AmqpUrls {
    fn from(s: &str) -> Self {
        Self::new([s])
    }
}

impl Serialize for AmqpUrls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AmqpUrls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        Ok(match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => Self::new([s]),
            OneOrMany::Many(v) => Self::new(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AmqpUrls;

    #[test]
    fn a_string_splits_on_commas_and_an_array_is_kept() {
        let u: AmqpUrls = serde_json::from_str(r#""amqp://a:1/%2f, amqp://b:2/%2f""#).unwrap();
        assert_eq!(u.as_slice(), ["amqp://a:1/%2f", "amqp://b:2/%2f"]);
        let v: AmqpUrls = serde_json::from_str(r#"["amqp://a:1/%2f","amqp://b:2/%2f"]"#).unwrap();
        assert_eq!(u, v);
        assert!(u.validate().is_ok());
    }

    #[test]
    fn passwords_never_print_and_mismatches_are_refused() {
        let u = AmqpUrls::new(["amqp://u:s3cret@a:5672/v", "amqp://u:other@b:5672/v"]);
        let err = u.validate().unwrap_err();
        assert!(err.contains("differs") && !err.contains("s3cret") && !err.contains("other"), "{err}");
        assert!(!format!("{u:?} {u}").contains("s3cret"));
        assert!(AmqpUrls::new(Vec::<String>::new()).validate().is_err());
        assert!(AmqpUrls::from("http://x/").validate().unwrap_err().contains("not an amqp"));
        assert!(AmqpUrls::from("amqp://u:s3cret@a:5672/%2f,amqp://u:s3cret@b:5673/%2f").validate().is_ok());
    }
}
