//! The audit log (`/audit`, ADMIN): filters by actor, action, target and time, newest
//! first with keyset pagination, through the API's `GET /admin/v1/audit` handler.

use crate::auth::Admin;
use crate::dashboard::layout::{Nav, Page, encode, page, param, query, when};
use crate::dashboard::session::Session;
use crate::error::Query;
use crate::routes::admin::{self, AuditQuery};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use chrono::Utc;
use maud::html;

const FILTERS: [&str; 6] = ["actor", "action", "target", "since", "limit", "cursor"];

/// `GET /audit`.
pub async fn show(s: Session, State(st): State<AppState>, RawQuery(raw): RawQuery) -> Page {
    let raw = raw.as_deref();
    let cap = Admin::grant(s.caller.clone())?;
    let mut q: AuditQuery = query(raw, &FILTERS)?;
    q.limit = q.limit.or(Some(50));
    let rows = admin::audit_log(cap, State(st), Query(q)).await?.0;
    let now = Utc::now();
    let keep: Vec<(&str, String)> =
        ["actor", "action", "target", "since"].iter().map(|k| (*k, param(raw, k).unwrap_or_default())).collect();
    let next = rows.next_cursor.map(|c| {
        let mut with = keep.clone();
        with.push(("cursor", c.to_string()));
        format!("/audit?{}", encode(&with))
    });
    let value = |k: &str| param(raw, k).unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/audit" role="search" {
            div.field { label for="f-actor" { "Actor" } input #f-actor name="actor" value=(value("actor")); }
            div.field { label for="f-action" { "Action" } input #f-action name="action" value=(value("action")) placeholder="asset.rotate"; }
            div.field { label for="f-target" { "Target" } input #f-target name="target" value=(value("target")); }
            div.field { label for="f-since" { "Since (RFC 3339)" } input #f-since name="since" value=(value("since")) placeholder="2026-01-01T00:00:00Z"; }
            div.field { button type="submit" { "Filter" } }
        }
        div.scroll { table {
            thead { tr { th { "When" } th { "Actor" } th { "Role" } th { "Action" } th { "Target" } th { "Summary" } th { "Source" } } }
            tbody {
                @for r in &rows.items {
                    tr {
                        td { (when(r.at, now)) }
                        td { (r.actor) " " span.muted { "(" (r.actor_kind) ")" } }
                        td { (r.role.map(|x| x.as_str().to_uppercase()).unwrap_or_default()) }
                        td { code { (r.action) } }
                        td { (r.target.as_deref().unwrap_or("")) }
                        td { code.summary { (r.summary.to_string()) } }
                        td { (r.source.as_deref().unwrap_or("")) }
                    }
                }
                @if rows.items.is_empty() { tr { td colspan="7" { "No audit row matches." } } }
            }
        } }
        nav.pager aria-label="Pages" {
            @if param(raw, "cursor").is_some() { a href={ "/audit?" (encode(&keep)) } { "Newest" } }
            @if let Some(href) = &next { a href=(href) rel="next" { "Older" } }
        }
    };
    Ok(page(&s, Nav::Audit, "Audit log", None, body))
}
