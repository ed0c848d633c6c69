//! `[notify]`: notification channels (Slack, webhooks, e-mail, PagerDuty), the rules that
//! route events to them, expiry thresholds and storm control. Secrets (webhook URLs, SMTP
//! passwords, routing keys, HMAC keys) are never values in this file: each is a
//! [`SecretSource`] naming a 0600 file or an environment variable, read by the notifier.

use super::ConfigError;
use certfleet_proto::{EventKind, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// Run the notifier task in the scheduler process (default true when a channel exists).
    pub deliver_in_scheduler: bool,
    /// Named channels: `[notify.channels.<name>]` with a `kind`.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Routing rules, in order: `[[notify.rule]]`.
    pub rule: Vec<RuleConfig>,
    /// Expiry thresholds of rules that set none (default 30d, 15d, 2d).
    pub expiry_thresholds: Vec<Threshold>,
    /// Storm control: more than this many events of one kind for one channel within
    /// `digest_window` are sent as one digest.
    pub digest_after: u32,
    /// Storm control window.
    #[serde(with = "humantime_serde")]
    pub digest_window: Duration,
    /// Delivery attempts in total before a notification is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles on each further attempt (with jitter).
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Upper bound of one retry delay (a longer Retry-After is honoured as given).
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Timeout of one delivery (HTTP request or SMTP session).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            deliver_in_scheduler: true,
            channels: BTreeMap::new(),
            rule: Vec::new(),
            expiry_thresholds: [30, 15, 2].iter().map(|d| Threshold(Duration::from_secs(d * 86_400))).collect(),
            digest_after: 20,
            digest_window: Duration::from_secs(60),
            max_attempts: 8,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A duration before not_after, written like `30d` or `12h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Threshold(#[serde(with = "humantime_serde")] pub Duration);

/// Where a secret comes from: exactly one of `file` (mode 0600, checked at start) or `env`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretSource {
    /// A file holding the secret (surrounding whitespace is trimmed). No group or other bits.
    pub file: Option<PathBuf>,
    /// An environment variable holding the secret.
    pub env: Option<String>,
}

/// One channel: `kind` plus the kind's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    /// A Slack incoming webhook; the message uses Block Kit.
    Slack(SlackConfig),
    /// A generic HTTPS webhook with a signed, versioned JSON body.
    Webhook(WebhookConfig),
    /// E-mail over SMTP.
    Email(EmailConfig),
    /// PagerDuty Events API v2.
    Pagerduty(PagerDutyConfig),
}

/// `kind = "slack"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The incoming-webhook URL (a secret: it alone grants posting).
    pub webhook_url: SecretSource,
    /// Extra PEM CA bundle to trust (tests, private proxies).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `kind = "webhook"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver's URL (`https://`; `http://` only for a loopback address).
    pub url: String,
    /// The HMAC-SHA256 key for `X-Certfleet-Signature`.
    pub secret: SecretSource,
    /// Extra request headers (not secrets; they are logged on errors).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Extra PEM CA bundle to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required; usually port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
    /// No TLS at all (loopback relays only).
    None,
}

/// `kind = "email"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server host name (also the TLS server name).
    pub host: String,
    /// SMTP port (default 587).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// Connection security (default `starttls`).
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login user, if the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// Login password (with `username`).
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// Sender address.
    pub from: String,
    /// Recipients; one message goes to the whole list.
    pub to: Vec<String>,
    /// Extra PEM CA bundle to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_smtp_port() -> u16 {
    587
}

/// `kind = "pagerduty"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// The integration's routing key.
    pub routing_key: SecretSource,
    /// Events API endpoint (default PagerDuty's own).
    #[serde(default = "default_pagerduty_url")]
    pub events_url: String,
    /// Extra PEM CA bundle to trust.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_owned()
}

