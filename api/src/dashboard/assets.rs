//! Assets: the search (the same filters and keyset pagination as `GET /api/v1/search`,
//! through that very handler), the detail page (fields, current certificate, rotation
//! history), and the buttons Rotate now (PRIVILEGED) and certificate validation (ADMIN),
//! which call the API's handlers and so its permission check and audit rows.

use crate::auth::{Admin, Developer, Privileged};
use crate::dashboard::layout::{Nav, Page, asset_href, badge, csrf, done, encode, page, param, query, when, when_opt};
use crate::dashboard::session::{Posted, Session};
use crate::error::{Path, Query};
use crate::routes::{admin, assets as api};
use crate::state::AppState;
use crate::views::AssetView;
use axum::extract::{RawQuery, State};
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::entity::role::Role;
use chrono::Utc;
use maud::{Markup, html};
use sea_orm::Iterable;

/// The search's query parameters (those of `GET /api/v1/search`).
const FILTERS: [&str; 11] = [
    "q",
    "state",
    "days_until_expiration",
    "host_platform",
    "data_center",
    "certificate_authority",
    "origin",
    "ip_address",
    "system_name",
    "limit",
    "cursor",
];
/// The page size when none is given.
const PAGE: &str = "50";

fn text_filter(label: &str, name: &str, value: Option<&str>) -> Markup {
    html! {
        div.field {
            label for={ "f-" (name) } { (label) }
            input id={ "f-" (name) } name=(name) value=(value.unwrap_or_default());
        }
    }
}

