//! The reply-queue consumer: results from workers go into the inventory in batches (one
//! transaction per batch), and are acked only once committed.

use crate::SchedulerError;
use crate::notify::{Events, summary};
use certfleet_proto::{Envelope, EventKind, Notification, RotationOutcome, RotationResult};
use certfleet_shared::amqp::Subscription;
use certfleet_shared::amqp::headers::{self, TRACEPARENT};
use certfleet_shared::db::{assets, history};
use certfleet_shared::telemetry;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sea_orm::DatabaseConnection;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Span, error, info, warn};

/// Results applied per transaction at most.
pub const BATCH: usize = 256;

/// Prefetch of the results consumer: two batches.
pub const PREFETCH: u16 = 512;

/// Consumes results from `sub` until `cancel` fires.
pub async fn consume(
    db: DatabaseConnection,
    mut sub: Subscription,
    failed_retry_after: Duration,
    cancel: CancellationToken,
    events: Events,
) -> Result<(), SchedulerError> {
    while let Some(first) = sub.next(&cancel).await? {
        let mut batch = vec![first];
        // Take whatever else is already here, without waiting.
        while batch.len() < BATCH {
            match sub.ready() {
                Some(d) => batch.push(d),
                None => break,
            }
        }
        apply_batch(&db, batch, failed_retry_after, &events).await;
    }
    Ok(())
}

/// The `record result` span of one result: a child of the worker's `job` span through the
/// message's `traceparent`, open until its batch is committed. None when not exported.
fn record_span(d: &Delivery, r: &RotationResult) -> Span {
    if !telemetry::exporting() {
        return Span::none();
    }
    let span = tracing::info_span!("record result", job_id = %r.job_id, asset = %r.system_name, driver = %r.driver,
        attempt = r.attempt, outcome = r.outcome.as_str(), otel.status_code = tracing::field::Empty);
    telemetry::join(&span, headers::get_str(&d.properties, TRACEPARENT).as_deref());
    span
}

async fn apply_batch(db: &DatabaseConnection, batch: Vec<Delivery>, failed_retry_after: Duration, events: &Events) {
    let mut results = Vec::with_capacity(batch.len());
    let mut spans = Vec::new();
    for d in &batch {
        match Envelope::<RotationResult>::decode(&d.data) {
            Ok(r) => {
                spans.push(record_span(d, &r));
                results.push(r);
            }
            // A result we cannot read cannot be applied; the asset's lease runs out and
            // the next scan publishes it again.
            Err(e) => error!(error = %e, "dropping unreadable result"),
        }
    }
    let Some(last) = batch.last() else { return };
    match history::apply_results(db, &results, failed_retry_after).await {
        Ok(applied) => {
            let unknown = applied.iter().filter(|a| **a == history::Applied::UnknownAsset).count();
            if unknown > 0 {
                warn!(unknown, "results for assets that no longer exist were dropped");
            }
            info!(count = results.len(), "results recorded");
            // A rolled-back asset waits `failed_retry_after`; an expiry announcement may
            // fall due sooner.
            let waiting: Vec<i64> = results
                .iter()
                .zip(&applied)
                .filter(|(r, a)| {
                    **a == history::Applied::Updated && matches!(r.outcome, RotationOutcome::RolledBack { .. })
                })
                .map(|(r, _)| r.asset_id.0)
                .collect();
            if let Err(e) = crate::notify::expiry::floor_ids(db, events.expiry_watch(), &waiting).await {
                warn!(error = %e, "could not bring forward the expiry watch of rolled-back assets; the full pass will");
            }
            announce(db, events, &results, &applied).await;
            if let Err(e) = last.ack(BasicAckOptions { multiple: true }).await {
                warn!(error = %e, "ack of results failed; they will be redelivered and re-applied");
            }
        }
        Err(e) => {
            for span in &spans {
                span.record("otel.status_code", "error");
            }
            error!(error = %e, "recording results failed; returning them to the queue");
            let _ = last.nack(BasicNackOptions { multiple: true, requeue: true }).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Emits `rotation_rolled_back`, and `rotation_succeeded` when some rule (or a PagerDuty
/// channel, to resolve its incident) takes it. Reads only the assets concerned.
async fn announce(db: &DatabaseConnection, events: &Events, results: &[RotationResult], applied: &[history::Applied]) {
    let succeeded = events.wants(EventKind::RotationSucceeded);
    let rolled_back = events.wants(EventKind::RotationRolledBack);
    let wanted: Vec<&RotationResult> = results
        .iter()
        .zip(applied)
        .filter(|(_, a)| **a == history::Applied::Updated)
        .map(|(r, _)| r)
        .filter(|r| match r.outcome {
            RotationOutcome::Rotated { .. } => succeeded,
            RotationOutcome::RolledBack { .. } => rolled_back,
        })
        .collect();
    if wanted.is_empty() {
        return;
    }
    let ids: Vec<i64> = wanted.iter().map(|r| r.asset_id.0).collect();
    let rows = match assets::by_ids(db, &ids).await {
        Ok(rows) => rows,
        Err(e) => {
            warn!(error = %e, "could not read the assets of results; not announced");
            return;
        }
    };
    for r in wanted {
        let Some(row) = rows.iter().find(|a| a.id == r.asset_id.0) else { continue };
        let (kind, reason, fingerprint) = match &r.outcome {
            RotationOutcome::Rotated { certificate } => {
                (EventKind::RotationSucceeded, None, Some(certificate.sha256_fingerprint.clone()))
            }
            RotationOutcome::RolledBack { cause } => (EventKind::RotationRolledBack, Some(cause.clone()), None),
        };
        let mut n = Notification::new("", kind, Some(summary(row)), r.finished_at);
        n.job_id = Some(r.job_id);
        n.reason = reason;
        n.attempts = Some(r.attempt);
        n.fingerprint = fingerprint;
        if kind == EventKind::RotationRolledBack {
            n.error_class = Some(certfleet_proto::ErrorClass::RolledBack);
        }
        events.emit(&n).await;
    }
}
