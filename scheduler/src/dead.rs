//! The dead-letter consumer: the single active consumer on `certfleet.dead` records every
//! dead letter in SQL (operators browse and retry from the table, never from the queue).

use crate::SchedulerError;
use crate::notify::{Events, summary};
use certfleet_proto::DeadKind;
use certfleet_proto::{Envelope, ErrorClass, EventKind, JobId, Notification, RotationJob};
use certfleet_shared::amqp::Subscription;
use certfleet_shared::amqp::headers::{
    self, ASSET_ID, ATTEMPT, CHANNEL, DEAD_CLASS, DEAD_KIND, DEAD_REASON, JOB_ID, SYSTEM_NAME, TRACEPARENT,
};
use certfleet_shared::db::dead_letters::{self, DeadLetter};
use certfleet_shared::db::entity::asset;
use certfleet_shared::telemetry;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use sea_orm::{DatabaseConnection, EntityTrait as _};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, error, warn};

/// Reads what a dead letter says about itself: from our headers when a worker dead-lettered
/// it, from the broker's `x-death` headers when the broker did (delivery limit).
pub fn parse(delivery: &Delivery) -> DeadLetter {
    let p = &delivery.properties;
    let note = Envelope::<Notification>::decode(&delivery.data).ok();
    if note.is_some() || DeadKind::from_stored(headers::get_str(p, DEAD_KIND).as_deref()) == DeadKind::Notification {
        return parse_notification(delivery, note);
    }
    let job = Envelope::<RotationJob>::decode(&delivery.data).ok();
    let job_id = job
        .as_ref()
        .map(|j| j.job_id)
        .or_else(|| headers::get_str(p, JOB_ID).and_then(|s| s.parse().ok()))
        .unwrap_or_default();
    let (class, reason) = class_and_reason(p);
    let attempts = headers::get_int(p, ATTEMPT)
        .and_then(|a| u32::try_from(a).ok())
        .or(job.as_ref().map(|j| j.attempt))
        .unwrap_or(1);
    DeadLetter {
        job_id,
        asset_id: job.as_ref().map(|j| j.asset_id.0).or_else(|| headers::get_int(p, ASSET_ID)),
        system_name: job.as_ref().map(|j| j.system_name.clone()).or_else(|| headers::get_str(p, SYSTEM_NAME)),
        driver: job.as_ref().map(|j| j.driver.to_string()).or_else(|| {
            let key = delivery.routing_key.to_string();
            (!key.is_empty()).then_some(key)
        }),
        class,
        reason,
        attempts,
        kind: DeadKind::Rotation,
        payload: None,
    }
}

/// The class and reason of a dead letter: ours from the headers, or the broker's.
fn class_and_reason(p: &lapin::BasicProperties) -> (ErrorClass, String) {
    let broker_reason = headers::broker_death_reason(p);
    let deliveries = headers::delivery_count(p);
    match (headers::get_str(p, DEAD_CLASS), headers::get_str(p, DEAD_REASON)) {
        (Some(class), Some(reason)) => (ErrorClass::parse_lossy(&class), reason),
        _ => match broker_reason.as_deref() {
            Some("delivery_limit") => (
                ErrorClass::DeliveryLimit,
                format!(
                    "delivery limit reached: delivered {} times without being settled (the job crashes or stalls its workers)",
                    deliveries.map_or("too many".to_owned(), |n| n.to_string())
                ),
            ),
            Some(other) => (ErrorClass::Internal, format!("dead-lettered by the broker: {other}")),
            None => (ErrorClass::Internal, "dead-lettered without a reason".to_owned()),
        },
    }
}

