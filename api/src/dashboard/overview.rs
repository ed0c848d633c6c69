//! The Overview (`/`): assets by state, certificates expiring soon, the last 24 hours of
//! rotations by outcome, an SVG expiry histogram per issuer, and the latest rotations.
//! Every number links to the filtered list behind it.

use crate::dashboard::layout::{Nav, Page, asset_href, badge, encode, page, param, when};
use crate::dashboard::session::Session;
use crate::state::AppState;
use axum::extract::{RawQuery, State};
use certfleet_shared::db::entity::asset::AssetState;
use certfleet_shared::db::entity::rotation::RotationStatus;
use certfleet_shared::db::overview::{self, BUCKET_DAYS, Bucket, HORIZON_DAYS};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use sea_orm::Iterable;

/// How many of the latest rotations are listed.
const RECENT: u64 = 20;
/// Bar colours per issuer (each issuer is also named in the legend and in every bar's title).
const PALETTE: [&str; 6] = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#dc2626", "#0891b2"];

/// `GET /`.
pub async fn show(s: Session, State(st): State<AppState>, RawQuery(q): RawQuery) -> Page {
    let now = Utc::now();
    let (o, recent) = tokio::try_join!(st.summary.get(&st.db), overview::latest(&st.db, RECENT))?;
    let since = (now - chrono::Duration::hours(24)).format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let body = html! {
        p.muted { "Counted " (when(o.at, now)) "; large fleets are recounted every few seconds." }
        section aria-labelledby="h-states" {
            h2 #h-states { "Assets by state" }
            div.cards {
                a.card href="/assets" { span.n { (o.total) } span.l { "all assets" } }
                @for state in AssetState::iter() {
                    a.card href={ "/assets?" (encode(&[("state", state.as_str().to_owned())])) } {
                        span.n { (o.by_state.get(state.as_str()).copied().unwrap_or(0)) }
                        span.l { (badge(state.as_str())) }
                    }
                }
            }
        }
        section aria-labelledby="h-expiring" {
            h2 #h-expiring { "Certificates expiring" }
            div.cards {
                a.card href="/assets?days_until_expiration=0" {
                    span.n { (o.expired) } span.l { "already expired" }
                }
                @for (days, n) in &o.expiring {
                    a.card href={ "/assets?days_until_expiration=" (days) } {
                        span.n { (n) } span.l { "within " (days) " days (expired included)" }
                    }
                }
            }
        }
        section aria-labelledby="h-day" {
            h2 #h-day { "Rotations in the last 24 hours" }
            div.cards {
                @for status in RotationStatus::iter() {
                    a.card href={ "/rotations?" (encode(&[("status", status.as_str().to_owned()), ("since", since.clone())])) } {
                        span.n { (o.last_day.get(status.as_str()).copied().unwrap_or(0)) }
                        span.l { (badge(status.as_str())) }
                    }
                }
            }
        }
        section aria-labelledby="h-timeline" {
            h2 #h-timeline { "Expiry timeline, next " (HORIZON_DAYS) " days (bars of " (BUCKET_DAYS) " days, per issuer)" }
            (histogram(&o.histogram, o.at))
        }
        section aria-labelledby="h-recent" {
            h2 #h-recent { "Latest rotations" }
            div.scroll {
                table {
                    thead { tr { th { "Queued" } th { "Asset" } th { "Driver" } th { "Status" } th { "Error class" } th { "Worker" } } }
                    tbody {
                        @for r in &recent {
                            tr {
                                td { (when(r.rotation.queued_at, now)) }
                                td {
                                    @match &r.system_name {
                                        Some(n) => a href=(asset_href(n)) { (n) },
                                        None => span.muted { "deleted asset #" (r.rotation.asset_id) },
                                    }
                                }
                                td { (r.rotation.driver) }
                                td { (badge(r.rotation.status.as_str())) }
                                td { (r.rotation.error_class.as_deref().unwrap_or("")) }
                                td { (r.rotation.worker.as_deref().unwrap_or("")) }
                            }
                        }
                        @if recent.is_empty() { tr { td colspan="6" { "No rotation yet." } } }
                    }
                }
            }
        }
    };
    Ok(page(&s, Nav::Overview, "Overview", param(q.as_deref(), "notice").as_deref(), body))
}

/// The stacked-bar SVG of the buckets, with a legend; each bar's title lists its numbers.
fn histogram(buckets: &[Bucket], now: DateTime<Utc>) -> Markup {
    let issuers: Vec<&String> = {
        let mut all: Vec<&String> = buckets.iter().flat_map(|b| b.by_issuer.keys()).collect();
        all.sort();
        all.dedup();
        all
    };
    let colour = |name: &String| {
        let i = issuers.iter().position(|n| *n == name).unwrap_or(0);
        PALETTE[i % PALETTE.len()]
    };
    let max = buckets.iter().map(Bucket::total).max().unwrap_or(0).max(1);
    let (bar_w, gap, height, top) = (40u64, 10u64, 160u64, 20u64);
    let width = (bar_w + gap) * buckets.len() as u64 + gap;
    html! {
        figure.histogram {
            svg viewBox={ "0 0 " (width) " " (height + top + 30) } role="img"
                aria-label="Certificates expiring per week over the next 90 days" {
                @for (i, b) in buckets.iter().enumerate() {
                    @let x = gap + i as u64 * (bar_w + gap);
                    @let days = (b.start - now).num_days() + BUCKET_DAYS;
                    a href={ "/assets?days_until_expiration=" (days) } {
                        g {
                            title {
                                "From " (b.start.format("%Y-%m-%d")) ": " (b.total()) " certificate(s)"
                                @for (ca, n) in &b.by_issuer { "; " (ca) ": " (n) }
                            }
                            @for (y, h, fill) in stack(b, top + height, height, max, &colour) {
                                rect x=(x) y=(y) width=(bar_w) height=(h) fill=(fill) {}
                            }
                            text x=(x + bar_w / 2) y=(top + height - b.total() * height / max - 4)
                                text-anchor="middle" font-size="11" { (b.total()) }
                            text x=(x + bar_w / 2) y=(top + height + 16) text-anchor="middle" font-size="10" {
                                (b.start.format("%m-%d"))
                            }
                        }
                    }
                }
            }
            figcaption {
                @if issuers.is_empty() { "No certificate expires in the next " (HORIZON_DAYS) " days." }
                @for ca in &issuers {
                    span.legend { span.swatch style={ "background:" (colour(ca)) } {} (ca) }
                }
            }
        }
    }
}

/// The segments of one stacked bar, bottom up: (y, height, colour).
fn stack<'a>(
    b: &Bucket,
    base: u64,
    height: u64,
    max: u64,
    colour: &impl Fn(&String) -> &'a str,
) -> Vec<(u64, u64, &'a str)> {
    let mut y = base;
    let mut out = Vec::new();
    for (ca, n) in &b.by_issuer {
        let h = (n * height / max).max(u64::from(*n > 0)).min(y);
        y -= h;
        out.push((y, h, colour(ca)));
    }
    out
}
