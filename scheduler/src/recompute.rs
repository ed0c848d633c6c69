//! Recomputing every stored `next_due_at` once after the policy's config inputs changed
//! (their fingerprint differs from the stored one), streamed in id order in the background
//! while the cheap scans go on.

use crate::SchedulerError;
use crate::policy::PolicyInputs;
use certfleet_shared::db::{leader, scan_rows};
use chrono::Utc;
use sea_orm::DatabaseConnection;
use tracing::info;

/// The `scheduler_state` key of the fingerprint the stored times were computed with.
pub const FINGERPRINT_KEY: &str = "policy_fingerprint";

/// Whether the stored fingerprint differs from `inputs`'.
pub async fn needed(db: &DatabaseConnection, inputs: &PolicyInputs) -> Result<bool, SchedulerError> {
    Ok(leader::state_get(db, FINGERPRINT_KEY).await?.as_deref() != Some(inputs.fingerprint().as_str()))
}

/// Recomputes every row's `next_due_at` under `inputs` (rows changed meanwhile keep their
/// writer's value), then stores the fingerprint. Returns (rows read, rows written).
pub async fn run(db: &DatabaseConnection, inputs: &PolicyInputs, page_size: u64) -> Result<(u64, u64), SchedulerError> {
    let started = std::time::Instant::now();
    let (mut after, mut read, mut written) = (0, 0u64, 0u64);
    loop {
        let page = scan_rows::scan_page(db, after, page_size).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        read += page.len() as u64;
        let now = Utc::now();
        let updates: Vec<_> = page
            .iter()
            .filter_map(|row| {
                let computed = inputs.next_due_at(row, now);
                (computed != row.next_due_at).then_some((row.id, row.updated_at, computed))
            })
            .collect();
        written += scan_rows::store_next_due(db, &updates).await?;
    }
    leader::state_set(db, FINGERPRINT_KEY, &inputs.fingerprint()).await?;
    info!(
        read,
        written,
        secs = format!("{:.2}", started.elapsed().as_secs_f64()),
        "recomputed next_due_at for the new policy inputs"
    );
    Ok((read, written))
}
