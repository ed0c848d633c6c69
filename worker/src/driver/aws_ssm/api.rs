//! The SSM conversation of the `aws-ssm` driver: `SendCommand` (document
//! `AWS-RunShellScript`), bounded polling of `GetCommandInvocation` with backoff, and the
//! mapping of SDK errors onto `DriverError`.

use super::super::DriverError;
use aws_sdk_ssm::Client;
use aws_sdk_ssm::config::http::HttpResponse;
use aws_sdk_ssm::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ssm::types::CommandInvocationStatus as Status;
use std::future::Future;
use std::time::Duration;

/// The SSM document every command uses.
pub const DOCUMENT: &str = "AWS-RunShellScript";
/// The first poll's delay; it doubles up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(5);

/// A step of the rotation, which decides how a failed command is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the install marker (a redelivered job).
    Resume,
    /// Key and CSR.
    Generate,
    /// Staging and moving the pair into place.
    Install,
    /// The reload command.
    Activate,
    /// Reading the installed pair back.
    Validate,
    /// Restoring the previous pair.
    Rollback,
}

impl Step {
    fn as_str(self) -> &'static str {
        match self {
            Step::Resume => "resume",
            Step::Generate => "generate",
            Step::Install => "install",
            Step::Activate => "activate",
            Step::Validate => "validate",
            Step::Rollback => "rollback",
        }
    }
}

/// Maps an SSM error code and HTTP status onto the classification.
pub fn map_code(op: &str, code: Option<&str>, status: Option<u16>, message: Option<&str>) -> DriverError {
    let what = format!("SSM {op}: {} {}", code.unwrap_or("error"), message.unwrap_or_default()).trim_end().to_owned();
    match code.unwrap_or_default() {
        "InvalidInstanceId"
        | "InvalidDocument"
        | "InvalidParameters"
        | "InvalidOutputFolder"
        | "InvalidRole"
        | "UnsupportedPlatformType"
        | "ValidationException" => DriverError::InvalidSettings(what),
        "AccessDeniedException"
        | "AccessDenied"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredTokenException"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "MissingAuthenticationToken"
        | "NotAuthorized" => DriverError::Auth(what),
        "ThrottlingException"
        | "Throttling"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "InvocationDoesNotExist" => DriverError::Unreachable(what),
        _ => match status {
            Some(401 | 403) => DriverError::Auth(what),
            Some(429) | Some(500..=599) | None => DriverError::Unreachable(what),
            Some(_) => DriverError::Device(what),
        },
    }
}

fn map_sdk<E: ProvideErrorMetadata + std::error::Error + 'static>(
    op: &'static str,
    e: SdkError<E, HttpResponse>,
    after: Duration,
) -> DriverError {
    match &e {
        SdkError::TimeoutError(_) => DriverError::Timeout { op, after },
        SdkError::DispatchFailure(d) if d.is_timeout() => DriverError::Timeout { op, after },
        SdkError::DispatchFailure(d) if d.is_user() => {
            DriverError::InvalidSettings(format!("SSM {op}: {}", aws_sdk_ssm::error::DisplayErrorContext(&e)))
        }
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            DriverError::Unreachable(format!("SSM {op}: {}", aws_sdk_ssm::error::DisplayErrorContext(&e)))
        }
        SdkError::ConstructionFailure(_) => {
            DriverError::InvalidSettings(format!("SSM {op}: could not build the request"))
        }
        _ => map_code(op, e.code(), e.raw_response().map(|r| r.status().as_u16()), e.message()),
    }
}

/// One instance's SSM channel.
pub struct Ssm {
    /// The SDK client.
    pub client: Client,
    /// The target instance.
    pub instance_id: String,
    /// Budget of one API call.
    pub api_timeout: Duration,
    /// Budget of one command on the instance (also its `executionTimeout`).
    pub command_timeout: Duration,
    /// Put in each command's comment.
    pub tag: String,
}

