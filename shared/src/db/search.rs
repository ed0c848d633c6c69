//! Filtered reads for the control plane: the asset search (every filter indexed, keyset
//! pagination by id so page 10,000 costs what page 1 costs) and the rotation history.

use super::DbError;
use super::entity::asset::{self, AssetState};
use super::entity::rotation::{self, RotationStatus};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

/// Filters of the asset search; all optional and combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AssetFilter {
    /// Exact platform.
    pub host_platform: Option<String>,
    /// Exact location.
    pub data_center: Option<String>,
    /// Exact address.
    pub ip_address: Option<String>,
    /// Exact name.
    pub system_name: Option<String>,
    /// Expiring within this many days (or expired); unknown expiry never matches.
    pub days_until_expiration: Option<u32>,
    /// Exact origin.
    pub origin: Option<String>,
    /// Lifecycle state.
    pub state: Option<AssetState>,
    /// Exact issuer name.
    pub certificate_authority: Option<String>,
    /// Substring of system_name or common_name.
    pub q: Option<String>,
    /// Only assets whose stored next decision time is at or before `now`: a superset of
    /// the due ones (the scheduler's invariant), which the caller narrows with the policy.
    pub decision_due: bool,
}

/// One page of assets with `id > after` matching `f`, in id order, plus the cursor of
/// the next page (the last id) when the page is full.
pub async fn assets(
    db: &impl ConnectionTrait,
    f: &AssetFilter,
    after: i64,
    limit: u64,
    now: DateTime<Utc>,
) -> Result<(Vec<asset::Model>, Option<i64>), DbError> {
    use asset::Column as C;
    let mut cond = Condition::all().add(C::Id.gt(after));
    let exact = [
        (C::HostPlatform, &f.host_platform),
        (C::DataCenter, &f.data_center),
        (C::IpAddress, &f.ip_address),
        (C::SystemName, &f.system_name),
        (C::Origin, &f.origin),
        (C::CertificateAuthority, &f.certificate_authority),
    ];
    for (col, value) in exact {
        if let Some(v) = value {
            cond = cond.add(col.eq(v.as_str()));
        }
    }
    if let Some(days) = f.days_until_expiration {
        // A rotation writes its notAfter into certificate_expiration too, so one indexed
        // column answers for imported and rotated certificates alike.
        let until = now.checked_add_signed(chrono::Duration::days(i64::from(days))).unwrap_or(DateTime::<Utc>::MAX_UTC);
        cond = cond.add(C::CertificateExpiration.lte(until));
    }
    if let Some(state) = f.state {
        cond = cond.add(C::State.eq(state));
    }
    if f.decision_due {
        cond = cond.add(C::NextDueAt.lte(now));
    }
    if let Some(q) = f.q.as_deref().filter(|q| !q.is_empty()) {
        let pattern = format!("%{}%", q.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
        // The escape character is named: SQLite has none by default.
        let like = || sea_orm::sea_query::LikeExpr::new(pattern.clone()).escape('\\');
        cond = cond.add(Condition::any().add(C::SystemName.like(like())).add(C::CommonName.like(like())));
    }
    let rows = asset::Entity::find().filter(cond).order_by_asc(C::Id).limit(limit).all(db).await?;
    let next = if rows.len() as u64 == limit { rows.last().map(|r| r.id) } else { None };
    Ok((rows, next))
}

/// Filters of the rotation history; all optional.
#[derive(Debug, Clone, Default)]
pub struct RotationFilter {
    /// Only this asset (by id; the caller resolves the name).
    pub asset_id: Option<i64>,
    /// Only this status.
    pub status: Option<RotationStatus>,
    /// Queued at or after.
    pub since: Option<DateTime<Utc>>,
}

/// History rows matching `f`, newest first, at most `limit`, with ids below `before`
/// (keyset cursor) when given; plus the next cursor when the page is full.
pub async fn rotations(
    db: &impl ConnectionTrait,
    f: &RotationFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<(Vec<rotation::Model>, Option<i64>), DbError> {
    use rotation::Column as C;
    let mut q = rotation::Entity::find().order_by_desc(C::Id);
    if let Some(id) = f.asset_id {
        q = q.filter(C::AssetId.eq(id));
    }
    if let Some(s) = f.status {
        q = q.filter(C::Status.eq(s));
    }
    if let Some(t) = f.since {
        q = q.filter(C::QueuedAt.gte(t));
    }
    if let Some(b) = before {
        q = q.filter(C::Id.lt(b));
    }
    let rows = q.limit(limit).all(db).await?;
    let next = if rows.len() as u64 == limit { rows.last().map(|r| r.id) } else { None };
    Ok((rows, next))
}
