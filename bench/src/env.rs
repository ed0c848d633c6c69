//! A private world per benchmark: a RabbitMQ vhost, a directory with config and CA, and an
//! inventory (SQLite file or a fresh PostgreSQL database), seeded in bulk.

use anyhow::{Context as _, bail};
use certfleet_shared::db::entity::asset::{self, AssetState};
use chrono::{Duration as ChronoDuration, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct BenchEnv {
    pub dir: tempfile::TempDir,
    pub vhost: String,
    pub vhost_url: String,
    pub config: PathBuf,
    db: DatabaseConnection,
    pg_name: Option<String>,
}

pub struct Proc(Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50)); // harness code, not a service
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.parent().context("exe dir")?.join(name);
    anyhow::ensure!(path.exists(), "{} missing: cargo build --release --bins", path.display());
    Ok(path)
}

fn rabbitmqctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl").args(args).output()?;
    if !out.status.success() {
        bail!("rabbitmqctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl BenchEnv {
    pub async fn new(backend: &str, extra: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| "/var/tmp".into()))?;
        let vhost = format!("certfleet-bench-{}", uuid::Uuid::new_v4().simple());
        rabbitmqctl(&["add_vhost", &vhost])?;
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"])?;
        let vhost_url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");
        let pg_base =
            std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let (db_url, pg_name) = match backend {
            "sqlite" => (format!("sqlite://{}/inventory.db?mode=rwc", dir.path().display()), None),
            "postgres" => {
                let name = format!("certfleet_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(format!("{pg_base}/postgres")).await?;
                admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
                (format!("{pg_base}/{name}"), Some(name))
            }
            other => bail!("unknown backend {other:?} (sqlite or postgres)"),
        };
        std::fs::write(dir.path().join("routes.toml"), "[[route]]\nhost_platform = \"local\"\ndriver = \"local\"\n")?;
        std::fs::create_dir_all(dir.path().join("certs"))?;
        let config = dir.path().join("certfleet.toml");
        std::fs::write(
            &config,
            format!(
                "database_url = \"{db_url}\"\namqp_url = \"{vhost_url}\"\nroutes_file = \"{}\"\n{extra}\n\
                 [issuers.internal]\nkind = \"internal\"\nca_dir = \"{}\"\n",
                dir.path().join("routes.toml").display(),
                dir.path().join("ca").display()
            ),
        )?;
        // The bench's own pool (the direct baselines) has the size the spawned processes
        // get from the same variable.
        let pool = std::env::var("CERTFLEET_DATABASE_MAX_CONNECTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(certfleet_shared::db::DEFAULT_MAX_CONNECTIONS);
        let db = certfleet_shared::db::connect_pool(&db_url, Duration::from_secs(30), pool).await?;
        Ok(Self { dir, vhost, vhost_url, config, db, pg_name })
    }

    pub fn row(&self, i: u64, due: bool, settings: serde_json::Value) -> asset::ActiveModel {
        let now = Utc::now();
        asset::ActiveModel {
            system_name: Set(format!("a-{i:07}")),
            common_name: Set(format!("a-{i:07}.bench.test")),
            subject_alternative_name: Set(serde_json::json!([format!("a-{i:07}.bench.test")])),
            certificate_authority: Set("internal".into()),
            certificate_expiration: Set(None),
            host_platform: Set("local".into()),
            certificate_validation: Set(true),
            key_algorithm: Set("ecdsa-p256".into()),
            settings: Set(settings),
            state: Set(if due { AssetState::Due } else { AssetState::Ok }),
            not_before: Set((!due).then(|| now - ChronoDuration::days(1))),
            not_after: Set((!due).then(|| now + ChronoDuration::days(3))),
            // A decision is due now (the import path does the same).
            next_due_at: Set(Some(now)),
            updated_at: Set(now),
            ..Default::default()
        }
    }

    pub async fn insert(&self, rows: Vec<asset::ActiveModel>) -> anyhow::Result<()> {
        for chunk in rows.chunks(1000) {
            asset::Entity::insert_many(chunk.to_vec()).exec_without_returning(&self.db).await?;
        }
        Ok(())
    }

    /// `n` due `local` assets writing into this directory.
    pub async fn seed_local(&self, n: u64) -> anyhow::Result<()> {
        let certs = self.dir.path().join("certs");
        let rows = (0..n)
            .map(|i| {
                let settings = serde_json::json!({
                    "cert_path": certs.join(format!("a-{i}.crt")),
                    "key_path": certs.join(format!("a-{i}.key")),
                });
                self.row(i, true, settings)
            })
            .collect();
        self.insert(rows).await
    }

    /// `n` due assets for `issuer` on `host_platform`; `cn_and_settings(i)` gives each one's
    /// common name (also its only SAN) and driver settings.
    pub async fn seed_fleet(
        &self,
        n: u64,
        issuer: &str,
        host_platform: &str,
        cn_and_settings: impl Fn(u64) -> (String, serde_json::Value),
    ) -> anyhow::Result<()> {
        let rows = (0..n)
            .map(|i| {
                let (cn, settings) = cn_and_settings(i);
                let mut row = self.row(i, true, settings);
                row.common_name = Set(cn.clone());
                row.subject_alternative_name = Set(serde_json::json!([cn]));
                row.certificate_authority = Set(issuer.to_owned());
                row.host_platform = Set(host_platform.to_owned());
                row
            })
            .collect();
        self.insert(rows).await
    }

    /// Replaces the routing table.
    pub fn write_routes(&self, text: &str) -> anyhow::Result<()> {
        Ok(std::fs::write(self.dir.path().join("routes.toml"), text)?)
    }

    /// How many of `devices/dev-<i>/` (i < n) hold a certificate and saw a reload.
    pub fn count_rotated_with_cert(&self, devices: &std::path::Path, n: u64) -> anyhow::Result<u64> {
        Ok((0..n)
            .filter(|i| {
                let d = devices.join(format!("dev-{i}"));
                d.join("cert.pem").exists() && d.join("reloaded").exists()
            })
            .count() as u64)
    }

    /// Runs `BINARY --config CONFIG ARGS` under GNU time: (wall seconds, peak RSS KiB, stdout).
    pub fn timed(&self, binary: &str, args: &[&str]) -> anyhow::Result<(f64, u64, String)> {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "TIME %e %M"])
            .arg(sibling(binary)?)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(out.status.success(), "{binary} failed: {stderr}");
        let line = stderr.lines().rev().find(|l| l.starts_with("TIME ")).context("no time output")?;
        let mut parts = line.split_whitespace().skip(1);
        let wall: f64 = parts.next().context("wall")?.parse()?;
        let rss: u64 = parts.next().context("rss")?.parse()?;
        Ok((wall, rss, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// Empties the `local` job queue.
    pub fn purge_jobs(&self) {
        let _ = rabbitmqctl(&["purge_queue", "-p", &self.vhost, "certfleet.jobs.local"]);
    }

    /// Runs `certfleet-scheduler --once ARGS` under GNU time: (wall seconds, peak RSS KiB,
    /// stdout).
    pub fn timed_once_with(&self, args: &[&str]) -> anyhow::Result<(f64, u64, String)> {
        let out = Command::new("/usr/bin/time")
            .args(["-f", "TIME %e %M %U %S"])
            .arg(sibling("certfleet-scheduler")?)
            .arg("--config")
            .arg(&self.config)
            .arg("--once")
            .args(args)
            .env("RUST_LOG", "warn")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(out.status.success(), "scheduler failed: {stderr}");
        let line = stderr.lines().rev().find(|l| l.starts_with("TIME ")).context("no time output")?;
        let mut parts = line.split_whitespace().skip(1);
        let wall: f64 = parts.next().context("wall")?.parse()?;
        let rss: u64 = parts.next().context("rss")?.parse()?;
        let user: f64 = parts.next().context("user")?.parse()?;
        let sys: f64 = parts.next().context("sys")?.parse()?;
        eprintln!("scheduler CPU: user {user:.2}s sys {sys:.2}s");
        Ok((wall, rss, String::from_utf8_lossy(&out.stdout).into_owned()))
    }

    /// The inventory.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// A release binary with this config, not started.
    pub fn command(&self, binary: &str) -> anyhow::Result<Command> {
        let mut cmd = Command::new(sibling(binary)?);
        cmd.arg("--config").arg(&self.config).env("RUST_LOG", "warn");
        Ok(cmd)
    }

    pub fn spawn(&self, binary: &str, args: &[&str]) -> anyhow::Result<Proc> {
        let log =
            std::fs::File::create(self.dir.path().join(format!("{binary}-{}.log", uuid::Uuid::new_v4().simple())))?;
        let child = Command::new(sibling(binary)?)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        Ok(Proc(child))
    }

    /// Waits until `n` assets are in `state`.
    pub async fn wait_state(&self, state: AssetState, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = asset::Entity::find().filter(asset::Column::State.eq(state)).count(&self.db).await?;
            if done >= n {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "only {done} of {n} {} after {timeout:?}", state.as_str());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `n` assets are `ok`.
    pub async fn wait_rotated(&self, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let done = asset::Entity::find().filter(asset::Column::State.eq(AssetState::Ok)).count(&self.db).await?;
            if done >= n {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "only {done} of {n} rotated after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn cleanup(self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.vhost]);
        let _ = self.db.close().await;
        if let Some(name) = self.pg_name {
            let base =
                std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
            if let Ok(admin) = sea_orm::Database::connect(format!("{base}/postgres")).await {
                let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
            }
        }
    }
}
