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
#[derive(Debug, Clone, PartialEq)]
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
    /// The stored time of the next policy decision.
    pub next_due_at: Option<DateTime<Utc>>,
    /// Last change: a write of `next_due_at` computed from this row applies only if the
    /// row is still at this version.
    pub updated_at: DateTime<Utc>,
}

type ScanTuple = (
    i64,
    AssetState,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    String,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
);

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
        C::NextDueAt,
        C::UpdatedAt,
    ])
}

fn scan_row(t: ScanTuple) -> ScanRow {
    ScanRow {
        id: t.0,
        state: t.1,
        lease_until: t.2,
        not_before: t.3,
        not_after: t.4,
        certificate_expiration: t.5,
        certificate_authority: t.6,
        ari_cert_id: t.7,
        renewal_window_start: t.8,
        renewal_window_end: t.9,
        next_due_at: t.10,
        updated_at: t.11,
    }
}

/// A page of scan rows with `id > after`, in id order (keyset pagination): the full pass.
/// Columns are read by position, not by name.
pub async fn scan_page(db: &impl ConnectionTrait, after: i64, limit: u64) -> Result<Vec<ScanRow>, DbError> {
    use sea_orm::QuerySelect;
    let rows: Vec<ScanTuple> = scan_select()
        .filter(asset::Column::Id.gt(after))
        .order_by_asc(asset::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows.into_iter().map(scan_row).collect())
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
    let rows: Vec<ScanTuple> =
        q.order_by_asc(C::NextDueAt).order_by_asc(C::Id).limit(limit).into_tuple().all(db).await?;
    Ok(rows.into_iter().map(scan_row).collect())
}

/// Stores computed `next_due_at` values, each only if its row is still at the version
/// (`updated_at`) it was computed from: a row changed meanwhile keeps the writer's value.
/// Returns how many rows were written.
pub async fn store_next_due(
    db: &DatabaseConnection,
    updates: &[(i64, DateTime<Utc>, Option<DateTime<Utc>>)],
) -> Result<u64, DbError> {
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
