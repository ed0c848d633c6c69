//! Rotations (`/rotations`): the history filtered by status, time and asset (what the
//! Overview's 24-hour numbers link to), through the API's `GET /api/v1/rotations` handler.

use crate::auth::Developer;
use crate::dashboard::layout::{Nav, Page, asset_href, badge, encode, page, param, query, when, when_opt};
use crate::dashboard::session::Session;
use crate::error::Query;
use crate::routes::assets::{self as api, RotationsQuery};
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use certfleet_shared::db::entity::rotation::RotationStatus;
use certfleet_shared::db::overview;
use chrono::Utc;
use maud::html;
use sea_orm::Iterable;

const FILTERS: [&str; 5] = ["system_name", "status", "since", "limit", "cursor"];

/// `GET /rotations`.
pub async fn show(s: Session, State(st): State<AppState>, RawQuery(raw): RawQuery) -> Page {
    let raw = raw.as_deref();
    let mut q: RotationsQuery = query(raw, &FILTERS)?;
    q.limit = q.limit.or(Some(50));
    let db = st.db.clone();
    let rows = api::rotations(Developer::grant(s.caller.clone())?, State(st), Query(q)).await?.0;
    let names = overview::names(&db, rows.items.iter().map(|r| r.asset_id).collect()).await?;
    let now = Utc::now();
    let keep: Vec<(&str, String)> =
        ["system_name", "status", "since"].iter().map(|k| (*k, param(raw, k).unwrap_or_default())).collect();
    let next = rows.next_cursor.map(|c| {
        let mut with = keep.clone();
        with.push(("cursor", c.to_string()));
        format!("/rotations?{}", encode(&with))
    });
    let status = param(raw, "status");
    let value = |k: &str| param(raw, k).unwrap_or_default();
    let body = html! {
        form.filters method="get" action="/rotations" role="search" {
            div.field { label for="f-name" { "Asset" } input #f-name name="system_name" value=(value("system_name")); }
            div.field {
                label for="f-status" { "Status" }
                select #f-status name="status" {
                    option value="" { "any" }
                    @for x in RotationStatus::iter() {
                        option value=(x.as_str()) selected[status.as_deref() == Some(x.as_str())] { (x.as_str()) }
                    }
                }
            }
            div.field { label for="f-since" { "Queued since (RFC 3339)" } input #f-since name="since" value=(value("since")); }
            div.field { button type="submit" { "Filter" } }
        }
        div.scroll { table {
            thead { tr { th { "Queued" } th { "Finished" } th { "Asset" } th { "Driver" } th { "Status" } th { "Error class" } th { "Worker" } } }
            tbody {
                @for r in &rows.items {
                    tr {
                        td { (when(r.queued_at, now)) }
                        td { (when_opt(r.finished_at, now)) }
                        td { @match names.get(&r.asset_id) {
                            Some(n) => a href=(asset_href(n)) { (n) },
                            None => span.muted { "deleted asset #" (r.asset_id) },
                        } }
                        td { (r.driver) }
                        td { (badge(&r.status)) }
                        td { (r.error_class.as_deref().unwrap_or("")) }
                        td { (r.worker.as_deref().unwrap_or("")) }
                    }
                }
                @if rows.items.is_empty() { tr { td colspan="7" { "No rotation matches." } } }
            }
        } }
        nav.pager aria-label="Pages" {
            @if let Some(href) = &next { a href=(href) rel="next" { "Older" } }
        }
    };
    Ok(page(&s, Nav::Rotations, "Rotations", None, body))
}
