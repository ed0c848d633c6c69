//! Consuming jobs: decode, run, and settle each delivery. [`settle`] is the one place that
//! maps an [`Outcome`] to broker actions, and a delivery is acked only after what it led to
//! (result, retry or dead letter) was confirmed by the broker.

use crate::outcome::{JobError, Outcome};
use crate::rotation::{JobContext, rotate};
use certfleet_proto::{Envelope, ErrorClass, RotationJob, RotationResult};
use certfleet_shared::amqp::headers::{self, TRACEPARENT};
use certfleet_shared::amqp::topology::{DEAD_EXCHANGE, RESULTS_QUEUE, retry_queue};
use certfleet_shared::amqp::{AmqpError, Outgoing, Publisher};
use certfleet_shared::backoff::{delay_for_attempt, tier_for};
use certfleet_shared::config::RetryConfig;
use certfleet_shared::telemetry;
use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use std::time::Duration;
use tracing::{Instrument as _, info, warn};

/// Settings of the delivery handler.
#[derive(Clone)]
pub struct Handler {
    /// Drivers and issuers.
    pub ctx: JobContext,
    /// Where results, retries and dead letters go.
    pub publisher: Publisher,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Upper bound of one job.
    pub job_timeout: Duration,
    /// This worker's name, reported in results.
    pub worker_name: String,
}

/// What settling a delivery did, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Result published, delivery acked.
    Reported,
    /// Requeued into a retry tier, delivery acked.
    Retried,
    /// Deferred (its `not_before` lies ahead), delivery acked.
    Deferred,
    /// Dead letter published, delivery acked.
    DeadLettered,
    /// Publishing failed; the delivery was returned to its queue.
    Requeued,
}

