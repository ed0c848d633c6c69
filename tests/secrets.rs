//! Secrets kept secret (issue 15): one full rotation with every kind of secret configured,
//! each from a 0600 file (never inline): the TSIG key of the ACME issuer's RFC 2136 zone,
//! the ACME account-key encryption key, the worker's SSH private key, a webhook HMAC key, a
//! Slack webhook URL, a PagerDuty routing key and an SMTP password. The worker and the
//! scheduler log at `trace`; RabbitMQ's firehose records every AMQP message; afterwards the
//! logs, the messages and the SQLite files are searched for each secret: zero hits.
//!
//! The rotation is real: a plain file pair on the stack's sshd (`linux-ssh`), signed by
//! Pebble after a DNS-01 challenge written to the stack's BIND9 with the TSIG key. The
//! webhook and Slack receivers are the local HTTPS fixtures of `tests/notify.rs`; the
//! PagerDuty and e-mail channels are configured (their secrets are read at start-up) but no
//! rule routes to them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use base64::Engine as _;
use certfleet_shared::db::assets;
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_tests::device::*;
use certfleet_tests::notify::*;
use certfleet_tests::*;
use std::time::Duration;

const WEBHOOK_SECRET: &str = "whsec-e2e-5f0c1e8a9d7b4c3a";
const SLACK_PATH: &str = "/services/T0SECRET/B0SECRET/slackpath7c1d9e";
const PD_KEY: &str = "PDROUTINGKEY0e4b7f2a9c";
const SMTP_PASSWORD: &str = "smtp-pass-3b8d0f6e2a";