impl Ssm {
    async fn call<T, E, F>(&self, op: &'static str, fut: F) -> Result<T, DriverError>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        F: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        match tokio::time::timeout(self.api_timeout, fut).await {
            Ok(r) => r.map_err(|e| map_sdk(op, e, self.api_timeout)),
            Err(_) => Err(DriverError::Timeout { op, after: self.api_timeout }),
        }
    }

    /// Pre-flight: credentials and reachability of the SSM endpoint, and whether SSM knows
    /// the instance (`ListCommands` for it answers `InvalidInstanceId` when it does not).
    pub async fn preflight(&self) -> Result<(), DriverError> {
        let list = self.client.list_commands().instance_id(&self.instance_id).max_results(1).send();
        self.call("ListCommands", list).await.map(|_| ())
    }

    /// Sends `script` without waiting for it (for best-effort cleanup).
    pub async fn send(&self, step: &str, script: &str) -> Result<String, DriverError> {
        let lines: Vec<String> = script.lines().map(str::to_owned).collect();
        let secs = self.command_timeout.as_secs().max(30);
        let send = self
            .client
            .send_command()
            .instance_ids(&self.instance_id)
            .document_name(DOCUMENT)
            .comment(format!("certfleet {} {step}", self.tag))
            .parameters("commands", lines)
            .parameters("executionTimeout", vec![secs.to_string()])
            .timeout_seconds(i32::try_from(secs).unwrap_or(i32::MAX).clamp(30, 2_592_000))
            .send();
        let out = self.call("SendCommand", send).await?;
        out.command()
            .and_then(|c| c.command_id())
            .map(str::to_owned)
            .ok_or_else(|| DriverError::Device("SendCommand returned no command id".into()))
    }

    /// Runs `script` for `step` and returns its standard output once it succeeded.
    pub async fn run(&self, step: Step, script: &str) -> Result<String, DriverError> {
        let command_id = self.send(step.as_str(), script).await?;
        let deadline = tokio::time::Instant::now() + self.command_timeout + self.api_timeout;
        let mut delay = POLL_FIRST;
        loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(POLL_MAX);
            let get =
                self.client.get_command_invocation().command_id(&command_id).instance_id(&self.instance_id).send();
            let out = match self.call("GetCommandInvocation", get).await {
                Ok(out) => out,
                // Right after SendCommand the invocation may not exist yet.
                Err(DriverError::Unreachable(_)) if tokio::time::Instant::now() < deadline => continue,
                Err(e) => return Err(e),
            };
            let status = out.status().cloned().unwrap_or(Status::Pending);
            match status {
                Status::Success => return Ok(out.standard_output_content().unwrap_or_default().to_owned()),
                Status::Pending | Status::InProgress | Status::Delayed => {}
                other => return Err(failed(step, other.as_str(), out.standard_error_content().unwrap_or_default())),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(DriverError::Timeout { op: "SSM command", after: self.command_timeout });
            }
        }
    }
}

/// A command that ended badly, with the tail of its standard error (our scripts never
/// print key material there).
fn failed(step: Step, status: &str, stderr: &str) -> DriverError {
    let tail: String = stderr.trim().chars().rev().take(300).collect::<Vec<_>>().into_iter().rev().collect();
    let what = format!("{} command {status} on the instance: {tail}", step.as_str());
    match step {
        Step::Activate | Step::Validate => DriverError::Activation(what),
        Step::Resume | Step::Generate | Step::Install | Step::Rollback => DriverError::Device(what),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_onto_the_classification() {
        let dead = |e: &DriverError| matches!(e, DriverError::InvalidSettings(_) | DriverError::Auth(_));
        assert!(dead(&map_code("SendCommand", Some("InvalidInstanceId"), Some(400), Some("no such instance"))));
        assert!(matches!(map_code("x", Some("AccessDeniedException"), Some(400), None), DriverError::Auth(_)));
        assert!(matches!(map_code("x", Some("UnrecognizedClientException"), Some(400), None), DriverError::Auth(_)));
        assert!(matches!(map_code("x", Some("ThrottlingException"), Some(400), None), DriverError::Unreachable(_)));
        assert!(matches!(map_code("x", Some("Whatever"), Some(503), None), DriverError::Unreachable(_)));
        assert!(matches!(map_code("x", Some("Whatever"), Some(400), None), DriverError::Device(_)));
        assert!(matches!(failed(Step::Activate, "Failed", "boom"), DriverError::Activation(m) if m.ends_with("boom")));
        assert!(matches!(failed(Step::Generate, "TimedOut", ""), DriverError::Device(_)));
    }
}
