//! Dead letters (Sidekiq's Dead tab): a searchable, paged table with checkboxes; Retry and
//! Discard for the selected rows, Retry all and Discard all behind a confirmation; a
//! detail page with the full reason, the message's properties and headers, and the
//! asset's history. Every action goes through
//! the API's dead-letter handlers (their permission check, `retry_dead` and audit rows).
//! A poison letter (one naming no asset) can be discarded but not retried.

use crate::auth::{Developer, Privileged};
use crate::dashboard::assets::history;
use crate::dashboard::layout::{Nav, Page, asset_href, badge, csrf, done, encode, page, param, when};
use crate::dashboard::session::{Posted, Session};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::dlq::{self as api, DlqQuery, RetryFilter};
use crate::state::AppState;
use crate::views::DeadLetterView;
use axum::extract::{RawQuery, State};
use certfleet_proto::JobId;
use certfleet_shared::db::dead_letters;
use certfleet_shared::db::entity::role::Role;
use chrono::Utc;
use maud::html;

/// Rows per page.
const PER_PAGE: u64 = 50;
/// Why a poison letter cannot be retried.
pub const POISON: &str = "names no asset, so there is nothing to rebuild a job from: it can be discarded, not retried";

/// `GET /dead?q=&page=&all=`: the search and the paging run in the database.
pub async fn list(s: Session, State(st): State<AppState>, RawQuery(raw): RawQuery) -> Page {
    Developer::grant(s.caller.clone())?;
    let raw = raw.as_deref();
    let all = param(raw, "all").is_some();
    let q = param(raw, "q").unwrap_or_default();
    let page_no: u64 = param(raw, "page").and_then(|p| p.parse().ok()).unwrap_or(1).clamp(1, u64::MAX / PER_PAGE);
    let search = dead_letters::Search { all, q: Some(q.clone()) };
    let (rows, total) = dead_letters::page(&st.db, &search, (page_no - 1) * PER_PAGE, PER_PAGE).await?;
    let pages = total.div_ceil(PER_PAGE).max(1);
    let shown: Vec<DeadLetterView> = rows.into_iter().map(DeadLetterView::from).collect();
    let link = |p: u64| {
        format!(
            "/dead?{}",
            encode(&[("q", q.clone()), ("all", if all { "1".into() } else { String::new() }), ("page", p.to_string())])
        )
    };
    let write = s.may(Role::Privileged);
    let now = Utc::now();
    let body = html! {
        form.filters method="get" action="/dead" role="search" {
            div.field {
                label for="f-q" { "Search a whole job id, or the asset, driver, error class or reason" }
                input #f-q name="q" value=(q);
            }
            div.field.check {
                input #f-all type="checkbox" name="all" value="1" checked[all];
                label for="f-all" { "Include retried and discarded" }
            }
            div.field { button type="submit" { "Search" } }
        }
        p { (total) " dead letter(s)" @if !q.is_empty() { " matching “" (q) "”" } "." }
        form method="post" action="/dead/action" {
            (csrf(&s))
            @if write {
                div.actions {
                    button type="submit" name="action" value="retry" { "Retry selected" }
                    button type="submit" name="action" value="discard" { "Discard selected" }
                    button type="submit" name="action" value="retry_all"
                        data-confirm="Retry every pending dead letter?" { "Retry all" }
                    button type="submit" name="action" value="discard_all"
                        data-confirm="Discard every pending dead letter? This cannot be undone." { "Discard all" }
                }
            }
            div.scroll { table {
                thead { tr {
                    @if write { th { span.sr { "Select" } } }
                    th { "Job" } th { "Asset" } th { "Error class" } th { "Reason" } th { "Attempts" } th { "Status" } th { "Dead since" }
                } }
                tbody {
                    @for d in &shown {
                        tr {
                            @if write {
                                td {
                                    input type="checkbox" name="job" value=(d.job_id) id={ "sel-" (d.job_id) }
                                        aria-label={ "Select job " (d.job_id) };
                                }
                            }
                            td { a href={ "/dead/" (d.job_id) } { code { (d.job_id.to_string().get(..8).unwrap_or_default()) "…" } } }
                            td {
                                @match &d.system_name {
                                    Some(n) => a href=(asset_href(n)) { (n) },
                                    None => span.poison title=(POISON) { "poison: no asset" },
                                }
                            }
                            td { (d.error_class) }
                            td.reason { (d.reason) }
                            td { (d.attempts) }
                            td { (badge(&d.status)) }
                            td { (when(d.dead_at, now)) }
                        }
                    }
                    @if shown.is_empty() { tr { td colspan="8" { "No dead letter." } } }
                }
            } }
        }
        nav.pager aria-label="Pages" {
            @if page_no > 1 { a href=(link(page_no - 1)) rel="prev" { "Previous page" } }
            span { "Page " (page_no) " of " (pages) }
            @if page_no < pages { a href=(link(page_no + 1)) rel="next" { "Next page" } }
        }
    };
    Ok(page(&s, Nav::Dead, "Dead letters", param(raw, "notice").as_deref(), body))
}