/// `GET /assets`.
pub async fn list(s: Session, State(st): State<AppState>, RawQuery(raw): RawQuery) -> Page {
    let raw = raw.as_deref();
    let mut q: api::SearchQuery = query(raw, &FILTERS)?;
    q.limit = q.limit.or(PAGE.parse().ok());
    let given = |k: &str| param(raw, k);
    let page_json = api::search_assets(Developer::grant(s.caller.clone())?, State(st), Query(q)).await?.0;
    let now = Utc::now();
    let state = given("state");
    let keep: Vec<(&str, String)> =
        FILTERS.iter().filter(|k| **k != "cursor").map(|k| (*k, given(k).unwrap_or_default())).collect();
    let next = page_json.next_cursor.map(|c| {
        let mut with = keep.clone();
        with.push(("cursor", c.to_string()));
        format!("/assets?{}", encode(&with))
    });
    let body = html! {
        form.filters method="get" action="/assets" role="search" {
            (text_filter("Name or common name contains", "q", given("q").as_deref()))
            div.field {
                label for="f-state" { "State" }
                select #f-state name="state" {
                    option value="" { "any" }
                    @for st in AssetState::iter() {
                        option value=(st.as_str()) selected[state.as_deref() == Some(st.as_str())] { (st.as_str()) }
                    }
                }
            }
            (text_filter("Expiring within (days)", "days_until_expiration", given("days_until_expiration").as_deref()))
            (text_filter("Platform", "host_platform", given("host_platform").as_deref()))
            (text_filter("Data centre", "data_center", given("data_center").as_deref()))
            (text_filter("Issuer", "certificate_authority", given("certificate_authority").as_deref()))
            (text_filter("Origin", "origin", given("origin").as_deref()))
            (text_filter("IP address", "ip_address", given("ip_address").as_deref()))
            div.field { button type="submit" { "Search" } }
        }
        div.scroll {
            table {
                thead { tr {
                    th { "Asset" } th { "Common name" } th { "State" } th { "Platform" } th { "Data centre" }
                    th { "Issuer" } th { "Expires" }
                } }
                tbody {
                    @for a in &page_json.items {
                        tr {
                            td { a href=(asset_href(&a.system_name)) { (a.system_name) } }
                            td { (a.common_name) }
                            td { (badge(&a.state)) }
                            td { (a.host_platform) }
                            td { (a.data_center.as_deref().unwrap_or("")) }
                            td { (a.certificate_authority) }
                            td { (when_opt(a.certificate_expiration, now)) }
                        }
                    }
                    @if page_json.items.is_empty() { tr { td colspan="7" { "No asset matches." } } }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if param(raw, "cursor").is_some() { a href={ "/assets?" (encode(&keep)) } { "First page" } }
            @if let Some(href) = &next { a href=(href) rel="next" { "Next page" } }
        }
    };
    Ok(page(&s, Nav::Assets, "Assets", param(raw, "notice").as_deref(), body))
}

fn field(label: &str, value: Markup) -> Markup {
    html! { tr { th scope="row" { (label) } td { (value) } } }
}

fn text(v: Option<&str>) -> Markup {
    html! { @match v { Some(v) => (v), None => span.muted { "none" } } }
}

fn fields(a: &AssetView, now: chrono::DateTime<Utc>) -> Markup {
    let c = &a.certificate;
    html! {
        div.columns {
            section aria-labelledby="h-asset" {
                h2 #h-asset { "Asset" }
                table.kv { tbody {
                    (field("State", badge(&a.state)))
                    (field("Last error", text(a.last_error.as_deref())))
                    (field("Common name", html! { (a.common_name) }))
                    (field("SANs", html! { (a.subject_alternative_name.join(", ")) }))
                    (field("Issuer name", html! { (a.certificate_authority) }))
                    (field("Platform", html! { (a.host_platform) }))
                    (field("Device model", text(a.device_model.as_deref())))
                    (field("OS version", text(a.os_version.as_deref())))
                    (field("Data centre", text(a.data_center.as_deref())))
                    (field("Address", html! { (a.ip_address.as_deref().unwrap_or("none")) @if let Some(p) = a.port { ":" (p) } }))
                    (field("Origin", text(a.origin.as_deref())))
                    (field("Key algorithm", html! { (a.key_algorithm) }))
                    (field("Certificate validation", html! { (if a.certificate_validation { "on" } else { "off" }) }))
                    (field("Updated", when(a.updated_at, now)))
                } }
            }
            section aria-labelledby="h-cert" {
                h2 #h-cert { "Current certificate" }
                table.kv { tbody {
                    (field("Issuer", text(c.issuer.as_deref())))
                    (field("Not before", when_opt(c.not_before, now)))
                    (field("Not after", when_opt(c.not_after.or(a.certificate_expiration), now)))
                    (field("Serial", text(c.serial.as_deref())))
                    (field("SHA-256 fingerprint", html! { code #fingerprint { (c.fingerprint_sha256.as_deref().unwrap_or("none")) } }))
                } }
            }
        }
    }
}

/// A rotation's trace id: a link into the user's tracing UI when `api.trace_url_template`
/// is set, else the id itself (to paste into one).
fn trace(id: Option<&str>, template: Option<&str>) -> Markup {
    match (id, template) {
        (None, _) => html! {},
        (Some(id), Some(t)) => html! {
            a.trace href=(t.replace("{trace_id}", id)) title={ "Trace " (id) } { code { (id.get(..8).unwrap_or(id)) "…" } }
        },
        (Some(id), None) => html! { code.trace title="Trace id" { (id) } },
    }
}

/// The rotation history table of one asset; `traces` is `api.trace_url_template`.
pub fn history(rows: &[crate::views::RotationView], now: chrono::DateTime<Utc>, traces: Option<&str>) -> Markup {
    html! {
        div.scroll { table {
            thead { tr { th { "Queued" } th { "Finished" } th { "Job" } th { "Attempt" } th { "Driver" } th { "Status" } th { "Error class" } th { "Error" } th { "Trace" } } }
            tbody {
                @for r in rows {
                    tr {
                        td { (when(r.queued_at, now)) }
                        td { (when_opt(r.finished_at, now)) }
                        td { code { (r.job_id) } }
                        td { (r.attempt) }
                        td { (r.driver) }
                        td { (badge(&r.status)) }
                        td { (r.error_class.as_deref().unwrap_or("")) }
                        td { (r.error_message.as_deref().unwrap_or("")) }
                        td { (trace(r.trace_id.as_deref(), traces)) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="9" { "No rotation yet." } } }
            }
        } }
    }
}

/// `GET /assets/{name}`.
pub async fn detail(s: Session, State(st): State<AppState>, Path(name): Path<String>, RawQuery(raw): RawQuery) -> Page {
    let traces = st.config.api.trace_url_template.clone();
    let d = api::get_asset(Developer::grant(s.caller.clone())?, State(st), Path(name.clone())).await?.0;
    let now = Utc::now();
    let base = asset_href(&name);
    let body = html! {
        @if s.may(Role::Privileged) {
            div.actions {
                form method="post" action={ (base) "/rotate" } {
                    (csrf(&s))
                    button type="submit" { "Rotate now" }
                }
                @if s.may(Role::Admin) {
                    form method="post" action={ (base) "/validation" } {
                        (csrf(&s))
                        @if d.asset.certificate_validation {
                            input type="hidden" name="set" value="off";
                            button type="submit" { "Unset certificate validation" }
                        } @else {
                            input type="hidden" name="set" value="on";
                            button type="submit" { "Set certificate validation" }
                        }
                    }
                }
            }
        }
        (fields(&d.asset, now))
        section aria-labelledby="h-history" {
            h2 #h-history { "Rotation history" }
            (history(&d.history, now, traces.as_deref()))
        }
    };
    Ok(page(&s, Nav::Assets, &name, param(raw.as_deref(), "notice").as_deref(), body))
}

/// `POST /assets/{name}/rotate`: the API's `rotate` handler (PRIVILEGED).
pub async fn rotate(State(st): State<AppState>, Path(name): Path<String>, p: Posted) -> Page {
    let cap = Privileged::grant(p.session.caller)?;
    let job = api::rotate(cap, State(st), Path(name.clone())).await?.1.0;
    Ok(done(&asset_href(&name), &format!("Rotation job {} published.", job.job_id)))
}

/// `POST /assets/{name}/validation`: the API's set/unset handlers (ADMIN).
pub async fn validation(State(st): State<AppState>, Path(name): Path<String>, p: Posted) -> Page {
    let cap = Admin::grant(p.session.caller)?;
    let on = p.fields.get("set") == Some("on");
    if on {
        admin::validation_set(cap, State(st), Path(name.clone())).await?;
    } else {
        admin::validation_unset(cap, State(st), Path(name.clone())).await?;
    }
    let word = if on { "on" } else { "off" };
    Ok(done(&asset_href(&name), &format!("Certificate validation is now {word}.")))
}
