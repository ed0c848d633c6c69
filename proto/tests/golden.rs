//! Golden-JSON tests: they pin the wire format byte for byte. A failure here means a wire
//! break; bump `WIRE_VERSION` and add a new golden file rather than editing the old one.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::*;
use chrono::{TimeZone, Utc};
use uuid::Uuid;

fn job() -> RotationJob {
    RotationJob {
        job_id: JobId(Uuid::parse_str("6f1c2a9e-8d3b-4c5a-9e7f-0a1b2c3d4e5f").unwrap()),
        attempt: 2,
        asset_id: AssetId(42),
        system_name: "web-01".into(),
        driver: Driver::Local,
        issuer: "internal".into(),
        common_name: "web-01.example.test".into(),
        subject_alternative_names: vec!["web-01.example.test".into(), "10.0.0.7".into()],
        ip_address: Some("127.0.0.1".into()),
        port: Some(8443),
        key_algorithm: KeyAlgorithm::EcdsaP256,
        certificate_validation: true,
        settings: serde_json::json!({"cert_path": "/etc/ssl/web.crt", "key_path": "/etc/ssl/web.key"}),
        not_before: None,
        published_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(),
        replaces: None,
    }
}

fn result() -> RotationResult {
    RotationResult {
        job_id: job().job_id,
        attempt: 2,
        asset_id: AssetId(42),
        system_name: "web-01".into(),
        driver: Driver::Local,
        outcome: RotationOutcome::Rotated {
            certificate: CertificateInfo {
                serial: "0a1b".into(),
                sha256_fingerprint: "ab".repeat(32),
                not_before: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(),
                not_after: Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap(),
                issuer: "CN=certfleet internal root".into(),
                ari_cert_id: None,
                renewal_window: None,
            },
        },
        worker: "host-1/123".into(),
        started_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 1).unwrap(),
        finished_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 2).unwrap(),
        observed_host_key: None,
    }
}

fn check<T: Payload + PartialEq + std::fmt::Debug>(value: T, golden: &str) {
    let encoded = Envelope::encode(&value);
    let pretty: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
    let expected: serde_json::Value = serde_json::from_str(golden).unwrap();
    assert_eq!(pretty, expected, "wire format changed:\n{}", serde_json::to_string_pretty(&pretty).unwrap());
    assert_eq!(Envelope::<T>::decode(golden.as_bytes()).unwrap(), value);
}

#[test]
fn rotation_job_v1_is_pinned() {
    check(job(), include_str!("golden/rotation_job.v1.json"));
}

#[test]
fn rotation_result_v1_is_pinned() {
    check(result(), include_str!("golden/rotation_result.v1.json"));
}

/// The optional ARI fields (RFC 9773): present in these goldens, absent from the v1 ones
/// above, which still decode (the fields are optional, so this is not a wire break).
#[test]
fn rotation_job_with_replaces_is_pinned() {
    let mut j = job();
    j.replaces = Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into());
    check(j, include_str!("golden/rotation_job.v1.ari.json"));
}

#[test]
fn rotation_result_with_renewal_info_is_pinned() {
    let mut r = result();
    let RotationOutcome::Rotated { certificate } = &mut r.outcome else { unreachable!() };
    certificate.ari_cert_id = Some("aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".into());
    certificate.renewal_window = Some(RenewalWindow {
        start: Utc.with_ymd_and_hms(2025, 1, 2, 4, 0, 0).unwrap(),
        end: Utc.with_ymd_and_hms(2025, 1, 3, 4, 0, 0).unwrap(),
        explanation_url: Some("https://acme.example.com/docs/ari".into()),
    });
    check(r.clone(), include_str!("golden/rotation_result.v1.ari.json"));
    // Without the explanation it is left out of the wire form, not written as null.
    certificate_window(&mut r).explanation_url = None;
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["outcome"]["certificate"]["renewal_window"],
        serde_json::json!({"start": "2025-01-02T04:00:00Z", "end": "2025-01-03T04:00:00Z"})
    );
}

fn certificate_window(r: &mut RotationResult) -> &mut RenewalWindow {
    let RotationOutcome::Rotated { certificate } = &mut r.outcome else { unreachable!() };
    certificate.renewal_window.as_mut().unwrap()
}

#[test]
fn unknown_fields_inside_the_window_are_rejected() {
    let golden = include_str!("golden/rotation_result.v1.ari.json");
    let extra = golden.replacen("\"start\"", "\"retry_after\": 1, \"start\"", 1);
    assert!(matches!(Envelope::<RotationResult>::decode(extra.as_bytes()), Err(WireError::Malformed(_))));
}

