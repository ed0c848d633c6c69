//! The scheduler lease: one row in `leader_lease` that one scheduler holds at a time, with
//! an epoch that every claim checks (fencing), plus the small `scheduler_state` values.

use super::DbError;
use super::entity::{leader_lease, scheduler_state};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter};

/// The lease every scheduler competes for.
pub const SCHEDULER: &str = "scheduler";

/// A lease held by this process: claims made under it carry it as their fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// This process's holder id.
    pub holder: String,
    /// The epoch it took the lease at.
    pub epoch: i64,
    /// Until when it holds it, unless renewed.
    pub expires_at: DateTime<Utc>,
}

/// Takes the lease if it is free or expired (a new epoch), or renews it if `holder` has it
/// at `epoch`. Returns the lease held afterwards, or `None` when another process holds it.
pub async fn acquire_or_renew(
    db: &impl ConnectionTrait,
    holder: &str,
    current: Option<&Lease>,
    now: DateTime<Utc>,
    ttl: std::time::Duration,
) -> Result<Option<Lease>, DbError> {
    let expires_at = now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(15));
    use leader_lease::Column as C;
    if let Some(lease) = current {
        let renewed = leader_lease::Entity::update_many()
            .col_expr(C::ExpiresAt, Expr::value(expires_at))
            .filter(C::Name.eq(SCHEDULER))
            .filter(C::Holder.eq(holder))
            .filter(C::Epoch.eq(lease.epoch))
            .filter(C::ExpiresAt.gt(now))
            .exec(db)
            .await?;
        if renewed.rows_affected == 1 {
            return Ok(Some(Lease { expires_at, ..lease.clone() }));
        }
        // Lost (expired, or taken): fall through and compete like everyone else.
    }
    leader_lease::Entity::insert(leader_lease::ActiveModel {
        name: Set(SCHEDULER.to_owned()),
        holder: Set(String::new()),
        epoch: Set(0),
        expires_at: Set(DateTime::<Utc>::UNIX_EPOCH),
    })
    .on_conflict(OnConflict::column(C::Name).do_nothing().to_owned())
    .exec_without_returning(db)
    .await?;
    let taken = leader_lease::Entity::update_many()
        .col_expr(C::Holder, Expr::value(holder))
        .col_expr(C::Epoch, Expr::col(C::Epoch).add(1))
        .col_expr(C::ExpiresAt, Expr::value(expires_at))
        .filter(C::Name.eq(SCHEDULER))
        .filter(C::ExpiresAt.lte(now))
        .exec_with_returning(db)
        .await?;
    Ok(taken.into_iter().next().map(|row| Lease { holder: row.holder, epoch: row.epoch, expires_at: row.expires_at }))
}

/// Gives the lease up at once (on shutdown), so another scheduler need not wait it out.
pub async fn release(db: &impl ConnectionTrait, lease: &Lease) -> Result<(), DbError> {
    use leader_lease::Column as C;
    leader_lease::Entity::update_many()
        .col_expr(C::ExpiresAt, Expr::value(DateTime::<Utc>::UNIX_EPOCH))
        .filter(C::Name.eq(SCHEDULER))
        .filter(C::Holder.eq(lease.holder.as_str()))
        .filter(C::Epoch.eq(lease.epoch))
        .exec(db)
        .await?;
    Ok(())
}

/// The current holder, for status output.
pub async fn current(db: &impl ConnectionTrait) -> Result<Option<leader_lease::Model>, DbError> {
    Ok(leader_lease::Entity::find_by_id(SCHEDULER.to_owned()).one(db).await?)
}

/// A condition on `assets` statements: true only while `lease` is still the current,
/// unexpired scheduler lease (checked by the database at the statement's execution). A
/// scheduler paused past its lease and resumed cannot claim anything.
pub fn fence(lease: Option<&Lease>) -> Condition {
    let Some(lease) = lease else { return Condition::all() };
    use leader_lease::Column as C;
    let held = Query::select()
        .expr(Expr::val(1))
        .from(leader_lease::Entity)
        .and_where(C::Name.eq(SCHEDULER))
        .and_where(C::Holder.eq(lease.holder.as_str()))
        .and_where(C::Epoch.eq(lease.epoch))
        .and_where(C::ExpiresAt.gt(Utc::now()))
        .to_owned();
    Condition::all().add(Expr::exists(held))
}

/// Reads a named value.
pub async fn state_get(db: &impl ConnectionTrait, key: &str) -> Result<Option<String>, DbError> {
    Ok(scheduler_state::Entity::find_by_id(key.to_owned()).one(db).await?.map(|m| m.value))
}

/// Writes a named value.
pub async fn state_set(db: &impl ConnectionTrait, key: &str, value: &str) -> Result<(), DbError> {
    use scheduler_state::Column as C;
    scheduler_state::Entity::insert(scheduler_state::ActiveModel {
        key: Set(key.to_owned()),
        value: Set(value.to_owned()),
        updated_at: Set(Utc::now()),
    })
    .on_conflict(OnConflict::column(C::Key).update_columns([C::Value, C::UpdatedAt]).to_owned())
    .exec_without_returning(db)
    .await?;
    Ok(())
}
