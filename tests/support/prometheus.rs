//! A real Prometheus (Debian's `prometheus` package) for the metrics tests: started on
//! 127.0.0.1 with its own config and storage in a temp dir, a short scrape interval, and
//! killed when its guard drops; queried with PromQL through its HTTP API.

use crate::Proc;
use anyhow::{Context as _, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running Prometheus.
pub struct Prometheus {
    /// Its data directory and config.
    _dir: tempfile::TempDir,
    /// The process (killed on drop).
    pub proc: Proc,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

/// An HTTP client (installing the process's rustls provider first, which reqwest is built
/// without).
pub fn client() -> anyhow::Result<reqwest::Client> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?)
}

/// A port that was free a moment ago (Prometheus takes its port as a flag only).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (job name, address) every 500 ms, and waits
    /// until it is ready. A port taken between picking and binding is retried.
    pub fn start(targets: &[(&str, SocketAddr)]) -> anyhow::Result<Self> {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = tempfile::Builder::new().prefix("cf-prom-").tempdir()?;
            let mut config =
                String::from("global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nscrape_configs:\n");
            for (job, addr) in targets {
                config.push_str(&format!(
                    "  - job_name: {job}\n    scrape_interval: 500ms\n    static_configs:\n      - targets: [\"{addr}\"]\n"
                ));
            }
            std::fs::write(dir.path().join("prometheus.yml"), config)?;
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse()?;
            let log = dir.path().join("prometheus.log");
            let file = std::fs::File::create(&log)?;
            let child = Command::new("prometheus")
                .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
                .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(file.try_clone()?)
                .stderr(file)
                .spawn()
                .context("starting prometheus (scripts/stack/install.sh installs it)")?;
            let mut proc = Proc { child, log };
            if wait_ready(&mut proc, addr, Duration::from_secs(30)) {
                return Ok(Self { _dir: dir, proc, addr });
            }
            last = proc.log_text();
        }
        bail!("prometheus did not become ready:\n{last}")
    }

    /// Runs an instant PromQL query; returns each series' labels (as JSON) and value.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
        let url = format!("http://{}/api/v1/query", self.addr);
        let client = client()?;
        let body: serde_json::Value = client.get(url).query(&[("query", promql)]).send().await?.json().await?;
        if body["status"] != "success" {
            bail!("query {promql} failed: {body}");
        }
        let mut out = Vec::new();
        for r in body["data"]["result"].as_array().cloned().unwrap_or_default() {
            let v = r["value"][1].as_str().unwrap_or("NaN").parse::<f64>().unwrap_or(f64::NAN);
            out.push((r["metric"].clone(), v));
        }
        Ok(out)
    }

    /// The value of a query that yields one series, if it does.
    pub async fn scalar(&self, promql: &str) -> Option<f64> {
        match self.query(promql).await.ok()?.as_slice() {
            [(_, v)] => Some(*v),
            _ => None,
        }
    }
}

fn wait_ready(proc: &mut Proc, addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if proc.wait_exit(Duration::from_millis(200)).is_some() {
            return false;
        }
        // A plain HTTP/1.0 request: no client runtime needed in this synchronous helper.
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            use std::io::{Read as _, Write as _};
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n");
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
                return true;
            }
        }
    }
    false
}

/// The address a certfleet process logged for its `/metrics` endpoint (`serving metrics
/// url=http://ADDR/metrics`), waiting up to `timeout` for the line.
pub fn metrics_addr(proc: &Proc, timeout: Duration) -> anyhow::Result<SocketAddr> {
    let deadline = Instant::now() + timeout;
    loop {
        let log = proc.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("serving metrics")) {
            let start = line.find("http://").context("url in the serving metrics line")? + "http://".len();
            let end = line[start..].find("/metrics").context("/metrics in the url")? + start;
            return Ok(line[start..end].parse()?);
        }
        if Instant::now() >= deadline {
            bail!("no `serving metrics` line in {}:\n{log}", proc.log.display());
        }
        std::thread::sleep(Duration::from_millis(100)); // test code, outside any runtime
    }
}

/// `promtool ARGS` in `dir`; fails with its output unless it succeeds.
pub fn promtool(dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("promtool").args(args).current_dir(dir).output().context("running promtool")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("promtool {args:?} failed:\n{text}");
    }
    Ok(text)
}

/// One scrape of a `/metrics` endpoint.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<String> {
    let client = client()?;
    let rsp = client.get(format!("http://{addr}/metrics")).send().await?;
    if !rsp.status().is_success() {
        bail!("GET http://{addr}/metrics: {}", rsp.status());
    }
    Ok(rsp.text().await?)
}
