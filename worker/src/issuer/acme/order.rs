//! One ACME order, step by step: create it, read its DNS-01 challenges, tell the CA they
//! are ready, poll until it is ready, finalize with the device's CSR, poll for the chain.
//! Every request runs under the request timeout; polling starts brisk (Pebble sends no
//! `Retry-After` while processing) and backs off to 1 s, bounded by the order timeout.

use super::errors::{self, context, from_problem};
use super::http::{Action, in_action};
use crate::issuer::IssuerError;
use instant_acme::{Account, AuthorizationStatus, ChallengeType, Identifier, NewOrder, Order, OrderStatus};
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Instrument as _;

/// Longest pause between two polls.
const MAX_POLL: Duration = Duration::from_secs(1);

/// Time budgets of one order.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// One request.
    pub request: Duration,
    /// Waiting for the CA to validate, and again to issue.
    pub order: Duration,
    /// First pause between polls.
    pub first_poll: Duration,
}

/// A DNS-01 challenge to answer: the identifier (`*.x` for wildcards) and the TXT value.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// The identifier as ordered.
    pub identifier: String,
    /// The TXT value (base64url SHA-256 of the key authorization).
    pub value: String,
}

/// Creates the order. The one place that builds a `NewOrder`: ARI's `replaces` goes here.
pub(crate) async fn new_order(
    account: &Account,
    identifiers: &[Identifier],
    profile: Option<&str>,
    replaces: Option<&str>,
) -> Result<Order, instant_acme::Error> {
    let build = |replaces: Option<&str>| {
        let mut request = NewOrder::new(identifiers);
        if let Some(profile) = profile {
            request = request.profile(profile);
        }
        if let Some(id) = replaces.and_then(crate::issuer::ari::certificate_identifier) {
            request = request.replaces(id);
        }
        request
    };
    if replaces.is_none() {
        return account.new_order(&build(None)).await;
    }
    // RFC 9773: name the certificate this order replaces. A CA without ARI, or one that
    // says the certificate was already replaced, still gets the order, without `replaces`.
    match account.new_order(&build(replaces)).await {
        Err(instant_acme::Error::Unsupported(_)) => account.new_order(&build(None)).await,
        Err(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:alreadyReplaced") =>
        {
            tracing::debug!("CA says the previous certificate was already replaced; ordering without `replaces`");
            account.new_order(&build(None)).await
        }
        other => other,
    }
}

/// Runs one request under `limit`, in a span named after its action, mapping its failure.
pub(crate) async fn call<T>(
    limit: Duration,
    action: Action,
    what: &str,
    request: impl Future<Output = Result<T, instant_acme::Error>>,
) -> Result<T, IssuerError> {
    let span = tracing::info_span!(
        "acme",
        otel.name = action.span_name(),
        action = action.as_str(),
        otel.status_code = tracing::field::Empty
    );
    let out = match tokio::time::timeout(limit, in_action(action, request)).instrument(span.clone()).await {
        Err(_) => Err(IssuerError::Unavailable(format!("{what}: no answer from the CA within {limit:?}"))),
        Ok(result) => result.map_err(|e| errors::map(e, what)),
    };
    if out.is_err() {
        span.record("otel.status_code", "error");
    }
    out
}

/// The DNS-01 challenges of the authorizations still pending (valid ones need nothing).
pub(crate) async fn pending_challenges(order: &mut Order, limit: Duration) -> Result<Vec<Pending>, IssuerError> {
    let mut pending = Vec::new();
    let mut authorizations = order.authorizations();
    while let Some(next) =
        call(limit, Action::Authorization, "fetching an authorization", async { Ok(authorizations.next().await) })
            .await?
    {
        let mut authz = next.map_err(|e| errors::map(e, "fetching an authorization"))?;
        let identifier = authz.identifier().to_string();
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                let status = format!("{other:?}").to_ascii_lowercase(); // a unit variant: one word
                return Err(IssuerError::Rejected(format!("authorization for {identifier} is {status}")));
            }
        }
        let challenge = authz
            .challenge(ChallengeType::Dns01)
            .ok_or_else(|| IssuerError::Rejected(format!("the CA offers no dns-01 challenge for {identifier}")))?;
        pending.push(Pending { identifier, value: challenge.key_authorization().dns_value() });
    }
    Ok(pending)
}

