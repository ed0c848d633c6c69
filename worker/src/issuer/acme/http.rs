//! The HTTP client instant-acme talks through: reqwest over rustls (aws-lc-rs) trusting the
//! system roots plus an optional CA bundle, every request under a timeout. It also notes the
//! last throttling answer (429/503 and its `Retry-After`) of the current job, which the
//! problem document alone does not carry.

use crate::issuer::IssuerError;
use bytes::Bytes;
use certfleet_shared::metrics::{Metric, counter, histogram};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// The last throttling answer seen by one job (status 0: none).
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    status: AtomicU16,
    /// Seconds to wait; `u64::MAX` when the answer had no usable `Retry-After`.
    retry_after: AtomicU64,
}

impl Throttle {
    /// The status (429 or 503) and `Retry-After` of the last throttling answer, if any.
    pub(crate) fn last(&self) -> Option<(u16, Option<Duration>)> {
        let status = self.status.load(Ordering::Relaxed);
        let secs = self.retry_after.load(Ordering::Relaxed);
        (status != 0).then(|| (status, (secs != u64::MAX).then(|| Duration::from_secs(secs))))
    }

    fn record(&self, status: u16, retry_after: Option<Duration>) {
        self.retry_after.store(retry_after.map_or(u64::MAX, |d| d.as_secs()), Ordering::Relaxed);
        self.status.store(status, Ordering::Relaxed);
    }
}

tokio::task_local! {
    static THROTTLE: Arc<Throttle>;
    static ACTION: Action;
}

/// What an ACME request is for: the `action` label of `certfleet_acme_requests_total` and
/// `certfleet_acme_request_duration_seconds` (requests made outside one are `other`:
/// nonces, the account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Creating the order.
    NewOrder,
    /// Fetching or refreshing an authorization.
    Authorization,
    /// Telling the CA a challenge is ready.
    Challenge,
    /// Polling the order's status.
    PollOrder,
    /// Finalizing the order with the CSR.
    Finalize,
    /// Downloading the certificate.
    Certificate,
}

impl Action {
    /// The label value.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Action::NewOrder => "new_order",
            Action::Authorization => "authorization",
            Action::Challenge => "challenge",
            Action::PollOrder => "poll_order",
            Action::Finalize => "finalize",
            Action::Certificate => "certificate",
        }
    }
}

impl Action {
    /// The name of the span around one such request.
    pub(crate) const fn span_name(self) -> &'static str {
        match self {
            Action::NewOrder => "acme new_order",
            Action::Authorization => "acme authorization",
            Action::Challenge => "acme challenge",
            Action::PollOrder => "acme poll_order",
            Action::Finalize => "acme finalize",
            Action::Certificate => "acme certificate",
        }
    }
}

/// Runs `f` with its ACME requests counted under `action`.
pub(crate) async fn in_action<F: Future>(action: Action, f: F) -> F::Output {
    ACTION.scope(action, f).await
}

/// Runs `f` with a fresh throttle record, readable through [`current_throttle`] inside it.
pub(crate) async fn with_throttle<F: Future>(f: F) -> F::Output {
    THROTTLE.scope(Arc::new(Throttle::default()), f).await
}

/// The last throttling answer of the current job.
pub(crate) fn current_throttle() -> Option<(u16, Option<Duration>)> {
    THROTTLE.try_with(|t| t.last()).ok().flatten()
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at: SystemTime = chrono::DateTime::parse_from_rfc2822(value).ok()?.into();
    Some(at.duration_since(now).unwrap_or_default())
}

/// reqwest behind instant-acme's [`HttpClient`].
#[derive(Clone)]
pub(crate) struct AcmeHttp {
    client: reqwest::Client,
}

impl AcmeHttp {
    /// A client trusting the system roots plus the certificates of `ca_bundle`.
    pub(crate) async fn new(ca_bundle: Option<&Path>, timeout: Duration) -> Result<Self, IssuerError> {
        let mut roots = rustls::RootCertStore::empty();
        // Reads the system's certificate files: blocking I/O, kept off the runtime.
        let native = tokio::task::spawn_blocking(rustls_native_certs::load_native_certs)
            .await
            .map_err(|e| IssuerError::Internal(format!("loading the system roots: {e}")))?;
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = ca_bundle {
            let fail = |e: String| IssuerError::Internal(format!("ca_bundle {}: {e}", path.display()));
            let pem = tokio::fs::read(path).await.map_err(|e| fail(e.to_string()))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                roots.add(cert.map_err(|e| fail(e.to_string()))?).map_err(|e| fail(e.to_string()))?;
                added += 1;
            }
            if added == 0 {
                return Err(fail("no certificate in the file".into()));
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| IssuerError::Internal(format!("TLS setup: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| IssuerError::Internal(format!("HTTP client setup: {e}")))?;
        Ok(Self { client })
    }
}

type Error = instant_acme::Error;

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, Error>> + Send>> {
        let client = self.client.clone();
        let throttle = THROTTLE.try_with(Arc::clone).ok();
        let action = ACTION.try_with(|a| a.as_str()).unwrap_or("other");
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let req = reqwest::Request::try_from(http::Request::from_parts(parts, reqwest::Body::wrap(body)))
                .map_err(|e| Error::Other(Box::new(e)))?;
            let started = std::time::Instant::now();
            let sent = client.execute(req).await;
            histogram!(Metric::AcmeRequestDuration.name(), "action" => action).record(started.elapsed().as_secs_f64());
            let status_label = sent.as_ref().map_or_else(|_| "error".to_owned(), |r| r.status().as_u16().to_string());
            counter!(Metric::AcmeRequests.name(), "action" => action, "status" => status_label).increment(1);
            let rsp = sent.map_err(|e| Error::Other(Box::new(e)))?;
            let status = rsp.status().as_u16();
            if let Some(t) = throttle.filter(|_| status == 429 || status == 503) {
                let after = rsp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                t.record(status, after);
            }
            Ok(BytesResponse::from(http::Response::<reqwest::Body>::from(rsp)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_000);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        // 1999-12-31 23:59:59 UTC is 946684799.
        assert_eq!(parse_retry_after("Fri, 31 Dec 1999 23:59:59 GMT", now), Some(Duration::from_secs(799)));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn throttle_is_per_scope() {
        assert_eq!(current_throttle(), None);
        with_throttle(async {
            assert_eq!(current_throttle(), None);
            THROTTLE.with(|t| t.record(429, Some(Duration::from_secs(7))));
            assert_eq!(current_throttle(), Some((429, Some(Duration::from_secs(7)))));
        })
        .await;
        with_throttle(async { assert_eq!(current_throttle(), None) }).await;
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// Records a throttling answer in the current scope, as a real response would.
    pub(crate) fn record(status: u16, retry_after: Option<Duration>) {
        THROTTLE.with(|t| t.record(status, retry_after));
    }
}
