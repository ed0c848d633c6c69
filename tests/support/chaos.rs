//! The chaos run shared by `tests/chaos.rs` (10,000 jobs, asserting the zeros) and
//! `certfleet-bench chaos` (100,000 jobs, reporting the times): `local` assets through the
//! internal CA, an inventory on a private PostgreSQL cluster and a private RabbitMQ node,
//! N workers and one scheduler. During the run a random worker is SIGKILLed every few
//! seconds and a new one started, the scheduler is SIGKILLed once and restarted, RabbitMQ
//! is restarted once (the whole node: `rabbitmqctl stop`, then a new VM on the same data)
//! and PostgreSQL once (`pg_ctl restart -m fast`). Nothing the faults hit is shared with
//! other work on the machine.
//!
//! Deploys are counted on the device side: each asset's reload command appends
//! `<asset> <job id>` (`CERTFLEET_JOB_ID`) to one file.

use crate::Proc;
use crate::postgres::PgNode;
use crate::rabbit::RabbitNode;
use anyhow::Context as _;
use certfleet_shared::db::entity::asset::{self, AssetState};
use certfleet_shared::db::entity::dead_letter::{self, DeadLetterStatus};
use certfleet_shared::db::entity::rotation::{self, RotationStatus};
use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The private broker and database that one or more runs use (a vhost and a database each).
pub struct ChaosWorld {
    rabbit: Arc<Mutex<RabbitNode>>,
    rabbit_port: u16,
    pg: Arc<PgNode>,
}

impl ChaosWorld {
    /// Boots a private RabbitMQ node and a private PostgreSQL cluster.
    pub fn start() -> anyhow::Result<Self> {
        let pg = PgNode::start()?;
        let rabbit = RabbitNode::start("chaos");
        let rabbit_port = rabbit.port;
        Ok(Self { rabbit: Arc::new(Mutex::new(rabbit)), rabbit_port, pg: Arc::new(pg) })
    }
}

/// What one run does.
#[derive(Debug, Clone)]
pub struct ChaosOpts {
    /// `local` assets, all due at the start.
    pub assets: u64,
    /// Workers running at once.
    pub workers: usize,
    /// Jobs at once per worker.
    pub concurrency: u16,
    /// Inject the faults (`false`: the fault-free reference run).
    pub faults: bool,
    /// A random worker is SIGKILLed (and a new one started) this often.
    pub kill_every: Duration,
    /// The faults other than worker kills happen once these fractions of the assets are
    /// rotated: scheduler SIGKILL, PostgreSQL restart, RabbitMQ restart (the slowest, last).
    pub fault_at: [f64; 3],
    /// Give up after this long.
    pub deadline: Duration,
    /// Scheduler lease of a published job (see `lease` in docs/operations.md).
    pub lease: Duration,
    /// Where the certfleet binaries are.
    pub bin_dir: PathBuf,
}

/// One fault and the longest time without progress that began after it.
#[derive(Debug, Clone)]
pub struct Fault {
    /// `worker-kill`, `scheduler-kill`, `rabbitmq-restart`, `postgres-restart`.
    pub kind: &'static str,
    /// Since the start of the run.
    pub at: Duration,
    /// The longest time without an increase of the rotated count that begins between this
    /// fault and the next one (a gap already running when the fault came counts from the
    /// fault; a gap may run on past the next fault).
    pub stall: Duration,
}

