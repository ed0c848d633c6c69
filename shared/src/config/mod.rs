//! certfleet configuration: defaults, then the TOML file, then `CERTFLEET_*` environment
//! variables (nested keys with `__`, for example `CERTFLEET_WORKER__CONCURRENCY=8`).

pub mod amqp;
pub mod api;
pub mod dns;
pub mod drivers;
pub mod issuer;
pub mod metrics;
pub mod notify;
pub mod telemetry;

pub use amqp::AmqpUrls;
pub use api::ApiConfig;
pub use drivers::{DriversConfig, PanosDriverConfig};
pub use issuer::{AcmeIssuerConfig, InternalIssuerConfig, IssuerConfig};
pub use metrics::{MetricsConfig, PerAsset};
pub use notify::NotifyConfig;
pub use telemetry::TelemetryConfig;

use certfleet_proto::Driver;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default config file name, looked up in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "certfleet.toml";
/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "CERTFLEET_";

/// Configuration shared by every certfleet process.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Inventory database: `sqlite://certfleet.db?mode=rwc` (default) or `postgres://...`.
    pub database_url: String,
    /// Connections each process keeps open to the inventory database, at most (an
    /// in-memory SQLite database always gets one).
    pub database_max_connections: u32,
    /// RabbitMQ URL, for example `amqp://guest:guest@127.0.0.1:5672/%2f`, or the nodes of
    /// one cluster: a TOML array, or one string with the URLs separated by commas (so also
    /// in `CERTFLEET_AMQP_URL`). They are tried in order at start-up; when the connection is
    /// lost, the process reconnects to the next node. The URLs may differ only in host and
    /// port. Passwords are hidden in every log line and error message.
    pub amqp_url: AmqpUrls,
    /// RabbitMQ's management API, for example `http://127.0.0.1:15672` (optional): adds
    /// the unacked count and the publish / deliver rates to the queue numbers. The user,
    /// password and vhost are those of `amqp_url` unless this URL carries a user.
    pub amqp_management_url: Option<String>,
    /// Routing table mapping assets to drivers (see `routes.example.toml`).
    pub routes_file: PathBuf,
    /// Scheduler: time between two inventory scans, for example `30s`.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// Scheduler: rows read per page while scanning (the inventory is never loaded whole).
    pub scan_page_size: u64,
    /// Scheduler: how long a published job holds its asset before it may be published again.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Scheduler: how long an asset whose rotation was rolled back waits before the next try.
    #[serde(with = "humantime_serde")]
    pub failed_retry_after: Duration,
    /// Scheduler: time between two full passes over the whole inventory, which check (and
    /// correct, logging each as a bug) every stored `next_due_at`. Scans in between read
    /// only the rows whose `next_due_at` has come.
    #[serde(with = "humantime_serde")]
    pub scan_full_interval: Duration,
    /// Scheduler: how long the leader lease lasts without renewal. Only the holder scans
    /// and publishes; another scheduler takes over within two leases of the holder dying.
    #[serde(with = "humantime_serde")]
    pub leader_lease: Duration,
    /// Scheduler: how often the leader renews its lease (and others try to take it).
    #[serde(with = "humantime_serde")]
    pub leader_renew: Duration,
    /// Timeout of every single broker or database round trip made at start-up.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long a process waits for its broker connection to recover (lapin's automatic
    /// recovery, checked by the broker watchdog) before it stops with an error for its
    /// service manager to start it again.
    #[serde(with = "humantime_serde")]
    pub broker_recovery_timeout: Duration,
    /// Delayed retries of transient failures.
    pub retry: RetryConfig,
    /// Worker settings.
    pub worker: WorkerConfig,
    /// Worker-side driver settings (SSH identity, PAN-OS credentials): `[drivers.<name>]`.
    pub drivers: DriversConfig,
    /// Named certificate issuers; assets name one in `certificate_authority`.
    pub issuers: BTreeMap<String, IssuerConfig>,
    /// Log output: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// The HTTP API and dashboard.
    pub api: ApiConfig,
    /// Notifications: channels, routing rules, expiry thresholds, storm control.
    pub notify: NotifyConfig,
    /// Prometheus `/metrics` endpoints and the fleet gauges.
    pub metrics: MetricsConfig,
    /// OpenTelemetry trace export (OTLP/HTTP).
    pub telemetry: TelemetryConfig,
}

/// Delayed retries of transient failures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in total, the first included, before a job goes to the dead letters.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles on each further attempt (with jitter).
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Upper bound of one delay.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

