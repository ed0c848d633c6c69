//! Cloudflare DNS provider (API v4): one TXT record per value, so adding or deleting ours
//! never touches the others. The API token comes from a mode-0600 file and is never shown.

use super::txt::unquote_txt;
use super::{DnsError, DnsProvider};
use async_trait::async_trait;
use certfleet_shared::config::dns::CloudflareConfig;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OnceCell;

/// Cloudflare's smallest TTL for a non-automatic record.
const MIN_TTL: u32 = 60;

/// The API token; its `Debug` never shows it.
struct ApiToken(String);

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("****")
    }
}

/// Writes TXT records in one Cloudflare zone.
#[derive(Debug)]
pub struct CloudflareProvider {
    http: reqwest::Client,
    api_base: String,
    zone: String,
    zone_id: OnceCell<String>,
    token: ApiToken,
    timeout: Duration,
}

/// Cloudflare's response envelope.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(default)]
    success: bool,
    #[serde(default)]
    errors: Vec<ApiMessage>,
    result: Option<T>,
}

#[derive(Deserialize)]
struct ApiMessage {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct Zone {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct Record {
    id: String,
    content: String,
}

impl CloudflareProvider {
    /// Reads the token file (it must be mode 0600 or stricter) and builds the HTTPS client.
    pub async fn new(config: &CloudflareConfig) -> Result<Self, DnsError> {
        let token = read_token(&config.api_token_file).await?;
        let url = reqwest::Url::parse(&config.api_base)
            .map_err(|e| DnsError::InvalidConfig(format!("Cloudflare api_base {:?}: {e}", config.api_base)))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(DnsError::InvalidConfig(format!(
                "Cloudflare api_base {:?} must be https (plain http only to a loopback address)",
                config.api_base
            )));
        }
        Ok(Self {
            http: http_client(config.timeout).await?,
            api_base: config.api_base.trim_end_matches('/').to_owned(),
            zone: config.zone.trim_end_matches('.').to_ascii_lowercase(),
            zone_id: OnceCell::new_with(config.zone_id.clone()),
            token: ApiToken(token),
            timeout: config.timeout,
        })
    }

