//! RFC 2136 dynamic updates signed with TSIG (RFC 8945), for BIND9, Knot, PowerDNS and any
//! other server that accepts them. Each call is one signed UPDATE adding or deleting one TXT
//! record; the answer's TSIG is verified before success is reported.

use super::{DnsError, DnsProvider, parse_fqdn, transport};
use async_trait::async_trait;
use base64::Engine as _;
use hickory_proto::op::{Message, ResponseCode, update_message};
use hickory_proto::rr::rdata::TXT;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm as HickoryAlgorithm;
use hickory_proto::rr::{Name, RData, Record, RecordSet, TSigner};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Allowed clock difference between us and the server, in seconds (RFC 8945 recommends 300).
const FUDGE: u16 = 300;

pub use certfleet_shared::config::dns::{Rfc2136Config, TsigAlgorithm};

fn to_hickory(algorithm: TsigAlgorithm) -> HickoryAlgorithm {
    match algorithm {
        TsigAlgorithm::HmacSha256 => HickoryAlgorithm::HmacSha256,
        TsigAlgorithm::HmacSha512 => HickoryAlgorithm::HmacSha512,
    }
}

/// A [`DnsProvider`] that sends TSIG-signed RFC 2136 updates to one server.
pub struct Rfc2136Provider {
    server: SocketAddr,
    zone: Name,
    signer: TSigner,
    timeout: Duration,
}

impl fmt::Debug for Rfc2136Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rfc2136Provider")
            .field("server", &self.server)
            .field("zone", &self.zone.to_string())
            .field("key_name", &self.signer.signer_name().to_string())
            .field("algorithm", &self.signer.algorithm().to_string())
            .field("secret", &"****")
            .finish()
    }
}

impl Rfc2136Provider {
    /// Checks the config and decodes the secret.
    pub fn new(config: &Rfc2136Config) -> Result<Self, DnsError> {
        use secrecy::ExposeSecret as _;
        let secret =
            config.tsig_secret().map_err(|e| DnsError::InvalidConfig(format!("TSIG key {}: {e}", config.key_name)))?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret.expose_secret().trim())
            .map_err(|_| DnsError::InvalidConfig("TSIG secret is not valid base64".into()))?;
        if secret.is_empty() {
            return Err(DnsError::InvalidConfig("TSIG secret is empty".into()));
        }
        let key_name = parse_fqdn(&config.key_name)?;
        let signer = TSigner::new(secret, to_hickory(config.algorithm), key_name, FUDGE)
            .map_err(|e| DnsError::InvalidConfig(format!("TSIG key {}: {e}", config.key_name)))?;
        Ok(Self { server: config.server, zone: parse_fqdn(&config.zone)?, signer, timeout: config.timeout })
    }

    /// The TXT record `value` at `fqdn`, checked to lie in the zone.
    fn txt_rrset(&self, fqdn: &str, value: &str, ttl: u32) -> Result<(Name, RecordSet), DnsError> {
        let name = parse_fqdn(fqdn)?;
        if !self.zone.zone_of(&name) {
            return Err(DnsError::InvalidConfig(format!("{name} is not in zone {}", self.zone)));
        }
        let record = Record::from_rdata(name.clone(), ttl, RData::TXT(TXT::new(vec![value.to_owned()])));
        Ok((name, RecordSet::from(record)))
    }

    /// Signs `message`, sends it, and checks the response code and the response's TSIG.
    async fn send(&self, mut message: Message, name: &Name, op: &'static str) -> Result<(), DnsError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let mut verifier = message
            .finalize(&self.signer, now)
            .map_err(|e| DnsError::InvalidConfig(format!("cannot sign update: {e}")))?
            .ok_or_else(|| DnsError::InvalidConfig("TSIG signer gave no verifier".into()))?;
        let bytes = message.to_vec().map_err(|e| DnsError::Protocol(format!("cannot encode update: {e}")))?;
        let deadline = Instant::now() + self.timeout;
        let answer = transport::exchange(self.server, &bytes, message.metadata.id, deadline, op, self.timeout).await?;
        let rcode = answer.message.metadata.response_code;
        let tsig_error = answer.message.signature().and_then(|s| s.data.error).map(|e| format!("{e:?}"));
        if rcode != ResponseCode::NoError || tsig_error.is_some() {
            return Err(DnsError::from_rcode(rcode, tsig_error, name));
        }
        verifier.verify(&answer.bytes).map_err(|e| DnsError::Protocol(format!("answer TSIG rejected: {e}")))?;
        tracing::debug!(server = %self.server, %name, op, "RFC 2136 update accepted");
        Ok(())
    }
}

#[async_trait]
impl DnsProvider for Rfc2136Provider {
    async fn set_txt(&self, fqdn: &str, value: &str, ttl: u32) -> Result<(), DnsError> {
        let (name, rrset) = self.txt_rrset(fqdn, value, ttl)?;
        let message = update_message::append(rrset, self.zone.clone(), false, true);
        self.send(message, &name, "RFC 2136 add TXT").await
    }

    async fn remove_txt(&self, fqdn: &str, value: &str) -> Result<(), DnsError> {
        let (name, rrset) = self.txt_rrset(fqdn, value, 0)?;
        let message = update_message::delete_by_rdata(rrset, self.zone.clone(), true);
        self.send(message, &name, "RFC 2136 delete TXT").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==";

    fn config(algorithm: &str) -> Result<Rfc2136Config, serde_json::Error> {
        serde_json::from_value(serde_json::json!({
            "server": "127.0.0.1:53", "zone": "example.test", "key_name": "k",
            "algorithm": algorithm, "secret": SECRET, "timeout": "2s",
        }))
    }

    #[test]
    fn algorithm_names_are_exact() {
        assert_eq!(config("hmac-sha256").unwrap().algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(config("hmac-sha512").unwrap().algorithm, TsigAlgorithm::HmacSha512);
        assert!(config("HMAC-SHA256").is_err());
        assert!(config("hmac-md5").is_err());
        assert_eq!(to_hickory(TsigAlgorithm::HmacSha256).to_name().to_ascii(), "hmac-sha256");
        assert_eq!(to_hickory(TsigAlgorithm::HmacSha512).to_name().to_ascii(), "hmac-sha512");
    }

    #[test]
    fn secret_never_printed() {
        let c = config("hmac-sha256").unwrap();
        assert!(!format!("{c:?}").contains(SECRET));
        let p = Rfc2136Provider::new(&c).unwrap();
        assert!(format!("{p:?}").contains("****"));
        assert!(!format!("{p:?}").contains(SECRET));
    }

    #[test]
    fn rejects_bad_config_and_foreign_names() {
        let mut c = config("hmac-sha256").unwrap();
        let p = Rfc2136Provider::new(&c).unwrap();
        assert!(matches!(p.txt_rrset("a.other.test", "v", 1), Err(DnsError::InvalidConfig(_))));
        assert!(p.txt_rrset("_acme-challenge.a.example.test.", "v", 1).is_ok());
        c.secret = Some("not base64!".into());
        assert!(matches!(Rfc2136Provider::new(&c), Err(DnsError::InvalidConfig(_))));
        let unknown = serde_json::json!({"server": "127.0.0.1:53", "zone": "z", "key_name": "k",
            "algorithm": "hmac-sha256", "secret": SECRET, "port": 1});
        assert!(serde_json::from_value::<Rfc2136Config>(unknown).is_err());
    }
}
