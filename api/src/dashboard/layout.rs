//! The page shell (navigation, the user, logout), the dashboard's error answer, and the
//! small helpers every page uses: UTC times with the relative time, state labels that do
//! not rely on colour, the query-string parser and redirects.

use crate::dashboard::session::{CSRF_FIELD, Session};
use crate::error::ApiError;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use certfleet_shared::db::entity::role::Role;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::de::DeserializeOwned;

/// What a page handler answers.
pub type Page = Result<Response, DashError>;

/// Why a page is not shown.
#[derive(Debug)]
pub enum DashError {
    /// Not logged in (or the session ended): go to the login page.
    Login,
    /// The same error the API would give, shown as a page with the same status.
    Api(ApiError),
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<certfleet_shared::db::DbError> for DashError {
    fn from(e: certfleet_shared::db::DbError) -> Self {
        Self::Api(e.into())
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        match self {
            Self::Login => Redirect::to("/login").into_response(),
            Self::Api(e) => {
                let status = e.status();
                // The problem document's detail, the same words as the API's.
                let detail = match &e {
                    ApiError::Internal(_) => {
                        tracing::error!(error = %e, "dashboard internal error");
                        "An internal error occurred; the request id is in the server log.".to_owned()
                    }
                    other => other.to_string(),
                };
                let body = bare(
                    status.canonical_reason().unwrap_or("Error"),
                    html! {
                        main.narrow {
                            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                            p.notice.error role="alert" { (detail) }
                            p { a href="/" { "Back to the overview" } }
                        }
                    },
                );
                (status, body).into_response()
            }
        }
    }
}

/// A complete HTML document with no navigation (login, errors).
pub fn bare(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · certfleet" }
                    link rel="stylesheet" href="/static/style.css";
                    script src="/static/app.js" defer {}
                }
                body { (body) }
            }
        }
        .into_string(),
    )
}

/// The navigation entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// `/`.
    Overview,
    /// `/queues`.
    Queues,
    /// `/dead`.
    Dead,
    /// `/assets`.
    Assets,
    /// `/rotations`.
    Rotations,
    /// `/audit` (ADMIN).
    Audit,
    /// `/password`.
    Account,
}

const NAV: [(Nav, &str, &str, Role); 6] = [
    (Nav::Overview, "/", "Overview", Role::Developer),
    (Nav::Queues, "/queues", "Queues", Role::Developer),
    (Nav::Dead, "/dead", "Dead letters", Role::Developer),
    (Nav::Assets, "/assets", "Assets", Role::Developer),
    (Nav::Rotations, "/rotations", "Rotations", Role::Developer),
    (Nav::Audit, "/audit", "Audit log", Role::Admin),
];

/// A page with the navigation, an optional notice, and `body`.
pub fn page(s: &Session, active: Nav, title: &str, notice: Option<&str>, body: Markup) -> Response {
    bare(
        title,
        html! {
            header.top {
                a.brand href="/" { "certfleet" }
                nav aria-label="Main" {
                    @for (nav, href, label, role) in NAV {
                        @if s.may(role) {
                            a href=(href) aria-current=[(nav == active).then_some("page")] { (label) }
                        }
                    }
                }
                div.who {
                    a href="/password" aria-current=[(active == Nav::Account).then_some("page")] {
                        (s.caller.actor) " (" (s.caller.role.as_str().to_uppercase()) ")"
                    }
                    form method="post" action="/logout" {
                        (csrf(s))
                        button.link type="submit" { "Log out" }
                    }
                }
            }
            main {
                h1 { (title) }
                @if let Some(n) = notice {
                    p.notice role="status" { (n) }
                }
                (body)
            }
        },
    )
    .into_response()
}

/// The hidden CSRF field of a form.
pub fn csrf(s: &Session) -> Markup {
    html! { input type="hidden" name=(CSRF_FIELD) value=(s.csrf); }
}