/// Fails when `needle` occurs in `haystack`.
fn absent(needle: &[u8], haystack: &[u8], secret: &str, place: &str) {
    assert!(!needle.is_empty());
    let hit = haystack.windows(needle.len()).any(|w| w == needle);
    assert!(!hit, "the {secret} leaked into {place}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_at_trace_level_leaks_no_secret_into_logs_messages_or_the_database() {
    let stack = Stack::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let hook = Receiver::start(&pki, Check::Webhook(WEBHOOK_SECRET.as_bytes().to_vec())).await;
    let slack = Receiver::start(&pki, Check::Slack).await;

    // The ACME issuer, with the TSIG secret moved from the inline value into a 0600 file.
    let tsig = stack.get("TSIG_SECRET").to_owned();
    let tsig_file = dir.path().join("tsig.key");
    secret_file(&tsig_file, &format!("{tsig}\n"), 0o600);
    let issuer = certfleet_tests::acme::issuer_toml(&stack, dir.path());
    let inline = format!("secret = \"{tsig}\"");
    assert!(issuer.contains(&inline));
    let issuer = issuer.replace(&inline, &format!("secret_file = \"{}\"", tsig_file.display()));
    let kek = std::fs::read_to_string(dir.path().join("acme.kek")).unwrap();

    let env = ssh_env(&stack, &issuer);
    let files = |name: &str, secret: &str| {
        let path = env.path(name);
        secret_file(&path, secret, 0o600);
        path.display().to_string()
    };
    let channels = format!(
        "[notify.channels.siem]\nkind = \"webhook\"\nurl = \"{hook}/hooks/certfleet\"\nsecret = {{ file = \"{wh}\" }}\nca_file = \"{ca}\"\n\
         [notify.channels.ops]\nkind = \"slack\"\nwebhook_url = {{ file = \"{sl}\" }}\nca_file = \"{ca}\"\n\
         [notify.channels.pager]\nkind = \"pagerduty\"\nrouting_key = {{ file = \"{pd}\" }}\nevents_url = \"https://127.0.0.1:9/v2/enqueue\"\n\
         [notify.channels.mail]\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = 9\nusername = \"certfleet\"\npassword = {{ file = \"{pw}\" }}\nfrom = \"certfleet@fleet.test\"\nto = [\"pki@fleet.test\"]\n\
         [[notify.rule]]\nevents = [\"rotation_succeeded\"]\nchannels = [\"siem\", \"ops\"]\n",
        hook = hook.url,
        wh = files("webhook.secret", WEBHOOK_SECRET),
        sl = files("slack.url", &format!("{}{SLACK_PATH}", slack.url)),
        pd = files("pagerduty.key", PD_KEY),
        pw = files("smtp.password", SMTP_PASSWORD),
        ca = pki.ca_file.display(),
    );
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{config}\n{channels}")).unwrap();
    assert!(!std::fs::read_to_string(&env.config).unwrap().contains(&tsig), "no secret inline in the config");

    let (tapped, tap_task) = tap(&env).await;
    let name = format!("box.{}", stack.get("ZONE"));
    let (crt, key) = (env.path("certs/box.crt"), env.path("certs/box.key"));
    env.import(&serde_json::json!([{
        "system_name": "box", "common_name": name, "subject_alternative_name": [name],
        "certificate_authority": "pebble", "host_platform": "linux",
        "settings": {"host": "127.0.0.1", "ssh_port": stack.get("SSH_PORT").parse::<u16>().unwrap(),
            "host_key": stack.get("SSH_HOST_KEY_FINGERPRINT"), "cert_path": crt, "key_path": key,
            "reload_command": ["true"]},
    }]));
    let worker = env.spawn_logging("certfleet-worker", "worker", &["--drivers", "linux-ssh"], "trace");
    let scheduler = env.spawn_logging("certfleet-scheduler", "scheduler", &[], "trace");

    let db = env.db().await;
    let asset = wait_for(Duration::from_secs(120), "box to settle", || async {
        let a = assets::by_name(&db, "box").await.unwrap();
        matches!(a.state, AssetState::Ok | AssetState::Failed | AssetState::Dead).then_some(a)
    })
    .await;
    assert_eq!(asset.state, AssetState::Ok, "{:?}\n{}", asset.last_error, worker.log_text());
    db.close().await.ok();
    wait_for(Duration::from_secs(60), "the webhook and Slack notifications", || async {
        (!hook.accepted().is_empty() && !slack.seen().is_empty()).then_some(())
    })
    .await;
    assert_eq!(slack.seen()[0].path, SLACK_PATH, "the Slack URL was read from its file");

    tap_task.abort();
    let messages = tapped.lock().await.concat();
    assert!(!messages.is_empty(), "the tap saw the fleet's messages");
    let mut db_bytes = Vec::new();
    for f in files_with(env.dir.path(), &[".db", ".db-wal", ".db-shm"]) {
        db_bytes.extend(std::fs::read(f).unwrap());
    }
    assert!(!db_bytes.is_empty());
    let (wlog, slog) = (worker.log_text(), scheduler.log_text());
    assert!(wlog.contains("TRACE") && slog.contains("TRACE"), "both logged at trace level");

    let tsig_raw = base64::engine::general_purpose::STANDARD.decode(&tsig).unwrap();
    let kek_raw = base64::engine::general_purpose::STANDARD.decode(kek.trim()).unwrap();
    let mut secrets: Vec<(String, Vec<u8>)> = vec![
        ("TSIG secret".into(), tsig.as_bytes().to_vec()),
        ("TSIG secret (decoded)".into(), tsig_raw),
        ("ACME key encryption key".into(), kek.trim().as_bytes().to_vec()),
        ("ACME key encryption key (decoded)".into(), kek_raw),
        ("webhook secret".into(), WEBHOOK_SECRET.as_bytes().to_vec()),
        ("Slack webhook path".into(), SLACK_PATH.as_bytes().to_vec()),
        ("PagerDuty routing key".into(), PD_KEY.as_bytes().to_vec()),
        ("SMTP password".into(), SMTP_PASSWORD.as_bytes().to_vec()),
    ];
    for (form, bytes) in key_fingerprints(&std::fs::read(stack.get("SSH_KEY")).unwrap()) {
        secrets.push((format!("SSH private key ({form})"), bytes));
    }
    for (form, bytes) in key_fingerprints(&std::fs::read(&key).unwrap()) {
        secrets.push((format!("device key ({form})"), bytes));
    }
    for (secret, needle) in &secrets {
        absent(needle, wlog.as_bytes(), secret, "the worker log");
        absent(needle, slog.as_bytes(), secret, "the scheduler log");
        absent(needle, &messages, secret, "AMQP messages");
        absent(needle, &db_bytes, secret, "the inventory database");
    }
}