/// `[[notify.rule]]`: which events go to which channels. Every filter that is set must
/// match; an empty list matches anything.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Event kinds (empty: every kind that is on by default; `rotation_succeeded` must be
    /// named).
    #[serde(default)]
    pub events: Vec<EventKind>,
    /// Assets in these data centers.
    #[serde(default)]
    pub data_center: Vec<String>,
    /// Assets of these platforms.
    #[serde(default)]
    pub host_platform: Vec<String>,
    /// Assets of these issuers.
    #[serde(default)]
    pub certificate_authority: Vec<String>,
    /// Minimum severity (`info`, `warning`, `error`, `critical`).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Channels to deliver to.
    pub channels: Vec<String>,
    /// Keep looking at later rules after this one matched (default: the first match wins).
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// This rule's expiry thresholds (default `notify.expiry_thresholds`).
    #[serde(default)]
    pub expiry_thresholds: Option<Vec<Threshold>>,
}

fn setting(key: String, reason: impl Into<String>) -> ConfigError {
    ConfigError::Setting { key, reason: reason.into() }
}

impl NotifyConfig {
    /// Checks what serde cannot: rules name existing channels, URLs parse, secrets are
    /// given one way. (Secret files are read and their modes checked by the notifier.)
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.digest_after == 0 {
            return Err(setting("notify.digest_after".into(), "must be at least 1"));
        }
        if self.max_attempts == 0 {
            return Err(setting("notify.max_attempts".into(), "must be at least 1"));
        }
        for (i, rule) in self.rule.iter().enumerate() {
            if rule.channels.is_empty() {
                return Err(setting(format!("notify.rule[{i}].channels"), "names no channel"));
            }
            for ch in &rule.channels {
                if !self.channels.contains_key(ch) {
                    let known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                    return Err(setting(
                        format!("notify.rule[{i}].channels"),
                        format!("unknown channel \"{ch}\" (configured: {})", list_or_none(&known)),
                    ));
                }
            }
        }
        for (name, ch) in &self.channels {
            ch.validate(&format!("notify.channels.{name}"))?;
        }
        Ok(())
    }

    /// The thresholds of `rule` (its own, or the default), most distant first.
    pub fn thresholds_of(&self, rule: &RuleConfig) -> Vec<Duration> {
        let mut t: Vec<Duration> =
            rule.expiry_thresholds.as_ref().unwrap_or(&self.expiry_thresholds).iter().map(|t| t.0).collect();
        t.sort_unstable_by(|a, b| b.cmp(a));
        t.dedup();
        t
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

impl ChannelConfig {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match self {
            Self::Slack(c) => c.webhook_url.validate(&format!("{key}.webhook_url")),
            Self::Webhook(c) => {
                check_url(&format!("{key}.url"), &c.url)?;
                c.secret.validate(&format!("{key}.secret"))?;
                for name in c.headers.keys() {
                    if http_header_name_invalid(name) {
                        return Err(setting(format!("{key}.headers"), format!("\"{name}\" is not a header name")));
                    }
                }
                Ok(())
            }
            Self::Email(c) => {
                if c.host.trim().is_empty() {
                    return Err(setting(format!("{key}.host"), "must not be empty"));
                }
                if c.to.is_empty() {
                    return Err(setting(format!("{key}.to"), "needs at least one recipient"));
                }
                for addr in std::iter::once(&c.from).chain(&c.to) {
                    if !addr.contains('@') || addr.contains(char::is_whitespace) {
                        return Err(setting(format!("{key}.to"), format!("\"{addr}\" is not an e-mail address")));
                    }
                }
                match (&c.username, &c.password) {
                    (Some(_), Some(p)) => p.validate(&format!("{key}.password")),
                    (None, None) => Ok(()),
                    _ => Err(setting(format!("{key}.password"), "username and password go together")),
                }
            }
            Self::Pagerduty(c) => {
                check_url(&format!("{key}.events_url"), &c.events_url)?;
                c.routing_key.validate(&format!("{key}.routing_key"))
            }
        }
    }
}

fn http_header_name_invalid(name: &str) -> bool {
    name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An `https://` URL, or `http://` to a loopback address.
pub fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| setting(key.to_owned(), format!("not a URL ({e})")))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(setting(key.to_owned(), "must be an https:// URL (http:// only to a loopback address)")),
        other => Err(setting(key.to_owned(), format!("unsupported scheme {other}:// (use https://)"))),
    }
}

