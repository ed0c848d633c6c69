//! The dashboard's repository reads, on SQLite (in memory) and on PostgreSQL (a fresh
//! database per test): the Overview's aggregates and the workers' heartbeats.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly

use certfleet_proto::{Driver, ErrorClass, JobId, WorkerHeartbeat};
use certfleet_shared::db::assets::{self, AssetInput};
use certfleet_shared::db::dead_letters::{self, DeadLetter};
use certfleet_shared::db::entity::asset::{self, AssetState};
use certfleet_shared::db::entity::rotation::{self, RotationStatus};
use certfleet_shared::db::{self, overview, workers};
use chrono::{Duration, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter};
use std::time::Duration as StdDuration;

fn input(name: &str) -> AssetInput {
    AssetInput {
        system_name: name.into(),
        common_name: format!("{name}.example.test"),
        certificate_authority: "internal".into(),
        host_platform: "local".into(),
        certificate_validation: true,
        settings: Some(serde_json::json!({"cert_path": "/tmp/x.crt", "key_path": "/tmp/x.key"})),
        ..AssetInput::default()
    }
}

async fn set(db: &DatabaseConnection, name: &str, expires_in_days: i64, state: AssetState) {
    asset::Entity::update_many()
        .col_expr(asset::Column::CertificateExpiration, Expr::value(Utc::now() + Duration::days(expires_in_days)))
        .col_expr(asset::Column::State, Expr::value(state.as_str()))
        .filter(asset::Column::SystemName.eq(name))
        .exec(db)
        .await
        .unwrap();
}

async fn history_row(db: &DatabaseConnection, asset_id: i64, status: RotationStatus, hours_ago: i64) {
    let at = Utc::now() - Duration::hours(hours_ago);
    rotation::Entity::insert(rotation::ActiveModel {
        job_id: Set(JobId::new().0),
        asset_id: Set(asset_id),
        attempt: Set(1),
        driver: Set("local".into()),
        status: Set(status),
        queued_at: Set(at),
        finished_at: Set(Some(at)),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await
    .unwrap();
}

async fn overview_counts_states_expiries_and_the_last_day(db: DatabaseConnection) {
    let names = ["a1", "a2", "a3", "a4", "a5", "a6"];
    let rows: Vec<AssetInput> = names.iter().map(|n| input(n)).collect();
    assets::import(&db, &rows, &["internal"]).await.unwrap();
    set(&db, "a1", -1, AssetState::Ok).await;
    set(&db, "a2", 1, AssetState::Failed).await;
    set(&db, "a3", 10, AssetState::Ok).await;
    set(&db, "a4", 20, AssetState::Ok).await;
    set(&db, "a5", 60, AssetState::Ok).await;
    // a6: unknown expiry, still due. a1 dies (as the scheduler records it).
    let a1 = assets::by_name(&db, "a1").await.unwrap();
    let dl = DeadLetter {
        job_id: JobId::new(),
        asset_id: Some(a1.id),
        system_name: Some("a1".into()),
        driver: Some("local".into()),
        class: ErrorClass::Auth,
        reason: "refused".into(),
        attempts: 5,
        kind: certfleet_proto::DeadKind::Rotation,
        payload: None,
    };
    dead_letters::record(&db, &dl).await.unwrap();
    let a3 = assets::by_name(&db, "a3").await.unwrap();
    history_row(&db, a3.id, RotationStatus::Rotated, 1).await;
    history_row(&db, a3.id, RotationStatus::Rotated, 2).await;
    history_row(&db, a3.id, RotationStatus::RolledBack, 3).await;
    history_row(&db, a3.id, RotationStatus::Rotated, 48).await;

    let read = overview::read(&db, Utc::now(), 3).await.unwrap();
    let o = &read.counts;
    assert_eq!(o.total, 6);
    let state = |s: AssetState| o.by_state.get(s.as_str()).copied().unwrap_or(0);
    assert_eq!(
        (state(AssetState::Ok), state(AssetState::Failed), state(AssetState::Dead), state(AssetState::Due)),
        (3, 1, 1, 1)
    );
    assert_eq!(o.expired, 1);
    assert_eq!(o.expiring, vec![(2, 2), (15, 3), (30, 4)], "the windows count expired ones too");
    assert_eq!(o.last_day.get("rotated"), Some(&2), "only the last 24 hours: {:?}", o.last_day);
    assert_eq!(o.last_day.get("rolled_back"), Some(&1));
    assert_eq!(o.histogram.len(), 13, "90 days in 7-day bars");
    assert_eq!(o.histogram.iter().map(overview::Bucket::total).sum::<u64>(), 4, "a2..a5 expire within 90 days");
    assert_eq!(o.histogram[0].by_issuer.get("internal"), Some(&1), "a2 in the first bar");
    assert_eq!(read.recent.len(), 3, "the latest rotations only");
    assert!(read.recent.iter().all(|r| r.system_name.as_deref() == Some("a3")));
    assert!(read.recent.windows(2).all(|w| w[0].rotation.id > w[1].rotation.id), "newest first");
}

async fn heartbeats_upsert_and_age_out(db: DatabaseConnection) {
    let now = Utc::now();
    let beat = |name: &str, sent_at, in_flight| WorkerHeartbeat {
        worker: name.into(),
        drivers: vec![Driver::Local, Driver::Haproxy],
        concurrency: 8,
        in_flight,
        interval_ms: 2000,
        started_at: now - Duration::hours(1),
        sent_at,
    };
    workers::record(&db, &beat("w1", now - Duration::seconds(7), 1)).await.unwrap();
    workers::record(&db, &beat("w2", now, 2)).await.unwrap();
    workers::record(&db, &beat("w3", now - Duration::days(2), 0)).await.unwrap();
    let list = workers::list(&db, now).await.unwrap();
    let seen: Vec<(&str, bool)> = list.iter().map(|w| (w.worker_id.as_str(), w.alive)).collect();
    assert_eq!(seen, [("w1", false), ("w2", true)], "gone after 3 intervals; forgotten after a day");
    assert_eq!(list[1].drivers, ["local", "haproxy"]);
    workers::record(&db, &beat("w1", now, 5)).await.unwrap();
    let w1 = workers::list(&db, now).await.unwrap().remove(0);
    assert!(w1.alive);
    assert_eq!(w1.in_flight, 5);
}

async fn sqlite() -> DatabaseConnection {
    db::connect("sqlite::memory:", StdDuration::from_secs(10)).await.unwrap()
}

fn pg_base() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

async fn pg() -> (DatabaseConnection, String) {
    let name = format!("certfleet_d_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base()))
        .await
        .expect("PostgreSQL must be running for the repository tests");
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    admin.close().await.unwrap();
    (db::connect(&format!("{}/{name}", pg_base()), StdDuration::from_secs(10)).await.unwrap(), name)
}

async fn drop_pg(db: DatabaseConnection, name: String) {
    db.close().await.unwrap();
    let admin = sea_orm::Database::connect(format!("{}/postgres", pg_base())).await.unwrap();
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await.unwrap();
}

macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {
        mod on_sqlite { $( #[tokio::test] async fn $name() { super::$name(super::sqlite().await).await } )+ }
        mod on_postgres { $( #[tokio::test] async fn $name() {
            let (db, name) = super::pg().await;
            super::$name(db.clone()).await;
            super::drop_pg(db, name).await;
        } )+ }
    };
}

both_backends!(overview_counts_states_expiries_and_the_last_day, heartbeats_upsert_and_age_out);
