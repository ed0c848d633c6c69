//! Worker heartbeats in the inventory: the scheduler records each one (an upsert by
//! worker name), the dashboard lists them, and a worker silent for [`MISSED_BEATS`] of
//! its own heartbeat intervals counts as gone.

use super::DbError;
use super::entity::worker;
use certfleet_proto::WorkerHeartbeat;
use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, QueryOrder};

/// Heartbeat intervals of silence after which a worker is shown as gone.
pub const MISSED_BEATS: i64 = 3;
/// Gone workers older than this are no longer listed.
pub const FORGET_AFTER: Duration = Duration::hours(24);

/// A worker as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// Its name.
    pub worker_id: String,
    /// The drivers it serves.
    pub drivers: Vec<String>,
    /// Jobs at once.
    pub concurrency: i32,
    /// Jobs running at its last heartbeat.
    pub in_flight: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen: DateTime<Utc>,
    /// Heard from within [`MISSED_BEATS`] intervals.
    pub alive: bool,
}

/// Whether a worker last heard from at `last_seen`, beating every `interval_ms`, is alive.
pub fn alive(last_seen: DateTime<Utc>, interval_ms: i64, now: DateTime<Utc>) -> bool {
    now - last_seen <= Duration::milliseconds(interval_ms.max(1).saturating_mul(MISSED_BEATS))
}

/// Records a heartbeat (a late, older beat never moves `last_seen` back).
pub async fn record(db: &impl ConnectionTrait, beat: &WorkerHeartbeat) -> Result<(), DbError> {
    use worker::Column as C;
    if let Some(existing) = worker::Entity::find_by_id(beat.worker.clone()).one(db).await?
        && existing.last_seen > beat.sent_at
    {
        return Ok(());
    }
    let drivers: Vec<&str> = beat.drivers.iter().map(|d| d.as_str()).collect();
    let row = worker::ActiveModel {
        worker_id: Set(beat.worker.clone()),
        drivers: Set(serde_json::json!(drivers)),
        concurrency: Set(i32::try_from(beat.concurrency).unwrap_or(i32::MAX)),
        in_flight: Set(i32::try_from(beat.in_flight).unwrap_or(i32::MAX)),
        interval_ms: Set(i64::try_from(beat.interval_ms).unwrap_or(i64::MAX)),
        started_at: Set(beat.started_at),
        last_seen: Set(beat.sent_at),
    };
    worker::Entity::insert(row)
        .on_conflict(
            OnConflict::column(C::WorkerId)
                .update_columns([C::Drivers, C::Concurrency, C::InFlight, C::IntervalMs, C::StartedAt, C::LastSeen])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The workers heard from within [`FORGET_AFTER`], by name, with their status at `now`.
pub async fn list(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Vec<WorkerStatus>, DbError> {
    let rows = worker::Entity::find().order_by_asc(worker::Column::WorkerId).all(db).await?;
    Ok(rows
        .into_iter()
        .filter(|w| now - w.last_seen <= FORGET_AFTER)
        .map(|w| WorkerStatus {
            alive: alive(w.last_seen, w.interval_ms, now),
            drivers: serde_json::from_value(w.drivers).unwrap_or_default(),
            worker_id: w.worker_id,
            concurrency: w.concurrency,
            in_flight: w.in_flight,
            started_at: w.started_at,
            last_seen: w.last_seen,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use certfleet_proto::Driver;

    fn beat(name: &str, sent_at: DateTime<Utc>, in_flight: u32) -> WorkerHeartbeat {
        WorkerHeartbeat {
            worker: name.into(),
            drivers: vec![Driver::Local],
            concurrency: 4,
            in_flight,
            interval_ms: 5000,
            started_at: sent_at - Duration::minutes(1),
            sent_at,
        }
    }

    #[test]
    fn three_missed_beats_make_a_worker_gone() {
        let now = Utc::now();
        assert!(alive(now - Duration::seconds(15), 5000, now));
        assert!(!alive(now - Duration::milliseconds(15_001), 5000, now));
    }

    #[tokio::test]
    async fn heartbeats_upsert_and_never_go_back_in_time() {
        let db = crate::db::connect("sqlite::memory:", std::time::Duration::from_secs(5)).await.unwrap();
        let now = Utc::now();
        record(&db, &beat("w1", now - Duration::seconds(30), 1)).await.unwrap();
        record(&db, &beat("w2", now, 2)).await.unwrap();
        let l = list(&db, now).await.unwrap();
        assert_eq!(
            l.iter().map(|w| (w.worker_id.as_str(), w.alive)).collect::<Vec<_>>(),
            [("w1", false), ("w2", true)]
        );
        assert_eq!(l[1].drivers, ["local"]);
        record(&db, &beat("w1", now, 3)).await.unwrap();
        record(&db, &beat("w1", now - Duration::seconds(60), 0)).await.unwrap();
        let w1 = &list(&db, now).await.unwrap()[0];
        assert!(w1.alive);
        assert_eq!(w1.in_flight, 3);
    }
}
