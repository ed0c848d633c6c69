//! Dashboard sessions: the API's own session token carried in a cookie (HttpOnly,
//! SameSite=Strict, Secure unless the listener is plain loopback HTTP), authenticated by
//! the same code as a bearer token; the per-session CSRF token every form carries; and
//! the extractors [`Session`] (any page) and [`Posted`] (a form, CSRF checked).

use crate::auth::{self, Caller};
use crate::dashboard::layout::DashError;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use certfleet_shared::db::entity::role::Role;
use sha2::{Digest, Sha256};

/// The session cookie.
pub const COOKIE_NAME: &str = "certfleet_session";
/// The cookie of the login form's CSRF token (there is no session yet).
pub const LOGIN_CSRF: &str = "certfleet_login_csrf";
/// The hidden form field holding the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Largest form body read.
const MAX_FORM: usize = 256 * 1024;

/// A logged-in dashboard user.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who, with the role the account has now.
    pub caller: Caller,
    /// This session's CSRF token (derived from the session secret, never from the name).
    pub csrf: String,
}

impl Session {
    /// Whether the role includes `needed` (what buttons to show; the POST checks again).
    pub fn may(&self, needed: Role) -> bool {
        self.caller.role.includes(needed)
    }
}

/// The value of cookie `name`, if sent.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The CSRF token of a session secret: a keyed digest only the holder of the HttpOnly
/// cookie (that is, the server and pages it rendered) can know.
pub fn csrf_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"certfleet-dashboard-csrf\0");
    h.update(secret.as_bytes());
    hex::encode(h.finalize())
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether cookies must be `Secure`: always, except on a plain-HTTP loopback listener
/// (behind a TLS proxy with `allow_plain_http` the browser does speak HTTPS).
pub fn secure(state: &AppState) -> bool {
    let api = &state.config.api;
    api.tls_cert_file.is_some() || !api.listen.ip().is_loopback()
}

/// A `Set-Cookie` value for `name`; `max_age` 0 removes it.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let secure = if secure(state) { "; Secure" } else { "" };
    let text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("certfleet_session=; Max-Age=0"))
}

/// Adds a `Set-Cookie` header.
pub fn add_cookie(headers: &mut HeaderMap, value: HeaderValue) {
    headers.append(SET_COOKIE, value);
}

impl FromRequestParts<AppState> for Session {
    type Rejection = DashError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, DashError> {
        let secret = cookie(&parts.headers, COOKIE_NAME).filter(|s| !s.is_empty()).ok_or(DashError::Login)?;
        // The same authentication as a bearer token: signature, expiry, the account still
        // existing, no password change since, and the account's current role.
        let caller = auth::authenticate_secret(&secret, parts, state).await.map_err(|e| match e {
            ApiError::Unauthorized(_) => DashError::Login,
            other => DashError::Api(other),
        })?;
        Ok(Self { caller, csrf: csrf_of(&secret) })
    }
}

/// The fields of a form body.
#[derive(Debug, Clone, Default)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        serde_urlencoded::from_bytes(body)
            .map(Self)
            .map_err(|_| ApiError::BadRequest { detail: "the form body is malformed".into(), errors: Vec::new() })
    }

    /// The first value of `name`, if given and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// Reads a form body (at most [`MAX_FORM`] bytes).
pub async fn read_form(req: Request) -> Result<Fields, ApiError> {
    let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM)
        .await
        .map_err(|_| ApiError::TooLarge("the form is too large".into()))?;
    Fields::parse(&bytes)
}

/// A form POSTed by a logged-in user, its CSRF token checked (403 when missing or wrong).
pub struct Posted {
    /// The session.
    pub session: Session,
    /// The form's fields.
    pub fields: Fields,
}

impl FromRequest<AppState> for Posted {
    type Rejection = DashError;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, DashError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        let fields = read_form(Request::from_parts(parts, body)).await?;
        let sent = fields.get(CSRF_FIELD).unwrap_or_default();
        if !same(sent, &session.csrf) {
            return Err(DashError::Api(ApiError::Forbidden(
                "the form's security token is missing or out of date; reload the page and try again".into(),
            )));
        }
        Ok(Self { session, fields })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_parse_and_csrf_tokens_differ_per_session() {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_static("a=1; certfleet_session=tok.en; b=2"));
        assert_eq!(cookie(&h, COOKIE_NAME).as_deref(), Some("tok.en"));
        assert_eq!(cookie(&h, "missing"), None);
        assert_ne!(csrf_of("one"), csrf_of("two"));
        assert!(same(&csrf_of("one"), &csrf_of("one")));
        assert!(!same("abc", "abd") && !same("abc", "ab"));
        let f = Fields::parse(b"job=1&job=2&csrf=x&empty=").unwrap();
        assert_eq!(f.all("job"), ["1", "2"]);
        assert_eq!((f.get("csrf"), f.get("empty")), (Some("x"), None));
    }
}
