//! The Route 53 DNS provider against moto's Route 53 server (PyPI `moto[server]`), the
//! closest thing to Route 53 that runs here: every check is a real Route 53 API call over
//! HTTP to a `moto_server` subprocess, and the results are read back through the same API.
//! `scripts/stack/install.sh` installs moto when `moto_server` is missing. The credentials
//! and region are test values set on the SDK config, never in the process environment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use aws_config::BehaviorVersion;
use aws_sdk_route53::config::{Credentials, Region};
use aws_sdk_route53::types::RrType;
use certfleet_shared::config::dns::Route53Config;
use certfleet_worker::issuer::dns::route53::Route53Provider;
use certfleet_worker::issuer::dns::{DnsError, DnsProvider};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZONE: &str = "certfleet.test";
const NAME: &str = "_acme-challenge.www.certfleet.test";

/// A `moto_server` on a free 127.0.0.1 port, killed when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn has_moto() -> bool {
    Command::new("sh").args(["-c", "command -v moto_server"]).output().map(|o| o.status.success()).unwrap_or(false)
}

impl Moto {
    async fn start() -> Moto {
        if !has_moto() {
            let install = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/stack/install.sh");
            assert!(Command::new(install).status().unwrap().success(), "install.sh failed");
            assert!(has_moto(), "install.sh did not install moto_server");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(30), "moto_server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("testing", "testing", None, None, "certfleet-test"))
            .endpoint_url(&self.url)
            .load()
            .await
    }

    fn config(&self, hosted_zone_id: Option<&str>) -> Route53Config {
        Route53Config {
            zone: ZONE.into(),
            hosted_zone_id: hosted_zone_id.map(Into::into),
            region: None,
            endpoint_url: Some(self.url.clone()),
            timeout: Duration::from_secs(5),
            propagation_timeout: Duration::from_secs(10),
        }
    }

    /// Creates the hosted zone through the API; returns its bare id.
    async fn create_zone(&self, client: &aws_sdk_route53::Client) -> String {
        let out =
            client.create_hosted_zone().name(ZONE).caller_reference(uuid::Uuid::new_v4().to_string()).send().await;
        out.unwrap().hosted_zone().unwrap().id().trim_start_matches("/hostedzone/").to_owned()
    }
}

/// The TXT values at `name`, as Route 53 stores them (quoted).
async fn txt_set(client: &aws_sdk_route53::Client, zone_id: &str, name: &str) -> BTreeSet<String> {
    let out = client.list_resource_record_sets().hosted_zone_id(zone_id).send().await.unwrap();
    out.resource_record_sets()
        .iter()
        .filter(|s| s.r#type() == &RrType::Txt && s.name().trim_end_matches('.') == name)
        .flat_map(|s| s.resource_records().iter().map(|r| r.value().to_owned()))
        .collect()
}

fn set(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| format!("\"{v}\"")).collect()
}

#[tokio::test]
async fn values_are_added_and_removed_one_by_one_keeping_the_others() {
    let moto = Moto::start().await;
    let sdk = moto.sdk().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    let zone_id = moto.create_zone(&client).await;
    // The zone id is looked up by name.
    let dns = Route53Provider::with_sdk_config(&moto.config(None), &sdk);

    dns.set_txt(NAME, "value-one", 60).await.unwrap();
    dns.set_txt(NAME, "value-two", 60).await.unwrap();
    dns.set_txt(NAME, "value-one", 60).await.unwrap(); // already there: no duplicate
    dns.set_txt("_acme-challenge.other.certfleet.test", "elsewhere", 60).await.unwrap();
    assert_eq!(txt_set(&client, &zone_id, NAME).await, set(&["value-one", "value-two"]));

    dns.remove_txt(NAME, "value-one").await.unwrap();
    assert_eq!(txt_set(&client, &zone_id, NAME).await, set(&["value-two"]));
    dns.remove_txt(NAME, "never-set").await.unwrap();
    assert_eq!(txt_set(&client, &zone_id, NAME).await, set(&["value-two"]));

    // The last value goes with its RRset; other names are untouched.
    dns.remove_txt(NAME, "value-two").await.unwrap();
    assert!(txt_set(&client, &zone_id, NAME).await.is_empty());
    dns.remove_txt(NAME, "value-two").await.unwrap(); // nothing left: still fine
    assert_eq!(txt_set(&client, &zone_id, "_acme-challenge.other.certfleet.test").await, set(&["elsewhere"]));
}

#[tokio::test]
async fn concurrent_challenges_for_one_name_all_land() {
    let moto = Moto::start().await;
    let sdk = moto.sdk().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    let zone_id = moto.create_zone(&client).await;
    let dns = Arc::new(Route53Provider::with_sdk_config(&moto.config(Some(&zone_id)), &sdk));
    let values: Vec<String> = (0..6).map(|i| format!("token-{i}")).collect();
    let tasks: Vec<_> = values
        .iter()
        .map(|v| {
            let (dns, v) = (dns.clone(), v.clone());
            tokio::spawn(async move { dns.set_txt(NAME, &v, 60).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let expected: Vec<&str> = values.iter().map(String::as_str).collect();
    assert_eq!(txt_set(&client, &zone_id, NAME).await, set(&expected));
}

#[tokio::test]
async fn wrong_zones_are_permanent_and_an_absent_server_is_transient() {
    let moto = Moto::start().await;
    let sdk = moto.sdk().await;
    let client = aws_sdk_route53::Client::new(&sdk);
    moto.create_zone(&client).await;

    // A hosted zone id that does not exist: Route 53 answers NoSuchHostedZone.
    let dns = Route53Provider::with_sdk_config(&moto.config(Some("Z0000000NOSUCHZONE")), &sdk);
    let err = dns.set_txt(NAME, "v", 60).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(err.to_string().contains("NoSuchHostedZone"), "{err}");

    // A zone name no hosted zone has.
    let mut other = moto.config(None);
    other.zone = "not-hosted.test".into();
    let dns = Route53Provider::with_sdk_config(&other, &sdk);
    let err = dns.set_txt("_acme-challenge.not-hosted.test", "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidConfig(_)), "{err}");

    // A name outside the configured zone never reaches the API.
    let dns = Route53Provider::with_sdk_config(&moto.config(None), &sdk);
    let err = dns.set_txt("_acme-challenge.example.org", "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidConfig(_)), "{err}");

    // Nothing listens: a fault that may pass.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut gone = moto.config(Some("Z1"));
    gone.endpoint_url = Some(format!("http://127.0.0.1:{closed}"));
    gone.timeout = Duration::from_secs(3);
    let dns = Route53Provider::with_sdk_config(&gone, &sdk);
    let err = dns.set_txt(NAME, "v", 60).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
}
