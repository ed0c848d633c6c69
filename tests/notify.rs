//! Notifications end to end, against the real scheduler and worker binaries, a real
//! RabbitMQ, a real SMTP server (aiosmtpd, STARTTLS) and a local HTTPS receiver. Slack and
//! PagerDuty cannot be reached from here: their receivers are local fixtures that check
//! the documented payload shapes (Block Kit; Events API v2).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)] // tests fail loudly

use certfleet_tests::notify::*;
use certfleet_tests::*;
use std::time::Duration;

const SECRET: &str = "whsec-test-0123456789";

fn asset(name: &str, settings: serde_json::Value, expires: Option<String>, platform: &str) -> serde_json::Value {
    serde_json::json!({
        "system_name": name,
        "common_name": format!("{name}.fleet.test"),
        "certificate_authority": "internal",
        "host_platform": platform,
        "ip_address": "10.0.0.7",
        "os_version": "Debian 12",
        "data_center": "fra1",
        "certificate_expiration": expires,
        "settings": settings,
    })
}

fn broken(env: &TestEnv, name: &str) -> serde_json::Value {
    serde_json::json!({
        "cert_path": env.path(&format!("missing/{name}.crt")),
        "key_path": env.path(&format!("missing/{name}.key")),
    })
}

fn dlq(env: &TestEnv) -> Vec<serde_json::Value> {
    serde_json::from_str(&env.cli_ok(&["dlq", "list", "--json"])).unwrap()
}

/// The config for channels in `dir`: secrets in 0600 files.
fn slack_channel(env: &TestEnv, name: &str, rx: &Receiver, pki: &TestPki) -> String {
    let file = env.path(&format!("{name}.url"));
    secret_file(&file, &format!("{}/services/T000/B000/XXXX", rx.url), 0o600);
    format!(
        "[notify.channels.{name}]\nkind = \"slack\"\nwebhook_url = {{ file = \"{}\" }}\nca_file = \"{}\"\n",
        file.display(),
        pki.ca_file.display()
    )
}

fn webhook_channel(env: &TestEnv, name: &str, rx: &Receiver, pki: &TestPki) -> String {
    let file = env.path(&format!("{name}.secret"));
    secret_file(&file, SECRET, 0o600);
    format!(
        "[notify.channels.{name}]\nkind = \"webhook\"\nurl = \"{}/hooks/certfleet\"\nsecret = {{ file = \"{}\" }}\nca_file = \"{}\"\nheaders = {{ \"X-Team\" = \"pki\" }}\n",
        rx.url,
        file.display(),
        pki.ca_file.display()
    )
}

const PUBLIC: &str = "[api]\npublic_url = \"https://certfleet.example\"\n";

/// A dead-lettered job gives exactly one Slack message, with Ottr's fields, the class,
/// the reason, the attempts and a link to the asset's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_job_gives_one_slack_message_with_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let slack = Receiver::start(&pki, Check::Slack).await;
    let env = TestEnv::new(PUBLIC);
    let channels = slack_channel(&env, "ops", &slack, &pki);
    std::fs::write(
        &env.config,
        format!(
            "{}\n{channels}[[notify.rule]]\nevents = [\"rotation_dead\"]\nchannels = [\"ops\"]\n",
            std::fs::read_to_string(&env.config).unwrap()
        ),
    )
    .unwrap();
    env.import(&serde_json::json!([asset("web-dead", broken(&env, "web-dead"), None, "local")]));
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);

    let msg = wait_for(Duration::from_secs(60), "a Slack message", || async { slack.seen().into_iter().next() }).await;
    assert_eq!(msg.status, 200, "the payload has Slack's shape: {}", String::from_utf8_lossy(&msg.body));
    assert_eq!(msg.path, "/services/T000/B000/XXXX");
    let text = String::from_utf8_lossy(&msg.body).to_string();
    for needle in [
        "web-dead",
        "10.0.0.7",
        "Debian 12",
        "local",
        "internal",
        "invalid_input",
        "*Attempts*\\n1",
        "No such file",
        "https://certfleet.example/assets/web-dead",
    ] {
        assert!(text.contains(needle), "Slack message lacks {needle:?}: {text}");
    }
    // Rotations go on: more scans pass, and the dead asset is not announced again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(slack.seen().len(), 1, "one message per dead letter");
    let log = std::fs::read_to_string(env.path("scheduler.log")).unwrap();
    assert!(!log.contains("XXXX"), "the webhook URL is a secret and never logged");
}

