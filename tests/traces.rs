//! Traces end to end: the real scheduler and worker binaries export their spans over
//! OTLP/HTTP (protobuf, the real `opentelemetry-otlp` exporter) while one asset rotates and
//! one goes dead. No OpenTelemetry collector can be installed here (neither Debian's
//! packages nor PyPI have one as a runnable server), so the receiver is the test harness's
//! own (`certfleet_tests::otlp`), which decodes the protobuf with `opentelemetry-proto`.
//! The test asserts that one trace spans both processes with the parent chain
//! scan → publish job → job → steps → record result (or record dead letter), that the
//! history row names that trace, that JSON log lines carry its ids, and that no span
//! attribute shows a secret of the run; and that the standard `OTEL_*` variables alone
//! turn export on.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_shared::db::asset_history;
use certfleet_tests::otlp::{OtlpSink, Span};
use certfleet_tests::*;
use std::time::Duration;

/// A `local` asset of the internal CA whose files live in the test's `certs/`.
fn device(env: &TestEnv, name: &str) -> serde_json::Value {
    serde_json::json!({
        "system_name": name,
        "common_name": format!("{name}.fleet.test"),
        "certificate_authority": "internal",
        "host_platform": "local",
        "settings": env.local_settings(name),
    })
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "exactly one {what} span: {found:#?}");
    found[0]
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.trace_id == parent.trace_id && s.parent == parent.span_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_scan_through_the_worker_to_the_recorded_result() {
    let sink = OtlpSink::start().await.unwrap();
    let env = TestEnv::new(&format!("[telemetry]\notlp_endpoint = \"{}\"\nsample_ratio = 1.0\n", sink.endpoint()));
    let broken = serde_json::json!({
        "system_name": "broken",
        "common_name": "broken.fleet.test",
        "certificate_authority": "internal",
        "host_platform": "local",
        // Its directory does not exist: the local driver refuses it for good.
        "settings": { "cert_path": env.path("missing/broken.crt"), "key_path": env.path("missing/broken.key") },
    });
    env.import(&serde_json::json!([device(&env, "dev-1"), broken]));
    // Short batch delays so spans arrive within the test; JSON logs from the worker.
    let fast = [("OTEL_BSP_SCHEDULE_DELAY", "200"), ("RUST_LOG", "info")];
    let worker_env = [fast[0], fast[1], ("CERTFLEET_LOG_FORMAT", "json")];
    let worker = env.spawn_with_env("certfleet-worker", "worker", &["--drivers", "local", "--name", "w1"], &worker_env);
    let _scheduler = env.spawn_with_env("certfleet-scheduler", "scheduler", &[], &fast);

    let spans = sink
        .wait(Duration::from_secs(90), "the result and the dead letter recorded in exported spans", |spans| {
            let recorded = spans.iter().any(|s| s.name == "record result" && s.attr("asset") == "dev-1");
            let dead = spans.iter().any(|s| s.name == "record dead letter" && s.attr("asset") == "broken");
            (recorded && dead).then(|| spans.to_vec())
        })
        .await;

    // The worker's job, and the chain above it in the scheduler.
    // Delivery is at least once: a job delivered again (its first result not confirmed) is a
    // second `job` span. The one that rotated has the `sign` step.
    let jobs: Vec<&Span> = spans.iter().filter(|s| s.name == "job" && s.attr("asset") == "dev-1").collect();
    let job = *jobs
        .iter()
        .find(|j| children(&spans, j).iter().any(|c| c.name == "sign"))
        .unwrap_or_else(|| panic!("a job span of dev-1 with a sign step: {jobs:#?}"));
    assert_eq!(job.service, "certfleet-worker");
    assert_eq!((job.attr("driver"), job.attr("attempt"), job.attr("outcome")), ("local", "1", "rotated"));
    assert!(!job.error);
    let trace = job.trace_id.clone();
    let publish = one(&spans, "publish of dev-1", |s| s.span_id == job.parent);
    assert_eq!((publish.name.as_str(), publish.service.as_str()), ("publish job", "certfleet-scheduler"));
    assert_eq!(publish.trace_id, trace);
    assert_eq!(publish.attr("asset"), "dev-1");
    let scan = one(&spans, "scan", |s| s.span_id == publish.parent);
    assert_eq!((scan.name.as_str(), scan.service.as_str(), scan.parent.as_str()), ("scan", "certfleet-scheduler", ""));

    // One span per driver step under the job, in the job's trace.
    let mut steps: Vec<&str> =
        children(&spans, job).iter().filter(|s| s.service == job.service).map(|s| s.name.as_str()).collect();
    steps.sort_unstable();
    assert_eq!(steps, ["activate", "generate_csr", "install", "open", "sign", "validate"], "{steps:?}");
    // The result recorded by the scheduler, a child of the job. A result is delivered at
    // least once (a batch the database refused, SQLite busy, is returned to the queue and
    // applied again), so there may be more than one `record result`; each is the job's child.
    let recorded: Vec<&Span> =
        spans.iter().filter(|s| s.name == "record result" && s.attr("asset") == "dev-1").collect();
    assert!(!recorded.is_empty(), "a record result span for dev-1");
    for r in &recorded {
        assert_eq!(r.service, "certfleet-scheduler");
        assert!(jobs.iter().any(|j| j.span_id == r.parent), "{r:?} is a child of a job of dev-1");
        assert_eq!((r.trace_id.as_str(), r.attr("outcome")), (trace.as_str(), "rotated"));
    }
    assert!(recorded.iter().any(|r| !r.error), "one of them recorded it: {recorded:#?}");

    // The dead one: its job span is an error with the class, its dead letter a child.
    // (At least once here too: every letter recorded is the child of a job that died.)
    let letters: Vec<&Span> = spans.iter().filter(|s| s.name == "record dead letter").collect();
    for letter in &letters {
        assert_eq!((letter.attr("asset"), letter.attr("error_class")), ("broken", "invalid_input"));
        let dead_job = one(&spans, "job of the letter", |s| s.span_id == letter.parent);
        assert_eq!((dead_job.name.as_str(), dead_job.attr("asset")), ("job", "broken"));
        assert!(dead_job.error, "{dead_job:?}");
        assert_eq!((dead_job.attr("outcome"), dead_job.attr("error_class")), ("dead", "invalid_input"));
        assert!(children(&spans, dead_job).iter().any(|s| s.error), "the failed step is an error");
    }

    // The history row names the trace, so the dashboard can link it.
    let db = env.db().await;
    let history = asset_history::of_asset(&db, "dev-1").await.unwrap();
    assert_eq!(history.jobs[0].trace_id.as_deref(), Some(trace.as_str()));
    db.close().await.ok();

    // JSON log lines inside the job carry its trace and span ids.
    let log = worker.log_text();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["fields"]["message"] == "rotating" && v["span"]["asset"] == "dev-1")
        .unwrap_or_else(|| panic!("a JSON 'rotating' line for dev-1 in:\n{log}"));
    assert_eq!(line["trace_id"], trace.as_str(), "{line}");
    assert!(jobs.iter().any(|j| line["span_id"] == j.span_id.as_str()), "{line}");

    // No span shows a secret: the broker and database URLs, or any key of the run.
    let mut secrets = vec![env.vhost.url.clone(), "guest:guest".to_owned(), env.db_url.clone()];
    for key in [env.path("ca/root/ca.key"), env.path("certs/dev-1.key")] {
        let pem = std::fs::read_to_string(&key).unwrap();
        secrets.extend(pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_owned));
    }
    for span in &spans {
        for (k, v) in &span.attributes {
            for s in &secrets {
                assert!(!v.contains(s.as_str()), "span {} attribute {k} shows a secret: {v}", span.name);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_sampling_at_zero_nothing_is_exported_and_no_trace_is_recorded() {
    let sink = OtlpSink::start().await.unwrap();
    let env = TestEnv::new(&format!("[telemetry]\notlp_endpoint = \"{}\"\nsample_ratio = 0.0\n", sink.endpoint()));
    env.import(&serde_json::json!([device(&env, "dev-1")]));
    let fast = [("OTEL_BSP_SCHEDULE_DELAY", "200")];
    let _worker = env.spawn_with_env("certfleet-worker", "worker", &["--drivers", "local", "--name", "w1"], &fast);
    let _scheduler = env.spawn_with_env("certfleet-scheduler", "scheduler", &[], &fast);
    let db = env.db().await;
    let job = wait_for(Duration::from_secs(60), "dev-1 rotated", || async {
        let h = asset_history::of_asset(&db, "dev-1").await.ok()?;
        h.jobs.into_iter().find(|j| j.outcome == certfleet_shared::db::entity::rotation::RotationStatus::Rotated)
    })
    .await;
    assert_eq!(job.trace_id, None, "an unsampled trace is not linked");
    // Past two batch delays, still nothing: the worker followed the scan's decision.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(sink.spans().is_empty(), "{:#?}", sink.spans());
    db.close().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_otel_variables_alone_turn_export_on() {
    let sink = OtlpSink::start().await.unwrap();
    let env = TestEnv::new("");
    env.import(&serde_json::json!([device(&env, "dev-1")]));
    let endpoint = sink.endpoint();
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "200")];
    let _worker = env.spawn_with_env("certfleet-worker", "worker", &["--drivers", "local", "--name", "w1"], &otel);
    let named = [otel[0], otel[1], ("OTEL_SERVICE_NAME", "fleet-eu1-scheduler")];
    let _scheduler = env.spawn_with_env("certfleet-scheduler", "scheduler", &[], &named);
    let spans = sink
        .wait(Duration::from_secs(60), "dev-1's result recorded in exported spans", |spans| {
            spans.iter().any(|s| s.name == "record result" && s.attr("asset") == "dev-1").then(|| spans.to_vec())
        })
        .await;
    // OTEL_SERVICE_NAME names the scheduler; the worker keeps its own default name.
    let recorded = spans.iter().find(|s| s.name == "record result").unwrap();
    assert_eq!(recorded.service, "fleet-eu1-scheduler");
    let job = spans.iter().find(|s| s.span_id == recorded.parent).unwrap();
    assert_eq!((job.name.as_str(), job.service.as_str()), ("job", "certfleet-worker"));
}