/// A time in UTC with the relative time, e.g. "2026-12-04 10:00 UTC (in 3 days)".
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(t.to_rfc3339()) title=(t.to_rfc3339()) {
            (t.format("%Y-%m-%d %H:%M UTC")) " " span.rel { "(" (relative(t, now)) ")" }
        }
    }
}

/// An optional time, or a dash.
pub fn when_opt(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match t {
        Some(t) => when(t, now),
        None => html! { span.muted { "unknown" } },
    }
}

/// "in 3 days", "5 minutes ago", "just now".
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    let abs = secs.unsigned_abs();
    if abs < 45 {
        return "just now".into();
    }
    let (n, unit) = match abs {
        0..=3_569 => (((abs + 30) / 60).clamp(1, 59), "minute"),
        3_570..=86_399 => (((abs + 1_800) / 3_600).clamp(1, 23), "hour"),
        _ => ((abs + 43_200) / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if secs > 0 { format!("in {n} {unit}{plural}") } else { format!("{n} {unit}{plural} ago") }
}

/// A state or status as a labelled badge: the word is always written (colour is extra).
pub fn badge(word: &str) -> Markup {
    html! { span class={ "badge s-" (word) } { (word.replace('_', " ")) } }
}

/// Parses a query string into `T`, keeping only `known` keys with a non-empty value (an
/// empty form field means "no filter").
pub fn query<T: DeserializeOwned>(raw: Option<&str>, known: &[&str]) -> Result<T, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default())
        .map_err(|_| ApiError::BadRequest { detail: "the query string is malformed".into(), errors: Vec::new() })?;
    let kept: Vec<(String, String)> =
        pairs.into_iter().filter(|(k, v)| known.contains(&k.as_str()) && !v.trim().is_empty()).collect();
    let text = serde_urlencoded::to_string(&kept).unwrap_or_default();
    serde_urlencoded::from_str(&text).map_err(|e| {
        let reason = e.to_string();
        ApiError::BadRequest { detail: format!("bad filter: {reason}"), errors: Vec::new() }
    })
}

/// The value of one query parameter.
pub fn param(raw: Option<&str>, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or_default()).unwrap_or_default();
    pairs.into_iter().find(|(k, v)| k == name && !v.is_empty()).map(|(_, v)| v)
}

/// A query string of `pairs` (empty values dropped).
pub fn encode(pairs: &[(&str, String)]) -> String {
    let kept: Vec<(&str, &str)> = pairs.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (*k, v.as_str())).collect();
    serde_urlencoded::to_string(kept).unwrap_or_default()
}

/// One path segment, percent-encoded (names may hold any printable character).
pub fn seg(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The dashboard page of an asset.
pub fn asset_href(name: &str) -> String {
    format!("/assets/{}", seg(name))
}

/// 303 to `path` with a notice for the next page.
pub fn done(path: &str, notice: &str) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{path}{sep}{}", encode(&[("notice", notice.to_owned())]))).into_response()
}

/// An embedded asset with its content type.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Raw, trusted markup (embedded constants only).
pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc::now();
        assert_eq!(relative(now + chrono::Duration::days(3), now), "in 3 days");
        assert_eq!(relative(now - chrono::Duration::minutes(5), now), "5 minutes ago");
        assert_eq!(relative(now - chrono::Duration::hours(2), now), "2 hours ago");
        assert_eq!(relative(now + chrono::Duration::seconds(10), now), "just now");
        assert_eq!(relative(now + chrono::Duration::days(1), now), "in 1 day");
        assert_eq!(seg("a b/c.d"), "a%20b%2Fc.d");
    }

    #[test]
    fn empty_filters_are_dropped() {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Q {
            a: Option<u32>,
            b: Option<String>,
        }
        let q: Q = query(Some("a=&b=x&notice=hi"), &["a", "b"]).unwrap();
        assert_eq!((q.a, q.b.as_deref()), (None, Some("x")));
        assert!(query::<Q>(Some("a=notanumber"), &["a", "b"]).is_err());
    }
}