/// What a run measured.
#[derive(Debug, Clone, Default)]
pub struct ChaosReport {
    /// Assets in the run.
    pub assets: u64,
    /// From the scheduler's start until every asset was `ok` (or the deadline).
    pub elapsed: Duration,
    /// Whether every asset reached `ok` before the deadline.
    pub finished: bool,
    /// Assets never rotated: not `ok` in the inventory at the end.
    pub lost: u64,
    /// Assets the device side never saw deployed.
    pub never_deployed: u64,
    /// Job ids that deployed more than one certificate on the device side.
    pub double_deploys: u64,
    /// Certificates beyond the first of a job id, summed.
    pub extra_deploys: u64,
    /// Reloads of a certificate its job had already reloaded: a redelivery that found the
    /// job's own pair installed (the install marker) and activated it again, as designed.
    pub repeated_reloads: u64,
    /// Assets deployed by more than one job id (a job published again after its lease ran out).
    pub assets_by_two_jobs: u64,
    /// Assets not in exactly one terminal state: a state other than `ok`/`failed`/`dead`, a
    /// history that is not exactly one terminal row, or `ok` with a pending dead letter.
    pub not_one_terminal: u64,
    /// Total reloads on the device side.
    pub deploys: u64,
    /// The faults, in order.
    pub faults: Vec<Fault>,
    /// The longest gap without progress in the whole run (for the fault-free reference).
    pub longest_gap: Duration,
    /// Processes that exited by themselves (restarted, as a service manager would).
    pub unexpected_exits: Vec<String>,
}

impl ChaosReport {
    /// The longest stall after faults of `kind`, if any happened.
    pub fn stall(&self, kind: &str) -> Option<Duration> {
        self.faults.iter().filter(|f| f.kind == kind).map(|f| f.stall).max()
    }

    /// How many faults of `kind` happened.
    pub fn count(&self, kind: &str) -> usize {
        self.faults.iter().filter(|f| f.kind == kind).count()
    }
}

struct Run {
    dir: tempfile::TempDir,
    config: PathBuf,
    deploys: PathBuf,
    opts: ChaosOpts,
}

impl Run {
    fn spawn(&self, binary: &str, label: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let log = self.dir.path().join(format!("{label}.log"));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = Command::new(self.opts.bin_dir.join(binary));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CERTFLEET_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path())
            // `CHAOS_RUST_LOG` raises it, to study a failed run (with `CHAOS_KEEP`).
            .env("RUST_LOG", std::env::var("CHAOS_RUST_LOG").unwrap_or_else(|_| "warn".to_owned()))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        Ok(Proc { child, log })
    }

    fn worker(&self, n: usize) -> anyhow::Result<Proc> {
        let c = self.opts.concurrency.to_string();
        let name = format!("w{n}");
        self.spawn("certfleet-worker", &name, &["--drivers", "local", "--concurrency", &c, "--name", &name])
    }
}

/// Inserts `n` due `local` assets whose reload command appends `<asset> <job id> <SHA-256
/// of the certificate file>` to `deploys`, so a job that deploys a second certificate is
/// told apart from one that reloads its own certificate again.
async fn seed(db: &DatabaseConnection, dir: &Path, deploys: &Path, n: u64) -> anyhow::Result<()> {
    let now = Utc::now();
    let certs = dir.join("certs");
    let rows: Vec<asset::ActiveModel> = (0..n)
        .map(|i| {
            let name = format!("a-{i:07}");
            let settings = serde_json::json!({
                "cert_path": certs.join(format!("{name}.crt")),
                "key_path": certs.join(format!("{name}.key")),
                "reload_command": ["/bin/sh", "-c", format!(
                    "set -- $(sha256sum < {}); echo \"{name} $CERTFLEET_JOB_ID $1\" >> {}",
                    certs.join(format!("{name}.crt")).display(),
                    deploys.display()
                )],
            });
            asset::ActiveModel {
                system_name: Set(name.clone()),
                common_name: Set(format!("{name}.chaos.test")),
                subject_alternative_name: Set(serde_json::json!([format!("{name}.chaos.test")])),
                certificate_authority: Set("internal".into()),
                certificate_expiration: Set(None),
                host_platform: Set("local".into()),
                certificate_validation: Set(true),
                key_algorithm: Set("ecdsa-p256".into()),
                settings: Set(settings),
                state: Set(AssetState::Due),
                next_due_at: Set(Some(now)),
                updated_at: Set(now),
                ..Default::default()
            }
        })
        .collect();
    for chunk in rows.chunks(1000) {
        asset::Entity::insert_many(chunk.to_vec()).exec_without_returning(db).await?;
    }
    Ok(())
}

