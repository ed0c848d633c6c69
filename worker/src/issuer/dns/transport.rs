//! One DNS exchange with one server: UDP first, TCP when the UDP answer is truncated or
//! the UDP exchange fails at the socket level. Messages are built and parsed by
//! `hickory-proto`; this module only moves their bytes (RFC 1035 §4.2), always under a
//! deadline.

use super::DnsError;
use hickory_proto::op::Message;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout_at};

/// Largest UDP answer we accept (EDNS payload hickory advertises is smaller).
const UDP_BUFFER: usize = 4096;

/// The raw answer to one request, with its parsed header.
pub(crate) struct Answer {
    /// The bytes as received (needed to verify a TSIG MAC).
    pub bytes: Vec<u8>,
    /// The decoded message.
    pub message: Message,
}

/// Sends `request` (already encoded, ID `id`) to `server` and returns the matching answer.
/// `op` names the operation in errors; `after` is the budget that produced `deadline`.
pub(crate) async fn exchange(
    server: SocketAddr,
    request: &[u8],
    id: u16,
    deadline: Instant,
    op: &'static str,
    after: Duration,
) -> Result<Answer, DnsError> {
    let udp = match timeout_at(deadline, udp_exchange(server, request, id)).await {
        Err(_) => return Err(DnsError::Timeout { op, after }),
        Ok(result) => result,
    };
    match udp {
        Ok(answer) if !answer.message.truncation => return Ok(answer),
        Ok(_) => tracing::debug!(%server, op, "UDP answer truncated, retrying over TCP"),
        Err(e) => tracing::debug!(%server, op, error = %e, "UDP exchange failed, retrying over TCP"),
    }
    match timeout_at(deadline, tcp_exchange(server, request, id)).await {
        Err(_) => Err(DnsError::Timeout { op, after }),
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(DnsError::Unreachable(format!("{server} ({op}): {e}"))),
    }
}

/// One UDP round trip; datagrams with another ID or that do not parse are skipped.
async fn udp_exchange(server: SocketAddr, request: &[u8], id: u16) -> io::Result<Answer> {
    let local: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(server).await?;
    socket.send(request).await?;
    let mut buf = vec![0u8; UDP_BUFFER];
    loop {
        let n = socket.recv(&mut buf).await?;
        let bytes = buf.get(..n).unwrap_or_default().to_vec();
        match Message::from_vec(&bytes) {
            Ok(message) if message.metadata.id == id => return Ok(Answer { bytes, message }),
            Ok(_) => tracing::debug!(%server, "ignoring UDP answer with a foreign ID"),
            Err(e) => tracing::debug!(%server, error = %e, "ignoring undecodable UDP answer"),
        }
    }
}

/// One TCP round trip with the two-byte length prefix.
async fn tcp_exchange(server: SocketAddr, request: &[u8], id: u16) -> io::Result<Answer> {
    let len = u16::try_from(request.len()).map_err(|_| io::Error::other("request too large for TCP"))?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(request);
    stream.write_all(&framed).await?;
    loop {
        let n = usize::from(stream.read_u16().await?);
        let mut bytes = vec![0u8; n];
        stream.read_exact(&mut bytes).await?;
        let message = Message::from_vec(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if message.metadata.id == id {
            return Ok(Answer { bytes, message });
        }
    }
}
