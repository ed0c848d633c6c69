//! Queues (`/queues`): every certfleet queue with its ready messages and consumers (the
//! API's `GET /api/v1/queues` handler), unacknowledged counts and rates from RabbitMQ's
//! management API when `amqp_management_url` is set (the same `QueueStats`), and the workers with their last heartbeat. The
//! live part is also served alone at `/queues/live`, which the page fetches every 5 s to
//! refresh itself without a full reload.

use crate::auth::Developer;
use crate::dashboard::layout::{DashError, Nav, Page, page, when};
use crate::dashboard::session::Session;
use crate::routes::system;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{Html, IntoResponse};
use certfleet_shared::db::workers;
use chrono::Utc;
use maud::{Markup, html};

/// The refresh period of the page, in milliseconds.
const REFRESH_MS: u32 = 5000;

async fn live(s: &Session, st: AppState) -> Result<Markup, DashError> {
    let dev = Developer::grant(s.caller.clone())?;
    let now = Utc::now();
    let workers = workers::list(&st.db, now).await?;
    let managed = st.config.amqp_management_url.is_some();
    let queues = system::queues(dev, State(st)).await;
    Ok(html! {
        p.muted { "Updated " (when(now, now)) "." }
        section aria-labelledby="h-queues" {
            h2 #h-queues { "Queues" }
            @match &queues {
                Ok(q) => div.scroll { table {
                    thead { tr {
                        th { "Queue" } th.num { "Ready" } th.num { "Unacked" } th.num { "Consumers" }
                        th.num { "In /s" } th.num { "Out /s" }
                    } }
                    tbody {
                        @for q in &q.0 {
                            tr {
                                td { code { (q.queue) } }
                                td.num { (q.messages) }
                                td.num { @match q.unacked { Some(n) => (n), None => span.muted { "n/a" } } }
                                td.num { (q.consumers) }
                                td.num { @match q.publish_rate { Some(r) => (format!("{r:.1}")), None => span.muted { "n/a" } } }
                                td.num { @match q.deliver_rate { Some(r) => (format!("{r:.1}")), None => span.muted { "n/a" } } }
                            }
                        }
                    }
                } },
                Err(e) => p.notice.error role="alert" { (e.to_string()) },
            }
            @if managed {
                p.muted { "Unacked counts and rates come from RabbitMQ's management API (the broker's recent averages); n/a when it did not answer." }
            } @else {
                p.muted { "Unacknowledged counts and rates come from RabbitMQ's management API: set amqp_management_url to see them." }
            }
        }
        section aria-labelledby="h-workers" {
            h2 #h-workers { "Workers" }
            div.scroll { table {
                thead { tr {
                    th { "Worker" } th { "Status" } th { "Drivers" } th.num { "Concurrency" } th.num { "Jobs in flight" } th { "Last heartbeat" }
                } }
                tbody {
                    @for w in &workers {
                        tr {
                            td { code { (w.worker_id) } }
                            td { @if w.alive { span class="badge s-alive" { "alive" } } @else { span class="badge s-gone" { "gone" } } }
                            td { (w.drivers.join(", ")) }
                            td.num { (w.concurrency) }
                            td.num { (w.in_flight) }
                            td { (when(w.last_seen, now)) }
                        }
                    }
                    @if workers.is_empty() { tr { td colspan="6" { "No worker has sent a heartbeat." } } }
                }
            } }
            p.muted { "A worker silent for " (workers::MISSED_BEATS) " heartbeat intervals is shown as gone." }
        }
    })
}

/// `GET /queues`.
pub async fn show(s: Session, State(st): State<AppState>) -> Page {
    let body = live(&s, st).await?;
    Ok(page(
        &s,
        Nav::Queues,
        "Queues and workers",
        None,
        html! { div #live data-refresh="/queues/live" data-every=(REFRESH_MS) aria-live="polite" { (body) } },
    ))
}

/// `GET /queues/live`: the live part alone, for the page's refresh.
pub async fn fragment(s: Session, State(st): State<AppState>) -> Page {
    Ok(Html(live(&s, st).await?.into_string()).into_response())
}
