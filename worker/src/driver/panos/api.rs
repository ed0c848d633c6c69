//! The PAN-OS XML API over HTTPS (reqwest on rustls with aws-lc-rs): key generation, `op`,
//! `config` get/set, certificate export and import, commit and job polling. Every call is
//! a POST to `/api/` under a timeout; the API key travels in the `X-PAN-KEY` header, never
//! in a URL.

use super::super::DriverError;
use super::xml::{Response, escape};
use std::sync::Arc;
use std::time::Duration;

/// How the firewall's management certificate is checked.
pub enum Trust {
    /// Verify it against these PEM roots (the asset's `ca_bundle`).
    Bundle(Vec<u8>),
    /// Verify it against the system's roots.
    System,
    /// Do not verify it (`certificate_validation = false`); handshake signatures still are.
    Skip,
}

/// An API key, never printed.
struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(..)")
    }
}

/// A session with one firewall's XML API.
pub struct Api {
    http: reqwest::Client,
    url: String,
    key: Option<ApiKey>,
    timeout: Duration,
}

fn tls_config(trust: Trust) -> Result<rustls::ClientConfig, DriverError> {
    let bad = |e: rustls::Error| DriverError::InvalidSettings(format!("TLS setup: {e}"));
    if let Trust::Skip = trust {
        return crate::validate::client_config().map_err(bad);
    }
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        Trust::Bundle(pem) => {
            let ders = crate::certinfo::pem_chain_to_der(&String::from_utf8_lossy(&pem))
                .map_err(|e| DriverError::InvalidSettings(format!("ca_bundle: {e}")))?;
            for der in ders {
                roots.add(der.into()).map_err(|e| DriverError::InvalidSettings(format!("ca_bundle: {e}")))?;
            }
        }
        Trust::System | Trust::Skip => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(bad)?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The rustls error somewhere in `e`'s chain of causes (rustls hides inside io::Errors,
/// whose `source` skips the wrapped error, so those are opened with `get_ref`).
fn tls_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        cur = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

fn send_error(op: &'static str, e: &reqwest::Error, after: Duration) -> DriverError {
    if e.is_timeout() {
        return DriverError::Timeout { op, after };
    }
    if let Some(rustls::Error::InvalidCertificate(why)) = tls_cause(e) {
        return DriverError::InvalidSettings(format!(
            "PAN-OS {op}: the firewall's management certificate is not trusted ({}); \
             set ca_bundle, or certificate_validation = false",
            rustls::Error::InvalidCertificate(why.clone())
        ));
    }
    // Neither the URL (no secrets in it) nor the body is echoed; the chain of causes is.
    let mut why = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        why = format!("{why}: {s}");
        source = s.source();
    }
    DriverError::Unreachable(format!("PAN-OS {op}: {why}"))
}