/// Worker settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// Jobs run at once; also the AMQP prefetch.
    pub concurrency: u16,
    /// Drivers this worker serves (`--drivers` overrides it). Empty means all.
    pub drivers: Vec<Driver>,
    /// Upper bound of one job, device and CA round trips included.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// On SIGTERM, how long jobs in flight may take to finish before the worker exits.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often the worker publishes its heartbeat (shown on the dashboard's Queues page;
    /// a worker silent for 3 intervals is shown as gone).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { max_attempts: 5, base_delay: Duration::from_secs(2), max_delay: Duration::from_secs(600) }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            drivers: Vec::new(),
            job_timeout: Duration::from_secs(120),
            shutdown_grace: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        let mut issuers = BTreeMap::new();
        issuers.insert("internal".to_owned(), IssuerConfig::Internal(InternalIssuerConfig::default()));
        Self {
            database_url: "sqlite://certfleet.db?mode=rwc".into(),
            database_max_connections: crate::db::DEFAULT_MAX_CONNECTIONS,
            amqp_url: AmqpUrls::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            amqp_management_url: None,
            routes_file: PathBuf::from("routes.toml"),
            scan_interval: Duration::from_secs(30),
            scan_page_size: 2000,
            lease: Duration::from_secs(600),
            failed_retry_after: Duration::from_secs(900),
            scan_full_interval: Duration::from_secs(24 * 3600),
            leader_lease: Duration::from_secs(15),
            leader_renew: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            broker_recovery_timeout: Duration::from_secs(60),
            retry: RetryConfig::default(),
            worker: WorkerConfig::default(),
            issuers,
            log_format: LogFormat::Text,
            drivers: DriversConfig::default(),
            api: ApiConfig::default(),
            notify: NotifyConfig::default(),
            metrics: MetricsConfig::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

/// Configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `--config` named a file that does not exist.
    #[error("config file {path} not found")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A value has the wrong type, or a key is unknown; figment names the key and its source.
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    /// A value under a named entry (a channel, a rule) is not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Setting {
        /// The offending key, with the entry's name or index.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value parses but is not acceptable.
    #[error("invalid configuration: {key}: {reason}")]
    Value {
        /// The offending key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

// figment's error is in the message; it is not also a `source()` (a chain would repeat it).
impl From<Box<figment::Error>> for ConfigError {
    fn from(e: Box<figment::Error>) -> Self {
        Self::Invalid(e)
    }
}

/// A loaded configuration plus the warnings met while loading it.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Environment variables with the `CERTFLEET_` prefix that name no known key.
    pub unknown_env: Vec<String>,
}

impl Config {
    /// Loads `path` (or the default `certfleet.toml` if present) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Loaded, ConfigError> {
        Self::load_from(path, std::env::vars())
    }

    /// Like [`Config::load`] with the environment given as pairs, so tests need not touch
    /// the process environment.
    pub fn load_from(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::NotFound { path: p.to_owned() }),
            Some(p) => figment = figment.merge(Toml::file_exact(p)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        let (overrides, unknown_env) = env_overrides(env);
        let config: Config = figment.merge(Serialized::globals(overrides)).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(Loaded { config, unknown_env })
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, reason: &str| Err(ConfigError::Value { key, reason: reason.to_owned() });
        if self.scan_page_size == 0 {
            return bad("scan_page_size", "must be at least 1");
        }
        if let Some(url) = &self.amqp_management_url
            && let Err(e) = crate::amqp::management::Management::new(url, self.amqp_url.first(), self.connect_timeout)
        {
            return Err(ConfigError::Value { key: "amqp_management_url", reason: e.to_string() });
        }
        if self.worker.concurrency == 0 {
            return bad("worker.concurrency", "must be at least 1");
        }
        if self.retry.max_attempts == 0 {
            return bad("retry.max_attempts", "must be at least 1");
        }
        if self.leader_renew.is_zero() || self.leader_renew >= self.leader_lease {
            return bad("leader_renew", "must be longer than zero and shorter than leader_lease");
        }
        if self.broker_recovery_timeout < Duration::from_secs(5) {
            return bad("broker_recovery_timeout", "must be at least 5s (a broker restart takes longer than that)");
        }
        if !(1..=1000).contains(&self.database_max_connections) {
            return bad("database_max_connections", "must be between 1 and 1000");
        }
        if self.lease.is_zero() {
            return bad("lease", "must be longer than zero");
        }
        if let Err(reason) = self.amqp_url.validate() {
            return Err(ConfigError::Value { key: "amqp_url", reason });
        }
        if self.issuers.is_empty() {
            return bad("issuers", "at least one issuer must be configured");
        }
        for (name, issuer) in &self.issuers {
            issuer.validate(name)?;
        }
        self.notify.validate()?;
        if self.metrics.refresh_interval < Duration::from_secs(1) {
            return bad("metrics.refresh_interval", "must be at least 1s");
        }
        if let Some((key, reason)) = self.telemetry.problem() {
            return Err(ConfigError::Value { key, reason });
        }
        if let Some(t) = &self.api.trace_url_template
            && !t.contains("{trace_id}")
        {
            return bad("api.trace_url_template", "must contain {trace_id}, where the trace id goes");
        }
        Ok(())
    }
}

