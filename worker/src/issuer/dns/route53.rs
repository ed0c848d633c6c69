//! AWS Route 53 DNS provider: read-modify-write of the TXT RRset at the challenge name, so
//! other values in the set survive; every API call runs under the configured timeout.

use super::txt::{quote_txt, unquote_txt};
use super::{DnsError, DnsProvider};
use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_sdk_route53::Client;
use aws_sdk_route53::config::Region;
use aws_sdk_route53::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, ChangeStatus, ResourceRecord, ResourceRecordSet, RrType,
};
use certfleet_shared::config::dns::Route53Config;
use std::future::Future;
use std::time::Duration;
use tokio::sync::{Mutex, OnceCell};

/// Route 53 is a global service: its API is signed for this region when none is configured.
const DEFAULT_REGION: &str = "us-east-1";
/// How often a pending change is polled until Route 53 reports it `INSYNC`.
const INSYNC_POLL: Duration = Duration::from_secs(2);

/// Writes TXT values in one Route 53 hosted zone.
pub struct Route53Provider {
    client: Client,
    zone: String,
    zone_id: OnceCell<String>,
    timeout: Duration,
    insync_timeout: Duration,
    /// Serialises this worker's read-modify-write cycles, so concurrent challenges for the
    /// same name never overwrite each other's values.
    write: Mutex<()>,
}

impl std::fmt::Debug for Route53Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Provider").field("zone", &self.zone).field("zone_id", &self.zone_id.get()).finish()
    }
}

impl Route53Provider {
    /// A provider using the usual AWS credential chain (environment, profile, instance role).
    pub async fn new(config: &Route53Config) -> Result<Self, DnsError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        // Resolving the region may ask the instance metadata service: bounded too.
        let sdk = tokio::time::timeout(config.timeout, loader.load())
            .await
            .map_err(|_| DnsError::Timeout { op: "load AWS configuration", after: config.timeout })?;
        Ok(Self::with_sdk_config(config, &sdk))
    }

    /// A provider on an already loaded SDK config (credentials, region); `config`'s region
    /// and endpoint still override it.
    pub fn with_sdk_config(config: &Route53Config, sdk: &aws_config::SdkConfig) -> Self {
        let mut builder = aws_sdk_route53::config::Builder::from(sdk);
        match (&config.region, sdk.region()) {
            (Some(r), _) => builder = builder.region(Region::new(r.clone())),
            (None, None) => builder = builder.region(Region::new(DEFAULT_REGION)),
            (None, Some(_)) => {}
        }
        if let Some(url) = &config.endpoint_url {
            builder = builder.endpoint_url(url.clone());
        }
        let zone_id = OnceCell::new_with(config.hosted_zone_id.as_deref().map(bare_zone_id));
        Self {
            client: Client::from_conf(builder.build()),
            zone: config.zone.trim_end_matches('.').to_ascii_lowercase(),
            zone_id,
            timeout: config.timeout,
            insync_timeout: config.propagation_timeout,
            write: Mutex::new(()),
        }
    }

    /// Runs one API call under the timeout and maps its error.
    async fn call<T, E>(
        &self,
        op: &'static str,
        name: &str,
        fut: impl Future<Output = Result<T, SdkError<E>>>,
    ) -> Result<T, DnsError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(map_sdk_error(e, op, name, self.timeout)),
            Err(_) => Err(DnsError::Timeout { op, after: self.timeout }),
        }
    }

    /// The hosted zone id: configured, or looked up by the zone's name once.
    async fn zone_id(&self) -> Result<&str, DnsError> {
        self.zone_id
            .get_or_try_init(|| async {
                let fqdn = format!("{}.", self.zone);
                let out = self
                    .call(
                        "list hosted zones",
                        &fqdn,
                        self.client.list_hosted_zones_by_name().dns_name(&fqdn).max_items(1).send(),
                    )
                    .await?;
                out.hosted_zones()
                    .iter()
                    .find(|z| z.name().eq_ignore_ascii_case(&fqdn))
                    .map(|z| bare_zone_id(z.id()))
                    .ok_or_else(|| DnsError::InvalidConfig(format!("no Route 53 hosted zone named {fqdn}")))
            })
            .await
            .map(String::as_str)
    }

    /// The TXT RRset at `fqdn` (values unquoted, TTL), or `None` when there is none.
    async fn read(&self, zone_id: &str, fqdn: &str) -> Result<Option<(Vec<String>, i64)>, DnsError> {
        let out = self
            .call(
                "list record sets",
                fqdn,
                self.client
                    .list_resource_record_sets()
                    .hosted_zone_id(zone_id)
                    .start_record_name(fqdn)
                    .start_record_type(RrType::Txt)
                    .max_items(1)
                    .send(),
            )
            .await?;
        Ok(out
            .resource_record_sets()
            .iter()
            .find(|set| set.r#type() == &RrType::Txt && set.name().eq_ignore_ascii_case(fqdn))
            .map(|set| {
                let values = set.resource_records().iter().map(|r| unquote_txt(r.value())).collect();
                (values, set.ttl().unwrap_or(60))
            }))
    }

    /// Applies one change and waits (bounded) until Route 53 reports it in sync.
    async fn change(
        &self,
        zone_id: &str,
        fqdn: &str,
        action: ChangeAction,
        values: &[String],
        ttl: i64,
    ) -> Result<(), DnsError> {
        let invalid = |e: aws_sdk_route53::error::BuildError| DnsError::InvalidConfig(format!("Route 53 change: {e}"));
        let mut set = ResourceRecordSet::builder().name(fqdn).r#type(RrType::Txt).ttl(ttl);
        for v in values {
            set = set.resource_records(ResourceRecord::builder().value(quote_txt(v)).build().map_err(invalid)?);
        }
        let change = Change::builder()
            .action(action)
            .resource_record_set(set.build().map_err(invalid)?)
            .build()
            .map_err(invalid)?;
        let batch = ChangeBatch::builder().changes(change).build().map_err(invalid)?;
        let out = self
            .call(
                "change record sets",
                fqdn,
                self.client.change_resource_record_sets().hosted_zone_id(zone_id).change_batch(batch).send(),
            )
            .await?;
        let Some(info) = out.change_info() else { return Ok(()) };
        let (id, mut status) = (info.id().to_owned(), info.status().clone());
        let deadline = tokio::time::Instant::now() + self.insync_timeout;
        while status != ChangeStatus::Insync {
            if tokio::time::Instant::now() + INSYNC_POLL > deadline {
                return Err(DnsError::Timeout { op: "wait for Route 53 INSYNC", after: self.insync_timeout });
            }
            tokio::time::sleep(INSYNC_POLL).await;
            let got = self.call("get change", fqdn, self.client.get_change().id(&id).send()).await?;
            status = got.change_info().map(|c| c.status().clone()).unwrap_or(ChangeStatus::Insync);
        }
        Ok(())
    }

    fn fqdn(&self, name: &str) -> Result<String, DnsError> {
        let fqdn = format!("{}.", name.trim_end_matches('.').to_ascii_lowercase());
        let inside = fqdn == format!("{}.", self.zone) || fqdn.ends_with(&format!(".{}.", self.zone));
        if inside { Ok(fqdn) } else { Err(DnsError::InvalidConfig(format!("{fqdn} is outside zone {}", self.zone))) }
    }
}

