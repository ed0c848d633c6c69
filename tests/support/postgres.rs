//! A private PostgreSQL cluster for tests and benchmarks that restart the database: its own
//! data directory (`initdb` into a temp dir), port and socket directory, run as the
//! `postgres` user (PostgreSQL refuses to run as root), stopped and deleted when its guard
//! drops. The machine's cluster on 5432 is never touched.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The OS user the private cluster runs as.
const PG_USER: &str = "postgres";

/// One private PostgreSQL cluster on 127.0.0.1, trust authentication, superuser `postgres`.
pub struct PgNode {
    /// TCP port on 127.0.0.1.
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

/// The newest installed server's `bin` directory (`/usr/lib/postgresql/<major>/bin`).
fn pg_bin() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL server binaries (/usr/lib/postgresql) are not installed")?
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .filter(|(_, p)| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p).context("no initdb under /usr/lib/postgresql/*/bin")
}

/// Runs `program args` as the `postgres` user (through `runuser` when we are root).
fn as_pg(program: &Path, args: &[&str]) -> anyhow::Result<String> {
    let root = nix_is_root();
    let mut cmd = if root {
        let mut c = Command::new("runuser");
        c.arg("-u").arg(PG_USER).arg("--").arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = cmd.args(args).current_dir("/").output().with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} {args:?} failed: {}{}",
            program.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:")).map(|v| v.split_whitespace().next() == Some("0")))
        .unwrap_or(false)
}

/// A TCP port free on 127.0.0.1 now, in 20000..32000 (below the ephemeral range).
fn free_port() -> u16 {
    for _ in 0..1000 {
        let x = uuid::Uuid::new_v4().as_u64_pair().0;
        let p = 20000 + u16::try_from(x % 12000).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port in 20000..32000");
}

impl PgNode {
    /// `initdb` a fresh cluster and start it; fails with the server's log if it does not come up.
    pub fn start() -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        let dir = tempfile::Builder::new().prefix("cf-pg-").tempdir_in("/var/tmp")?;
        if nix_is_root() {
            let st = Command::new("chown").arg("-R").arg(format!("{PG_USER}:")).arg(dir.path()).status()?;
            anyhow::ensure!(st.success(), "chown of {} to {PG_USER} failed", dir.path().display());
        }
        let data = dir.path().join("data");
        let data_s = data.to_str().context("utf-8 temp path")?;
        as_pg(&bin.join("initdb"), &["-D", data_s, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])?;
        let mut node = Self { port: 0, bin, dir };
        let mut last = String::new();
        // A port chosen free can be taken before the server binds it: try a few times.
        for _ in 0..3 {
            node.port = free_port();
            match node.pg_ctl_start() {
                Ok(()) => return Ok(node),
                Err(e) => last = format!("{e:#}"),
            }
        }
        drop(node); // Drop's stop finds nothing running; the temp dir goes
        bail!("private PostgreSQL did not start: {last}")
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn log(&self) -> String {
        self.dir.path().join("server.log").display().to_string()
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=128MB",
            self.port,
            self.dir.path().display()
        );
        as_pg(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-l", &self.log(), "-o", &opts, "-w", "-t", "120", "start"],
        )
        .map(|_| ())
        .with_context(|| std::fs::read_to_string(self.log()).unwrap_or_default())
    }

    /// The server URL without a database (`postgres://postgres@127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Creates database `name` and returns its URL.
    pub fn create_db(&self, name: &str) -> anyhow::Result<String> {
        as_pg(&self.bin.join("createdb"), &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", name])?;
        Ok(format!("{}/{name}", self.base_url()))
    }

    /// A fast restart (`pg_ctl restart -m fast`): every client connection is cut and the
    /// server is back when this returns. Returns how long the server was unavailable.
    pub fn restart(&self) -> anyhow::Result<Duration> {
        let t = Instant::now();
        as_pg(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "fast", "-w", "-t", "120", "stop"])?;
        self.pg_ctl_start()?;
        Ok(t.elapsed())
    }
}

impl Drop for PgNode {
    fn drop(&mut self) {
        let _ = as_pg(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// A fresh database of its own on the machine's PostgreSQL (`TEST_POSTGRES_URL`, default
/// 127.0.0.1:5432), for a test whose inventory is PostgreSQL. [`PgDb::drop_db`] removes it.
pub struct PgDb {
    admin: sea_orm::DatabaseConnection,
    name: String,
    /// The database's URL, for `database_url`.
    pub url: String,
}

impl PgDb {
    /// Creates `<prefix>_<uuid>`.
    pub async fn new(prefix: &str) -> Self {
        use sea_orm::ConnectionTrait as _;
        let base = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let admin = sea_orm::Database::connect(format!("{base}/postgres")).await.expect("PostgreSQL");
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.expect("CREATE DATABASE");
        Self { admin, url: format!("{base}/{name}"), name }
    }

    /// Drops the database, closing what still uses it.
    pub async fn drop_db(self) {
        use sea_orm::ConnectionTrait as _;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        self.admin.execute_unprepared(&sql).await.expect("DROP DATABASE");
    }
}
