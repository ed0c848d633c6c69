//! The rotation pipeline: pre-flight, key and CSR on the device, sign, install, activate,
//! validate, and roll back on any failure after install. A job whose pair an earlier
//! delivery installed (found through the device's install marker) is activated and
//! validated instead of rotated again. The job's time budget bounds the steps, not `close`:
//! when it runs out mid-step, `close` still runs (with its own bound) and removes the
//! temporary files on the device.

use crate::driver::DriverError;
use crate::driver::{DeviceSession, DriverSet};
use crate::issuer::Issued;
use crate::issuer::IssuerSet;
use crate::outcome::JobError;
use crate::validate::{ValidateError, validate_served};
use certfleet_proto::{RotationJob, RotationOutcome};
use certfleet_shared::metrics::{Metric, Step, histogram};
use std::time::{Duration, Instant};
use tracing::Instrument as _;
use tracing::field::Empty;

/// How long a service may take to start serving the new certificate after activation
/// (an nginx reload replaces its workers gracefully, so the old ones answer for a moment).
const SERVED_WINDOW: Duration = Duration::from_secs(15);
/// One handshake's budget.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `close` may take after the steps ended (also after the job's time ran out).
pub const CLOSE_BUDGET: Duration = Duration::from_secs(30);

/// When the asset names a TLS service (`ip_address` and `port`), checks over TLS that it
/// serves the new certificate, retrying within [`SERVED_WINDOW`]. A failure rolls back.
async fn served(job: &RotationJob, issued: &Issued) -> Result<(), DriverError> {
    let deadline = tokio::time::Instant::now() + SERVED_WINDOW;
    loop {
        match validate_served(job, issued, HANDSHAKE_TIMEOUT).await {
            Ok(()) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(DriverError::Activation(e.to_string())),
            Err(ValidateError::Unreachable { .. } | ValidateError::Mismatch { .. }) => {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Runs one driver step in a span of its own (named after the step, marked as an error
/// when it fails), recording its time in `certfleet_rotation_step_duration_seconds`
/// (failed steps too: a slow failure is worth seeing).
async fn step<T, E>(job: &RotationJob, step: Step, run: impl Future<Output = Result<T, E>>) -> Result<T, E> {
    let span = tracing::info_span!("step", otel.name = step.as_str(), step = step.as_str(), otel.status_code = Empty);
    let started = Instant::now();
    let out = run.instrument(span.clone()).await;
    histogram!(Metric::RotationStepDuration.name(), "driver" => job.driver.as_str(), "step" => step.as_str())
        .record(started.elapsed().as_secs_f64());
    if out.is_err() {
        span.record("otel.status_code", "error");
    }
    out
}

/// What a worker needs to run jobs.
#[derive(Clone)]
pub struct JobContext {
    /// The drivers this worker is tagged with.
    pub drivers: DriverSet,
    /// The configured issuers.
    pub issuers: IssuerSet,
}

/// How a job ended on the device, plus what the device taught us on the way.
#[derive(Debug)]
pub struct Rotation {
    /// Rotated or rolled back.
    pub outcome: RotationOutcome,
    /// The SSH host key trusted on first use, for the inventory to pin (SSH drivers only).
    pub observed_host_key: Option<String>,
}

/// [`rotate_within`] the default `worker.job_timeout` (120 s).
pub async fn rotate(job: &RotationJob, ctx: &JobContext) -> Result<Rotation, JobError> {
    rotate_within(job, ctx, Duration::from_secs(120)).await
}

/// Runs one job end to end within `budget` (`worker.job_timeout`). `Ok` means the job
/// reached an end on the device (rotated, or rolled back after a failed activation); `Err`
/// is classified by the caller. `close` runs on every path once the session is open.
pub async fn rotate_within(job: &RotationJob, ctx: &JobContext, budget: Duration) -> Result<Rotation, JobError> {
    let deadline = tokio::time::Instant::now() + budget;
    let driver = ctx.drivers.get(job.driver).ok_or(JobError::DriverNotServed(job.driver))?;
    let issuer = ctx.issuers.get(&job.issuer).ok_or_else(|| JobError::UnknownIssuer(job.issuer.clone()))?;
    let mut session = match tokio::time::timeout_at(deadline, step(job, Step::Open, driver.open(job))).await {
        Ok(opened) => opened?,
        Err(_) => return Err(JobError::Timeout(budget)),
    };
    let result = match tokio::time::timeout_at(deadline, run_steps(session.as_mut(), job, issuer.as_ref())).await {
        Ok(r) => r,
        Err(_) => {
            tracing::warn!(job_id = %job.job_id, ?budget, "job timed out; closing the device session");
            Err(JobError::Timeout(budget))
        }
    };
    let observed_host_key = session.observed_host_key();
    if tokio::time::timeout(CLOSE_BUDGET, session.close()).await.is_err() {
        tracing::warn!(job_id = %job.job_id, "closing the device session took longer than {CLOSE_BUDGET:?}");
    }
    result.map(|outcome| Rotation { outcome, observed_host_key })
}

async fn run_steps(
    session: &mut dyn DeviceSession,
    job: &RotationJob,
    issuer: &dyn crate::issuer::Issuer,
) -> Result<RotationOutcome, JobError> {
    let issued = match session.resume(job).await? {
        // A redelivery after a crash between install and ack: the device already holds
        // this job's pair. Activating again is idempotent; deploying again is not.
        Some(installed) => {
            tracing::info!(job_id = %job.job_id, "this job's certificate is already installed; validating it");
            installed
        }
        None => {
            let csr = step(job, Step::GenerateCsr, session.generate_csr(job)).await?;
            let issued = step(job, Step::Sign, issuer.sign(&csr, job)).await?;
            step(job, Step::Install, session.install(&issued)).await?;
            issued
        }
    };
    let activated = match step(job, Step::Activate, session.activate()).await {
        Ok(()) => {
            step(job, Step::Validate, async {
                session.validate(&issued).await?;
                served(job, &issued).await
            })
            .await
        }
        Err(e) => Err(e),
    };
    match activated {
        Ok(()) => Ok(RotationOutcome::Rotated { certificate: issued.info }),
        Err(cause) => {
            let cause = cause.to_string();
            match step(job, Step::Rollback, session.rollback()).await {
                Ok(()) => Ok(RotationOutcome::RolledBack { cause }),
                Err(rollback) => Err(JobError::RollbackFailed { cause, rollback }),
            }
        }
    }
}
