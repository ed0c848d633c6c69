//! The dashboard's server time over a large inventory: the Overview, Assets page 1 and
//! Assets page 500 of a filtered search, each loaded 100 times (p50/p99), against
//! `certfleet-api` run in this process on 127.0.0.1 and reached over one loopback
//! connection with a logged-in session cookie.

use crate::env::BenchEnv;
use anyhow::{Context as _, bail};
use certfleet_shared::db::entity::asset;
use certfleet_shared::db::entity::role::Role;
use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Data centres the seeded assets are spread over (a filter matches one in ten).
const DATA_CENTERS: u64 = 10;
/// Rows per dashboard page (the Assets page's default).
const PAGE: u64 = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0.0)
}

/// `rows` assets: expiries spread over the next 120 days (some expired), ten data
/// centres, two issuers, every state.
async fn seed(env: &BenchEnv, rows: u64) -> anyhow::Result<()> {
    let now = Utc::now();
    let states = [
        asset::AssetState::Ok,
        asset::AssetState::Ok,
        asset::AssetState::Ok,
        asset::AssetState::Failed,
        asset::AssetState::Dead,
    ];
    let mut batch = Vec::with_capacity(20_000);
    for i in 0..rows {
        let mut r = env.row(i, false, serde_json::json!({}));
        let days = i64::try_from(i % 125).unwrap_or(0) - 5;
        r.certificate_expiration =
            Set(Some(now + ChronoDuration::days(days) + ChronoDuration::minutes(i64::try_from(i % 1440).unwrap_or(0))));
        r.data_center = Set(Some(format!("dc{}", i % DATA_CENTERS)));
        r.certificate_authority = Set(if i % 3 == 0 { "acme".into() } else { "internal".into() });
        r.state = Set(states[usize::try_from(i % 5).unwrap_or(0)]);
        batch.push(r);
        if batch.len() == 20_000 {
            env.insert(std::mem::take(&mut batch)).await?;
        }
    }
    env.insert(batch).await
}

/// Times `loads` GETs of `path`; each must answer 200 with `must_contain`.
async fn time(
    client: &reqwest::Client,
    base: &str,
    cookie: &str,
    path: &str,
    must_contain: &str,
    loads: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(loads);
    for _ in 0..loads {
        let t = Instant::now();
        let res = client.get(format!("{base}{path}")).header("cookie", cookie).send().await?;
        let status = res.status();
        let body = res.text().await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        if status != reqwest::StatusCode::OK || !body.contains(must_contain) {
            bail!("{path}: {status}, body without {must_contain:?}: {}", body.chars().take(400).collect::<String>());
        }
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms)
}

/// Runs the benchmark on `backend` and prints one line per page.
pub async fn run(backend: &str, rows: u64, loads: usize) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let env = BenchEnv::new(backend, "").await?;
    let t = Instant::now();
    seed(&env, rows).await?;
    // A bulk load, then what autovacuum would have done before anyone looks (the load is
    // the benchmark's, not the product's): statistics, and the visibility map that lets
    // PostgreSQL count from an index alone.
    if backend == "postgres" {
        env.db().execute_unprepared("VACUUM ANALYZE assets").await?;
    }
    eprintln!("seeded {rows} rows in {:.1}s", t.elapsed().as_secs_f64());
    let mut config = certfleet_shared::Config::load(Some(&env.config)).context("bench config")?.config;
    config.api.listen = "127.0.0.1:0".parse()?;
    let bound = certfleet_api::bind(&config).await?;
    let base = format!("http://{}", bound.addr);
    let cancel = CancellationToken::new();
    let server = tokio::spawn(bound.serve(cancel.clone()));
    let caller = certfleet_api::auth::Caller {
        actor: "bench".into(),
        kind: certfleet_shared::db::entity::audit::ActorKind::OsUser,
        role: Role::Admin,
        source: None,
        request_id: None,
        session: None,
    };
    let password = "dashboard bench password";
    certfleet_api::accounts::create_user(env.db(), &caller, "bench-dev", password, Role::Developer).await?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let login: serde_json::Value = client
        .post(format!("{base}/user/v1/authenticate"))
        .json(&serde_json::json!({"username": "bench-dev", "password": password}))
        .send()
        .await?
        .json()
        .await?;
    let cookie = format!("certfleet_session={}", login["token"].as_str().context("login token")?);
    // Page 500 of the data-centre filter starts after the 499 * PAGE-th matching id.
    let cursor: i64 = asset::Entity::find()
        .select_only()
        .column(asset::Column::Id)
        .filter(asset::Column::DataCenter.eq("dc3"))
        .order_by_asc(asset::Column::Id)
        .offset(499 * PAGE - 1)
        .limit(1)
        .into_tuple()
        .one(env.db())
        .await?
        .context("not enough rows for page 500")?;
    let pages = [
        ("overview", "/".to_owned(), "Assets by state"),
        ("assets page 1", "/assets".to_owned(), "Next page"),
        ("assets page 500 (data_center)", format!("/assets?data_center=dc3&cursor={cursor}"), "Next page"),
    ];
    for (name, path, marker) in pages {
        let ms = time(&client, &base, &cookie, &path, marker, loads).await?;
        println!(
            "dashboard {backend} {rows} assets: {name}: p50 {:.1} ms, p99 {:.1} ms over {loads} loads",
            percentile(&ms, 0.50),
            percentile(&ms, 0.99)
        );
    }
    // What the Overview's background recount costs (the page loads above are served from
    // its result, recounted when stale).
    let mut ms = Vec::with_capacity(10);
    for _ in 0..10 {
        let t = Instant::now();
        certfleet_shared::db::overview::counts(env.db(), chrono::Utc::now()).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "dashboard {backend} {rows} assets: overview recount: p50 {:.1} ms, max {:.1} ms over 10 counts",
        percentile(&ms, 0.50),
        ms.last().copied().unwrap_or(0.0)
    );
    cancel.cancel();
    let _ = server.await;
    env.cleanup().await;
    Ok(())
}
