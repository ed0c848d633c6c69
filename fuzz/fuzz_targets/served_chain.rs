//! What a device serves: certificate parsing (PEM bundles and DER chains) and the check of
//! a served chain against the certificate just issued, with the facts recorded for the
//! inventory. A device controls these bytes; nothing may panic.
#![no_main]

use certfleet_proto::{AssetId, Driver, JobId, KeyAlgorithm, RotationJob};
use certfleet_worker::certinfo;
use certfleet_worker::issuer::Issued;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn issued() -> &'static (Issued, RotationJob) {
    static ISSUED: OnceLock<(Issued, RotationJob)> = OnceLock::new();
    ISSUED.get_or_init(|| {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["a.fuzz.test".to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let der = cert.der().to_vec();
        let info = certinfo::describe(&der).expect("describe");
        let issued = Issued { chain_pem: cert.pem(), leaf_der: der, info };
        let job = RotationJob {
            job_id: JobId::new(),
            attempt: 1,
            asset_id: AssetId(1),
            system_name: "a".into(),
            driver: Driver::Local,
            issuer: "internal".into(),
            common_name: "a.fuzz.test".into(),
            subject_alternative_names: vec![],
            ip_address: None,
            port: None,
            key_algorithm: KeyAlgorithm::EcdsaP256,
            certificate_validation: true,
            settings: serde_json::json!({}),
            not_before: None,
            published_at: chrono::Utc::now(),
            replaces: None,
        };
        (issued, job)
    })
}

fuzz_target!(|data: &[u8]| {
    let (issued, job) = issued();
    // As PEM text.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(ders) = certinfo::pem_chain_to_der(text)
    {
        for der in &ders {
            let _ = certinfo::describe(der);
            let _ = certinfo::public_key_bits(der);
        }
        let _ = certfleet_worker::validate::check("device:443", &ders, issued, job);
    }
    // As DER: the whole input as a leaf, and split in two at the first byte's position.
    let _ = certinfo::describe(data);
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let chain = vec![data[..split].to_vec(), data[split..].to_vec()];
    let _ = certfleet_worker::validate::check("device:443", &chain, issued, job);
    let _ = certfleet_worker::validate::check("device:443", &[], issued, job);
});