impl SecretSource {
    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        match (&self.file, &self.env) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(setting(key.to_owned(), "give exactly one of file = \"...\" or env = \"...\"")),
        }
    }

    /// Reads the secret: a file must exist and have no group or other permission bits;
    /// an environment variable must be set and not empty. `key` names it in errors; the
    /// value never appears in one.
    pub fn read(&self, key: &str) -> Result<String, ConfigError> {
        self.read_with(key, |name| std::env::var(name).ok())
    }

    /// Like [`SecretSource::read`] with the environment given as a lookup (for tests).
    pub fn read_with(&self, key: &str, env: impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        self.validate(key)?;
        if let Some(name) = &self.env {
            return match env(name) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(setting(key.to_owned(), format!("environment variable {name} is not set"))),
            };
        }
        let Some(path) = &self.file else { return Err(setting(key.to_owned(), "no source")) };
        use std::os::unix::fs::PermissionsExt as _;
        let meta = std::fs::metadata(path).map_err(|e| setting(key.to_owned(), format!("{}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(setting(
                key.to_owned(),
                format!(
                    "{} has mode {mode:04o}; a secret file must not be readable by group or others (chmod 600)",
                    path.display()
                ),
            ));
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| setting(key.to_owned(), format!("{}: {e}", path.display())))?;
        let text = text.trim();
        if text.is_empty() {
            return Err(setting(key.to_owned(), format!("{} is empty", path.display())));
        }
        Ok(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn load(text: &str) -> Result<crate::Config, ConfigError> {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        write!(file, "{text}").unwrap();
        crate::Config::load_from(Some(file.path()), Vec::new()).map(|l| l.config)
    }

    const SLACK: &str = "[notify.channels.ops]\nkind = \"slack\"\nwebhook_url = { env = \"SLACK_URL\" }\n";

    #[test]
    fn rules_and_channels_parse() {
        let c = load(&format!(
            "{SLACK}[[notify.rule]]\nevents = [\"rotation_dead\"]\nchannels = [\"ops\"]\ncontinue = true\nexpiry_thresholds = [\"7d\", \"30d\"]\n"
        ))
        .unwrap();
        assert!(c.notify.rule[0].continue_matching);
        assert_eq!(
            c.notify.thresholds_of(&c.notify.rule[0]),
            vec![Duration::from_secs(30 * 86_400), Duration::from_secs(7 * 86_400)]
        );
        assert_eq!(c.notify.expiry_thresholds.len(), 3);
    }

    #[test]
    fn bad_channel_configs_name_the_key() {
        let err = load(&format!("{SLACK}[[notify.rule]]\nchannels = [\"pager\"]\n")).unwrap_err().to_string();
        assert!(err.contains("notify.rule[0].channels") && err.contains("pager"), "{err}");
        let err = load("[notify.channels.hook]\nkind = \"webhook\"\nurl = \"ftp://x\"\nsecret = { env = \"K\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("notify.channels.hook.url"), "{err}");
        let err = load(
            "[notify.channels.hook]\nkind = \"webhook\"\nurl = \"http://example.com/\"\nsecret = { env = \"K\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("https"), "{err}");
        let err = load("[notify.channels.s]\nkind = \"slack\"\nwebhook_url = { file = \"/a\", env = \"B\" }\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("notify.channels.s.webhook_url"), "{err}");
        let err = load("[notify.channels.s]\nkind = \"carrier-pigeon\"\n").unwrap_err().to_string();
        assert!(err.contains("carrier-pigeon"), "{err}");
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let src = SecretSource { file: Some(path.clone()), env: None };
        let err = src.read("notify.channels.x.secret").unwrap_err().to_string();
        assert!(err.contains("notify.channels.x.secret") && err.contains("0644") && !err.contains("s3cret"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(src.read("k").unwrap(), "s3cret");
        let env = SecretSource { file: None, env: Some("X".into()) };
        assert!(env.read_with("k", |_| None).unwrap_err().to_string().contains("X is not set"));
        assert_eq!(env.read_with("k", |_| Some("v".into())).unwrap(), "v");
    }
}
