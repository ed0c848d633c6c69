//! Helpers shared by the driver tests: a minimal HTTP/1.1 exchange over any stream (one
//! request per connection, `Connection: close`), and test jobs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use certfleet_proto::{AssetId, Driver, JobId, KeyAlgorithm, RotationJob};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One parsed request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Reads one request (headers, then a `Content-Length` body).
pub async fn read_request<S: AsyncRead + Unpin>(stream: &mut S) -> anyhow::Result<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed before the request ended");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buf[..head_end].to_vec())?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let target = first.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())).collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await?;
        anyhow::ensure!(n > 0, "connection closed in the body");
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Request { method, target, headers, body })
}

/// Writes a response and closes the exchange.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<()> {
    let mut head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await.ok();
    Ok(())
}

/// A port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A job for `driver` with `settings`.
pub fn job(driver: Driver, cn: &str, sans: &[&str], settings: serde_json::Value) -> RotationJob {
    RotationJob {
        job_id: JobId::new(),
        attempt: 1,
        asset_id: AssetId(1),
        system_name: "device-1".into(),
        driver,
        issuer: "internal".into(),
        common_name: cn.into(),
        subject_alternative_names: sans.iter().map(|s| (*s).to_owned()).collect(),
        ip_address: None,
        port: None,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        certificate_validation: true,
        settings,
        not_before: None,
        replaces: None,
        published_at: chrono::Utc::now(),
    }
}
pub mod panos_fixture;
pub mod stack;
