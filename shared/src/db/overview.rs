//! The fleet at a glance, for the dashboard's Overview: assets by state, certificates
//! expiring soon, rotations of the last 24 hours by outcome, an expiry histogram and the
//! latest rotations. Every number is one aggregate query answered from an index; their cost
//! still grows with the fleet, which is why the dashboard caches [`Counts`].

use super::DbError;
use super::entity::asset;
use super::entity::rotation;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use std::collections::{BTreeMap, HashMap};

/// The expiry windows shown, in days (the search's `days_until_expiration`).
pub const EXPIRY_WINDOWS: [u32; 3] = [2, 15, 30];
/// How far the histogram looks ahead, in days.
pub const HORIZON_DAYS: i64 = 90;
/// The width of one histogram bar, in days.
pub const BUCKET_DAYS: i64 = 7;

/// One bar of the expiry histogram: certificates expiring in `[start, start + BUCKET_DAYS)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bar.
    pub start: DateTime<Utc>,
    /// Count per issuer name (`certificate_authority`).
    pub by_issuer: BTreeMap<String, u64>,
}

impl Bucket {
    /// All certificates of the bar.
    pub fn total(&self) -> u64 {
        self.by_issuer.values().sum()
    }
}

/// One of the latest rotations, with its asset's name.
#[derive(Debug, Clone)]
pub struct RecentRotation {
    /// The history row.
    pub rotation: rotation::Model,
    /// The asset's name (absent if the asset was deleted since).
    pub system_name: Option<String>,
}

/// The fleet's aggregate numbers: what the Overview shows apart from the latest rotations.
/// Counting them visits every index entry of the fleet, so the dashboard keeps one copy
/// and refreshes it in the background (`certfleet_api::dashboard::summary`).
#[derive(Debug, Clone)]
pub struct Counts {
    /// When they were counted.
    pub at: DateTime<Utc>,
    /// Assets per state spelling (`ok`, `due`, ...); states with none are absent.
    pub by_state: HashMap<String, u64>,
    /// All assets.
    pub total: u64,
    /// Certificates expiring within each of [`EXPIRY_WINDOWS`] days (expired ones included,
    /// as the search counts them).
    pub expiring: Vec<(u32, u64)>,
    /// Certificates already expired.
    pub expired: u64,
    /// Rotations queued in the last 24 hours, per status spelling.
    pub last_day: HashMap<String, u64>,
    /// The expiry histogram of the next [`HORIZON_DAYS`] days.
    pub histogram: Vec<Bucket>,
}

/// What the Overview shows.
#[derive(Debug, Clone)]
pub struct Overview {
    /// The aggregate numbers.
    pub counts: Counts,
    /// The latest rotations, newest first.
    pub recent: Vec<RecentRotation>,
}

/// `(key, count)` rows to a map.
fn counted(rows: Vec<(String, i64)>) -> HashMap<String, u64> {
    rows.into_iter().map(|(k, n)| (k, u64::try_from(n).unwrap_or(0))).collect()
}

/// Assets whose certificate expires at or before `until`, counted from the expiry index
/// alone (`COUNT(id)`, not a count over a subquery of whole rows).
async fn expiring_by(db: &impl ConnectionTrait, until: DateTime<Utc>) -> Result<u64, DbError> {
    let n: Option<i64> = asset::Entity::find()
        .select_only()
        .column_as(asset::Column::Id.count(), "n")
        .filter(asset::Column::CertificateExpiration.lte(until))
        .into_tuple()
        .one(db)
        .await?;
    Ok(n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0))
}

/// One bar of the histogram: `(start, start + BUCKET_DAYS]` per issuer.
async fn bucket(db: &impl ConnectionTrait, start: DateTime<Utc>) -> Result<Bucket, DbError> {
    use asset::Column as A;
    let rows: Vec<(String, i64)> = asset::Entity::find()
        .select_only()
        .column(A::CertificateAuthority)
        .column_as(A::Id.count(), "n")
        .filter(A::CertificateExpiration.gt(start))
        .filter(A::CertificateExpiration.lte(start + Duration::days(BUCKET_DAYS)))
        .group_by(A::CertificateAuthority)
        .into_tuple()
        .all(db)
        .await?;
    Ok(Bucket { start, by_issuer: counted(rows).into_iter().collect() })
}

/// Reads the whole overview at `now`, with the `recent` latest rotations.
pub async fn read(db: &impl ConnectionTrait, now: DateTime<Utc>, recent: u64) -> Result<Overview, DbError> {
    let (counts, recent) = tokio::try_join!(counts(db, now), latest(db, recent))?;
    Ok(Overview { counts, recent })
}

/// Counts the fleet at `now`. The queries are independent and run at once (on as many
/// pooled connections); each is answered from an index alone.
pub async fn counts(db: &impl ConnectionTrait, now: DateTime<Utc>) -> Result<Counts, DbError> {
    use asset::Column as A;
    let by_state = async {
        let rows: Vec<(String, i64)> = asset::Entity::find()
            .select_only()
            .column(A::State)
            .column_as(A::Id.count(), "n")
            .group_by(A::State)
            .into_tuple()
            .all(db)
            .await?;
        Ok::<_, DbError>(counted(rows))
    };
    let expiring = futures_util::future::try_join_all(EXPIRY_WINDOWS.iter().map(|days| async move {
        Ok::<_, DbError>((*days, expiring_by(db, now + Duration::days(i64::from(*days))).await?))
    }));
    let last_day = async {
        let rows: Vec<(String, i64)> = rotation::Entity::find()
            .select_only()
            .column(rotation::Column::Status)
            .column_as(rotation::Column::Id.count(), "n")
            .filter(rotation::Column::QueuedAt.gte(now - Duration::hours(24)))
            .group_by(rotation::Column::Status)
            .into_tuple()
            .all(db)
            .await?;
        Ok::<_, DbError>(counted(rows))
    };
    let starts: Vec<DateTime<Utc>> =
        (0..(HORIZON_DAYS + BUCKET_DAYS - 1) / BUCKET_DAYS).map(|i| now + Duration::days(i * BUCKET_DAYS)).collect();
    let histogram = futures_util::future::try_join_all(starts.into_iter().map(|start| bucket(db, start)));
    let (by_state, expiring, expired, last_day, histogram) =
        tokio::try_join!(by_state, expiring, expiring_by(db, now), last_day, histogram)?;
    let total = by_state.values().sum();
    Ok(Counts { at: now, by_state, total, expiring, expired, last_day, histogram })
}

/// The `n` latest rotations with their assets' names, newest first: one read of the
/// history's primary key backwards, cheap at any fleet size.
pub async fn latest(db: &impl ConnectionTrait, n: u64) -> Result<Vec<RecentRotation>, DbError> {
    let rows = rotation::Entity::find().order_by_desc(rotation::Column::Id).limit(n).all(db).await?;
    let names = names(db, rows.iter().map(|r| r.asset_id).collect()).await?;
    Ok(rows.into_iter().map(|r| RecentRotation { system_name: names.get(&r.asset_id).cloned(), rotation: r }).collect())
}

/// The names of the assets with these ids (deleted ones are absent).
pub async fn names(db: &impl ConnectionTrait, mut ids: Vec<i64>) -> Result<HashMap<i64, String>, DbError> {
    ids.sort_unstable();
    ids.dedup();
    Ok(asset::Entity::find()
        .select_only()
        .column(asset::Column::Id)
        .column(asset::Column::SystemName)
        .filter(asset::Column::Id.is_in(ids))
        .into_tuple::<(i64, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}