/// Tells the CA that every pending DNS-01 challenge can be validated.
pub(crate) async fn set_ready(order: &mut Order, limit: Duration) -> Result<(), IssuerError> {
    let mut authorizations = order.authorizations();
    while let Some(next) = authorizations.next().await {
        let mut authz = next.map_err(|e| errors::map(e, "fetching an authorization"))?;
        if authz.status != AuthorizationStatus::Pending {
            continue;
        }
        let identifier = authz.identifier().to_string();
        let Some(mut challenge) = authz.challenge(ChallengeType::Dns01) else { continue };
        call(limit, Action::Challenge, &format!("challenge for {identifier}"), challenge.set_ready()).await?;
    }
    Ok(())
}

/// Why an order went invalid: the first failed challenge's problem, with its identifier.
async fn invalid_reason(order: &mut Order, limit: Duration) -> IssuerError {
    if let Some(problem) = order.state().error.clone() {
        return from_problem(&problem, "order invalid");
    }
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if call(limit, Action::Authorization, "fetching an authorization", authz.refresh()).await.is_err() {
            continue;
        }
        let identifier = authz.identifier().to_string();
        if let Some(problem) = authz.challenges.iter().find_map(|c| c.error.clone()) {
            return context(from_problem(&problem, "challenge failed"), &identifier);
        }
    }
    IssuerError::Rejected("the CA marked the order invalid without saying why".into())
}

/// The next pause: 1.5 times the last one, at most [`MAX_POLL`].
fn next_pause(pause: Duration) -> Duration {
    (pause * 3 / 2).min(MAX_POLL)
}

/// Polls until the CA has validated every authorization.
pub(crate) async fn wait_ready(order: &mut Order, limits: Limits) -> Result<(), IssuerError> {
    let deadline = Instant::now() + limits.order;
    let mut pause = limits.first_poll;
    loop {
        let state = call(limits.request, Action::PollOrder, "polling the order", order.refresh()).await?;
        match state.status {
            OrderStatus::Ready | OrderStatus::Valid | OrderStatus::Processing => return Ok(()),
            OrderStatus::Invalid => return Err(invalid_reason(order, limits.request).await),
            OrderStatus::Pending => {}
        }
        if Instant::now() + pause > deadline {
            return Err(IssuerError::Unavailable(format!("the CA did not validate within {:?}", limits.order)));
        }
        tokio::time::sleep(pause).await;
        pause = next_pause(pause);
    }
}

/// Finalizes with the device's CSR and polls until the chain (PEM, leaf first) is issued.
pub(crate) async fn finalize(order: &mut Order, csr_der: &[u8], limits: Limits) -> Result<String, IssuerError> {
    if order.state().status == OrderStatus::Ready {
        call(limits.request, Action::Finalize, "finalizing the order", order.finalize_csr(csr_der)).await?;
    }
    let deadline = Instant::now() + limits.order;
    let mut pause = limits.first_poll;
    loop {
        match order.state().status {
            OrderStatus::Valid | OrderStatus::Processing => {
                if let Some(chain) =
                    call(limits.request, Action::Certificate, "downloading the certificate", order.certificate())
                        .await?
                {
                    return Ok(chain);
                }
            }
            OrderStatus::Invalid => return Err(invalid_reason(order, limits.request).await),
            OrderStatus::Ready | OrderStatus::Pending => {
                call(limits.request, Action::PollOrder, "polling the order", order.refresh()).await?;
            }
        }
        if Instant::now() + pause > deadline {
            return Err(IssuerError::Unavailable(format!("the CA did not issue within {:?}", limits.order)));
        }
        tokio::time::sleep(pause).await;
        pause = next_pause(pause);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_backs_off_to_one_second() {
        let mut pause = Duration::from_millis(100);
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(pause);
            pause = next_pause(pause);
        }
        assert_eq!(seen[1], Duration::from_millis(150));
        assert_eq!(*seen.last().unwrap(), MAX_POLL);
    }
}