impl Handler {
    /// Handles one delivery from start to ack.
    pub async fn handle(&self, delivery: Delivery) -> Settled {
        let started = Utc::now();
        let traceparent = telemetry::child_traceparent(headers::get_str(&delivery.properties, TRACEPARENT).as_deref());
        let job = match Envelope::<RotationJob>::decode(&delivery.data) {
            Ok(job) => job,
            Err(e) => return self.settle(&delivery, None, JobError::from(e).classify(), &traceparent).await,
        };
        if let Some(not_before) = job.not_before {
            let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                return self.delay(&delivery, &job, wait, &traceparent, Settled::Deferred).await;
            }
        }
        let span = tracing::info_span!("job", job_id = %job.job_id, asset = %job.system_name, attempt = job.attempt,
            trace_id = telemetry::trace_id(&traceparent).unwrap_or_default());
        let outcome = {
            let run = async {
                info!(driver = %job.driver, "rotating");
                tokio::time::timeout(self.job_timeout, rotate(&job, &self.ctx)).await
            };
            match run.instrument(span).await {
                Ok(Ok(done)) => Outcome::Done(Box::new(RotationResult {
                    job_id: job.job_id,
                    attempt: job.attempt,
                    asset_id: job.asset_id,
                    system_name: job.system_name.clone(),
                    driver: job.driver,
                    outcome: done.outcome,
                    worker: self.worker_name.clone(),
                    started_at: started,
                    finished_at: Utc::now(),
                    observed_host_key: done.observed_host_key,
                })),
                Ok(Err(e)) => e.classify(),
                Err(_) => JobError::Timeout(self.job_timeout).classify(),
            }
        };
        self.settle(&delivery, Some(&job), outcome, &traceparent).await
    }

    /// The one mapping from outcome to broker actions.
    async fn settle(&self, delivery: &Delivery, job: Option<&RotationJob>, outcome: Outcome, tp: &str) -> Settled {
        match outcome {
            Outcome::Done(result) => {
                let body = Envelope::encode(result.as_ref());
                let reply_to =
                    delivery.properties.reply_to().as_ref().map_or(RESULTS_QUEUE.to_owned(), |q| q.to_string());
                let msg = Outgoing {
                    exchange: "",
                    routing_key: &reply_to,
                    body: &body,
                    properties: headers::result_properties(&result.job_id.to_string(), tp),
                };
                info!(job_id = %result.job_id, asset = %result.system_name, outcome = ?outcome_name(&result), "job done");
                self.publish_then_ack(delivery, msg, Settled::Reported).await
            }
            Outcome::Retry { after, cause } => {
                let Some(job) = job else {
                    return self.dead(delivery, None, ErrorClass::Internal, &cause, tp).await;
                };
                if job.attempt >= self.retry.max_attempts {
                    let reason = format!("gave up after {} attempts; last error: {cause}", job.attempt);
                    return self.dead(delivery, Some(job), ErrorClass::RetriesExhausted, &reason, tp).await;
                }
                let backoff =
                    delay_for_attempt(job.attempt, self.retry.base_delay, self.retry.max_delay, &mut rand::rng());
                // A delay the cause asked for (Retry-After) wins over our own backoff.
                let wait = after.unwrap_or(backoff);
                warn!(job_id = %job.job_id, attempt = job.attempt, retry_in = ?wait, %cause, "job will be retried");
                let mut next = job.clone();
                next.attempt += 1;
                self.delay(delivery, &next, wait, tp, Settled::Retried).await
            }
            Outcome::Dead { class, reason } => self.dead(delivery, job, class, &reason, tp).await,
        }
    }

    /// Parks `job` in the retry tier serving `wait`; a wait longer than the longest tier is
    /// carried in `not_before`, and the job is parked again until then.
    async fn delay(&self, delivery: &Delivery, job: &RotationJob, wait: Duration, tp: &str, how: Settled) -> Settled {
        let tier = tier_for(wait);
        let mut parked = job.clone();
        if wait > tier {
            parked.not_before = Some(Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX));
        }
        let body = Envelope::encode(&parked);
        let expiration = wait.min(tier).as_millis().max(1).to_string();
        let queue = retry_queue(job.driver, tier);
        let msg = Outgoing {
            exchange: "",
            routing_key: &queue,
            body: &body,
            properties: headers::job_properties(&parked, tp).with_expiration(expiration.into()),
        };
        self.publish_then_ack(delivery, msg, how).await
    }

    async fn dead(
        &self,
        delivery: &Delivery,
        job: Option<&RotationJob>,
        class: ErrorClass,
        reason: &str,
        tp: &str,
    ) -> Settled {
        let attempts = job.map_or(1, |j| j.attempt);
        warn!(job_id = ?job.map(|j| j.job_id), %class, %reason, "job dead-lettered");
        let key = job.map_or_else(|| delivery.routing_key.to_string(), |j| j.driver.to_string());
        let props = headers::dead_properties(&delivery.properties, class, reason, attempts, tp);
        let msg = Outgoing { exchange: DEAD_EXCHANGE, routing_key: &key, body: &delivery.data, properties: props };
        self.publish_then_ack(delivery, msg, Settled::DeadLettered).await
    }

    async fn publish_then_ack(&self, delivery: &Delivery, msg: Outgoing<'_>, how: Settled) -> Settled {
        match self.publisher.publish(msg).await {
            Ok(()) => {
                if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                    // The broker will redeliver; the job is idempotent.
                    warn!(error = %e, "ack failed after the outcome was published");
                }
                how
            }
            Err(e) => {
                requeue(delivery, &e).await;
                Settled::Requeued
            }
        }
    }
}

fn outcome_name(r: &RotationResult) -> &'static str {
    match r.outcome {
        certfleet_proto::RotationOutcome::Rotated { .. } => "rotated",
        certfleet_proto::RotationOutcome::RolledBack { .. } => "rolled_back",
    }
}

async fn requeue(delivery: &Delivery, cause: &AmqpError) {
    warn!(error = %cause, "could not publish the job's outcome; returning the job to its queue");
    if let Err(e) = delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await {
        warn!(error = %e, "nack failed; the broker redelivers when the channel closes");
    }
}