/// 300 jobs dying at once give at most 3 messages per channel: `digest_after` (2) single
/// messages, then one digest with the count, the top reasons, the first assets and a link
/// to the filtered DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_300_dead_jobs_gives_at_most_3_messages_per_channel() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let slack = Receiver::start(&pki, Check::Slack).await;
    let hook = Receiver::start(&pki, Check::Webhook(SECRET.as_bytes().to_vec())).await;
    let env = TestEnv::new(&format!("{PUBLIC}[worker]\nconcurrency = 32\n"));
    let channels =
        format!("{}{}", slack_channel(&env, "ops", &slack, &pki), webhook_channel(&env, "siem", &hook, &pki));
    std::fs::write(
        &env.config,
        format!(
            "{}\n[notify]\ndigest_after = 2\ndigest_window = \"30s\"\n{channels}[[notify.rule]]\nevents = [\"rotation_dead\"]\nchannels = [\"ops\", \"siem\"]\n",
            std::fs::read_to_string(&env.config).unwrap()
        ),
    )
    .unwrap();
    let assets: Vec<serde_json::Value> = (0..300)
        .map(|i| asset(&format!("storm-{i:03}"), broken(&env, &format!("storm-{i:03}")), None, "local"))
        .collect();
    env.import(&serde_json::Value::Array(assets));
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);

    wait_for(Duration::from_secs(120), "300 recorded dead letters", || async {
        (dlq(&env).len() == 300).then_some(())
    })
    .await;
    for (name, rx) in [("slack", &slack), ("webhook", &hook)] {
        let all = wait_for(Duration::from_secs(90), &format!("the {name} digest"), || async {
            let seen = rx.seen();
            seen.iter()
                .any(|r| {
                    String::from_utf8_lossy(&r.body).contains("digest")
                        || String::from_utf8_lossy(&r.body).contains("Top reasons")
                })
                .then_some(seen)
        })
        .await;
        assert!(all.len() <= 3, "{name}: {} messages for 300 dead jobs", all.len());
        assert!(all.iter().all(|r| r.status == 200), "{name}: every message was accepted (shape, signature)");
    }
    let hooks = hook.seen();
    let digest = hooks.iter().map(Received::json).find(|v| v["digest"].is_object()).unwrap();
    let singles = hooks.len() as u64 - 1;
    assert_eq!(digest["digest"]["count"].as_u64().unwrap() + singles, 300, "every event is counted once: {digest}");
    assert_eq!(digest["digest"]["assets"].as_array().unwrap().len(), 10);
    assert!(digest["digest"]["top_reasons"][0]["reason"].as_str().unwrap().contains("No such file"), "{digest}");
    assert!(
        digest["links"]["dlq"]
            .as_str()
            .unwrap()
            .starts_with("https://certfleet.example/dlq?status=pending&event=rotation_dead&since="),
        "{digest}"
    );
    assert_eq!(digest["schema"], "certfleet.notification.v1");
    let slack_digest =
        slack.seen().into_iter().find(|r| String::from_utf8_lossy(&r.body).contains("Top reasons")).unwrap();
    assert!(
        String::from_utf8_lossy(&slack_digest.body).contains("https://certfleet.example/dlq?"),
        "the digest links to the DLQ"
    );
}