/// A dead notification: it names no asset to retry as a rotation, and leaves the asset's
/// state alone; `dlq retry` republishes its payload.
fn parse_notification(delivery: &Delivery, note: Option<Notification>) -> DeadLetter {
    let p = &delivery.properties;
    let (class, reason) = class_and_reason(p);
    let channel = note.as_ref().map(|n| n.channel.clone()).or_else(|| headers::get_str(p, CHANNEL));
    DeadLetter {
        job_id: note.as_ref().map(|n| JobId(n.id.0)).unwrap_or_default(),
        asset_id: None,
        system_name: note.as_ref().and_then(|n| n.asset.as_ref().map(|a| a.system_name.clone())),
        driver: Some(format!("notify:{}", channel.unwrap_or_default())),
        class,
        reason,
        attempts: headers::get_int(p, ATTEMPT).and_then(|a| u32::try_from(a).ok()).unwrap_or(1),
        kind: DeadKind::Notification,
        payload: note.map(|_| String::from_utf8_lossy(&delivery.data).into_owned()),
    }
}

/// Prefetch of the dead-letter consumer.
pub const PREFETCH: u16 = 32;

/// Consumes dead letters from `sub` until `cancel` fires; announces dead rotations.
pub async fn consume(
    db: DatabaseConnection,
    mut sub: Subscription,
    cancel: CancellationToken,
    events: Events,
) -> Result<(), SchedulerError> {
    while let Some(delivery) = sub.next(&cancel).await? {
        let dl = parse(&delivery);
        // A child of the worker's `job` span (or the notifier's) through the letter's
        // `traceparent`; the letter's recording and announcement happen inside it.
        let span = if telemetry::exporting() {
            let s = tracing::info_span!("record dead letter", job_id = %dl.job_id,
                asset = dl.system_name.as_deref().unwrap_or(""), error_class = %dl.class, otel.status_code = "error");
            telemetry::join(&s, headers::get_str(&delivery.properties, TRACEPARENT).as_deref());
            s
        } else {
            tracing::Span::none()
        };
        async {
            match dead_letters::record(&db, &dl).await {
                Ok(()) => {
                    warn!(job_id = %dl.job_id, asset = dl.system_name.as_deref().unwrap_or("-"), class = %dl.class, reason = %dl.reason, "dead letter recorded");
                    // A dead asset waits for an operator; its certificate's expiry is still watched.
                    if let Some(id) = dl.asset_id.filter(|_| !dl.is_notification())
                        && let Err(e) = crate::notify::expiry::floor_ids(&db, events.expiry_watch(), &[id]).await
                    {
                        warn!(error = %e, "could not keep the expiry watch of a dead asset; the full pass will");
                    }
                    announce(&db, &events, &dl).await;
                    // For the dashboard's detail page; the letter itself is recorded already.
                    let described = headers::describe(&delivery.properties);
                    if let Err(e) = dead_letters::record_headers(&db, dl.job_id, described).await {
                        warn!(job_id = %dl.job_id, error = %e, "could not store the dead letter's headers");
                    }
                    let _ = delivery.ack(BasicAckOptions::default()).await;
                }
                Err(e) => {
                    error!(error = %e, "recording a dead letter failed; returning it to the queue");
                    let _ = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        .instrument(span)
        .await;
    }
    sub.close("scheduler stopping").await;
    Ok(())
}

/// Emits `rotation_dead` for a dead rotation job (never for a dead notification).
async fn announce(db: &DatabaseConnection, events: &Events, dl: &DeadLetter) {
    if dl.is_notification() || !events.wants(EventKind::RotationDead) {
        return;
    }
    let Some(asset_id) = dl.asset_id else { return };
    let row = match asset::Entity::find_by_id(asset_id).one(db).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "could not read the asset of a dead letter; not announced");
            return;
        }
    };
    let mut n = Notification::new("", EventKind::RotationDead, Some(summary(&row)), chrono::Utc::now());
    n.job_id = Some(dl.job_id);
    n.error_class = Some(dl.class);
    n.reason = Some(dl.reason.clone());
    n.attempts = Some(dl.attempts);
    n.fingerprint = row.fingerprint_sha256.clone();
    events.emit(&n).await;
}
