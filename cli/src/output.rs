//! What the operator commands print, from the API's answer types: the same tables and the
//! same JSON whether a command read the database itself or went through `--server`.

use crate::table;
use certfleet_api::views::{AssetView, DeadKindView, DeadLetterView};
use certfleet_shared::amqp::stats::QueueStats;
use certfleet_shared::db::asset_history::AssetHistory;
use serde::Serialize;

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `assets list`.
pub fn assets(rows: Vec<AssetView>, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|a| {
            vec![
                a.system_name,
                a.state,
                a.certificate_authority,
                a.certificate.not_after.or(a.certificate_expiration).map_or_else(|| "-".into(), time),
                a.certificate
                    .fingerprint_sha256
                    .as_deref()
                    .map_or("-".into(), |f| format!("{}…", f.get(..16).unwrap_or(f))),
                a.last_error.unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table::render(&["SYSTEM_NAME", "STATE", "ISSUER", "NOT_AFTER", "FINGERPRINT", "LAST ERROR"], &cells));
    Ok(())
}

/// `dlq list`.
pub fn dead_letters(rows: Vec<DeadLetterView>, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&rows);
    }
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|d| {
            vec![
                d.job_id.to_string(),
                // A dead notification is about its channel.
                if d.kind == DeadKindView::Notification {
                    d.driver.unwrap_or_else(|| "notify".into())
                } else {
                    d.system_name.unwrap_or_else(|| "-".into())
                },
                d.status,
                d.error_class,
                d.attempts.to_string(),
                d.reason,
            ]
        })
        .collect();
    print!("{}", table::render(&["JOB_ID", "ASSET", "STATUS", "CLASS", "TRY", "REASON"], &cells));
    Ok(())
}

/// `queues`.
pub fn queues(stats: Vec<QueueStats>, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&stats);
    }
    let known = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}/s"));
    let cells: Vec<Vec<String>> = stats
        .into_iter()
        .map(|s| {
            vec![
                s.queue,
                s.messages.to_string(),
                known(s.unacked),
                s.consumers.to_string(),
                rate(s.publish_rate),
                rate(s.deliver_rate),
            ]
        })
        .collect();
    print!("{}", table::render(&["QUEUE", "READY", "UNACKED", "CONSUMERS", "IN", "OUT"], &cells));
    Ok(())
}

/// `history SYSTEM_NAME`.
pub fn history(h: AssetHistory, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(&h);
    }
    println!("{}: {}, {} job(s)", h.system_name, h.state.as_str(), h.jobs.len());
    if h.jobs.is_empty() {
        return Ok(());
    }
    let cells: Vec<Vec<String>> = h
        .jobs
        .into_iter()
        .map(|j| {
            vec![
                time(j.queued_at),
                j.finished_at.map_or_else(|| "-".to_owned(), time),
                j.outcome.as_str().to_owned(),
                j.attempts.to_string(),
                j.error_class.unwrap_or_else(|| "-".into()),
                j.driver,
                j.worker.unwrap_or_else(|| "-".into()),
                j.job_id.to_string(),
                j.error.unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["QUEUED", "FINISHED", "OUTCOME", "TRY", "CLASS", "DRIVER", "WORKER", "JOB_ID", "ERROR"];
    print!("{}", table::render(&header, &cells));
    Ok(())
}