/// The webhook is signed; a 500 and a 429 (Retry-After: 1) are retried, the event is
/// delivered once on the 2xx and never again. A channel that refuses for good (400)
/// dead-letters the notification: `dlq list` shows it as a notification, `dlq retry`
/// delivers it once the receiver is fixed, and it never marks the asset dead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_is_retried_until_a_2xx_and_dead_notifications_are_retried_from_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let hook = Receiver::start(&pki, Check::Webhook(SECRET.as_bytes().to_vec())).await;
    let down = Receiver::start(&pki, Check::None).await;
    hook.script(&[(500, &[]), (429, &[("Retry-After", "1")])]);
    down.answer_always(Some(400));
    let env = TestEnv::new(&format!("{PUBLIC}[notify]\nbase_delay = \"1s\"\n"));
    let channels =
        format!("{}{}", webhook_channel(&env, "siem", &hook, &pki), webhook_channel(&env, "down", &down, &pki));
    std::fs::write(
        &env.config,
        format!(
            "{}\n{channels}[[notify.rule]]\nevents = [\"asset_unroutable\"]\nchannels = [\"siem\", \"down\"]\n",
            std::fs::read_to_string(&env.config).unwrap()
        ),
    )
    .unwrap();
    // Imported while a route led from its platform, which is then removed (imports are
    // checked against the routes): the scan finds no route and announces it.
    let mainframe = format!("{ROUTES}[[route]]\nhost_platform = \"mainframe\"\ndriver = \"local\"\n");
    std::fs::write(env.path("routes.toml"), mainframe).unwrap();
    env.import(&serde_json::json!([asset("lost-01", env.local_settings("lost-01"), None, "mainframe")]));
    std::fs::write(env.path("routes.toml"), ROUTES).unwrap();
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);

    let delivered =
        wait_for(Duration::from_secs(60), "the webhook delivered", || async { hook.accepted().into_iter().next() })
            .await;
    let seen = hook.seen();
    assert_eq!(seen.iter().map(|r| r.status).collect::<Vec<_>>(), vec![500, 429, 200], "retried after 500 and 429");
    let ids: Vec<String> = seen.iter().map(|r| r.headers["x-certfleet-delivery"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one notification, retried: {ids:?}");
    let body = delivered.json();
    assert_eq!(body["schema"], "certfleet.notification.v1");
    assert_eq!(body["event"], "asset_unroutable");
    assert_eq!(body["asset"]["system_name"], "lost-01");
    assert_eq!(body["links"]["asset"], "https://certfleet.example/assets/lost-01");
    assert_eq!(delivered.headers["x-team"], "pki");
    assert_eq!(body["attempt"], 3);

    let dead = wait_for(Duration::from_secs(30), "the refused notification in the DLQ", || async {
        dlq(&env).into_iter().find(|d| d["kind"] == "notification")
    })
    .await;
    assert_eq!(dead["driver"], "notify:down");
    assert_eq!(dead["error_class"], "rejected");
    assert!(dead["reason"].as_str().unwrap().contains("HTTP 400"), "{dead}");
    assert!(dead["asset_id"].is_null(), "a dead notification names no asset to retry as a rotation");
    let listed = env.cli_ok(&["dlq", "list"]);
    assert!(listed.contains("notify:down"), "{listed}");
    assert_eq!(assets_state(&env, "lost-01").await, "unroutable", "the asset's state is not touched");

    down.answer_always(None);
    let out = env.cli_ok(&["dlq", "retry", dead["job_id"].as_str().unwrap()]);
    assert!(out.contains("retried"), "{out}");
    wait_for(Duration::from_secs(30), "the retried notification delivered", || async {
        (!down.accepted().is_empty()).then_some(())
    })
    .await;

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(hook.accepted().len(), 1, "never delivered twice after a 2xx");
    assert_eq!(down.accepted().len(), 1);
}

async fn assets_state(env: &TestEnv, name: &str) -> String {
    let db = env.db().await;
    certfleet_shared::db::assets::by_name(&db, name).await.unwrap().state.as_str().to_owned()
}

/// The receiver's check, as documented for webhook consumers: a valid signature passes; a
/// stale timestamp (a replay), another body or another secret are refused.
#[test]
fn webhook_signatures_verify_and_stale_ones_are_refused() {
    let now = chrono::Utc::now().timestamp();
    let body = br#"{"schema":"certfleet.notification.v1"}"#;
    let header = certfleet_scheduler::notify::channel::sign(SECRET.as_bytes(), now, body);
    assert_eq!(verify_signature(SECRET.as_bytes(), &header, body, now + 10), Ok(()));
    let stale = certfleet_scheduler::notify::channel::sign(SECRET.as_bytes(), now - 3600, body);
    assert!(verify_signature(SECRET.as_bytes(), &stale, body, now).unwrap_err().contains("stale"));
    assert!(verify_signature(SECRET.as_bytes(), &header, b"{}", now).is_err());
    assert!(verify_signature(b"other", &header, body, now).is_err());
}

/// A certificate crossing 30 days gives one e-mail (STARTTLS, to the whole list) and no
/// second one on the next scans, nor on a full pass over every row, nor after the
/// scheduler restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_30_days_mails_once_across_scans_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let smtp = Smtp::start(dir.path(), Some(&pki));
    let env = TestEnv::new(PUBLIC);
    std::fs::write(
        &env.config,
        format!(
            "{}renew_before = \"1d\"\n\n[notify.channels.pki-mail]\nkind = \"email\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"starttls\"\n\
             from = \"certfleet@fleet.test\"\nto = [\"pki@fleet.test\", \"oncall@fleet.test\"]\nca_file = \"{}\"\n\
             [[notify.rule]]\nevents = [\"certificate_expiring\", \"certificate_expired\"]\nchannels = [\"pki-mail\"]\n",
            std::fs::read_to_string(&env.config).unwrap(),
            smtp.port,
            pki.ca_file.display()
        ),
    )
    .unwrap();
    let expires = (chrono::Utc::now() + chrono::Duration::days(29)).to_rfc3339();
    env.import(&serde_json::json!([
        asset("mail-01", env.local_settings("mail-01"), Some(expires), "local"),
        // Far from any threshold: never announced.
        asset(
            "calm-01",
            env.local_settings("calm-01"),
            Some((chrono::Utc::now() + chrono::Duration::days(300)).to_rfc3339()),
            "local"
        ),
    ]));
    let mut scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let mail =
        wait_for(Duration::from_secs(60), "the expiry e-mail", || async { smtp.messages().into_iter().next() }).await;
    assert!(mail.tls, "the session was upgraded with STARTTLS");
    assert_eq!(mail.mail_from, "certfleet@fleet.test");
    assert_eq!(mail.rcpt_tos, vec!["pki@fleet.test", "oncall@fleet.test"], "one message to the whole list");
    assert!(mail.subject.contains("mail-01") && mail.subject.contains("30 days"), "{}", mail.subject);
    for needle in [
        "Hostname: mail-01",
        "IPv4: 10.0.0.7",
        "OS version: Debian 12",
        "CA: internal",
        "https://certfleet.example/assets/mail-01",
    ] {
        assert!(mail.text.contains(needle), "text lacks {needle:?}: {}", mail.text);
    }
    assert!(mail.html.contains("<table>") && mail.html.contains("mail-01"), "{}", mail.html);

    tokio::time::sleep(Duration::from_secs(4)).await; // several 1 s scans
    assert_eq!(smtp.messages().len(), 1, "not repeated by the next scans");
    assert!(scheduler.terminate(Duration::from_secs(20)));
    // The full pass reads every row again (the cheap scans do not read mail-01 until its
    // 15-day threshold): only the record in SQL keeps it from announcing twice.
    let out =
        command("certfleet-scheduler").arg("--config").arg(&env.config).args(["--once", "--full"]).output().unwrap();
    assert!(out.status.success(), "full pass: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["mode"].as_str(), report["corrected"].as_u64()), (Some("full"), Some(0)), "{report}");
    assert!(report["scanned"].as_u64().unwrap_or(0) >= 2, "{report}");
    assert_eq!(report["expiry_announced"], 0, "{report}");
    let _again = env.spawn("certfleet-scheduler", "scheduler-2", &[]);
    wait_for(Duration::from_secs(30), "the restarted scheduler scanning", || async {
        std::fs::read_to_string(env.path("scheduler-2.log")).unwrap_or_default().contains("scan finished").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(smtp.messages().len(), 1, "not repeated after a restart");
}

/// `certfleet notify test` sends straight through the channel and reports the outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_test_reports_the_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let hook = Receiver::start(&pki, Check::Webhook(SECRET.as_bytes().to_vec())).await;
    let env = TestEnv::new("");
    std::fs::write(
        &env.config,
        format!("{}\n{}", std::fs::read_to_string(&env.config).unwrap(), webhook_channel(&env, "siem", &hook, &pki)),
    )
    .unwrap();
    // The receiver runs on the other runtime thread while the CLI blocks this one.
    let out = env.cli(&["notify", "test", "siem"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("siem (webhook): delivered: HTTP 200"), "{stdout}");
    assert_eq!(hook.accepted().len(), 1, "signed like any delivery");
    hook.answer_always(Some(503));
    let out = env.cli(&["notify", "test", "siem"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 503"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = env.cli(&["notify", "test", "nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel named \"nope\" (configured: siem)"));
}

/// A bad channel config refuses the start and names the key: an unknown channel in a rule,
/// a bad URL, a secret file readable by others.
#[test]
fn bad_channel_configs_refuse_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose.secret");
    secret_file(&loose, SECRET, 0o644);
    let cases = [
        (
            "[notify.channels.ops]\nkind = \"slack\"\nwebhook_url = { env = \"X\" }\n[[notify.rule]]\nchannels = [\"pager\"]\n".to_owned(),
            "notify.rule[0].channels",
        ),
        (
            "[notify.channels.siem]\nkind = \"webhook\"\nurl = \"hxxp://siem\"\nsecret = { env = \"X\" }\n".to_owned(),
            "notify.channels.siem.url",
        ),
        (
            format!("[notify.channels.siem]\nkind = \"webhook\"\nurl = \"https://siem.example/\"\nsecret = {{ file = \"{}\" }}\n", loose.display()),
            "notify.channels.siem.secret",
        ),
    ];
    for (text, key) in cases {
        let config = dir.path().join("certfleet.toml");
        std::fs::write(&config, format!("amqp_url = \"amqp://guest:guest@127.0.0.1:1/%2f\"\n{text}")).unwrap();
        let out = command("certfleet-scheduler")
            .arg("--config")
            .arg(&config)
            .arg("--once")
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {text}");
        assert!(err.contains(key), "the error names {key}: {err}");
        assert!(!err.contains(SECRET), "the secret is not echoed: {err}");
    }
}

/// PagerDuty: a dead job triggers an incident keyed by the asset; once the fault is fixed
/// and the job retried, the successful rotation resolves it (same dedup key), although no
/// rule names `rotation_succeeded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagerduty_triggers_on_a_dead_job_and_resolves_when_it_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let pd = Receiver::start(&pki, Check::PagerDuty).await;
    let env = TestEnv::new(PUBLIC);
    let key = env.path("pd.key");
    secret_file(&key, "R0UT1NGKEY0123456789", 0o600);
    std::fs::write(
        &env.config,
        format!(
            "{}\n[notify.channels.pager]\nkind = \"pagerduty\"\nrouting_key = {{ file = \"{}\" }}\nevents_url = \"{}/v2/enqueue\"\nca_file = \"{}\"\n\
             [[notify.rule]]\nevents = [\"rotation_dead\"]\nchannels = [\"pager\"]\n",
            std::fs::read_to_string(&env.config).unwrap(),
            key.display(),
            pd.url,
            pki.ca_file.display()
        ),
    )
    .unwrap();
    env.import(&serde_json::json!([asset("fw-01", broken(&env, "fw-01"), None, "local")]));
    let _scheduler = env.spawn("certfleet-scheduler", "scheduler", &[]);
    let _worker = env.spawn("certfleet-worker", "worker", &["--drivers", "local"]);

    let trigger =
        wait_for(Duration::from_secs(60), "the trigger", || async { pd.accepted().into_iter().next() }).await.json();
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "certfleet/fw-01");
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY0123456789");
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "fw-01");
    assert_eq!(trigger["payload"]["custom_details"]["Error class"], "invalid_input");
    assert_eq!(trigger["links"][0]["href"], "https://certfleet.example/assets/fw-01");

    std::fs::create_dir_all(env.path("missing")).unwrap();
    env.cli_ok(&["dlq", "retry", "--all"]);
    let resolve = wait_for(Duration::from_secs(60), "the resolve", || async {
        pd.accepted().into_iter().map(|r| r.json()).find(|v| v["event_action"] == "resolve")
    })
    .await;
    assert_eq!(resolve["dedup_key"], "certfleet/fw-01");
    assert!(
        !std::fs::read_to_string(env.path("scheduler.log")).unwrap().contains("R0UT1NGKEY"),
        "the routing key is never logged"
    );
}