/// Top-level keys that environment variables may set.
const ENV_KEYS: &[&str] = &[
    "database_url",
    "database_max_connections",
    "amqp_url",
    "amqp_management_url",
    "routes_file",
    "scan_interval",
    "scan_page_size",
    "lease",
    "failed_retry_after",
    "scan_full_interval",
    "leader_lease",
    "leader_renew",
    "connect_timeout",
    "broker_recovery_timeout",
    "retry",
    "worker",
    "drivers",
    "issuers",
    "log_format",
    "api",
    "notify",
    "metrics",
    "telemetry",
];

/// `CERTFLEET_*` variables read directly, not config keys.
const ENV_OWN: &[&str] = &["CONFIG", "LOG"];

/// Whether the first segment of a `CERTFLEET_*` name that is not a known key looks like a
/// mistyped one (`WORKER_CONCURRENCY` for `WORKER__CONCURRENCY`, `DATABASE` for
/// `DATABASE_URL`, `WORKERS` for `WORKER`): it shares its first word with a known key, or
/// one is a prefix of the other. Other names (`CERTFLEET_BIN`) are users' own variables.
fn could_be_key(first: &str) -> bool {
    let word = |s: &str| s.split('_').next().unwrap_or_default().to_owned();
    !first.is_empty()
        && ENV_KEYS.iter().any(|key| first.starts_with(key) || key.starts_with(first) || word(key) == word(first))
}

