//! The rotation pipeline: pre-flight, key and CSR on the device, sign, install, activate,
//! validate, and roll back on any failure after install.

use crate::driver::{DeviceSession, DriverSet};
use crate::issuer::IssuerSet;
use crate::outcome::JobError;
use certfleet_proto::{RotationJob, RotationOutcome};

/// What a worker needs to run jobs.
#[derive(Clone)]
pub struct JobContext {
    /// The drivers this worker is tagged with.
    pub drivers: DriverSet,
    /// The configured issuers.
    pub issuers: IssuerSet,
}

/// Runs one job end to end. `Ok` means the job reached an end on the device (rotated, or
/// rolled back after a failed activation); `Err` is classified by the caller.
pub async fn rotate(job: &RotationJob, ctx: &JobContext) -> Result<RotationOutcome, JobError> {
    let driver = ctx.drivers.get(job.driver).ok_or(JobError::DriverNotServed(job.driver))?;
    let issuer = ctx.issuers.get(&job.issuer).ok_or_else(|| JobError::UnknownIssuer(job.issuer.clone()))?;
    let mut session = driver.open(job).await?;
    let result = run_steps(session.as_mut(), job, issuer.as_ref()).await;
    session.close().await;
    result
}

async fn run_steps(
    session: &mut dyn DeviceSession,
    job: &RotationJob,
    issuer: &dyn crate::issuer::Issuer,
) -> Result<RotationOutcome, JobError> {
    let csr = session.generate_csr(job).await?;
    let issued = issuer.sign(&csr, job).await?;
    session.install(&issued).await?;
    let activated = match session.activate().await {
        Ok(()) => session.validate(&issued).await,
        Err(e) => Err(e),
    };
    match activated {
        Ok(()) => Ok(RotationOutcome::Rotated { certificate: issued.info }),
        Err(cause) => {
            let cause = cause.to_string();
            match session.rollback().await {
                Ok(()) => Ok(RotationOutcome::RolledBack { cause }),
                Err(rollback) => Err(JobError::RollbackFailed { cause, rollback }),
            }
        }
    }
}