#[async_trait]
impl DnsProvider for Route53Provider {
    async fn set_txt(&self, fqdn: &str, value: &str, ttl: u32) -> Result<(), DnsError> {
        let fqdn = self.fqdn(fqdn)?;
        let zone_id = self.zone_id().await?;
        let _guard = self.write.lock().await;
        let mut values = self.read(zone_id, &fqdn).await?.map(|(v, _)| v).unwrap_or_default();
        if values.iter().any(|v| v == value) {
            return Ok(());
        }
        values.push(value.to_owned());
        self.change(zone_id, &fqdn, ChangeAction::Upsert, &values, i64::from(ttl)).await
    }

    async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let fqdn = self.fqdn(fqdn)?;
        let zone_id = self.zone_id().await?;
        let _guard = self.write.lock().await;
        let Some((values, ttl)) = self.read(zone_id, &fqdn).await? else { return Ok(()) };
        if !values.iter().any(|v| v == value) {
            return Ok(());
        }
        let rest: Vec<String> = values.iter().filter(|v| *v != value).cloned().collect();
        if rest.is_empty() {
            // A DELETE must name the set exactly as it is.
            self.change(zone_id, &fqdn, ChangeAction::Delete, &values, ttl).await
        } else {
            self.change(zone_id, &fqdn, ChangeAction::Upsert, &rest, ttl).await
        }
    }
}

/// `/hostedzone/Z123` -> `Z123`.
fn bare_zone_id(id: &str) -> String {
    id.trim_start_matches("/hostedzone/").to_owned()
}

/// Error codes Route 53 answers when a caller goes too fast.
const THROTTLING: &[&str] = &["Throttling", "ThrottlingException", "PriorRequestNotComplete", "RequestLimitExceeded"];

/// Maps an SDK error: throttling, 5xx, timeouts and network faults are transient; access
/// denied, invalid input, unknown zones and other 4xx answers are permanent.
fn map_sdk_error<E>(err: SdkError<E>, op: &'static str, name: &str, after: Duration) -> DnsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => DnsError::Timeout { op, after },
        SdkError::DispatchFailure(d) if d.is_timeout() => DnsError::Timeout { op, after },
        SdkError::DispatchFailure(_) => DnsError::Unreachable(format!("Route 53 {op}: {}", describe(&err))),
        SdkError::ResponseError(_) => DnsError::Protocol(format!("Route 53 {op}: {}", describe(&err))),
        SdkError::ConstructionFailure(_) => DnsError::InvalidConfig(format!("Route 53 {op}: {}", describe(&err))),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code().unwrap_or("").to_owned();
            let detail = format!("Route 53 {op}: {code} {}", ctx.err().message().unwrap_or_default());
            if status == 429 || THROTTLING.contains(&code.as_str()) {
                DnsError::RateLimited { retry_after: None, detail }
            } else if status >= 500 {
                DnsError::ServerFailure { rcode: format!("HTTP {status} {code}"), name: name.to_owned() }
            } else {
                DnsError::Refused { rcode: format!("HTTP {status} {code}: {detail}"), name: name.to_owned() }
            }
        }
        _ => DnsError::Protocol(format!("Route 53 {op}: {}", describe(&err))),
    }
}

fn describe<E: std::error::Error + 'static>(err: &SdkError<E>) -> String {
    aws_sdk_route53::error::DisplayErrorContext(err).to_string()
}
