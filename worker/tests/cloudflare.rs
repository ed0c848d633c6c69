//! The Cloudflare DNS provider against a local HTTP fixture. Cloudflare's API cannot run
//! here, so this file serves the part of API v4 the provider uses, as Cloudflare documents
//! it (`GET /zones?name=`, `GET/POST /zones/{id}/dns_records`, `DELETE
//! /zones/{id}/dns_records/{id}`, the `{success, errors, result}` envelope, 403 for a bad
//! token, 429 with `Retry-After`), on a small HTTP/1.1 server over a tokio `TcpListener`.
//! The fixture records every request, so the tests check what was actually sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_types)]

use certfleet_shared::config::dns::CloudflareConfig;
use certfleet_worker::issuer::dns::cloudflare::CloudflareProvider;
use certfleet_worker::issuer::dns::{DnsError, DnsProvider};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "cf-test-token-Zx9";
const ZONE_ID: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const NAME: &str = "_acme-challenge.www.certfleet.test";

/// One request as the fixture received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    target: String,
    authorization: Option<String>,
    body: String,
}

#[derive(Default)]
struct State {
    records: Vec<Value>,
    next_id: u64,
    seen: Vec<Seen>,
    /// Answer the next request with this status (and `Retry-After`), then behave again.
    fail_next: Option<(u16, Option<u64>)>,
    /// Accept connections but never answer.
    silent: bool,
}

struct Fixture {
    base: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fixture {
    async fn start() -> Fixture {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}/client/v4", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let state = shared.clone();
                tokio::spawn(async move { serve(conn, state).await });
            }
        });
        Fixture { base, state, task }
    }

    fn seed(&self, name: &str, content: &str) {
        let mut s = self.state.lock().unwrap();
        s.next_id += 1;
        let id = format!("seed{}", s.next_id);
        s.records.push(json!({"id": id, "type": "TXT", "name": name, "content": content, "ttl": 120}));
    }

    fn contents(&self, name: &str) -> BTreeSet<String> {
        let s = self.state.lock().unwrap();
        s.records.iter().filter(|r| r["name"] == name).map(|r| r["content"].as_str().unwrap().to_owned()).collect()
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }
}

/// Reads one request, answers it, closes the connection.
async fn serve(mut conn: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, target) =
        (request_line.next().unwrap_or_default().to_owned(), request_line.next().unwrap_or_default().to_owned());
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).to_string();
    let seen = Seen { method, target, authorization: header("authorization"), body };
    let answer = {
        let mut s = state.lock().unwrap();
        s.seen.push(seen.clone());
        if s.silent { None } else { Some(route(&mut s, &seen)) }
    };
    let Some((status, retry_after, body)) = answer else {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return;
    };
    let extra = retry_after.map(|s| format!("Retry-After: {s}\r\n")).unwrap_or_default();
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
    let _ = conn.shutdown().await;
}

fn ok(result: Value) -> Value {
    json!({"success": true, "errors": [], "messages": [], "result": result})
}

fn failed(code: u32, message: &str) -> Value {
    json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null})
}

/// Cloudflare API v4, the part the provider uses.
fn route(s: &mut State, req: &Seen) -> (u16, Option<u64>, Value) {
    if let Some((status, retry_after)) = s.fail_next.take() {
        return (status, retry_after, failed(971, "Please wait and consider throttling your request speed"));
    }
    if req.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return (403, None, failed(9109, "Invalid access token"));
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let param = |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).map(str::to_owned);
    let records_path = format!("/client/v4/zones/{ZONE_ID}/dns_records");
    match (req.method.as_str(), path) {
        ("GET", "/client/v4/zones") => {
            let zones = if param("name").as_deref() == Some("certfleet.test") {
                json!([{"id": ZONE_ID, "name": "certfleet.test", "status": "active"}])
            } else {
                json!([])
            };
            (200, None, ok(zones))
        }
        ("GET", p) if p == records_path => {
            let (kind, name) = (param("type"), param("name"));
            let found: Vec<Value> = s
                .records
                .iter()
                .filter(|r| kind.as_deref().is_none_or(|k| r["type"] == k))
                .filter(|r| name.as_deref().is_none_or(|n| r["name"] == n))
                .cloned()
                .collect();
            (200, None, ok(Value::Array(found)))
        }
        ("POST", p) if p == records_path => {
            let mut record: Value = serde_json::from_str(&req.body).unwrap();
            s.next_id += 1;
            record["id"] = json!(format!("rec{}", s.next_id));
            s.records.push(record.clone());
            (200, None, ok(record))
        }
        ("DELETE", p) if p.starts_with(&format!("{records_path}/")) => {
            let id = &p[records_path.len() + 1..];
            let before = s.records.len();
            s.records.retain(|r| r["id"] != id);
            if s.records.len() < before {
                (200, None, ok(json!({"id": id})))
            } else {
                (404, None, failed(81044, "Record does not exist."))
            }
        }
        _ => (404, None, failed(7003, "Could not route to this path")),
    }
}