/// A result carrying a trusted-on-first-use SSH host key (an optional field: results
/// without it keep the v1 shape above, byte for byte).
#[test]
fn observed_host_key_is_pinned() {
    let mut r = result();
    r.driver = Driver::LinuxSsh;
    r.observed_host_key = Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHdldmVyeWJvZHlsb3Zlc2Fnb29kaG9zdGtleQ".into());
    check(r, include_str!("golden/rotation_result_host_key.v1.json"));
}

#[test]
fn rolled_back_outcome_is_pinned() {
    let mut r = result();
    r.outcome = RotationOutcome::RolledBack { cause: "reload command exited with status 1".into() };
    let v = serde_json::to_value(&r.outcome).unwrap();
    assert_eq!(v, serde_json::json!({"status": "rolled_back", "cause": "reload command exited with status 1"}));
}

#[test]
fn other_versions_kinds_and_unknown_fields_are_rejected() {
    let golden = include_str!("golden/rotation_job.v1.json");
    let v2 = golden.replacen("\"v\": 1", "\"v\": 2", 1);
    assert!(matches!(Envelope::<RotationJob>::decode(v2.as_bytes()), Err(WireError::UnsupportedVersion { found: 2 })));
    assert!(matches!(Envelope::<RotationResult>::decode(golden.as_bytes()), Err(WireError::WrongKind { .. })));
    let extra = golden.replacen("\"attempt\": 2", "\"attempt\": 2, \"private_key\": \"x\"", 1);
    assert!(matches!(Envelope::<RotationJob>::decode(extra.as_bytes()), Err(WireError::Malformed(_))));
    let bad_driver = golden.replacen("\"driver\": \"local\"", "\"driver\": \"telnet\"", 1);
    assert!(matches!(Envelope::<RotationJob>::decode(bad_driver.as_bytes()), Err(WireError::Malformed(_))));
    assert!(matches!(Envelope::<RotationJob>::decode(b"not json"), Err(WireError::Malformed(_))));
}

fn notification() -> Notification {
    Notification {
        id: NotificationId(Uuid::parse_str("0b6c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d").unwrap()),
        channel: "ops-slack".into(),
        attempt: 1,
        event: EventKind::RotationDead,
        severity: Severity::Critical,
        occurred_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 3).unwrap(),
        asset: Some(AssetSummary {
            asset_id: AssetId(42),
            system_name: "web-01".into(),
            common_name: "web-01.example.test".into(),
            ip_address: Some("10.0.0.7".into()),
            host_platform: "linux".into(),
            os_version: Some("Debian 12".into()),
            data_center: Some("fra1".into()),
            device_model: None,
            certificate_authority: "internal".into(),
            certificate_expiration: Some(Utc.with_ymd_and_hms(2026, 11, 27, 8, 0, 0).unwrap()),
        }),
        job_id: Some(job().job_id),
        error_class: Some(ErrorClass::Auth),
        reason: Some("device refused the credentials".into()),
        attempts: Some(1),
        threshold_seconds: None,
        fingerprint: None,
        digest: None,
        not_before: None,
    }
}

#[test]
fn notification_v1_is_pinned() {
    check(notification(), include_str!("golden/notification.v1.json"));
}

#[test]
fn digest_notification_v1_is_pinned() {
    let mut n = notification();
    n.asset = None;
    n.job_id = None;
    n.error_class = None;
    n.reason = None;
    n.attempts = None;
    n.digest = Some(Digest {
        count: 298,
        window_start: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(),
        top_reasons: vec![ReasonCount { reason: "CA unavailable".into(), count: 298 }],
        assets: vec!["web-03".into(), "web-04".into()],
    });
    check(n, include_str!("golden/notification_digest.v1.json"));
}

#[test]
fn expiring_notification_v1_is_pinned() {
    let mut n = notification();
    n.event = EventKind::CertificateExpiring;
    n.severity = Severity::Warning;
    n.job_id = None;
    n.error_class = None;
    n.reason = None;
    n.attempts = None;
    n.threshold_seconds = Some(30 * 86_400);
    n.fingerprint = Some("ab".repeat(32));
    check(n, include_str!("golden/notification_expiring.v1.json"));
}

#[test]
fn worker_heartbeat_v1_is_pinned() {
    let beat = WorkerHeartbeat {
        worker: "worker-a".into(),
        drivers: vec![Driver::Local, Driver::LinuxSsh],
        concurrency: 16,
        in_flight: 3,
        interval_ms: 5000,
        started_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap(),
        sent_at: Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 5).unwrap(),
    };
    check(beat, include_str!("golden/worker_heartbeat.v1.json"));
}