    /// Sends one API request under the timeout and unwraps Cloudflare's envelope.
    async fn api<T: DeserializeOwned>(&self, op: &'static str, name: &str, req: RequestBuilder) -> Result<T, DnsError> {
        let exchange = async {
            let rsp = req.bearer_auth(&self.token.0).send().await?;
            let status = rsp.status();
            let retry_after = rsp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = rsp.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        };
        let (status, retry_after, body) = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => return Err(DnsError::Timeout { op, after: self.timeout }),
            Ok(Err(e)) if e.is_timeout() => return Err(DnsError::Timeout { op, after: self.timeout }),
            Ok(Err(e)) => return Err(DnsError::Unreachable(format!("Cloudflare {op}: {}", e.without_url()))),
            Ok(Ok(answer)) => answer,
        };
        let envelope: Option<Envelope<T>> = serde_json::from_slice(&body).ok();
        let detail = envelope.as_ref().map(|e| api_errors(&e.errors)).unwrap_or_default();
        let detail = format!("Cloudflare {op}: HTTP {}{detail}", status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(DnsError::RateLimited { retry_after, detail });
        }
        if status.is_server_error() {
            return Err(DnsError::ServerFailure { rcode: detail, name: name.to_owned() });
        }
        match envelope {
            Some(Envelope { success: true, result: Some(result), .. }) if status.is_success() => Ok(result),
            // 401/403 (bad or under-scoped token) and every other refusal: permanent.
            _ if status.is_client_error() || status.is_success() => {
                Err(DnsError::Refused { rcode: detail, name: name.to_owned() })
            }
            _ => Err(DnsError::Protocol(detail)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    /// The zone id: configured, or looked up by the zone's name once.
    async fn zone_id(&self) -> Result<&str, DnsError> {
        self.zone_id
            .get_or_try_init(|| async {
                let req = self.http.get(self.url("/zones")).query(&[("name", self.zone.as_str())]);
                let zones: Vec<Zone> = self.api("list zones", &self.zone, req).await?;
                zones
                    .into_iter()
                    .find(|z| z.name.eq_ignore_ascii_case(&self.zone))
                    .map(|z| z.id)
                    .ok_or_else(|| DnsError::InvalidConfig(format!("no Cloudflare zone named {}", self.zone)))
            })
            .await
            .map(String::as_str)
    }

    /// The TXT records at `name` whose value is `value`.
    async fn matching(&self, zone_id: &str, name: &str, value: &str) -> Result<Vec<Record>, DnsError> {
        let req = self.http.get(self.url(&format!("/zones/{zone_id}/dns_records"))).query(&[
            ("type", "TXT"),
            ("name", name),
            ("per_page", "100"),
        ]);
        let records: Vec<Record> = self.api("list records", name, req).await?;
        Ok(records.into_iter().filter(|r| unquote_txt(&r.content) == value).collect())
    }

    fn name(&self, fqdn: &str) -> Result<String, DnsError> {
        let name = fqdn.trim_end_matches('.').to_ascii_lowercase();
        if name == self.zone || name.ends_with(&format!(".{}", self.zone)) {
            Ok(name)
        } else {
            Err(DnsError::InvalidConfig(format!("{name} is outside zone {}", self.zone)))
        }
    }
}

#[async_trait]
impl DnsProvider for CloudflareProvider {
    async fn set_txt(&self, fqdn: &str, value: &str, ttl: u32) -> Result<(), DnsError> {
        let name = self.name(fqdn)?;
        let zone_id = self.zone_id().await?;
        if !self.matching(zone_id, &name, value).await?.is_empty() {
            return Ok(());
        }
        let body = serde_json::json!({"type": "TXT", "name": name, "content": value, "ttl": ttl.max(MIN_TTL)});
        let req = self.http.request(Method::POST, self.url(&format!("/zones/{zone_id}/dns_records"))).json(&body);
        let _: serde_json::Value = self.api("create record", &name, req).await?;
        Ok(())
    }

    async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let name = self.name(fqdn)?;
        let zone_id = self.zone_id().await?;
        for record in self.matching(zone_id, &name, value).await? {
            let req = self.http.delete(self.url(&format!("/zones/{zone_id}/dns_records/{}", record.id)));
            let _: serde_json::Value = self.api("delete record", &name, req).await?;
        }
        Ok(())
    }
}

/// `" [code] message"` for each API error, so the cause is readable in the job's history.
fn api_errors(errors: &[ApiMessage]) -> String {
    errors.iter().map(|e| format!(" [{}] {}", e.code, e.message)).collect()
}

/// Reads the token; the file must not be readable by group or others.
async fn read_token(path: &Path) -> Result<String, DnsError> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| DnsError::InvalidConfig(format!("Cloudflare api_token_file {shown}: {e}")))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(DnsError::InvalidConfig(format!(
            "Cloudflare api_token_file {shown} has mode {mode:o}; it must be 0600 (not readable by group or others)"
        )));
    }
    let token = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| DnsError::InvalidConfig(format!("Cloudflare api_token_file {shown}: {e}")))?;
    let token = token.trim().to_owned();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(DnsError::InvalidConfig(format!("Cloudflare api_token_file {shown} holds no usable token")));
    }
    Ok(token)
}

/// An HTTPS client on rustls with the aws-lc-rs provider and the system's trust roots.
async fn http_client(timeout: Duration) -> Result<reqwest::Client, DnsError> {
    let roots = tokio::task::spawn_blocking(|| {
        let mut store = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = store.add_parsable_certificates(found.certs);
        (store, added)
    })
    .await
    .map_err(|e| DnsError::InvalidConfig(format!("loading trust roots: {e}")))?;
    if roots.1 == 0 {
        tracing::warn!("no system trust roots found; HTTPS to Cloudflare will fail");
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| DnsError::InvalidConfig(format!("TLS setup: {e}")))?
        .with_root_certificates(roots.0)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| DnsError::InvalidConfig(format!("HTTP client: {e}")))
}
