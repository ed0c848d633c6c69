//! Publishing jobs: pipelined publishes, every one confirmed by the broker; a nacked or
//! returned job is retried a few times and reported, never silently lost.

use certfleet_proto::{Envelope, JobId, RotationJob};
use certfleet_shared::amqp::topology::JOBS_EXCHANGE;
use certfleet_shared::amqp::{AmqpError, Outgoing, PendingConfirm, Publisher, headers};
use certfleet_shared::telemetry;
use std::time::Duration;
use tracing::{Instrument as _, Span, warn};

/// Tries per job before giving up on it.
const PUBLISH_TRIES: u32 = 3;

/// Jobs sent whose confirms have not been awaited yet.
pub struct InFlight {
    pending: Vec<(JobId, Result<PendingConfirm, AmqpError>)>,
}

/// Sends `jobs` without waiting for their confirms.
pub async fn send_jobs(publisher: &Publisher, jobs: &[RotationJob]) -> InFlight {
    let mut pending = Vec::with_capacity(jobs.len());
    for job in jobs {
        // One span per job only when spans leave the process: the job's trace hangs off it.
        let span = if telemetry::exporting() {
            tracing::info_span!("publish job", job_id = %job.job_id, asset = %job.system_name, driver = %job.driver,
                attempt = job.attempt)
        } else {
            Span::none()
        };
        let body = Envelope::encode(job);
        let msg = Outgoing {
            exchange: JOBS_EXCHANGE,
            routing_key: job.driver.as_str(),
            body: &body,
            properties: headers::job_properties(job, &telemetry::outgoing(&span, None)),
        };
        pending.push((job.job_id, publisher.send(msg).instrument(span).await));
    }
    InFlight { pending }
}

impl InFlight {
    /// Waits for every confirm; returns the jobs the broker did not take.
    pub async fn confirmed(self) -> Vec<(JobId, AmqpError)> {
        let mut failed = Vec::new();
        for (id, sent) in self.pending {
            let result = match sent {
                Ok(confirm) => confirm.wait().await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                failed.push((id, e));
            }
        }
        failed
    }
}

/// Publishes `jobs` and waits for all confirms, retrying refused ones. Returns the jobs
/// that could not be published with the last error.
pub async fn publish_jobs(publisher: &Publisher, jobs: &[RotationJob]) -> Vec<(JobId, AmqpError)> {
    let failed = send_jobs(publisher, jobs).await.confirmed().await;
    retry_failed(publisher, jobs, failed).await
}

/// Publishes again the jobs in `failed` (up to the try limit); returns those still refused.
pub async fn retry_failed(
    publisher: &Publisher,
    jobs: &[RotationJob],
    mut failed: Vec<(JobId, AmqpError)>,
) -> Vec<(JobId, AmqpError)> {
    for attempt in 2..=PUBLISH_TRIES {
        if failed.is_empty() {
            break;
        }
        warn!(failed = failed.len(), attempt, error = %failed[0].1, "jobs not accepted by the broker; publishing them again");
        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        let ids: std::collections::HashSet<JobId> = failed.iter().map(|(id, _)| *id).collect();
        let again: Vec<RotationJob> = jobs.iter().filter(|j| ids.contains(&j.job_id)).cloned().collect();
        failed = send_jobs(publisher, &again).await.confirmed().await;
    }
    failed
}
