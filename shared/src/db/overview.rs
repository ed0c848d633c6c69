//! The fleet at a glance, for the dashboard's Overview: assets by state, certificates
//! expiring soon, rotations of the last 24 hours by outcome, an expiry histogram and the
//! latest rotations. Every number is one aggregate query on an indexed column, so the
//! page costs the same at 30 assets and at 1,000,000.

use super::DbError;
use super::entity::asset;
use super::entity::rotation;
use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
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

/// What the Overview shows.
#[derive(Debug, Clone)]
pub struct Overview {
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
    /// The latest rotations, newest first.
    pub recent: Vec<RecentRotation>,
}

/// Reads the overview at `now`, with the `recent` latest rotations.
pub async fn read(db: &impl ConnectionTrait, now: DateTime<Utc>, recent: u64) -> Result<Overview, DbError> {
    use asset::Column as A;
    let by_state: Vec<(String, i64)> = asset::Entity::find()
        .select_only()
        .column(A::State)
        .column_as(A::Id.count(), "n")
        .group_by(A::State)
        .into_tuple()
        .all(db)
        .await?;
    let by_state: HashMap<String, u64> =
        by_state.into_iter().map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))).collect();
    let total = by_state.values().sum();
    let mut expiring = Vec::new();
    for days in EXPIRY_WINDOWS {
        let until = now + Duration::days(i64::from(days));
        let n = asset::Entity::find().filter(A::CertificateExpiration.lte(until)).count(db).await?;
        expiring.push((days, n));
    }
    let expired = asset::Entity::find().filter(A::CertificateExpiration.lte(now)).count(db).await?;
    let last_day: Vec<(String, i64)> = rotation::Entity::find()
        .select_only()
        .column(rotation::Column::Status)
        .column_as(rotation::Column::Id.count(), "n")
        .filter(rotation::Column::QueuedAt.gte(now - Duration::hours(24)))
        .group_by(rotation::Column::Status)
        .into_tuple()
        .all(db)
        .await?;
    let last_day = last_day.into_iter().map(|(s, n)| (s, u64::try_from(n).unwrap_or(0))).collect();
    let mut histogram = Vec::new();
    let mut start = now;
    while start < now + Duration::days(HORIZON_DAYS) {
        let end = start + Duration::days(BUCKET_DAYS);
        let rows: Vec<(String, i64)> = asset::Entity::find()
            .select_only()
            .column(A::CertificateAuthority)
            .column_as(A::Id.count(), "n")
            .filter(A::CertificateExpiration.gt(start))
            .filter(A::CertificateExpiration.lte(end))
            .group_by(A::CertificateAuthority)
            .into_tuple()
            .all(db)
            .await?;
        let by_issuer = rows.into_iter().map(|(ca, n)| (ca, u64::try_from(n).unwrap_or(0))).collect();
        histogram.push(Bucket { start, by_issuer });
        start = end;
    }
    let rows = rotation::Entity::find().order_by_desc(rotation::Column::Id).limit(recent).all(db).await?;
    let names = names(db, rows.iter().map(|r| r.asset_id).collect()).await?;
    let recent = rows
        .into_iter()
        .map(|r| RecentRotation { system_name: names.get(&r.asset_id).cloned(), rotation: r })
        .collect();
    Ok(Overview { by_state, total, expiring, expired, last_day, histogram, recent })
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
