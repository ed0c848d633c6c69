//! `scan`: one `certfleet-scheduler --once` over a seeded inventory, the due-ordered scan
//! and the full pass in the same run, plus the background recompute pass (the library
//! function the scheduler runs when the policy inputs change), timed in-process, and the
//! due scan again as the long-running scheduler runs it (`scan_warm`).

use crate::env::BenchEnv;
use crate::{median, scan_warm};
use anyhow::{Context as _, bail};
use certfleet_scheduler::policy::{self, Facts, PolicyInputs};
use certfleet_shared::db::entity::asset::{self, AssetState};
use chrono::{DateTime, Duration as ChronoDuration, SubsecRound as _, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait as _, ConnectionTrait as _, EntityTrait as _, QueryFilter as _};
use std::time::Instant;

/// One seeded row: due ones have an unknown expiry (due at once), the others a 4-day
/// certificate with the exact `next_due_at` the policy chain computes, so that the full
/// pass has nothing to correct.
fn row(i: u64, due: bool, t0: DateTime<Utc>) -> asset::ActiveModel {
    let (not_before, not_after) =
        if due { (None, None) } else { (Some(t0 - ChronoDuration::days(1)), Some(t0 + ChronoDuration::days(3))) };
    let state = if due { AssetState::Due } else { AssetState::Ok };
    let facts = Facts { state, lease_until: None, not_before, not_after, renew_before: None, suggested: None };
    asset::ActiveModel {
        system_name: Set(format!("a-{i:08}")),
        common_name: Set(format!("a-{i:08}.bench.test")),
        subject_alternative_name: Set(serde_json::json!([format!("a-{i:08}.bench.test")])),
        certificate_authority: Set("internal".into()),
        host_platform: Set("local".into()),
        certificate_validation: Set(true),
        key_algorithm: Set("ecdsa-p256".into()),
        settings: Set(serde_json::json!({})),
        state: Set(state),
        not_before: Set(not_before),
        not_after: Set(not_after),
        next_due_at: Set(policy::next_due_at(&facts, t0)),
        updated_at: Set(t0),
        ..Default::default()
    }
}

/// `rows` assets, `due` of them due.
async fn seed(env: &BenchEnv, rows: u64, due: u64, t0: DateTime<Utc>) -> anyhow::Result<()> {
    let every = (rows / due.max(1)).max(1);
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..rows {
        batch.push(row(i, due > 0 && i % every == 0 && i / every < due, t0));
        if batch.len() == 20_000 {
            env.insert(std::mem::take(&mut batch)).await?;
        }
    }
    env.insert(batch).await
}

/// Puts the due rows back (the scan claimed them) and empties the history and the queue.
async fn reset(env: &BenchEnv, t0: DateTime<Utc>, postgres: bool) -> anyhow::Result<()> {
    asset::Entity::update_many()
        .col_expr(asset::Column::State, Expr::value(AssetState::Due))
        .col_expr(asset::Column::LeaseUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(asset::Column::NextDueAt, Expr::value(t0))
        .filter(asset::Column::NotAfter.is_null())
        .exec(env.db())
        .await?;
    env.db().execute_unprepared("DELETE FROM rotations").await?;
    if postgres {
        env.db().execute_unprepared("VACUUM ANALYZE assets").await?;
        env.db().execute_unprepared("VACUUM ANALYZE rotations").await?;
    }
    env.purge_jobs();
    Ok(())
}

struct Run {
    wall: f64,
    read_claim: f64,
    rss_mib: f64,
}

fn once(env: &BenchEnv, full: bool, due: u64) -> anyhow::Result<Run> {
    let args: &[&str] = if full { &["--full"] } else { &[] };
    let (wall, rss_kb, stdout) = env.timed_once_with(args)?;
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).context("scheduler report")?;
    if report["published"] != due {
        bail!("published {} of {due} due jobs: {report}", report["published"]);
    }
    if full && report["corrected"] != 0 {
        bail!("the full pass corrected stored times: {report}");
    }
    let secs = |k: &str| report[k].as_f64().unwrap_or_default();
    eprintln!("  {} {wall:.3}s {report}", if full { "full" } else { "due " });
    Ok(Run { wall, read_claim: secs("read_secs") + secs("claim_secs"), rss_mib: rss_kb as f64 / 1024.0 })
}

/// Runs the benchmark and prints one JSON line.
pub async fn scan(backend: &str, rows: u64, due: u64, runs: usize, full: bool) -> anyhow::Result<()> {
    let env = BenchEnv::new(backend, "scan_page_size = 5000\n").await?;
    let t0 = Utc::now().trunc_subsecs(0) - ChronoDuration::seconds(5);
    let t = Instant::now();
    seed(&env, rows, due, t0).await?;
    let seed_secs = t.elapsed().as_secs_f64();
    eprintln!("seeded {rows} rows ({due} due) in {seed_secs:.1}s");
    let postgres = backend == "postgres";
    let (mut due_runs, mut full_runs) = (Vec::new(), Vec::new());
    for run in 0..runs {
        eprintln!("run {run}:");
        reset(&env, t0, postgres).await?;
        due_runs.push(once(&env, false, due)?);
        if full {
            reset(&env, t0, postgres).await?;
            full_runs.push(once(&env, true, due)?);
        }
    }
    // The same due scan as the long-running scheduler runs it, on a pool that stays open.
    let config = certfleet_shared::Config::load(Some(&env.config))?.config;
    let warm = scan_warm::scans(&config, due, runs, || reset(&env, t0, postgres)).await?;
    // The recompute pass: every stored time computed again, streamed (what a config change
    // of renew_before or failed_retry_after triggers in the background).
    reset(&env, t0, postgres).await?;
    let inputs = PolicyInputs::of(&config);
    let t = Instant::now();
    let (read, written) = certfleet_scheduler::recompute::run(env.db(), &inputs, 5000).await?;
    let recompute_secs = t.elapsed().as_secs_f64();
    eprintln!("recompute: {read} rows read, {written} written in {recompute_secs:.2}s");
    let med = |v: &[Run], f: fn(&Run) -> f64| median(v.iter().map(f).collect());
    let mut summary = serde_json::json!({
        "bench": "scan", "backend": backend, "rows": rows, "due": due, "runs": runs, "seed_secs": seed_secs,
        "due_wall_secs": med(&due_runs, |r| r.wall), "due_read_claim_secs": med(&due_runs, |r| r.read_claim),
        "due_rss_mib": med(&due_runs, |r| r.rss_mib), "recompute_secs": recompute_secs,
        "in_process_first_read_claim_secs": warm.first, "in_process_warm_read_claim_secs": median(warm.warm),
    });
    if full {
        summary["full_wall_secs"] = med(&full_runs, |r| r.wall).into();
        summary["full_read_claim_secs"] = med(&full_runs, |r| r.read_claim).into();
        summary["full_rss_mib"] = med(&full_runs, |r| r.rss_mib).into();
        summary["due_to_full_wall_ratio"] = (med(&due_runs, |r| r.wall) / med(&full_runs, |r| r.wall)).into();
    }
    println!("{summary}");
    env.cleanup().await;
    Ok(())
}
