//! The OTLP/HTTP span exporter: built when `[telemetry] otlp_endpoint` or the standard
//! `OTEL_EXPORTER_OTLP_*` endpoint variable is set, batched on the SDK's own thread.

use crate::config::TelemetryConfig;
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

/// Variables that turn export on without `otlp_endpoint`.
const ENDPOINT_VARS: [&str; 2] = ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"];

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

/// The tracer provider for `config`, or `None` when nothing is to be exported.
pub(super) fn provider(config: &TelemetryConfig, process: &str) -> Result<Option<SdkTracerProvider>, String> {
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let url = config.traces_url();
    if disabled || (url.is_none() && !ENDPOINT_VARS.iter().any(|v| env_set(v))) {
        return Ok(None);
    }
    // The exporter's blocking HTTP client takes rustls's process-wide provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut exporter = SpanExporter::builder().with_http().with_protocol(Protocol::HttpBinary);
    if let Some(url) = url {
        exporter = exporter.with_endpoint(url);
    }
    let exporter = exporter.build().map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let mut resource = Resource::builder().with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match &config.service_name {
        Some(name) => resource = resource.with_service_name(name.clone()),
        None if env_set("OTEL_SERVICE_NAME") => {}
        None => resource = resource.with_service_name(process.to_owned()),
    }
    let mut builder = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build());
    if let Some(ratio) = config.sample_ratio {
        builder = builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio))));
    }
    Ok(Some(builder.build()))
}