/// Turns `CERTFLEET_A__B=v` pairs into a nested dictionary; returns unknown names apart.
fn env_overrides(env: impl IntoIterator<Item = (String, String)>) -> (Dict, Vec<String>) {
    let mut root = Dict::new();
    let mut unknown = Vec::new();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if !ENV_KEYS.contains(&path[0].as_str()) || path.iter().any(String::is_empty) {
            if !ENV_OWN.contains(&rest) && could_be_key(&path[0]) {
                unknown.push(name);
            }
            continue;
        }
        // URLs, files and directories stay strings; other values get figment's lenient parsing
        // (numbers, booleans, arrays like `[local]`).
        let last = path.last().map(String::as_str).unwrap_or_default();
        let parsed = if last.ends_with("_url")
            || last.ends_with("_file")
            || last.ends_with("_dir")
            || last.ends_with("listen")
        {
            Value::from(value)
        } else {
            value.parse::<Value>().unwrap_or_else(|_| Value::from(value))
        };
        insert_path(&mut root, &path, parsed);
    }
    (root, unknown)
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert(last.clone(), value);
        }
        [head, tail @ ..] => {
            let entry = dict.entry(head.clone()).or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_path(inner, tail, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_then_file_then_env() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "scan_interval = \"5s\"\namqp_url = \"amqp://file\"\n[worker]\nconcurrency = 4").unwrap();
        let loaded = Config::load_from(
            Some(file.path()),
            env(&[
                ("CERTFLEET_AMQP_URL", "amqp://u:p@env:5672/%2f"),
                ("CERTFLEET_WORKER__CONCURRENCY", "9"),
                ("CERTFLEET_WORKER__DRIVERS", "[local]"),
                ("CERTFLEET_NOPE", "1"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        let c = loaded.config;
        assert_eq!(c.scan_interval, Duration::from_secs(5));
        assert_eq!(c.amqp_url.as_slice(), ["amqp://u:p@env:5672/%2f"]);
        assert_eq!(c.worker.concurrency, 9);
        assert_eq!(c.worker.drivers, vec![Driver::Local]);
        assert_eq!(c.database_url, "sqlite://certfleet.db?mode=rwc");
        assert_eq!(loaded.unknown_env, Vec::<String>::new(), "CERTFLEET_NOPE could be no config key");
        assert!(
            matches!(c.issuers.get("internal"), Some(IssuerConfig::Internal(i)) if i.validity == Duration::from_secs(4 * 86_400))
        );
    }

    #[test]
    fn only_names_that_could_be_config_keys_are_reported_unknown() {
        let loaded = Config::load_from(
            None,
            env(&[
                ("CERTFLEET_BIN", "/usr/local/bin/certfleet"),
                ("CERTFLEET_HOME", "/srv"),
                ("CERTFLEET_LOG", "debug"),
                ("CERTFLEET_CONFIG", "x.toml"),
                ("CERTFLEET_WORKER_CONCURRENCY", "3"),
                ("CERTFLEET_WORKERS__CONCURRENCY", "3"),
                ("CERTFLEET_DATABASE", "sqlite::memory:"),
                ("CERTFLEET_SCAN_INTERVALL", "1s"),
                ("CERTFLEET_API_LISTEN", "127.0.0.1:1"),
            ]),
        )
        .unwrap();
        let mut unknown = loaded.unknown_env;
        unknown.sort();
        assert_eq!(
            unknown,
            [
                "CERTFLEET_API_LISTEN",
                "CERTFLEET_DATABASE",
                "CERTFLEET_SCAN_INTERVALL",
                "CERTFLEET_WORKERS__CONCURRENCY",
                "CERTFLEET_WORKER_CONCURRENCY"
            ]
        );
    }

    #[test]
    fn amqp_url_takes_a_toml_array_or_a_comma_separated_env_value() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "amqp_url = [\"amqp://u:pw@n1:5672/%2f\", \"amqp://u:pw@n2:5673/%2f\"]").unwrap();
        let c = Config::load_from(Some(file.path()), Vec::new()).unwrap().config;
        assert_eq!(c.amqp_url.as_slice(), ["amqp://u:pw@n1:5672/%2f", "amqp://u:pw@n2:5673/%2f"]);
        let c = Config::load_from(
            Some(file.path()),
            env(&[("CERTFLEET_AMQP_URL", "amqp://u:pw@a:1/%2f,amqp://u:pw@b:2/%2f,amqp://u:pw@c:3/%2f")]),
        )
        .unwrap()
        .config;
        assert_eq!(c.amqp_url.as_slice().len(), 3);
        assert!(!format!("{c:?}").contains("pw@"), "Debug of the config hides the passwords");

        let err = Config::load_from(None, env(&[("CERTFLEET_AMQP_URL", "amqp://u:pw@a:1/x,amqp://u:pw@b:2/y")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("amqp_url") && err.contains("vhost") && !err.contains("pw@"), "{err}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "scan_interval = \"soon\"").unwrap();
        let err = Config::load_from(Some(file.path()), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("scan_interval"), "{err}");

        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "scan_intervall = \"5s\"").unwrap();
        let err = Config::load_from(Some(file.path()), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("scan_intervall"), "{err}");

        let err = Config::load_from(None, env(&[("CERTFLEET_WORKER__CONCURRENCY", "0")])).unwrap_err().to_string();
        assert!(err.contains("worker.concurrency"), "{err}");

        let err = Config::load_from(Some(Path::new("/nonexistent/certfleet.toml")), Vec::new()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/certfleet.toml"));
    }

    #[test]
    fn panos_credentials_file_is_a_worker_setting() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[drivers.panos]\ncredentials_file = \"/etc/certfleet/panos.toml\"").unwrap();
        let c = Config::load_from(Some(file.path()), Vec::new()).unwrap().config;
        assert_eq!(c.drivers.panos.credentials_file, Some(PathBuf::from("/etc/certfleet/panos.toml")));
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[drivers.panos]\npassword = \"x\"").unwrap();
        assert!(Config::load_from(Some(file.path()), Vec::new()).is_err(), "secrets have no place in the config");
    }

    #[test]
    fn issuers_are_tagged_by_kind() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "[issuers.short]\nkind = \"internal\"\nvalidity = \"1d\"\nrenew_before = \"6h\"\nca_dir = \"/tmp/ca\""
        )
        .unwrap();
        let c = Config::load_from(Some(file.path()), Vec::new()).unwrap().config;
        assert_eq!(c.issuers["short"].renew_before(), Some(Duration::from_secs(6 * 3600)));
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "[issuers.x]\nkind = \"magic\"").unwrap();
        let err = Config::load_from(Some(file.path()), Vec::new()).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
    }
}
