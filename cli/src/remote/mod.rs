//! The CLI over the control-plane API (`certfleet --server URL ...`): an HTTPS client with
//! a bearer token, whose errors are the server's problem documents put into words, so an
//! operator's laptop needs no database or broker access.

pub mod commands;
pub mod session;

use anyhow::{Context as _, bail};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

/// Where the API is, from `--server` and `--ca-file`.
#[derive(Debug, Clone)]
pub struct Server {
    /// Base URL (`https://certfleet.example.com`).
    pub url: Url,
    /// Extra PEM roots to trust (the internal CA's root, say).
    pub ca_file: Option<PathBuf>,
    /// Bound on every request.
    pub timeout: Duration,
}

impl Server {
    /// Parses `--server`; only http and https URLs with a host are accepted.
    pub fn parse(url: &str, ca_file: Option<PathBuf>, timeout: Duration) -> anyhow::Result<Self> {
        let mut url = Url::parse(url).with_context(|| format!("--server {url:?} is not a URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            bail!("--server {url} must be an http:// or https:// URL with a host");
        }
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self { url, ca_file, timeout })
    }

    /// The key under which a login is stored: the URL without a trailing slash.
    pub fn key(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }

    fn http(&self) -> anyhow::Result<reqwest::Client> {
        let pem = match &self.ca_file {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("cannot read --ca-file {}", path.display()))?)
            }
            None => None,
        };
        certfleet_shared::http::client(self.timeout, pem.as_deref()).map_err(|e| match (&self.ca_file, e) {
            (Some(path), certfleet_shared::http::HttpClientError::Roots(why)) => {
                anyhow::anyhow!("--ca-file {}: {why}", path.display())
            }
            (_, other) => other.into(),
        })
    }
}

/// A client of one API server, with the caller's token.
pub struct Api {
    server: Server,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    /// A client that sends `token` (none: only for logging in).
    pub fn new(server: Server, token: Option<String>) -> anyhow::Result<Self> {
        let http = server.http()?;
        Ok(Self { server, http, token })
    }

    /// The URL of `segments` under the base URL, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.server.url.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, segments: &[&str]) -> RequestBuilder {
        let req = self.http.request(method, self.url(segments));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `GET` with query parameters.
    pub async fn get<T: DeserializeOwned>(&self, segments: &[&str], query: &[(&str, String)]) -> anyhow::Result<T> {
        self.send(self.request(Method::GET, segments).query(query)).await
    }

    /// `POST` with a JSON body.
    pub async fn post<T: DeserializeOwned>(&self, segments: &[&str], body: &impl Serialize) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, segments).json(body)).await
    }

    /// `POST` with query parameters and a JSON body.
    pub async fn post_query<T: DeserializeOwned>(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, segments).query(query).json(body)).await
    }

    /// `DELETE` answered without a body (204).
    pub async fn delete(&self, segments: &[&str]) -> anyhow::Result<()> {
        let server = self.server.key();
        let resp = self.request(Method::DELETE, segments).send().await.map_err(|e| transport_error(&server, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.bytes().await.map_err(|e| transport_error(&server, &e))?;
        Err(problem_error(&server, status, &body))
    }

    async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> anyhow::Result<T> {
        let server = self.server.key();
        let resp = req.send().await.map_err(|e| transport_error(&server, &e))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| transport_error(&server, &e))?;
        if !status.is_success() {
            return Err(problem_error(&server, status, &body));
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("{server} answered {status} with a body this CLI does not understand"))
    }
}

/// A failure to reach the server, in words (reqwest's Display repeats its sources).
fn transport_error(server: &str, e: &reqwest::Error) -> anyhow::Error {
    let what = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        format!("cannot connect: {cause}")
    } else {
        "the request failed".to_owned()
    };
    anyhow::anyhow!("{server}: {what}")
}

/// One invalid field of a problem document.
#[derive(Debug, serde::Deserialize)]
pub struct FieldProblem {
    /// 1-based row of a multi-asset body.
    pub row: Option<usize>,
    /// The field.
    pub field: String,
    /// The rule it breaks.
    pub reason: String,
}

/// The parts of an RFC 9457 problem document the CLI shows.
#[derive(Debug, serde::Deserialize)]
struct Problem {
    detail: Option<String>,
    title: Option<String>,
    request_id: Option<String>,
    #[serde(default)]
    errors: Vec<FieldProblem>,
}

/// The server's refusal: status, what it said, and its field errors.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// HTTP status.
    pub status: StatusCode,
    /// One line for people.
    pub message: String,
    /// Invalid fields, when the server named them.
    pub errors: Vec<FieldProblem>,
}

fn problem_error(server: &str, status: StatusCode, body: &[u8]) -> anyhow::Error {
    let problem: Option<Problem> = serde_json::from_slice(body).ok();
    let said = problem
        .as_ref()
        .and_then(|p| p.detail.clone().or_else(|| p.title.clone()))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let mut message = match status {
        StatusCode::UNAUTHORIZED => {
            format!("{server} refused the credentials ({said}); run `certfleet --server {server} login` again")
        }
        StatusCode::FORBIDDEN => format!("{server}: your role may not do this ({said})"),
        _ => format!("{server} answered {}: {said}", status.as_u16()),
    };
    if let Some(id) = problem.as_ref().and_then(|p| p.request_id.as_deref())
        && status.is_server_error()
    {
        message.push_str(&format!(" (request id {id})"));
    }
    anyhow::Error::new(Refused { status, message, errors: problem.map(|p| p.errors).unwrap_or_default() })
}
