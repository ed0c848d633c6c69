//! Direct DNS lookups for ACME DNS-01: CNAME checks for delegated challenges and finding a
//! zone's authoritative nameservers. Every query goes to one named server under a deadline,
//! never through the system's stub resolver library.

use super::{DnsError, parse_fqdn, transport};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// Sends one query for `name`/`rtype` to `server` and returns the answer (NOERROR or NXDOMAIN).
async fn query(server: SocketAddr, name: &Name, rtype: RecordType, timeout: Duration) -> Result<Message, DnsError> {
    let op = "DNS lookup";
    let mut request = Message::query();
    request.add_query(Query::query(name.clone(), rtype));
    request.metadata.recursion_desired = true;
    let bytes = request.to_vec().map_err(|e| DnsError::Protocol(format!("cannot encode query: {e}")))?;
    let deadline = Instant::now() + timeout;
    let answer = transport::exchange(server, &bytes, request.metadata.id, deadline, op, timeout).await?;
    let rcode = answer.message.metadata.response_code;
    if !matches!(rcode, ResponseCode::NoError | ResponseCode::NXDomain) {
        return Err(DnsError::from_rcode(rcode, None, name));
    }
    Ok(answer.message)
}

/// The target of the CNAME at `fqdn` as `server` answers it (`None`: no CNAME there).
pub async fn cname_target(server: SocketAddr, fqdn: &str, timeout: Duration) -> Result<Option<String>, DnsError> {
    let name = parse_fqdn(fqdn)?;
    let answer = query(server, &name, RecordType::CNAME, timeout).await?;
    Ok(cname_in(&answer, &name))
}

/// The target of the CNAME at `name` in a server's answer (`None`: no CNAME there).
pub fn cname_in(answer: &Message, name: &Name) -> Option<String> {
    answer.answers.iter().find_map(|r| match &r.data {
        RData::CNAME(target) if &r.name == name => Some(target.to_ascii()),
        _ => None,
    })
}

/// The first `nameserver` of `/etc/resolv.conf` (port 53), used only to find authoritative
/// nameservers when no resolver is configured.
pub async fn system_resolver() -> Result<SocketAddr, DnsError> {
    let text = tokio::fs::read_to_string("/etc/resolv.conf")
        .await
        .map_err(|e| DnsError::InvalidConfig(format!("no resolver configured and /etc/resolv.conf: {e}")))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .find_map(|ip| ip.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| DnsError::InvalidConfig("no nameserver in /etc/resolv.conf".into()))
}

/// The addresses (port 53) of the nameservers of `zone`, asked of `resolver`.
pub async fn authoritative_servers(
    resolver: SocketAddr,
    zone: &str,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, DnsError> {
    let name = parse_fqdn(zone)?;
    let answer = query(resolver, &name, RecordType::NS, timeout).await?;
    let hosts: Vec<Name> = answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::NS(ns) => Some((**ns).clone()),
            _ => None,
        })
        .collect();
    let mut servers = Vec::new();
    for host in &hosts {
        let glue = answer.additionals.iter().filter(|r| &r.name == host);
        let mut addrs: Vec<IpAddr> = glue.filter_map(|r| address(&r.data)).collect();
        if addrs.is_empty() {
            let a = query(resolver, host, RecordType::A, timeout).await?;
            addrs = a.answers.iter().filter_map(|r| address(&r.data)).collect();
        }
        servers.extend(addrs.into_iter().map(|ip| SocketAddr::new(ip, 53)));
    }
    if servers.is_empty() {
        return Err(DnsError::ServerFailure { rcode: "no nameserver addresses".into(), name: name.to_string() });
    }
    Ok(servers)
}

fn address(data: &RData) -> Option<IpAddr> {
    match data {
        RData::A(a) => Some(IpAddr::V4(a.0)),
        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
        _ => None,
    }
}
