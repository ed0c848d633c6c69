//! Every worker error type, built with realistic causes, read through the message rules
//! of `certfleet_shared::messages` (no Rust debug formatting, no dangling separators, no
//! repeated causes). These messages end up in `last_error`, dead letters and logs.

use crate::certinfo::CertError;
use crate::driver::{DriverError, command_failed, ended};
use crate::issuer::IssuerError;
use crate::issuer::ari::AriError;
use crate::issuer::dns::DnsError;
use crate::keygen::KeygenError;
use crate::outcome::JobError;
use crate::runtime::WorkerError;
use crate::validate::ValidateError;
use certfleet_proto::{Driver, KeyAlgorithm, WireError};
use certfleet_shared::amqp::AmqpError;
use certfleet_shared::messages::check_error;
use std::error::Error;
use std::time::Duration;

fn drivers() -> Vec<DriverError> {
    vec![
        DriverError::InvalidSettings("local driver: missing field `cert_path`".into()),
        DriverError::Auth("root@10.0.0.1:22: public key authentication refused".into()),
        DriverError::Unreachable("root@10.0.0.1:22: Connection refused (os error 111)".into()),
        DriverError::Timeout { op: "ssh connect and login", after: Duration::from_secs(10) },
        DriverError::Activation(command_failed("reload command \"false\"", &ended(Some(1), None), "")),
        DriverError::Activation(command_failed("reload command \"x\"", &ended(None, Some(9)), "killed")),
        DriverError::Device("root@h:22: openssl key and CSR generation exited with status 1: bad".into()),
    ]
}

fn issuers() -> Vec<IssuerError> {
    vec![
        IssuerError::BadCsr("CSR names differ from the asset's: not asked for [a.test], missing []".into()),
        IssuerError::Rejected("urn:ietf:params:acme:error:caa: CAA forbids issuance".into()),
        IssuerError::Preflight("www.example.test: _acme-challenge.www.example.test has no CNAME".into()),
        IssuerError::RateLimited { retry_after: Some(Duration::from_secs(60)), detail: "too many orders".into() },
        IssuerError::RateLimited { retry_after: None, detail: "too many orders".into() },
        IssuerError::Unavailable("the CA did not issue within 90s".into()),
        IssuerError::Internal("read /ca/root/ca.crt: No such file or directory (os error 2)".into()),
    ]
}

#[test]
fn every_worker_error_reads_cleanly() {
    let json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
    let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    let lapin = lapin::Error::from(lapin::ErrorKind::IOError(std::sync::Arc::new(io)));
    let mut errors: Vec<Box<dyn Error>> = Vec::new();
    errors.extend(drivers().into_iter().map(|e| Box::new(e) as Box<dyn Error>));
    errors.extend(issuers().into_iter().map(|e| Box::new(e) as Box<dyn Error>));
    errors.extend(drivers().into_iter().map(|e| Box::new(JobError::from(e)) as Box<dyn Error>));
    errors.extend(issuers().into_iter().map(|e| Box::new(JobError::from(e)) as Box<dyn Error>));
    errors.extend([
        Box::new(JobError::from(WireError::from(json))) as Box<dyn Error>,
        Box::new(JobError::DriverNotServed(Driver::Panos)),
        Box::new(JobError::UnknownIssuer("letsencrypt".into())),
        Box::new(JobError::RollbackFailed {
            cause: "reload command \"false\" exited with status 1 (no output)".into(),
            rollback: DriverError::Activation("reload command \"false\" exited with status 1 (no output)".into()),
        }),
        Box::new(JobError::Timeout(Duration::from_secs(120))),
        Box::new(WorkerError::from(AmqpError::Op { op: "basic.consume", cause: lapin })),
        Box::new(WorkerError::from(IssuerError::Internal("bad".into()))),
        Box::new(WorkerError::from(DriverError::InvalidSettings("key file mode 0644".into()))),
        Box::new(DnsError::Refused { rcode: "NOTAUTH/BADSIG".into(), name: "_acme-challenge.x".into() }),
        Box::new(DnsError::ServerFailure { rcode: "SERVFAIL".into(), name: "x".into() }),
        Box::new(DnsError::Timeout { op: "update", after: Duration::from_secs(5) }),
        Box::new(DnsError::Unreachable("Connection refused".into())),
        Box::new(DnsError::Protocol("answer TSIG rejected".into())),
        Box::new(DnsError::InvalidConfig("bad DNS name \"a..b\"".into())),
        Box::new(DnsError::RateLimited { retry_after: None, detail: "429".into() }),
        Box::new(CertError("no CERTIFICATE block found".into())),
        Box::new(AriError::Parse("trailing data".into())),
        Box::new(AriError::NoAuthorityKeyId),
        Box::new(KeygenError { algorithm: KeyAlgorithm::Rsa2048, reason: "rng".into() }),
        Box::new(ValidateError::Unreachable { addr: "10.0.0.1:443".into(), reason: "timed out after 5s".into() }),
        Box::new(ValidateError::Mismatch { addr: "10.0.0.1:443".into(), what: "notAfter differs".into() }),
    ]);
    for e in &errors {
        check_error(e.as_ref()).unwrap_or_else(|why| panic!("{why}"));
    }
}

/// What the classification turns into a dead letter's or a rolled-back asset's text.
#[test]
fn classified_reasons_read_cleanly() {
    for e in drivers().into_iter().map(JobError::from).chain(issuers().into_iter().map(JobError::from)) {
        let text = match e.classify() {
            crate::outcome::Outcome::Retry { cause, .. } => cause,
            crate::outcome::Outcome::Dead { reason, .. } => reason,
            crate::outcome::Outcome::Done(_) => unreachable!(),
        };
        certfleet_shared::messages::check_text(&text).unwrap_or_else(|why| panic!("{why}"));
    }
}
