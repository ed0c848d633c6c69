//! The RFC 2136 DNS provider against a real BIND9 (`named`, Debian's bind9 package).
//!
//! The tests start the shared test stack with `scripts/stack/up.sh <tempdir>` (installing it
//! first with `scripts/stack/install.sh` when `named` is missing), which runs `named` on a
//! random 127.0.0.1 port, authoritative for `certfleet.test` with the TSIG keys
//! `certfleet-key` (hmac-sha256) and `certfleet-key-512` (hmac-sha512). One stack is shared by
//! the tests that overlap in time and is stopped with `scripts/stack/down.sh` when the last
//! guard drops. Every check is a real signed UPDATE and a real query to that `named`. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

mod common;

use common::stack::Stack;

use certfleet_worker::issuer::dns::rfc2136::{Rfc2136Config, Rfc2136Provider, TsigAlgorithm};
use certfleet_worker::issuer::dns::{DnsError, DnsProvider, wait_for_txt, wait_until_absent};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

impl Stack {
    /// Provider config for the key whose stack.env prefix is `prefix` (`TSIG` or `TSIG512`).
    fn config(&self, prefix: &str) -> Rfc2136Config {
        let algorithm = match self.get(&format!("{prefix}_ALGORITHM")) {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => panic!("unexpected algorithm {other}"),
        };
        Rfc2136Config {
            server: self.named(),
            zone: self.get("ZONE").to_owned(),
            key_name: self.get(&format!("{prefix}_KEY_NAME")).to_owned(),
            algorithm,
            secret: Some(self.get(&format!("{prefix}_SECRET")).into()),
            secret_file: None,
            secret_env: None,
            timeout: Duration::from_secs(3),
        }
    }

    /// A fresh challenge name in the test zone.
    fn name(&self, label: &str) -> String {
        format!("_acme-challenge.{label}-{}.{}", rand::random::<u32>(), self.get("ZONE"))
    }
}

/// A 43-character base64url value, like an ACME key authorization digest.
fn token() -> String {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43).map(|_| char::from(alphabet[usize::from(rand::random::<u8>() % 64)])).collect()
}

#[tokio::test]
async fn hmac_sha256_set_wait_remove() {
    let stack = Stack::shared();
    let dns = Rfc2136Provider::new(&stack.config("TSIG")).unwrap();
    let (name, value) = (stack.name("sha256"), token());
    dns.set_txt(&name, &value, 60).await.unwrap();
    wait_for_txt(stack.named(), &name, &value, WAIT, POLL).await.unwrap();
    dns.remove_txt(&name, &value).await.unwrap();
    wait_until_absent(stack.named(), &name, &value, WAIT, POLL).await.unwrap();
    // Removing again is harmless.
    dns.remove_txt(&name, &value).await.unwrap();
}

#[tokio::test]
async fn two_values_coexist_and_removal_is_per_value() {
    let stack = Stack::shared();
    let dns = Rfc2136Provider::new(&stack.config("TSIG")).unwrap();
    let (name, first, second) = (stack.name("two"), token(), token());
    dns.set_txt(&name, &first, 60).await.unwrap();
    dns.set_txt(&name, &second, 60).await.unwrap();
    wait_for_txt(stack.named(), &name, &first, WAIT, POLL).await.unwrap();
    wait_for_txt(stack.named(), &name, &second, WAIT, POLL).await.unwrap();

    dns.remove_txt(&name, &first).await.unwrap();
    wait_until_absent(stack.named(), &name, &first, WAIT, POLL).await.unwrap();
    // The other value survived, checked with a real query (no wait needed: same server).
    wait_for_txt(stack.named(), &name, &second, Duration::from_millis(500), POLL).await.unwrap();
    let err = wait_for_txt(stack.named(), &name, &first, Duration::from_millis(300), POLL).await.unwrap_err();
    assert!(matches!(err, DnsError::Timeout { .. }), "{err:?}");
    dns.remove_txt(&name, &second).await.unwrap();
    wait_until_absent(stack.named(), &name, &second, WAIT, POLL).await.unwrap();
}

#[tokio::test]
async fn hmac_sha512_key_works() {
    let stack = Stack::shared();
    let dns = Rfc2136Provider::new(&stack.config("TSIG512")).unwrap();
    let (name, value) = (stack.name("sha512"), token());
    dns.set_txt(&name, &value, 60).await.unwrap();
    wait_for_txt(stack.named(), &name, &value, WAIT, POLL).await.unwrap();
    dns.remove_txt(&name, &value).await.unwrap();
    wait_until_absent(stack.named(), &name, &value, WAIT, POLL).await.unwrap();
}

#[tokio::test]
async fn wrong_secret_is_permanent_and_secret_free() {
    let stack = Stack::shared();
    let mut config = stack.config("TSIG");
    let wrong = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE=";
    config.secret = Some(wrong.into());
    let dns = Rfc2136Provider::new(&config).unwrap();
    let err = dns.set_txt(&stack.name("badsig"), &token(), 60).await.unwrap_err();
    assert!(matches!(&err, DnsError::Refused { rcode, .. } if rcode.contains("BADSIG")), "{err:?}");
    assert!(!err.is_transient());
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(wrong), "{shown}");
        assert!(!shown.contains(stack.get("TSIG_SECRET")), "{shown}");
    }
    // Unknown key name: BADKEY, also permanent.
    let mut config = stack.config("TSIG");
    config.key_name = "no-such-key".into();
    let err = Rfc2136Provider::new(&config).unwrap().set_txt(&stack.name("badkey"), &token(), 60).await.unwrap_err();
    assert!(matches!(&err, DnsError::Refused { rcode, .. } if rcode.contains("BADKEY")), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn foreign_zone_is_refused() {
    let stack = Stack::shared();
    let mut config = stack.config("TSIG");
    config.zone = "example.invalid".into();
    let dns = Rfc2136Provider::new(&config).unwrap();
    let err = dns.set_txt("_acme-challenge.www.example.invalid.", &token(), 60).await.unwrap_err();
    eprintln!("foreign zone: {err}");
    assert!(matches!(err, DnsError::Refused { .. }), "{err:?}");
    assert!(!err.is_transient());
}

#[tokio::test]
async fn nothing_listening_is_transient_within_timeout() {
    let stack = Stack::shared();
    // A port that was free a moment ago (bound and released), so nothing answers on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = stack.config("TSIG");
    config.server = SocketAddr::from(([127, 0, 0, 1], port));
    config.timeout = Duration::from_secs(2);
    let dns = Rfc2136Provider::new(&config).unwrap();
    let started = Instant::now();
    let err = dns.set_txt(&stack.name("down"), &token(), 60).await.unwrap_err();
    eprintln!("nothing listening: {err}");
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}
