//! The one mapping of ACME failures onto [`IssuerError`]: rate limits (problem type or HTTP
//! 429/503) retry after the CA's delay, other 4xx problems are permanent with the CA's type
//! and detail, and transport failures retry. `badNonce` is retried inside instant-acme
//! (three tries per request) and only reaches us if that keeps failing.

use super::http::current_throttle;
use crate::issuer::IssuerError;
use instant_acme::{Error, Problem};

const RATE_LIMITED: &str = "urn:ietf:params:acme:error:rateLimited";
const BAD_NONCE: &str = "urn:ietf:params:acme:error:badNonce";
const SERVER_INTERNAL: &str = "urn:ietf:params:acme:error:serverInternal";

/// `type: detail (subproblems)` of a problem document, for error messages.
fn describe(p: &Problem) -> String {
    let mut text = format!(
        "{}: {}",
        p.r#type.as_deref().unwrap_or("(no problem type)"),
        p.detail.as_deref().unwrap_or("(no detail)")
    );
    for sub in &p.subproblems {
        text.push_str(&format!("; {sub}"));
    }
    text
}

/// Maps a problem document (from a response or from an invalid challenge/order). Public
/// for the fuzz target of problem documents (`fuzz/`).
pub fn from_problem(p: &Problem, what: &str) -> IssuerError {
    let throttle = current_throttle();
    let status = p.status.or(throttle.map(|(s, _)| s));
    let retry_after = throttle.and_then(|(_, after)| after);
    let detail = format!("{what}: {}", describe(p));
    match (p.r#type.as_deref(), status) {
        (Some(RATE_LIMITED), _) | (_, Some(429)) => IssuerError::RateLimited { retry_after, detail },
        (_, Some(503)) if retry_after.is_some() => IssuerError::RateLimited { retry_after, detail },
        (Some(BAD_NONCE | SERVER_INTERNAL), _) => IssuerError::Unavailable(detail),
        (_, Some(s)) if s >= 500 => IssuerError::Unavailable(detail),
        (None, None) => IssuerError::Unavailable(detail),
        _ => IssuerError::Rejected(detail),
    }
}

/// Maps an instant-acme error raised while doing `what`.
pub(crate) fn map(e: Error, what: &str) -> IssuerError {
    match e {
        Error::Api(p) => from_problem(&p, what),
        Error::Crypto | Error::KeyRejected => IssuerError::Internal(format!("{what}: account key: {e}")),
        Error::InvalidUri(_) | Error::Unsupported(_) => IssuerError::Internal(format!("{what}: {e}")),
        other => match current_throttle() {
            Some((status, retry_after @ Some(_))) => {
                IssuerError::RateLimited { retry_after, detail: format!("{what}: HTTP {status}: {other}") }
            }
            Some((429, None)) => IssuerError::RateLimited { retry_after: None, detail: format!("{what}: HTTP 429") },
            _ => IssuerError::Unavailable(format!("{what}: {other}")),
        },
    }
}

/// Prefixes an error's message with `context` (e.g. the identifier a challenge was for).
pub(crate) fn context(e: IssuerError, context: &str) -> IssuerError {
    match e {
        IssuerError::BadCsr(m) => IssuerError::BadCsr(format!("{context}: {m}")),
        IssuerError::Rejected(m) => IssuerError::Rejected(format!("{context}: {m}")),
        IssuerError::Preflight(m) => IssuerError::Preflight(format!("{context}: {m}")),
        IssuerError::RateLimited { retry_after, detail } => {
            IssuerError::RateLimited { retry_after, detail: format!("{context}: {detail}") }
        }
        IssuerError::Unavailable(m) => IssuerError::Unavailable(format!("{context}: {m}")),
        IssuerError::Internal(m) => IssuerError::Internal(format!("{context}: {m}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issuer::acme::http::with_throttle;
    use crate::outcome::{JobError, Outcome};
    use std::time::Duration;

    fn problem(kind: Option<&str>, status: Option<u16>) -> Problem {
        serde_json::from_value(serde_json::json!({
            "type": kind.map(|k| format!("urn:ietf:params:acme:error:{k}")), "detail": "the detail", "status": status,
        }))
        .unwrap()
    }

    fn retried(e: IssuerError) -> Option<Option<Duration>> {
        match JobError::Issuer(e).classify() {
            Outcome::Retry { after, .. } => Some(after),
            Outcome::Dead { .. } => None,
            Outcome::Done(_) => unreachable!(),
        }
    }

    #[test]
    fn rejections_are_permanent_and_name_the_problem() {
        for kind in ["rejectedIdentifier", "caa", "unauthorized", "malformed", "externalAccountRequired"] {
            let e = map(Error::Api(problem(Some(kind), Some(403))), "new order");
            let text = e.to_string();
            assert!(matches!(e, IssuerError::Rejected(_)), "{kind}: {text}");
            assert!(text.contains(kind) && text.contains("the detail") && text.contains("new order"), "{text}");
            assert_eq!(retried(e), None);
        }
    }

    #[test]
    fn rate_limits_and_outages_retry() {
        let e = map(Error::Api(problem(Some("rateLimited"), Some(429))), "new order");
        assert!(matches!(&e, IssuerError::RateLimited { retry_after: None, detail } if detail.contains("rateLimited")));
        assert_eq!(retried(e), Some(None));
        assert!(matches!(map(Error::Api(problem(Some("badNonce"), Some(400))), "x"), IssuerError::Unavailable(_)));
        assert!(matches!(
            map(Error::Api(problem(Some("serverInternal"), Some(500))), "x"),
            IssuerError::Unavailable(_)
        ));
        assert!(matches!(map(Error::Api(problem(None, Some(502))), "x"), IssuerError::Unavailable(_)));
        assert!(matches!(map(Error::Timeout(None), "x"), IssuerError::Unavailable(_)));
        assert!(matches!(map(Error::Str("connection refused"), "x"), IssuerError::Unavailable(_)));
        assert!(matches!(map(Error::KeyRejected, "x"), IssuerError::Internal(_)));
    }

    #[tokio::test]
    async fn retry_after_from_the_http_answer_is_kept() {
        with_throttle(async {
            super::super::http::tests_support::record(429, Some(Duration::from_secs(90)));
            let e = map(Error::Api(problem(Some("rateLimited"), Some(429))), "finalize");
            assert!(matches!(e, IssuerError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(90)));
            assert_eq!(
                retried(map(Error::Api(problem(Some("rateLimited"), None)), "x")),
                Some(Some(Duration::from_secs(90)))
            );
            // A 503 with Retry-After whose body is not a problem document.
            super::super::http::tests_support::record(503, Some(Duration::from_secs(30)));
            let json = serde_json::from_str::<Problem>("<html>").unwrap_err();
            let e = map(Error::Json(json), "directory");
            assert!(matches!(e, IssuerError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(30)));
        })
        .await;
    }
}