async fn ok_count(db: &DatabaseConnection) -> Option<u64> {
    let q = asset::Entity::find().filter(asset::Column::State.eq(AssetState::Ok)).count(db);
    tokio::time::timeout(Duration::from_secs(2), q).await.ok()?.ok()
}

/// Runs one chaos (or fault-free) run in a fresh vhost and database of `world`.
pub async fn run(world: &ChaosWorld, opts: ChaosOpts) -> anyhow::Result<ChaosReport> {
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let vhost = format!("chaos-{tag}");
    {
        let node = world.rabbit.lock().await;
        node.ctl(&["add_vhost", &vhost])?;
        node.ctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])?;
    }
    let amqp_url = format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", world.rabbit_port);
    let db_url = world.pg.create_db(&format!("chaos_{tag}"))?;
    let dir = tempfile::Builder::new().prefix("cf-chaos-").tempdir_in("/var/tmp")?;
    std::fs::create_dir_all(dir.path().join("certs"))?;
    std::fs::write(dir.path().join("routes.toml"), crate::ROUTES)?;
    let config = dir.path().join("certfleet.toml");
    std::fs::write(
        &config,
        format!(
            "database_url = \"{db_url}\"\namqp_url = \"{amqp_url}\"\nroutes_file = \"{}\"\nscan_interval = \"1s\"\n\
             scan_page_size = 5000\nlease = \"{}s\"\nfailed_retry_after = \"5s\"\nleader_lease = \"6s\"\n\
             leader_renew = \"2s\"\n[retry]\nbase_delay = \"1s\"\nmax_delay = \"5s\"\n\
             [issuers.internal]\nkind = \"internal\"\nca_dir = \"{}\"\n",
            dir.path().join("routes.toml").display(),
            opts.lease.as_secs(),
            dir.path().join("ca").display(),
        ),
    )?;
    let deploys = dir.path().join("deploys.log");
    let db = certfleet_shared::db::connect(&db_url, Duration::from_secs(30)).await?;
    seed(&db, dir.path(), &deploys, opts.assets).await?;
    let run = Run { dir, config, deploys, opts: opts.clone() };

    // The first worker creates the CA; the others start once it is there.
    let mut workers: Vec<Proc> = vec![run.worker(0)?];
    let ca = run.dir.path().join("ca/root/ca.crt");
    let t = Instant::now();
    while !ca.exists() {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(60),
            "the first worker made no CA:\n{}",
            workers[0].log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for n in 1..opts.workers {
        workers.push(run.worker(n)?);
    }
    let mut next_worker = opts.workers;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let start = Instant::now();
    let mut scheduler = run.spawn("certfleet-scheduler", "scheduler", &[])?;
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut faults: Vec<(&'static str, Duration)> = Vec::new();
    let mut exits = Vec::new();
    let mut next_kill = opts.kill_every;
    let mut next_restart = Duration::ZERO;
    let big: [&'static str; 3] = ["scheduler-kill", "postgres-restart", "rabbitmq-restart"];
    let mut big_done = [false; 3];
    let mut pending: Option<tokio::task::JoinHandle<anyhow::Result<()>>> = None;
    let mut rng = uuid::Uuid::new_v4().as_u64_pair().1;
    let mut done = 0;
    let finished = loop {
        let now = start.elapsed();
        if let Some(n) = ok_count(&db).await {
            done = n;
            samples.push((now, n));
            if n >= opts.assets {
                break true;
            }
        }
        if now > opts.deadline {
            break false;
        }
        // Processes that ended by themselves (a worker started while the broker is down
        // stops at once with an error) are restarted, as a service manager would: at most
        // once every 2 s, as systemd's RestartSec would space them.
        if now >= next_restart {
            next_restart = now + Duration::from_secs(2);
            for (i, w) in workers.iter_mut().enumerate() {
                if let Some(status) = w.wait_exit(Duration::ZERO) {
                    exits.push(format!("worker {i} exited ({status}) at {now:?}"));
                    next_worker += 1;
                    *w = run.worker(next_worker)?;
                }
            }
            if let Some(status) = scheduler.wait_exit(Duration::ZERO) {
                exits.push(format!("scheduler exited ({status}) at {now:?}"));
                scheduler = run.spawn("certfleet-scheduler", "scheduler", &[])?;
            }
        }
        if opts.faults {
            if now >= next_kill {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let i = usize::try_from((rng >> 33) % opts.workers as u64).unwrap_or(0);
                workers[i].kill9();
                next_worker += 1;
                workers[i] = run.worker(next_worker)?;
                faults.push(("worker-kill", now));
                next_kill = now + opts.kill_every;
            }
            let busy = pending.as_ref().is_some_and(|h| !h.is_finished());
            if !busy {
                if let Some(h) = pending.take() {
                    h.await.context("fault task")??;
                }
                for k in 0..3 {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
                    let due = (opts.assets as f64 * opts.fault_at[k]) as u64;
                    if big_done[k] || done < due {
                        continue;
                    }
                    big_done[k] = true;
                    faults.push((big[k], now));
                    match k {
                        0 => {
                            scheduler.kill9();
                            scheduler = run.spawn("certfleet-scheduler", "scheduler", &[])?;
                        }
                        1 => {
                            let pg = world.pg.clone();
                            pending = Some(tokio::task::spawn_blocking(move || pg.restart().map(|_| ())));
                        }
                        _ => {
                            let node = world.rabbit.clone();
                            pending = Some(tokio::task::spawn_blocking(move || {
                                node.blocking_lock().restart_node(Duration::from_secs(120)).map(|_| ())
                            }));
                        }
                    }
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let elapsed = start.elapsed();
    if let Some(h) = pending.take() {
        h.await.context("fault task")??;
    }
    // Results still in flight settle before the books are read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    scheduler.terminate(Duration::from_secs(20));
    for w in &mut workers {
        w.terminate(Duration::from_secs(20));
    }

    let mut report = tally(&db, &run.deploys, opts.assets).await?;
    report.elapsed = elapsed;
    report.finished = finished;
    report.unexpected_exits = exits;
    report.longest_gap = longest_gap(&samples, Duration::ZERO, elapsed);
    report.faults = stalls(&samples, &faults, elapsed);
    db.close().await.ok();
    if std::env::var_os("CHAOS_KEEP").is_some() {
        eprintln!("chaos: keeping {}", run.dir.keep().display());
    }
    Ok(report)
}

/// Times at which the rotated count rose (from the first rotation on: start-up is no stall).
fn progress(samples: &[(Duration, u64)]) -> Vec<Duration> {
    let mut out = Vec::new();
    let mut last = 0;
    for (t, n) in samples {
        if *n > last {
            out.push(*t);
            last = *n;
        }
    }
    out
}

/// The longest gap between progress times that begins in `[from, to)`.
fn longest_gap(samples: &[(Duration, u64)], from: Duration, to: Duration) -> Duration {
    let p = progress(samples);
    let mut longest = Duration::ZERO;
    for pair in p.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // A gap that was already running when `from` came is counted from `from`.
        let begin = a.max(from);
        if b > from && begin < to {
            longest = longest.max(b - begin);
        }
    }
    longest
}

fn stalls(samples: &[(Duration, u64)], faults: &[(&'static str, Duration)], end: Duration) -> Vec<Fault> {
    faults
        .iter()
        .enumerate()
        .map(|(i, (kind, at))| {
            let to = faults.get(i + 1).map_or(end, |f| f.1);
            Fault { kind, at: *at, stall: longest_gap(samples, *at, to.max(*at + Duration::from_millis(1))) }
        })
        .collect()
}

/// Reads the device-side deploy log and the inventory.
async fn tally(db: &DatabaseConnection, deploys: &Path, n: u64) -> anyhow::Result<ChaosReport> {
    let text = std::fs::read_to_string(deploys).unwrap_or_default();
    // Per job id: its reloads, and the distinct certificates they found on disk.
    let mut per_job: HashMap<&str, (u64, HashSet<&str>)> = HashMap::new();
    let mut per_asset: HashMap<&str, HashSet<&str>> = HashMap::new();
    let mut lines = 0;
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(asset), Some(job), Some(cert)) = (parts.next(), parts.next(), parts.next()) else { continue };
        lines += 1;
        let entry = per_job.entry(job).or_default();
        entry.0 += 1;
        entry.1.insert(cert);
        per_asset.entry(asset).or_default().insert(job);
    }
    let assets = asset::Entity::find().all(db).await?;
    let rotations = rotation::Entity::find().all(db).await?;
    let pending_dead: HashSet<i64> = dead_letter::Entity::find()
        .filter(dead_letter::Column::Status.eq(DeadLetterStatus::Pending))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|d| d.asset_id)
        .collect();
    let mut terminal_rows: HashMap<i64, (u64, u64)> = HashMap::new();
    for r in &rotations {
        let e = terminal_rows.entry(r.asset_id).or_default();
        e.0 += 1;
        if matches!(r.status, RotationStatus::Rotated | RotationStatus::RolledBack | RotationStatus::Dead) {
            e.1 += 1;
        }
    }
    let not_one_terminal = assets
        .iter()
        .filter(|a| {
            let terminal_state = matches!(a.state, AssetState::Ok | AssetState::Failed | AssetState::Dead);
            let rows = terminal_rows.get(&a.id).copied().unwrap_or_default();
            !terminal_state || rows != (1, 1) || (a.state == AssetState::Ok && pending_dead.contains(&a.id))
        })
        .count() as u64;
    let ok = assets.iter().filter(|a| a.state == AssetState::Ok).count() as u64;
    Ok(ChaosReport {
        assets: n,
        lost: n.saturating_sub(ok),
        never_deployed: assets.iter().filter(|a| !per_asset.contains_key(a.system_name.as_str())).count() as u64,
        double_deploys: per_job.values().filter(|(_, certs)| certs.len() > 1).count() as u64,
        extra_deploys: per_job.values().map(|(_, certs)| certs.len().saturating_sub(1) as u64).sum(),
        repeated_reloads: per_job.values().map(|(reloads, certs)| reloads - certs.len() as u64).sum(),
        assets_by_two_jobs: per_asset.values().filter(|jobs| jobs.len() > 1).count() as u64,
        not_one_terminal,
        deploys: lines,
        ..ChaosReport::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(u64, u64)]) -> Vec<(Duration, u64)> {
        v.iter().map(|(ms, n)| (Duration::from_millis(*ms), *n)).collect()
    }

    #[test]
    fn a_gap_counts_for_the_fault_whose_window_it_runs_in() {
        // Progress at 1000 (start-up before it is no stall), 1250, 9000 (7.75 s from 1250), 9250.
        let samples = s(&[(0, 0), (400, 0), (1000, 10), (1250, 20), (1500, 20), (5000, 20), (9000, 30), (9250, 40)]);
        let faults = [("worker-kill", Duration::from_millis(500)), ("rabbitmq-restart", Duration::from_millis(1200))];
        let f = stalls(&samples, &faults, Duration::from_millis(9250));
        assert_eq!(f[0].stall, Duration::from_millis(250), "the worker kill's window holds the gap from 1000 to 1250");
        assert_eq!(f[1].stall, Duration::from_millis(7750), "the gap that began after the restart runs to 9000");
        assert_eq!(longest_gap(&samples, Duration::ZERO, Duration::from_secs(10)), Duration::from_millis(7750));
    }
}
