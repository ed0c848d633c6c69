//! The CLI's commands.

use crate::{AssetsCommand, CaCommand, Cli, Command, DlqCommand};
use crate::{import, show, table};
use anyhow::{Context as _, bail};
use certfleet_proto::{Driver, JobId};
use certfleet_scheduler::manual;
use certfleet_scheduler::policy::{self, Decision, Facts};
use certfleet_scheduler::routes::Routes;
use certfleet_shared::amqp::{self, Publisher, topology};
use certfleet_shared::db::entity::{asset, dead_letter};
use certfleet_shared::db::{self, assets, dead_letters};
use certfleet_shared::{Config, shutdown, telemetry};
use sea_orm::DatabaseConnection;

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let loaded = Config::load(cli.config.as_deref())?;
    let config = loaded.config;
    if matches!(cli.command, Command::Up { .. }) {
        telemetry::init(config.log_format);
    }
    for name in &loaded.unknown_env {
        eprintln!("certfleet: warning: ignoring unknown environment variable {name}");
    }
    match cli.command {
        Command::Up { drivers, concurrency } => up(&config, drivers, concurrency).await,
        Command::Assets { command: AssetsCommand::Import { file, format } } => {
            import_assets(&config, &file, format).await
        }
        Command::Assets { command: AssetsCommand::List { due, json } } => list_assets(&config, due, json).await,
        Command::Rotate { system_name } => rotate(&config, &system_name).await,
        Command::Dlq { command: DlqCommand::List { all, json } } => dlq_list(&config, all, json).await,
        Command::Dlq { command: DlqCommand::Retry { job_id, all } } => dlq_retry(&config, job_id, all).await,
        Command::Dlq { command: DlqCommand::Discard { job_id } } => dlq_discard(&config, job_id).await,
        Command::Notify { command } => crate::notify::run(&config, command).await,
        Command::Queues { json } => queues(&config, json).await,
        Command::History { system_name, json } => show::history(&open_db(&config).await?, &system_name, json).await,
        Command::Ca { command: CaCommand::Show { issuer, pem } } => show::ca(&config, issuer.as_deref(), pem).await,
        Command::Users { command } => crate::users::users(&config, command).await,
        Command::ApiKeys { command } => crate::users::api_keys(&config, command).await,
    }
}

async fn up(config: &Config, drivers: Vec<Driver>, concurrency: Option<u16>) -> anyhow::Result<()> {
    let cancel = shutdown::on_signals();
    let opts =
        certfleet_worker::WorkerOptions { drivers, concurrency, name: format!("certfleet-up-{}", std::process::id()) };
    // Start the scheduler first so the database and topology exist before the worker.
    let scheduler = {
        let (config, cancel) = (config.clone(), cancel.clone());
        tokio::spawn(async move {
            let r = certfleet_scheduler::run(&config, false, cancel.clone()).await;
            cancel.cancel();
            r
        })
    };
    let worker = {
        let (config, cancel) = (config.clone(), cancel.clone());
        tokio::spawn(async move {
            let r = certfleet_worker::run(&config, opts, cancel.clone()).await;
            cancel.cancel();
            r
        })
    };
    let api = {
        let (config, cancel) = (config.clone(), cancel.clone());
        tokio::spawn(async move {
            let r = certfleet_api::run(&config, cancel.clone()).await;
            cancel.cancel();
            r
        })
    };
    let (s, w, a) = tokio::join!(scheduler, worker, api);
    s.context("scheduler task")?.context("scheduler failed")?;
    w.context("worker task")?.context("worker failed")?;
    a.context("API task")?.context("API failed")?;
    Ok(())
}

pub(crate) async fn open_db(config: &Config) -> anyhow::Result<DatabaseConnection> {
    Ok(db::connect(&config.database_url, config.connect_timeout).await?)
}

async fn import_assets(config: &Config, file: &std::path::Path, format: Option<import::Format>) -> anyhow::Result<()> {
    let format = match format {
        Some(f) => f,
        None => import::guess(file)?,
    };
    let issuers: Vec<&str> = config.issuers.keys().map(String::as_str).collect();
    let rows = match import::read(file, format, &issuers)? {
        Ok(rows) => rows,
        Err(bad) => bail!(
            "{}: {} invalid row(s), nothing imported:\n  {}",
            file.display(),
            bad.len(),
            bad.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  ")
        ),
    };
    let database = open_db(config).await?;
    let summary = assets::import(&database, &rows, &issuers).await.with_context(|| format!("{}", file.display()))?;
    println!("imported {} asset(s) from {}", summary.written, file.display());
    Ok(())
}

fn is_due(config: &Config, a: &asset::Model, now: chrono::DateTime<chrono::Utc>) -> bool {
    let rb = config.issuers.get(&a.certificate_authority).and_then(|c| c.renew_before());
    matches!(policy::decide(&Facts::of(a, rb), now), Decision::Due(_))
}