/// `POST /dead/action`: `action` is retry, discard, retry_all or discard_all; `job` the
/// selected job ids.
pub async fn action(State(st): State<AppState>, p: Posted) -> Page {
    let cap = Privileged::grant(p.session.caller.clone())?;
    let back = p.fields.get("back").filter(|b| b.starts_with("/dead")).unwrap_or("/dead").to_owned();
    let selected: Vec<String> = p.fields.all("job").into_iter().map(str::to_owned).collect();
    let (mut ok, mut failed) = (0usize, Vec::new());
    match p.fields.get("action") {
        Some("retry") => {
            for id in &selected {
                match api::retry_one(cap.clone(), State(st.clone()), Path(id.clone())).await {
                    Ok(_) => ok += 1,
                    Err(e @ ApiError::Internal(_)) => return Err(e.into()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
        }
        Some("retry_all") => {
            let filter = RetryFilter { all: true, system_name: None, driver: None, error_class: None };
            let answer = api::retry_many(cap, State(st), Json(filter)).await?.0;
            ok = answer.retried.len();
            failed = answer.failed.into_iter().map(|f| f.error).collect();
        }
        Some(kind @ ("discard" | "discard_all")) => {
            let ids = if kind == "discard" {
                selected
            } else {
                let dev = Developer::grant(cap.caller().clone())?;
                let pending = api::list(dev, State(st.clone()), Query(DlqQuery { all: Some(false) })).await?.0;
                pending.into_iter().map(|d| d.job_id.to_string()).collect()
            };
            for id in ids {
                match api::discard(cap.clone(), State(st.clone()), Path(id)).await {
                    Ok(_) => ok += 1,
                    Err(e @ ApiError::Internal(_)) => return Err(e.into()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
        }
        _ => {
            return Err(ApiError::bad_param("action", "must be retry, discard, retry_all or discard_all").into());
        }
    }
    let verb = if p.fields.get("action").is_some_and(|a| a.starts_with("retry")) { "Retried" } else { "Discarded" };
    let mut notice = format!("{verb} {ok} dead letter(s).");
    if !failed.is_empty() {
        notice.push_str(&format!(" {} could not be: {}", failed.len(), failed.join("; ")));
    }
    Ok(done(&back, &notice))
}

/// `GET /dead/{job_id}`.
pub async fn detail(s: Session, State(st): State<AppState>, Path(id): Path<String>, RawQuery(raw): RawQuery) -> Page {
    let dev = Developer::grant(s.caller.clone())?;
    let d = api::get(dev.clone(), State(st.clone()), Path(id.clone())).await?.0;
    let described = dead_letters::headers(&st.db, JobId(d.job_id)).await?;
    let traces = st.config.api.trace_url_template.clone();
    let asset = match &d.system_name {
        Some(name) => crate::routes::assets::get_asset(dev, State(st), Path(name.clone())).await.ok().map(|j| j.0),
        None => None,
    };
    let now = Utc::now();
    let back = format!("/dead/{}", d.job_id);
    let body = html! {
        table.kv { tbody {
            tr { th scope="row" { "Job" } td { code { (d.job_id) } } }
            tr { th scope="row" { "Asset" } td {
                @match &d.system_name { Some(n) => a href=(asset_href(n)) { (n) }, None => span.poison { "none (poison letter)" } }
            } }
            tr { th scope="row" { "Driver queue" } td { (d.driver.as_deref().unwrap_or("unknown")) } }
            tr { th scope="row" { "Error class" } td { (d.error_class) } }
            tr { th scope="row" { "Attempts" } td { (d.attempts) } }
            tr { th scope="row" { "Status" } td { (badge(&d.status)) } }
            tr { th scope="row" { "Dead since" } td { (when(d.dead_at, now)) } }
            tr { th scope="row" { "Last operator action" } td { (when(d.updated_at, now)) } }
        } }
        h2 { "Reason" }
        pre.reason { (d.reason) }
        h2 { "Message properties and headers" }
        @match &described {
            Some(h) => {
                table.kv { tbody {
                    @for (section, map) in ["properties", "headers"].iter().filter_map(|k| h.get(*k).and_then(|v| v.as_object()).map(|m| (*k, m))) {
                        @for (k, v) in map {
                            tr {
                                th scope="row" { code { (k) } span.muted { " (" (section) ")" } }
                                td { code.summary { (v.as_str().map_or_else(|| v.to_string(), str::to_owned)) } }
                            }
                        }
                    }
                } }
            }
            None => p.muted { "Not recorded (the letter was recorded before headers were kept)." },
        }
        @if s.may(Role::Privileged) && d.status == "pending" {
            form.actions method="post" action="/dead/action" {
                (csrf(&s))
                input type="hidden" name="job" value=(d.job_id);
                input type="hidden" name="back" value=(back);
                @if d.system_name.is_some() {
                    button type="submit" name="action" value="retry" { "Retry" }
                } @else {
                    p.notice { "This letter " (POISON) "." }
                }
                button type="submit" name="action" value="discard" data-confirm="Discard this dead letter?" { "Discard" }
            }
        }
        @if let Some(a) = &asset {
            section aria-labelledby="h-history" {
                h2 #h-history { "History of " (a.asset.system_name) }
                (history(&a.history, now, traces.as_deref()))
            }
        }
    };
    Ok(page(&s, Nav::Dead, "Dead letter", param(raw.as_deref(), "notice").as_deref(), body))
}
