//! The CLI's commands.

use crate::{AssetsCommand, CaCommand, Cli, Command, DlqCommand};
use crate::{import, output, remote, show};
use anyhow::{Context as _, bail};
use certfleet_api::views::{AssetView, DeadLetterView};
use certfleet_proto::{Driver, JobId};
use certfleet_scheduler::manual;
use certfleet_scheduler::policy;
use certfleet_scheduler::routes::Routes;
use certfleet_shared::amqp::{self, Publisher, topology};
use certfleet_shared::db::assets::Known;
use certfleet_shared::db::audit::Action;
use certfleet_shared::db::entity::dead_letter;
use certfleet_shared::db::{self, assets, dead_letters};
use certfleet_shared::{Config, shutdown, telemetry};
use sea_orm::DatabaseConnection;
use serde_json::json;

/// Appends the audit row of a CLI write, with the OS user as the actor.
async fn audit(
    db: &DatabaseConnection,
    action: Action,
    target: Option<&str>,
    summary: serde_json::Value,
) -> anyhow::Result<()> {
    certfleet_api::accounts::audit(db, &crate::users::os_caller(), action, target, summary)
        .await
        .context("the change was made, but writing its audit row failed")
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let loaded = Config::load(cli.config.as_deref())?;
    let config = loaded.config;
    // `up` runs the fleet, so it logs and exports spans like the services; the other
    // commands print for people and log nothing.
    let telemetry = match cli.command {
        Command::Up { .. } => {
            Some(telemetry::init(config.log_format, &config.telemetry, "certfleet-up").map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    for name in &loaded.unknown_env {
        eprintln!("certfleet: warning: ignoring unknown environment variable {name}");
    }
    if let Some(url) = &cli.server {
        let server = remote::Server::parse(url, cli.ca_file.clone(), REMOTE_TIMEOUT)?;
        return run_remote(server, cli.command).await;
    }
    match cli.command {
        Command::Login { .. } | Command::Logout => {
            bail!("login and logout need --server URL (or CERTFLEET_SERVER): the API to log in to")
        }
        Command::Up { drivers, concurrency } => {
            let ran = up(&config, drivers, concurrency).await;
            // Flush the buffered spans off the async threads (not in `Drop`).
            if let Some(t) = telemetry {
                t.shutdown().await;
            }
            ran
        }
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

/// Bound on each request to the API (a large import takes a while).
const REMOTE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs an operator command through the API at `server`.
async fn run_remote(server: remote::Server, command: Command) -> anyhow::Result<()> {
    use remote::commands as r;
    let api = || -> anyhow::Result<remote::Api> {
        let token = remote::session::token_for(&server)?;
        remote::Api::new(server.clone(), Some(token))
    };
    match command {
        Command::Login { username } => remote::session::login(server, username).await,
        Command::Logout => remote::session::logout(server).await,
        Command::Assets { command: AssetsCommand::Import { file, format } } => {
            let format = match format {
                Some(f) => f,
                None => import::guess(&file)?,
            };
            r::import(&api()?, &file, format).await
        }
        Command::Assets { command: AssetsCommand::List { due, json } } => r::list(&api()?, due, json).await,
        Command::Rotate { system_name } => r::rotate(&api()?, &system_name).await,
        Command::Dlq { command: DlqCommand::List { all, json } } => r::dlq_list(&api()?, all, json).await,
        Command::Dlq { command: DlqCommand::Retry { job_id, all } } => r::dlq_retry(&api()?, job_id, all).await,
        Command::Dlq { command: DlqCommand::Discard { job_id } } => r::dlq_discard(&api()?, job_id).await,
        Command::Queues { json } => r::queues(&api()?, json).await,
        Command::History { system_name, json } => r::history(&api()?, &system_name, json).await,
        Command::Up { .. } => bail!("`certfleet up` runs the fleet itself; it cannot go through --server"),
        Command::Notify { .. } => {
            bail!(
                "`certfleet notify` uses the channels' secrets in the notifier's config; run it there, without --server"
            )
        }
        Command::Ca { .. } => {
            bail!("`certfleet ca` reads the CA's files; run it where the fleet runs, without --server")
        }
        Command::Users { .. } | Command::ApiKeys { .. } => bail!(
            "users and API keys are managed by an ADMIN through the API's /admin/v1/users and /admin/v1/api-keys, or \
             with this command without --server where the database is"
        ),
    }
}

async fn up(config: &Config, drivers: Vec<Driver>, concurrency: Option<u16>) -> anyhow::Result<()> {
    let cancel = shutdown::on_signals();
    // One process, one recorder: the scheduler's, worker's and API's metrics are served
    // together on `metrics.scheduler_listen`.
    certfleet_shared::metrics::serve(certfleet_shared::metrics::Process::Scheduler, &config.metrics, cancel.clone())
        .await?;
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
    let routes = Routes::load_if_present(&config.routes_file)?;
    let known = match &routes {
        Some(r) => Known::from(&issuers).with_routes(r),
        None => Known::from(&issuers),
    };
    // The file is opened (and a CSV header read) first, then read on a blocking thread and
    // streamed into one transaction: memory holds a chunk of rows, not the file, and
    // parsing overlaps the database's work.
    let rows = import::rows(file, format)?;
    let database = open_db(config).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<import::Row>(4 * db::bulk::ROWS_PER_INSERT);
    let reader = tokio::task::spawn_blocking(move || {
        for row in rows {
            if tx.blocking_send(row).is_err() {
                break;
            }
        }
    });
    let mut importer = db::bulk::Importer::begin(&database, known).await?;
    let mut names = Vec::new();
    let mut unreadable = None;
    while let Some(row) = rx.recv().await {
        match row {
            Ok(row) => {
                if let Ok(a) = &row
                    && names.len() < 100
                {
                    names.push(a.system_name.trim().to_owned());
                }
                importer.push(row).await.with_context(|| format!("{}", file.display()))?;
            }
            Err(e) => {
                unreadable = Some(e);
                break;
            }
        }
    }
    drop(rx);
    reader.await.context("the file reader stopped")?;
    if let Some(e) = unreadable {
        return Err(e.context(format!("{}: nothing imported", file.display())));
    }
    let summary = match importer.finish().await {
        Ok(summary) => summary,
        Err(assets::ImportError::Rows(bad)) => {
            bail!("{}", import::invalid_rows(file, bad.iter().map(ToString::to_string)))
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("{}", file.display()))),
    };
    let target = (summary.written == 1).then(|| names[0].as_str());
    let summary_json = json!({"count": summary.written, "file": file.display().to_string(), "system_names": names});
    audit(&database, Action::AssetCreate, target, summary_json).await?;
    println!("imported {} asset(s) from {}", summary.written, file.display());
    Ok(())
}

async fn list_assets(config: &Config, due: bool, json: bool) -> anyhow::Result<()> {
    let database = open_db(config).await?;
    let now = chrono::Utc::now();
    let inputs = policy::PolicyInputs::of(config);
    let rows = assets::list(&database).await?.into_iter().filter(|a| !due || inputs.is_due(a, now));
    output::assets(rows.map(AssetView::from).collect(), json)
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
    topology::declare_on(&conn, Driver::ALL, config.connect_timeout).await?;
    Ok(Publishing { database, publisher, routes, conn })
}

async fn rotate(config: &Config, name: &str) -> anyhow::Result<()> {
    let p = publishing(config).await?;
    let job = manual::rotate_now(&p.database, &p.publisher, &p.routes, name, config.lease).await?;
    println!("published job {job} for {name}");
    audit(&p.database, Action::AssetRotate, Some(name), json!({"job_id": job.to_string()})).await?;
    let _ = p.conn.close(200, "done".into()).await;
    Ok(())
}

async fn dlq_list(config: &Config, all: bool, json: bool) -> anyhow::Result<()> {
    let database = open_db(config).await?;
    let rows = dead_letters::list(&database, all).await?;
    output::dead_letters(rows.into_iter().map(DeadLetterView::from).collect(), json)
}

async fn dlq_retry(config: &Config, job_id: Option<JobId>, all: bool) -> anyhow::Result<()> {
    let p = publishing(config).await?;
    let result = match job_id {
        Some(id) => match manual::retry_dead(&p.database, &p.publisher, &p.routes, id, config.lease).await {
            Ok(id) => {
                println!("retried {id}");
                audit(&p.database, Action::DlqRetry, Some(&id.to_string()), json!({})).await
            }
            Err(e) => Err(e.into()),
        },
        None if all => match manual::retry_all_dead(&p.database, &p.publisher, &p.routes, config.lease).await {
            Ok(done) => {
                for id in &done.retried {
                    audit(&p.database, Action::DlqRetry, Some(&id.to_string()), json!({"all": true})).await?;
                }
                report_retry_all(&done)
            }
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
    audit(&database, Action::DlqDiscard, Some(&job_id.to_string()), json!({})).await?;
    Ok(())
}

async fn queues(config: &Config, json: bool) -> anyhow::Result<()> {
    let conn = amqp::connect(&config.amqp_url, "certfleet-cli", config.connect_timeout).await?;
    let management = match &config.amqp_management_url {
        Some(url) => Some(amqp::management::Management::new(url, config.amqp_url.first(), config.connect_timeout)?),
        None => None,
    };
    let stats = amqp::stats::queue_stats_with(&conn, management.as_ref(), config.connect_timeout).await?;
    let _ = conn.close(200, "done".into()).await;
    output::queues(stats, json)
}