async fn list_assets(config: &Config, due: bool, json: bool) -> anyhow::Result<()> {
    let database = open_db(config).await?;
    let now = chrono::Utc::now();
    let rows: Vec<asset::Model> =
        assets::list(&database).await?.into_iter().filter(|a| !due || is_due(config, a, now)).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|a| {
            vec![
                a.system_name,
                a.state.as_str().to_owned(),
                a.certificate_authority,
                a.not_after
                    .or(a.certificate_expiration)
                    .map_or("-".into(), |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string()),
                a.fingerprint_sha256.as_deref().map_or("-".into(), |f| format!("{}…", &f[..f.len().min(16)])),
                a.last_error.unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table::render(&["SYSTEM_NAME", "STATE", "ISSUER", "NOT_AFTER", "FINGERPRINT", "LAST ERROR"], &cells));
    Ok(())
}

/// What publishing commands need.
struct Publishing {
    database: DatabaseConnection,
    publisher: Publisher,
    routes: Routes,
    conn: lapin::Connection,
}

async fn publishing(config: &Config) -> anyhow::Result<Publishing> {
    let routes = Routes::load(&config.routes_file)?;
    let database = open_db(config).await?;
    let conn = amqp::connect(&config.amqp_url, "certfleet-cli", config.connect_timeout).await?;
    let publisher = Publisher::open(&conn, config.connect_timeout).await?;
    topology::declare(publisher.channel(), Driver::ALL, config.connect_timeout).await?;
    Ok(Publishing { database, publisher, routes, conn })
}

async fn rotate(config: &Config, name: &str) -> anyhow::Result<()> {
    let p = publishing(config).await?;
    let job = manual::rotate_now(&p.database, &p.publisher, &p.routes, name, config.lease).await?;
    println!("published job {job} for {name}");
    let _ = p.conn.close(200, "done".into()).await;
    Ok(())
}

async fn dlq_list(config: &Config, all: bool, json: bool) -> anyhow::Result<()> {
    let database = open_db(config).await?;
    let rows: Vec<dead_letter::Model> = dead_letters::list(&database, all).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .into_iter()
        .map(|d| {
            vec![
                d.job_id.to_string(),
                dlq_subject(&d),
                d.status.as_str().to_owned(),
                d.error_class,
                d.attempts.to_string(),
                d.reason,
            ]
        })
        .collect();
    print!("{}", table::render(&["JOB_ID", "ASSET", "STATUS", "CLASS", "TRY", "REASON"], &cells));
    Ok(())
}

/// What a dead letter is about: the asset, or `notify:<channel>` for a dead notification.
fn dlq_subject(d: &dead_letter::Model) -> String {
    if dead_letters::is_notification(d) {
        return d.driver.clone().unwrap_or_else(|| "notify".into());
    }
    d.system_name.clone().unwrap_or_else(|| "-".into())
}

async fn dlq_retry(config: &Config, job_id: Option<JobId>, all: bool) -> anyhow::Result<()> {
    let p = publishing(config).await?;
    let result = match job_id {
        Some(id) => manual::retry_dead(&p.database, &p.publisher, &p.routes, id, config.lease)
            .await
            .map(|id| println!("retried {id}"))
            .map_err(anyhow::Error::from),
        None if all => match manual::retry_all_dead(&p.database, &p.publisher, &p.routes, config.lease).await {
            Ok(done) => report_retry_all(&done),
            Err(e) => Err(e.into()),
        },
        None => Err(anyhow::anyhow!("give a JOB_ID or --all")),
    };
    let _ = p.conn.close(200, "done".into()).await;
    result
}

/// Prints what `dlq retry --all` did; fails only when a retryable letter was not retried.
fn report_retry_all(done: &manual::RetryAll) -> anyhow::Result<()> {
    for id in &done.retried {
        println!("retried {id}");
    }
    for (id, why) in &done.skipped {
        println!("skipped {id}: {why}");
    }
    for (id, e) in &done.failed {
        eprintln!("certfleet: {id}: {e}");
    }
    let (retried, skipped, failed) = (done.retried.len(), done.skipped.len(), done.failed.len());
    if retried + skipped + failed == 0 {
        println!("no pending dead letters");
        return Ok(());
    }
    let mut summary = format!("retried {retried} dead letter(s)");
    if skipped > 0 {
        summary.push_str(&format!("; skipped {skipped} that can never be retried (reasons above)"));
    }
    if failed > 0 {
        bail!("{summary}; {failed} could not be retried now (errors above)");
    }
    println!("{summary}");
    Ok(())
}

async fn dlq_discard(config: &Config, job_id: JobId) -> anyhow::Result<()> {
    let database = open_db(config).await?;
    dead_letters::get(&database, job_id).await?;
    dead_letters::set_status(&database, job_id, dead_letter::DeadLetterStatus::Discarded).await?;
    println!("discarded {job_id}");
    Ok(())
}

async fn queues(config: &Config, json: bool) -> anyhow::Result<()> {
    let conn = amqp::connect(&config.amqp_url, "certfleet-cli", config.connect_timeout).await?;
    let stats = amqp::stats::queue_stats(&conn, config.connect_timeout).await?;
    let _ = conn.close(200, "done".into()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
        return Ok(());
    }
    println!("{:<32} {:>9} {:>9}", "QUEUE", "MESSAGES", "CONSUMERS");
    for s in stats {
        println!("{:<32} {:>9} {:>9}", s.queue, s.messages, s.consumers);
    }
    Ok(())
}
