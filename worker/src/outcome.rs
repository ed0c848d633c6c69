//! Outcome classification: every way a job can end, decided in one place.
//!
//! A job ends as exactly one [`Outcome`]. `consumer::settle` is the one place that turns
//! an outcome into broker actions (publish result + ack, delayed retry + ack, dead letter
//! + ack).

use crate::driver::DriverError;
use crate::issuer::IssuerError;
use certfleet_proto::{Driver, ErrorClass, RotationResult, WireError};
use std::time::Duration;

/// How a job ended.
#[derive(Debug)]
pub enum Outcome {
    /// The job reached an end on the device (rotated, or rolled back): report it.
    Done(Box<RotationResult>),
    /// A passing fault: try again later (after `after`, if the cause said when).
    Retry {
        /// The delay the cause asked for (a CA's Retry-After), if any.
        after: Option<Duration>,
        /// What went wrong.
        cause: String,
    },
    /// Permanent: dead-letter it with the reason.
    Dead {
        /// Why, as a class.
        class: ErrorClass,
        /// Why, in words.
        reason: String,
    },
}

/// Everything that can stop a job before it has a result.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The message is not a valid job.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// This worker does not run that driver (misrouted message).
    #[error("this worker does not run the {0} driver")]
    DriverNotServed(Driver),
    /// No issuer by that name in this worker's config.
    #[error("no issuer named {0:?} is configured on this worker")]
    UnknownIssuer(String),
    /// A driver step failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The issuer failed.
    #[error(transparent)]
    Issuer(#[from] IssuerError),
    /// Rolling back after a failed activation failed too.
    #[error("rollback failed after \"{cause}\": {rollback}")]
    RollbackFailed {
        /// Why the rollback was needed.
        cause: String,
        /// Why it failed.
        rollback: DriverError,
    },
    /// The whole job took longer than `worker.job_timeout`.
    #[error("job timed out after {0:?}")]
    Timeout(Duration),
}

impl JobError {
    /// The one classification of failures into retry or dead.
    pub fn classify(self) -> Outcome {
        use ErrorClass as C;
        let (class, retry_after) = match &self {
            JobError::Wire(_) => (C::Malformed, None),
            JobError::DriverNotServed(_) | JobError::UnknownIssuer(_) => (C::Unsupported, None),
            JobError::Driver(d) => match d {
                DriverError::InvalidSettings(_) => (C::InvalidInput, None),
                DriverError::Auth(_) => (C::Auth, None),
                DriverError::Unreachable(_) | DriverError::Timeout { .. } => (C::Transient, Some(None)),
                DriverError::Activation(_) => (C::RolledBack, None),
                DriverError::Device(_) => (C::Internal, None),
            },
            JobError::Issuer(i) => match i {
                IssuerError::BadCsr(_) => (C::InvalidInput, None),
                IssuerError::Rejected(_) => (C::Rejected, None),
                IssuerError::Preflight(_) => (C::Preflight, None),
                IssuerError::RateLimited { retry_after, .. } => (C::Transient, Some(*retry_after)),
                IssuerError::Unavailable(_) => (C::Transient, Some(None)),
                IssuerError::Internal(_) => (C::Internal, None),
            },
            JobError::RollbackFailed { .. } => (C::Internal, None),
            JobError::Timeout(_) => (C::Transient, Some(None)),
        };
        match retry_after {
            Some(after) => Outcome::Retry { after, cause: self.to_string() },
            None => Outcome::Dead { class, reason: self.to_string() },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class_of(e: JobError) -> Result<ErrorClass, Option<Duration>> {
        match e.classify() {
            Outcome::Dead { class, .. } => Ok(class),
            Outcome::Retry { after, .. } => Err(after),
            Outcome::Done(_) => unreachable!(),
        }
    }

    #[test]
    fn bad_input_is_dead_and_passing_faults_retry() {
        let malformed = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(class_of(JobError::Wire(WireError::Malformed(malformed))), Ok(ErrorClass::Malformed));
        assert_eq!(class_of(JobError::UnknownIssuer("x".into())), Ok(ErrorClass::Unsupported));
        assert_eq!(class_of(DriverError::InvalidSettings("x".into()).into()), Ok(ErrorClass::InvalidInput));
        assert_eq!(class_of(DriverError::Auth("x".into()).into()), Ok(ErrorClass::Auth));
        assert_eq!(class_of(DriverError::Unreachable("refused".into()).into()), Err(None));
        assert_eq!(class_of(JobError::Timeout(Duration::from_secs(1))), Err(None));
        assert_eq!(class_of(IssuerError::Rejected("caa".into()).into()), Ok(ErrorClass::Rejected));
        assert_eq!(class_of(IssuerError::Preflight("no CNAME".into()).into()), Ok(ErrorClass::Preflight));
        let limited = IssuerError::RateLimited { retry_after: Some(Duration::from_secs(90)), detail: "slow".into() };
        assert_eq!(class_of(limited.into()), Err(Some(Duration::from_secs(90))));
    }
}
