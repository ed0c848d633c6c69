//! Consuming jobs: decode, run, and settle each delivery. The shared [`settle::settle`]
//! is the one place that maps an [`Outcome`] to broker actions (the notifier uses it
//! too), and a delivery is acked only after what it led to (result, retry or dead letter)
//! was confirmed by the broker.

use crate::outcome::{JobError, Outcome};
use crate::rotation::{JobContext, rotate_within};
use certfleet_proto::{Envelope, ErrorClass, RotationJob, RotationResult};
use certfleet_shared::amqp::headers::{self, TRACEPARENT};
use certfleet_shared::amqp::settle;
use certfleet_shared::amqp::topology::RESULTS_QUEUE;
use certfleet_shared::amqp::{Outgoing, Publisher};
use certfleet_shared::config::RetryConfig;
use certfleet_shared::metrics::{Metric, RotationOutcome as RotationCount, counter, gauge};
use certfleet_shared::telemetry;
use chrono::Utc;
use lapin::message::Delivery;
use std::time::Duration;
use tracing::field::Empty;
use tracing::{Instrument as _, Span, info};

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

pub use certfleet_shared::amqp::settle::Settled;

impl Handler {
    /// Handles one delivery from start to ack, in one `job` span: a child of the message's
    /// `traceparent`, with the asset, driver, attempt, outcome and error class.
    pub async fn handle(&self, delivery: Delivery) -> Settled {
        let incoming = headers::get_str(&delivery.properties, TRACEPARENT);
        let span = tracing::info_span!(
            "job",
            job_id = Empty,
            asset = Empty,
            driver = Empty,
            attempt = Empty,
            outcome = Empty,
            error_class = Empty,
            trace_id = Empty,
            otel.status_code = Empty
        );
        telemetry::join(&span, incoming.as_deref());
        let traceparent = telemetry::outgoing(&span, incoming.as_deref());
        span.record("trace_id", telemetry::trace_id(&traceparent).unwrap_or_default());
        self.handle_in(delivery, &span, &traceparent).instrument(span.clone()).await
    }

