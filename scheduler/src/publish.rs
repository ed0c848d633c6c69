//! Publishing jobs: pipelined publishes, every one confirmed by the broker; a nacked or
//! returned job is retried a few times and reported, never silently lost.

use certfleet_proto::{Envelope, JobId, RotationJob};
use certfleet_shared::amqp::topology::JOBS_EXCHANGE;
use certfleet_shared::amqp::{AmqpError, Outgoing, Publisher, headers};
use certfleet_shared::telemetry;
use std::time::Duration;
use tracing::warn;

/// Tries per job before giving up on it for this scan.
const PUBLISH_TRIES: u32 = 3;

/// Publishes `jobs` and waits for all confirms. Returns the jobs that could not be
/// published (after retries) with the last error.
pub async fn publish_jobs(publisher: &Publisher, jobs: &[RotationJob]) -> Vec<(JobId, AmqpError)> {
    let mut pending: Vec<&RotationJob> = jobs.iter().collect();
    let mut failed = Vec::new();
    for attempt in 1..=PUBLISH_TRIES {
        failed.clear();
        let mut confirms = Vec::with_capacity(pending.len());
        for job in &pending {
            let body = Envelope::encode(*job);
            let msg = Outgoing {
                exchange: JOBS_EXCHANGE,
                routing_key: job.driver.as_str(),
                body: &body,
                properties: headers::job_properties(job, &telemetry::new_traceparent()),
            };
            confirms.push((*job, publisher.send(msg).await));
        }
        for (job, sent) in confirms {
            let result = match sent {
                Ok(pending_confirm) => pending_confirm.wait().await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                failed.push((job, e));
            }
        }
        if failed.is_empty() {
            return Vec::new();
        }
        if attempt < PUBLISH_TRIES {
            warn!(failed = failed.len(), attempt, "some jobs were not accepted by the broker; retrying them");
            pending = failed.iter().map(|(job, _)| *job).collect();
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
    failed.into_iter().map(|(job, e)| (job.job_id, e)).collect()
}
