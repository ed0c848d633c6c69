//! The operator commands through the API: the same output as the local commands
//! (`crate::output`), from the API's answers.

use super::{Api, Refused};
use crate::import::{self, Format};
use crate::output;
use anyhow::{Context as _, bail};
use certfleet_api::routes::assets::{AssetDetail, AssetPage, Created, JobAnswer};
use certfleet_api::routes::dlq::RetryAnswer;
use certfleet_api::views::{AssetView, DeadLetterView, RotationView};
use certfleet_proto::JobId;
use certfleet_shared::amqp::stats::QueueStats;
use certfleet_shared::db::asset_history::{AssetHistory, HistoryEntry};
use certfleet_shared::db::assets::RowError;
use serde_json::json;
use std::path::Path;

/// `assets import FILE`: rows are parsed here (the same parser and wording as a local
/// import), then written in one `POST /api/v1/assets?upsert=true`: all or none.
pub async fn import(api: &Api, file: &Path, format: Format) -> anyhow::Result<()> {
    let (mut good, mut bad) = (Vec::new(), Vec::<RowError>::new());
    for row in import::parse(file, format)? {
        match row {
            Ok(r) => good.push(r),
            Err(e) => bad.push(e),
        }
    }
    if !bad.is_empty() {
        bail!("{}", import::invalid_rows(file, bad.iter().map(ToString::to_string)));
    }
    if good.is_empty() {
        bail!("{}: the file holds no asset", file.display());
    }
    let answer: anyhow::Result<Created> =
        api.post_query(&["api", "v1", "assets"], &[("upsert", "true".into())], &good).await;
    match answer {
        Ok(created) => {
            println!("imported {} asset(s) from {}", created.written, file.display());
            Ok(())
        }
        Err(e) => match e.downcast_ref::<Refused>() {
            Some(refused) if !refused.errors.is_empty() => {
                let lines = refused.errors.iter().map(|p| {
                    let row = p.row.unwrap_or(1);
                    let name = good.get(row.wrapping_sub(1)).map(|r| r.system_name.as_str()).unwrap_or("?");
                    format!("row {row} ({name}): field `{}`: {}", p.field, p.reason)
                });
                bail!("{}", import::invalid_rows(file, lines))
            }
            _ => Err(e.context(file.display().to_string())),
        },
    }
}

/// `assets list [--due]`: every page of `GET /api/v1/search`.
pub async fn list(api: &Api, due: bool, as_json: bool) -> anyhow::Result<()> {
    let mut rows: Vec<AssetView> = Vec::new();
    let mut cursor: Option<i64> = None;
    loop {
        let mut query = vec![("limit", "1000".to_owned())];
        if due {
            query.push(("due", "true".into()));
        }
        if let Some(c) = cursor {
            query.push(("cursor", c.to_string()));
        }
        let page: AssetPage = api.get(&["api", "v1", "search"], &query).await?;
        rows.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    output::assets(rows, as_json)
}

/// `rotate SYSTEM_NAME`.
pub async fn rotate(api: &Api, name: &str) -> anyhow::Result<()> {
    let job: JobAnswer = api.post(&["api", "v1", "certificate", "rotate", name], &json!({})).await?;
    println!("published job {} for {name}", job.job_id);
    Ok(())
}

/// `dlq list [--all]`.
pub async fn dlq_list(api: &Api, all: bool, as_json: bool) -> anyhow::Result<()> {
    let rows: Vec<DeadLetterView> = api.get(&["api", "v1", "dlq"], &[("all", all.to_string())]).await?;
    output::dead_letters(rows, as_json)
}

/// `dlq retry JOB_ID | --all`.
pub async fn dlq_retry(api: &Api, job_id: Option<JobId>, all: bool) -> anyhow::Result<()> {
    let answer: RetryAnswer = match job_id {
        Some(id) => {
            let job: JobAnswer = api.post(&["api", "v1", "dlq", &id.to_string(), "retry"], &json!({})).await?;
            println!("retried {}", job.job_id);
            return Ok(());
        }
        None if all => api.post(&["api", "v1", "dlq", "retry"], &json!({"all": true})).await?,
        None => bail!("give a JOB_ID or --all"),
    };
    for id in &answer.retried {
        println!("retried {id}");
    }
    for f in &answer.failed {
        println!("not retried {}: {}", f.job_id, f.error);
    }
    match (answer.retried.len(), answer.failed.len()) {
        (0, 0) => println!("no pending dead letters"),
        (n, 0) => println!("retried {n} dead letter(s)"),
        (n, f) => println!("retried {n} dead letter(s); {f} not retried (reasons above)"),
    }
    Ok(())
}

/// `dlq discard JOB_ID`.
pub async fn dlq_discard(api: &Api, job_id: JobId) -> anyhow::Result<()> {
    let _: DeadLetterView = api.post(&["api", "v1", "dlq", &job_id.to_string(), "discard"], &json!({})).await?;
    println!("discarded {job_id}");
    Ok(())
}

/// `queues`.
pub async fn queues(api: &Api, as_json: bool) -> anyhow::Result<()> {
    let stats: Vec<QueueStats> = api.get(&["api", "v1", "queues"], &[]).await?;
    output::queues(stats, as_json)
}

/// `history SYSTEM_NAME`: the asset's page of the API, shown as the local history is.
pub async fn history(api: &Api, name: &str, as_json: bool) -> anyhow::Result<()> {
    let detail: AssetDetail = api.get(&["api", "v1", "assets", name], &[]).await?;
    output::history(to_history(detail)?, as_json)
}

fn to_history(d: AssetDetail) -> anyhow::Result<AssetHistory> {
    let word = |w: &str| serde_json::Value::String(w.to_owned());
    let state = serde_json::from_value(word(&d.asset.state))
        .with_context(|| format!("the server named an unknown asset state {:?}", d.asset.state))?;
    let jobs = d
        .history
        .into_iter()
        .map(|r: RotationView| {
            let outcome = serde_json::from_value(word(&r.status))
                .with_context(|| format!("the server named an unknown job status {:?}", r.status))?;
            Ok(HistoryEntry {
                job_id: r.job_id,
                driver: r.driver,
                attempts: r.attempt,
                outcome,
                error_class: r.error_class,
                error: r.error_message,
                worker: r.worker,
                queued_at: r.queued_at,
                finished_at: r.finished_at,
                trace_id: r.trace_id,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(AssetHistory { system_name: d.asset.system_name, state, jobs })
}
