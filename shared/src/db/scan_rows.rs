//! The scheduler's narrow view of the inventory: the few columns a scan decides on, read
//! due-ordered or in id order, and the conditional write of computed `next_due_at` values.

use super::DbError;
use super::entity::asset::{self, AssetState};
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

/// The columns a scan decides on: a handful, so a scan of a large inventory decodes as
/// little as it can. Routing and job building use the full rows of the claimed assets.
#[derive(Debug, Clone, PartialEq, sea_orm::FromQueryResult)]
pub struct ScanRow {
    /// Primary key.
    pub id: i64,
    /// Lifecycle state.
    pub state: AssetState,
    /// Lease or next-try time.
    pub lease_until: Option<DateTime<Utc>>,
    /// Start of validity of the current certificate.
    pub not_before: Option<DateTime<Utc>>,
    /// End of validity of the current certificate.
    pub not_after: Option<DateTime<Utc>>,
    /// Imported expiry.
    pub certificate_expiration: Option<DateTime<Utc>>,
    /// Issuer name.
    pub certificate_authority: String,
    /// ARI certificate id of the current certificate (seeds its renewal time in the window).
    pub ari_cert_id: Option<String>,
    /// The CA's suggested renewal window, start.
    pub renewal_window_start: Option<DateTime<Utc>>,
    /// The CA's suggested renewal window, end.
    pub renewal_window_end: Option<DateTime<Utc>>,
    /// SHA-256 fingerprint of the current certificate (the expiry watch's dedup key).
    pub fingerprint_sha256: Option<String>,
    /// The last expiry threshold announced for the current certificate.
    pub expiry_notice: Option<String>,
    /// The stored time of the next policy decision or expiry announcement.
    pub next_due_at: Option<DateTime<Utc>>,
    /// Last change: a write of `next_due_at` computed from this row applies only if the
    /// row is still at this version.
    pub updated_at: DateTime<Utc>,
}

fn scan_select() -> sea_orm::Select<asset::Entity> {
    use asset::Column as C;
    use sea_orm::QuerySelect;
    asset::Entity::find().select_only().columns([
        C::Id,
        C::State,
        C::LeaseUntil,
        C::NotBefore,
        C::NotAfter,
        C::CertificateExpiration,
        C::CertificateAuthority,
        C::AriCertId,
        C::RenewalWindowStart,
        C::RenewalWindowEnd,
        C::FingerprintSha256,
        C::ExpiryNotice,
        C::NextDueAt,
        C::UpdatedAt,
    ])
}

/// A page of scan rows with `id > after`, in id order (keyset pagination): the full pass.
/// Columns are read by name into [`ScanRow`] (more than sea-orm's twelve-element tuples).
pub async fn scan_page(db: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<ScanRow>, DbError> {
    use sea_orm::QuerySelect;
    Ok(scan_select()
        .filter(asset::Column::Id.gt(after))
        .order_by_asc(asset::Column::Id)
        .limit(limit)
        .into_model::<ScanRow>()
        .all(db)
        .await?)
}

/// A page of the rows whose `next_due_at <= now`, in (`next_due_at`, id) order after the
/// keyset `after`: the due-ordered scan, which reads only what needs a decision.
pub async fn due_page(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    after: Option<(DateTime<Utc>, i64)>,
    limit: u64,
) -> Result<Vec<ScanRow>, DbError> {
    use asset::Column as C;
    use sea_orm::{Condition, QuerySelect};
    let mut q = scan_select().filter(C::NextDueAt.lte(now));
    if let Some((t, id)) = after {
        q = q.filter(
            Condition::any().add(C::NextDueAt.gt(t)).add(Condition::all().add(C::NextDueAt.eq(t)).add(C::Id.gt(id))),
        );
    }
    Ok(q.order_by_asc(C::NextDueAt).order_by_asc(C::Id).limit(limit).into_model::<ScanRow>().all(db).await?)
}

/// One computed `next_due_at` to store: (id, the row's version, the time).
pub type NextDue = (i64, DateTime<Utc>, Option<DateTime<Utc>>);

/// Stores computed `next_due_at` values, each only if its row is still at the version
/// (`updated_at`) it was computed from: a row changed meanwhile keeps the writer's value.
/// Returns how many rows were written.
pub async fn store_next_due(db: &DatabaseConnection, updates: &[NextDue]) -> Result<u64, DbError> {
    let mut written = 0;
    for chunk in updates.chunks(500) {
        let txn = db.begin().await?;
        super::history::relax_durability(&txn).await?;
        for (id, version, next) in chunk {
            written += asset::Entity::update_many()
                .col_expr(asset::Column::NextDueAt, sea_orm::sea_query::Expr::value(*next))
                .filter(asset::Column::Id.eq(*id))
                .filter(asset::Column::UpdatedAt.eq(*version))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        txn.commit().await?;
    }
    Ok(written)
}

/// The scan rows of the given assets, in id order.
pub async fn by_ids(db: &impl ConnectionTrait, ids: &[i64]) -> Result<Vec<ScanRow>, DbError> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        out.extend(
            scan_select()
                .filter(asset::Column::Id.is_in(chunk.iter().copied()))
                .order_by_asc(asset::Column::Id)
                .into_model::<ScanRow>()
                .all(db)
                .await?,
        );
    }
    Ok(out)
}

/// Moves stored `next_due_at` values earlier: each row's becomes the given time where it
/// is later or `None`, and is left alone otherwise. Unconditional on the row's version,
/// since an earlier stored time is never wrong (it only asks for a decision sooner).
/// Returns how many rows were written.
pub async fn pull_next_due(db: &DatabaseConnection, floors: &[(i64, DateTime<Utc>)]) -> Result<u64, DbError> {
    use sea_orm::Condition;
    let mut written = 0;
    for chunk in floors.chunks(500) {
        let txn = db.begin().await?;
        for (id, at) in chunk {
            written += asset::Entity::update_many()
                .col_expr(asset::Column::NextDueAt, sea_orm::sea_query::Expr::value(*at))
                .filter(asset::Column::Id.eq(*id))
                .filter(Condition::any().add(asset::Column::NextDueAt.is_null()).add(asset::Column::NextDueAt.gt(*at)))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        txn.commit().await?;
    }
    Ok(written)
}