impl Api {
    /// A client for `https://host:port/api/`. Building the roots may read the system's
    /// trust store: call from a blocking-tolerant context (the driver uses spawn_blocking).
    pub fn new(host: &str, port: u16, trust: Trust, timeout: Duration) -> Result<Self, DriverError> {
        let tls = tls_config(trust)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| DriverError::InvalidSettings(format!("HTTP client: {e}")))?;
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        Ok(Self { http, url: format!("https://{host}:{port}/api/"), key: None, timeout })
    }

    async fn post(&self, op: &'static str, request: reqwest::RequestBuilder) -> Result<String, DriverError> {
        let request = match &self.key {
            Some(key) => request.header("X-PAN-KEY", &key.0),
            None => request,
        };
        let send = async {
            let resp = request.send().await?;
            let status = resp.status();
            resp.text().await.map(|body| (status, body))
        };
        let (status, body) = match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Err(send_error(op, &e, self.timeout)),
            Err(_) => return Err(DriverError::Timeout { op, after: self.timeout }),
        };
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(DriverError::Unreachable(format!("PAN-OS {op}: HTTP {status}")));
        }
        if (status.as_u16() == 401 || status.as_u16() == 403) && !body.trim_start().starts_with('<') {
            return Err(DriverError::Auth(format!("PAN-OS {op}: HTTP {status}")));
        }
        Ok(body)
    }

    async fn form(&self, op: &'static str, fields: &[(&str, &str)]) -> Result<Response, DriverError> {
        let body = self.post(op, self.http.post(&self.url).form(fields)).await?;
        Response::parse(op, body)
    }

    /// `type=keygen`: trades a user and password for an API key, kept for later calls.
    pub async fn keygen(&mut self, user: &str, password: &str) -> Result<(), DriverError> {
        let resp = self.form("keygen", &[("type", "keygen"), ("user", user), ("password", password)]).await?;
        let key = resp.text(&["result", "key"]).filter(|k| !k.is_empty());
        self.key = Some(ApiKey(key.ok_or_else(|| DriverError::Device("PAN-OS keygen: no key in the answer".into()))?));
        Ok(())
    }

    /// Uses a ready API key.
    pub fn use_key(&mut self, key: &str) {
        self.key = Some(ApiKey(key.to_owned()));
    }

    /// `type=op` with the XML command `cmd`.
    pub async fn op(&self, op: &'static str, cmd: &str) -> Result<Response, DriverError> {
        self.form(op, &[("type", "op"), ("cmd", cmd)]).await
    }

    /// `type=config&action=get` of `xpath`.
    pub async fn get(&self, xpath: &str) -> Result<Response, DriverError> {
        self.form("config get", &[("type", "config"), ("action", "get"), ("xpath", xpath)]).await
    }

    /// `type=config&action=show` of `xpath` (the running configuration).
    pub async fn show(&self, xpath: &str) -> Result<Response, DriverError> {
        self.form("config show", &[("type", "config"), ("action", "show"), ("xpath", xpath)]).await
    }

    /// `type=config&action=set` of `element` under `xpath`.
    pub async fn set(&self, xpath: &str, element: &str) -> Result<(), DriverError> {
        let fields = [("type", "config"), ("action", "set"), ("xpath", xpath), ("element", element)];
        self.form("config set", &fields).await.map(|_| ())
    }

    /// `type=export&category=certificate`: the certificate (or pending CSR) `name`, PEM.
    pub async fn export_pem(&self, name: &str) -> Result<String, DriverError> {
        let fields = [
            ("type", "export"),
            ("category", "certificate"),
            ("certificate-name", name),
            ("format", "pem"),
            ("include-key", "no"),
        ];
        let body = self.post("export", self.http.post(&self.url).form(&fields)).await?;
        if body.trim_start().starts_with('<') {
            // An XML answer here is an error (or an unexpected success without a file).
            let resp = Response::parse("export", body)?;
            return Err(DriverError::Device(format!("PAN-OS export returned no PEM: {}", resp.messages())));
        }
        Ok(body)
    }

    /// `type=import&category=certificate`: uploads `pem` (a multipart file) as the
    /// certificate `name`, whose key the firewall already holds.
    pub async fn import_pem(&self, name: &str, pem: &str) -> Result<(), DriverError> {
        let boundary = format!("certfleet-{:032x}", rand::random::<u128>());
        let mut body = String::new();
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}.pem\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{pem}\r\n--{boundary}--\r\n",
            escape(name)
        ));
        let query = [("type", "import"), ("category", "certificate"), ("certificate-name", name), ("format", "pem")];
        let request = self
            .http
            .post(&self.url)
            .query(&query)
            .header(reqwest::header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(body);
        let body = self.post("import", request).await?;
        Response::parse("import", body).map(|_| ())
    }

    /// `type=commit`; the commit job's id, or `None` when there was nothing to commit.
    pub async fn commit(&self) -> Result<Option<u64>, DriverError> {
        let resp = self.form("commit", &[("type", "commit"), ("cmd", "<commit></commit>")]).await?;
        Ok(resp.text(&["result", "job"]).and_then(|j| j.parse().ok()))
    }

    /// Polls `<show><jobs><id>N</id></jobs></show>` until the job is `FIN`, within `budget`.
    pub async fn wait_job(&self, id: u64, budget: Duration) -> Result<(), DriverError> {
        let deadline = tokio::time::Instant::now() + budget;
        let cmd = format!("<show><jobs><id>{id}</id></jobs></show>");
        let mut delay = Duration::from_millis(200);
        loop {
            let resp = self.op("show jobs", &cmd).await?;
            let status = resp.text(&["job", "status"]).unwrap_or_default();
            if status == "FIN" {
                return match resp.text(&["job", "result"]).as_deref() {
                    Some("OK") => Ok(()),
                    other => Err(DriverError::Activation(format!(
                        "commit job {id} ended {}: {}",
                        other.unwrap_or("without a result"),
                        resp.messages()
                    ))),
                };
            }
            if tokio::time::Instant::now() + delay > deadline {
                return Err(DriverError::Timeout { op: "PAN-OS commit job", after: budget });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