/// A token file with `mode`, and a config pointing at the fixture.
fn config(fixture: &Fixture, dir: &tempfile::TempDir, token: &str, mode: u32) -> CloudflareConfig {
    let path: PathBuf = dir.path().join(format!("token-{mode:o}-{}", token.len()));
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    CloudflareConfig {
        zone: "certfleet.test".into(),
        zone_id: None,
        api_token_file: path,
        api_base: fixture.base.clone(),
        timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn our_values_come_and_go_and_the_others_survive() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    fixture.seed(NAME, "someone-else");
    fixture.seed(NAME, "\"quoted-other\"");
    fixture.seed("_acme-challenge.other.certfleet.test", "v1");
    let dns = CloudflareProvider::new(&config(&fixture, &dir, TOKEN, 0o600)).await.unwrap();

    dns.set_txt(NAME, "v1", 30).await.unwrap();
    dns.set_txt(NAME, "v2", 300).await.unwrap();
    dns.set_txt(NAME, "v1", 30).await.unwrap(); // already there: not created twice
    dns.set_txt(NAME, "quoted-other", 30).await.unwrap(); // present, quoted: not created either
    let all = ["someone-else", "\"quoted-other\"", "v1", "v2"];
    assert_eq!(fixture.contents(NAME), all.iter().map(|s| (*s).to_owned()).collect());

    dns.remove_txt(NAME, "v1").await.unwrap();
    dns.remove_txt(NAME, "never-set").await.unwrap();
    let left = ["someone-else", "\"quoted-other\"", "v2"];
    assert_eq!(fixture.contents(NAME), left.iter().map(|s| (*s).to_owned()).collect());
    assert_eq!(fixture.contents("_acme-challenge.other.certfleet.test").len(), 1, "same value, other name: kept");

    let seen = fixture.seen();
    assert!(seen.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"))), "{seen:?}");
    let zone_lookups = seen.iter().filter(|r| r.target.starts_with("/client/v4/zones?")).count();
    assert_eq!(zone_lookups, 1, "the zone id is looked up once: {seen:?}");
    assert_eq!(seen[0].target, "/client/v4/zones?name=certfleet.test");
    let creates: Vec<Value> =
        seen.iter().filter(|r| r.method == "POST").map(|r| serde_json::from_str(&r.body).unwrap()).collect();
    assert_eq!(creates.len(), 2, "{seen:?}");
    assert_eq!(creates[0], json!({"type": "TXT", "name": NAME, "content": "v1", "ttl": 60}), "TTL raised to 60");
    assert_eq!(creates[1]["ttl"], 300);
    let deletes: Vec<&Seen> = seen.iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 1, "{seen:?}");
    assert!(deletes[0].target.starts_with(&format!("/client/v4/zones/{ZONE_ID}/dns_records/rec")));
    let lists = seen.iter().filter(|r| r.method == "GET" && r.target.contains("/dns_records?")).collect::<Vec<_>>();
    assert!(lists.iter().all(|r| r.target.contains("type=TXT") && r.target.contains(&format!("name={NAME}"))));
}

#[tokio::test]
async fn refusals_are_permanent_and_throttling_carries_retry_after() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();

    // A wrong token: 403, permanent, and no token in the error.
    let wrong = CloudflareProvider::new(&config(&fixture, &dir, "wrong-token-Qq7", 0o600)).await.unwrap();
    let err = wrong.set_txt(NAME, "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::Refused { .. }) && !err.is_transient(), "{err}");
    assert!(err.to_string().contains("403") && err.to_string().contains("Invalid access token"), "{err}");
    assert!(!err.to_string().contains("wrong-token-Qq7"));
    assert!(!format!("{wrong:?}").contains("wrong-token-Qq7"), "Debug shows the token");

    let dns = CloudflareProvider::new(&config(&fixture, &dir, TOKEN, 0o600)).await.unwrap();
    fixture.state.lock().unwrap().fail_next = Some((429, Some(7)));
    let err = dns.set_txt(NAME, "v", 60).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err}");

    fixture.state.lock().unwrap().fail_next = Some((503, None));
    let err = dns.set_txt(NAME, "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::ServerFailure { .. }) && err.is_transient(), "{err}");

    // After the faults the same provider works.
    dns.set_txt(NAME, "v", 60).await.unwrap();
    assert_eq!(fixture.contents(NAME).len(), 1);

    // A zone the account does not have; a name outside the zone.
    let mut other = config(&fixture, &dir, TOKEN, 0o600);
    other.zone = "not-mine.test".into();
    let err = CloudflareProvider::new(&other).await.unwrap().set_txt("x.not-mine.test", "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidConfig(_)), "{err}");
    let err = dns.set_txt("_acme-challenge.example.org", "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidConfig(_)), "{err}");
}

#[tokio::test]
async fn token_files_must_be_private_and_plain_http_only_to_loopback() {
    let fixture = Fixture::start().await;
    let dir = tempfile::tempdir().unwrap();
    let err = CloudflareProvider::new(&config(&fixture, &dir, TOKEN, 0o644)).await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidConfig(_)) && err.to_string().contains("0600"), "{err}");
    assert!(!err.to_string().contains(TOKEN));

    let mut remote = config(&fixture, &dir, TOKEN, 0o600);
    remote.api_base = "http://api.cloudflare.com/client/v4".into();
    let err = CloudflareProvider::new(&remote).await.unwrap_err();
    assert!(matches!(err, DnsError::InvalidConfig(_)) && err.to_string().contains("https"), "{err}");
    assert!(fixture.seen().is_empty(), "nothing may be sent");
}

#[tokio::test]
async fn a_silent_api_times_out_as_a_transient_fault() {
    let fixture = Fixture::start().await;
    fixture.state.lock().unwrap().silent = true;
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&fixture, &dir, TOKEN, 0o600);
    c.timeout = Duration::from_millis(500);
    let dns = CloudflareProvider::new(&c).await.unwrap();
    let started = std::time::Instant::now();
    let err = dns.set_txt(NAME, "v", 60).await.unwrap_err();
    assert!(matches!(err, DnsError::Timeout { .. }) && err.is_transient(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