    async fn handle_in(&self, delivery: Delivery, span: &Span, traceparent: &str) -> Settled {
        let started = Utc::now();
        let job = match Envelope::<RotationJob>::decode(&delivery.data) {
            Ok(job) => job,
            Err(e) => return self.settle(&delivery, None, JobError::from(e).classify(), traceparent).await,
        };
        span.record("job_id", job.job_id.to_string());
        span.record("asset", job.system_name.as_str());
        span.record("driver", job.driver.as_str());
        span.record("attempt", job.attempt);
        if let Some(not_before) = job.not_before {
            let wait = (not_before - Utc::now()).to_std().unwrap_or_default();
            if !wait.is_zero() {
                span.record("outcome", "deferred");
                return self.delay(&delivery, &job, wait, traceparent, Settled::Deferred).await;
            }
        }
        let _in_flight = InFlight::start(job.driver.as_str());
        let outcome = {
            info!(driver = %job.driver, "rotating");
            // `rotate` bounds its steps by the job timeout and then closes the session;
            // this outer bound only guards against a `close` that never returns.
            let bound = self.job_timeout + crate::rotation::CLOSE_BUDGET;
            match tokio::time::timeout(bound, rotate_within(&job, &self.ctx, self.job_timeout)).await {
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
        self.settle(&delivery, Some(&job), outcome, traceparent).await
    }

    /// Maps the job's outcome to broker actions, through the one shared [`settle`].
    async fn settle(&self, delivery: &Delivery, job: Option<&RotationJob>, outcome: Outcome, tp: &str) -> Settled {
        let dead_key = job.map_or_else(|| delivery.routing_key.to_string(), |j| j.driver.to_string());
        let counted = Counted::of(&outcome);
        let settled = self.settle_outcome(delivery, job, outcome, tp, &dead_key).await;
        if let Some((outcome, class)) = counted.record(job.map_or("unknown", |j| j.driver.as_str()), settled) {
            let span = Span::current();
            span.record("outcome", outcome.as_str());
            span.record("error_class", class);
            if outcome != RotationCount::Rotated {
                span.record("otel.status_code", "error");
            }
        }
        settled
    }

    async fn settle_outcome(
        &self,
        delivery: &Delivery,
        job: Option<&RotationJob>,
        outcome: Outcome,
        tp: &str,
        dead_key: &str,
    ) -> Settled {
        let (body, reply_to);
        let shared = match outcome {
            Outcome::Done(result) => {
                body = Envelope::encode(result.as_ref());
                reply_to = delivery.properties.reply_to().as_ref().map_or(RESULTS_QUEUE.to_owned(), |q| q.to_string());
                info!(job_id = %result.job_id, asset = %result.system_name, outcome = result.outcome.as_str(), "job done");
                settle::Outcome::Done(Some(Box::new(Outgoing {
                    exchange: "",
                    routing_key: &reply_to,
                    body: &body,
                    properties: headers::result_properties(&result.job_id.to_string(), tp),
                })))
            }
            Outcome::Retry { after, cause } => settle::Outcome::Retry { after, cause },
            Outcome::Dead { class, reason } => settle::Outcome::Dead { class, reason },
        };
        settle::settle(&self.publisher, delivery, job, shared, &self.retry, dead_key, tp).await
    }

    /// Parks `job` in a retry tier until `wait` has passed.
    async fn delay(&self, delivery: &Delivery, job: &RotationJob, wait: Duration, tp: &str, how: Settled) -> Settled {
        settle::park(&self.publisher, delivery, job, wait, tp, how).await
    }
}

/// What `certfleet_rotations_total` counts for a job, read before its outcome is settled.
#[derive(Clone, Copy)]
enum Counted {
    Done(RotationCount),
    Retry,
    Dead(ErrorClass),
}

impl Counted {
    fn of(outcome: &Outcome) -> Self {
        match outcome {
            Outcome::Done(r) => Counted::Done(match r.outcome {
                certfleet_proto::RotationOutcome::Rotated { .. } => RotationCount::Rotated,
                certfleet_proto::RotationOutcome::RolledBack { .. } => RotationCount::RolledBack,
            }),
            Outcome::Retry { .. } => Counted::Retry,
            Outcome::Dead { class, .. } => Counted::Dead(*class),
        }
    }

    /// Counts the job by what settling it did (a job requeued after a failed publish comes
    /// back, and is counted then); returns what was counted, for the job's span.
    fn record(self, driver: &'static str, settled: Settled) -> Option<(RotationCount, &'static str)> {
        let (outcome, class) = match (self, settled) {
            (_, Settled::Requeued | Settled::Deferred) => return None,
            (Counted::Done(RotationCount::RolledBack), _) => {
                (RotationCount::RolledBack, ErrorClass::RolledBack.as_str())
            }
            (Counted::Done(o), _) => (o, "none"),
            (Counted::Retry, Settled::DeadLettered) => (RotationCount::Dead, ErrorClass::RetriesExhausted.as_str()),
            (Counted::Retry, _) => (RotationCount::Retried, ErrorClass::Transient.as_str()),
            (Counted::Dead(class), _) => (RotationCount::Dead, class.as_str()),
        };
        counter!(Metric::Rotations.name(), "driver" => driver, "outcome" => outcome.as_str(), "error_class" => class)
            .increment(1);
        Some((outcome, class))
    }
}

/// Keeps `certfleet_jobs_in_flight` up while a job runs.
struct InFlight(&'static str);

impl InFlight {
    fn start(driver: &'static str) -> Self {
        gauge!(Metric::JobsInFlight.name(), "driver" => driver).increment(1.0);
        Self(driver)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(Metric::JobsInFlight.name(), "driver" => self.0).decrement(1.0);
    }
}
