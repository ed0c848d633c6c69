//! Connecting to the broker: one connection per process, to the first reachable node of
//! `amqp_url`, with lapin's automatic connection and topology recovery. Recovery dials
//! through [`Dialer`], which moves on to the next node of the list at every re-dial, so a
//! process fails over to another cluster node when its node goes away.

use super::AmqpError;
use crate::config::AmqpUrls;
use crate::redact::redact_url;
use lapin::tcp::{AMQPUriTcpExt as _, TLSConfig};
use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tracing::{info, warn};

/// The nodes a connection may use, and the one it uses now.
struct Dialer {
    /// Host and port of each URL, in the configured order.
    nodes: Vec<(String, u16)>,
    /// Each URL with its password hidden, for logs.
    shown: Vec<String>,
    /// Index of the node dialed last.
    current: AtomicUsize,
    /// Whether the first dial (made at start-up, to the probed node) happened.
    dialed: AtomicBool,
    timeout: Duration,
}

impl Dialer {
    /// Opens a TCP (or TLS) stream to a node. The first dial goes to the node the probe
    /// found; every later dial is a reconnect after a loss and starts with the next node,
    /// then tries the others in turn.
    async fn dial<F, T>(&self, mut uri: AMQPUri, open: F) -> lapin::Result<T>
    where
        F: AsyncFn(&AMQPUri) -> std::io::Result<T>,
    {
        let n = self.nodes.len();
        let last = self.current.load(Ordering::Acquire);
        let start = if self.dialed.swap(true, Ordering::AcqRel) { last + 1 } else { last };
        let mut error = std::io::Error::other("no broker node configured");
        for k in 0..n {
            let i = (start + k) % n;
            (uri.authority.host, uri.authority.port) = self.nodes[i].clone();
            match tokio::time::timeout(self.timeout, open(&uri)).await {
                Ok(Ok(stream)) => {
                    self.current.store(i, Ordering::Release);
                    if i != last {
                        info!(node = %self.shown[i], "connecting to another broker node");
                    }
                    return Ok(stream);
                }
                Ok(Err(e)) => {
                    warn!(node = %self.shown[i], error = %e, "broker node unreachable");
                    error = e;
                }
                Err(_) => {
                    warn!(node = %self.shown[i], timeout = ?self.timeout, "broker node did not answer");
                    error = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                }
            }
        }
        Err(error.into())
    }
}

/// Connects to the first reachable node of `urls` with automatic connection and topology
/// recovery, so that a process resumes by itself after the broker restarts or, with
/// several URLs, on another node of the cluster.
pub async fn connect(urls: &AmqpUrls, name: &str, timeout: Duration) -> Result<Connection, AmqpError> {
    let list = urls.as_slice();
    let Some(first) = list.first() else { return Err(AmqpError::BadUrl { url: String::new() }) };
    let mut nodes = Vec::with_capacity(list.len());
    for url in list {
        let parsed: AMQPUri = url.parse().map_err(|_| AmqpError::BadUrl { url: redact_url(url) })?;
        nodes.push((parsed.authority.host, parsed.authority.port));
    }
    // Recovery retries the first connection too, for a long time; a broker that is simply
    // not there should be one clear error now, so probe the TCP ports first.
    let start = probe(list, &nodes, timeout).await?;
    let uri: AMQPUri = list[start].parse().map_err(|_| AmqpError::BadUrl { url: redact_url(first) })?;
    let shown_url = redact_url(&list[start]);
    let dialer = Arc::new(Dialer {
        nodes,
        shown: list.iter().map(|u| redact_url(u)).collect(),
        current: AtomicUsize::new(start),
        dialed: AtomicBool::new(false),
        timeout,
    });
    let runtime =
        lapin::runtime::default_runtime().map_err(|cause| AmqpError::Connect { url: shown_url.clone(), cause })?;
    // lapin re-dials with an exponential backoff that reaches a minute between tries (16
    // tries in all), so a broker back after 36 s was found only at 52 s, and one back after
    // the 16th try never. Re-dial after 1 s, then every 2 to 5 s (with jitter, so a fleet of
    // workers does not knock at once), for as long as it takes; the broker watchdog bounds
    // how long a service waits. Not faster: a node that has just started accepts
    // connections before its quorum queues are back, and a consumer re-registered then is
    // refused, which closes its channel (`tests/broker_restart.rs` saw it at 0.25 s).
    let props = ConnectionProperties::default()
        .with_connection_name(name.into())
        .configure_backoff(|b| {
            b.with_min_delay(Duration::from_secs(1))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .with_max_times(usize::MAX)
        })
        .enable_auto_recover();
    let connecting = Connection::connector(
        uri,
        runtime,
        async move |uri, runtime| {
            dialer
                .dial(uri, async |u: &AMQPUri| u.connect_with_config_async(TLSConfig::default(), &runtime).await)
                .await
        },
        props,
    );
    match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(cause)) => Err(AmqpError::Connect { url: shown_url, cause }),
        Err(_) => Err(AmqpError::ConnectTimeout { url: shown_url, timeout }),
    }
}

/// Index of the first node that accepts a TCP connection; if none does, an error naming
/// every node tried (passwords hidden) and the last failure.
async fn probe(list: &[String], nodes: &[(String, u16)], timeout: Duration) -> Result<usize, AmqpError> {
    let mut reason = String::from("no broker URL");
    let mut timed_out = false;
    for (i, (host, port)) in nodes.iter().enumerate() {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host.as_str(), *port))).await {
            Ok(Ok(_)) => return Ok(i),
            Ok(Err(e)) => (reason, timed_out) = (e.to_string(), false),
            Err(_) => timed_out = true,
        }
        if i + 1 < nodes.len() {
            warn!(node = %redact_url(&list[i]), "broker node unreachable; trying the next one");
        }
    }
    let url = list.iter().map(|u| redact_url(u)).collect::<Vec<_>>().join(", ");
    Err(if timed_out { AmqpError::ConnectTimeout { url, timeout } } else { AmqpError::Unreachable { url, reason } })
}
