//! `[telemetry]`: OpenTelemetry trace export over OTLP/HTTP (protobuf). Off by default;
//! the standard `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER*` and
//! `OTEL_BSP_*` variables are honoured where these keys are unset.

use serde::{Deserialize, Serialize};

/// Where and how spans are exported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, for example `http://127.0.0.1:4318`: spans are
    /// posted to `<url>/v1/traces` (a URL that already ends in `/v1/traces` is used as
    /// it is). Unset: spans are exported only if `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` is set; with neither, nothing leaves the process.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource. Unset: `OTEL_SERVICE_NAME`, else the process's own
    /// name (`certfleet-scheduler`, `certfleet-worker`, `certfleet-api`, ...).
    pub service_name: Option<String>,
    /// The share of traces kept, from 0.0 to 1.0, decided where a trace starts (the
    /// scheduler's scan) and followed by every process after it. Unset:
    /// `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`, else 1.0 (every trace).
    pub sample_ratio: Option<f64>,
}

impl TelemetryConfig {
    /// The problem with these settings, if any: `(key, reason)`.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if let Some(r) = self.sample_ratio
            && !(0.0..=1.0).contains(&r)
        {
            return Some(("telemetry.sample_ratio", format!("must be between 0.0 and 1.0, not {r}")));
        }
        if let Some(url) = &self.otlp_endpoint {
            match url::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
                Ok(u) => {
                    return Some((
                        "telemetry.otlp_endpoint",
                        format!("must be an http:// or https:// URL with a host, not a {}: URL", u.scheme()),
                    ));
                }
                Err(e) => return Some(("telemetry.otlp_endpoint", format!("is not a URL ({e})"))),
            }
        }
        if self.service_name.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Some(("telemetry.service_name", "must not be empty".to_owned()));
        }
        None
    }

    /// The traces URL for `otlp_endpoint`, if set.
    pub fn traces_url(&self) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_ratios_are_checked() {
        let mut t = TelemetryConfig { otlp_endpoint: Some("http://127.0.0.1:4318/".into()), ..Default::default() };
        assert!(t.problem().is_none());
        assert_eq!(t.traces_url().as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        t.otlp_endpoint = Some("https://otel.example/v1/traces".into());
        assert_eq!(t.traces_url().as_deref(), Some("https://otel.example/v1/traces"));
        t.otlp_endpoint = Some("127.0.0.1:4318".into());
        assert_eq!(t.problem().map(|p| p.0), Some("telemetry.otlp_endpoint"));
        t.otlp_endpoint = None;
        t.sample_ratio = Some(1.5);
        let (key, reason) = t.problem().expect("a ratio above 1 is refused");
        assert_eq!((key, reason.as_str()), ("telemetry.sample_ratio", "must be between 0.0 and 1.0, not 1.5"));
    }

    #[test]
    fn the_example_config_loads_with_its_telemetry_section() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/certfleet.toml");
        let loaded = crate::Config::load_from(Some(&path), Vec::new()).expect("examples/certfleet.toml loads");
        assert!(loaded.config.telemetry.otlp_endpoint.is_none(), "export is off in the example");
        let env = [("CERTFLEET_TELEMETRY__SAMPLE_RATIO".to_owned(), "2".to_owned())];
        let err = crate::Config::load_from(Some(&path), env).expect_err("a ratio of 2 is refused");
        assert_eq!(
            err.to_string(),
            "invalid configuration: telemetry.sample_ratio: must be between 0.0 and 1.0, not 2"
        );
    }
}
