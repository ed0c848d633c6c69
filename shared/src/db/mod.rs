//! The inventory database: connection, migrations and the repository functions every
//! process uses. SQLite is the embedded default; PostgreSQL works identically.

pub mod api_keys;
pub mod asset_edits;
pub mod asset_history;
pub mod assets;
pub mod audit;
pub mod bulk;
pub mod dead_letters;
pub mod entity;
pub mod fleet_gauges;
pub mod history;
mod job;
pub mod leader;
pub mod migration;
pub mod overview;
pub mod scan_rows;
pub mod search;
pub mod sessions;
pub mod users;
pub mod workers;

pub use job::{JobBuildError, job_from_asset};

use crate::redact::redact_url;
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;
use std::time::Duration;

/// Errors of the database layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database could not be reached or opened. The URL has its password hidden.
    #[error("cannot open database {url}: {cause}")]
    Connect {
        /// The redacted URL.
        url: String,
        /// The driver's error (in the message, not a `source()`, so a chain never repeats it).
        cause: DbErr,
    },
    /// The database server refused or failed the TCP connection.
    #[error("cannot open database {url}: {reason}")]
    Unreachable {
        /// The redacted URL.
        url: String,
        /// The socket error.
        reason: String,
    },
    /// Opening the database took longer than the connect timeout.
    #[error("cannot open database {url}: timed out after {timeout:?}")]
    ConnectTimeout {
        /// The redacted URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// Applying migrations failed.
    #[error("migrating database {url}: {cause}")]
    Migrate {
        /// The redacted URL.
        url: String,
        /// The driver's error (in the message).
        cause: DbErr,
    },
    /// A query failed.
    #[error("database error: {0}")]
    Query(DbErr),
    /// Input rejected before touching the database.
    #[error("{0}")]
    Invalid(String),
    /// A row that should exist does not.
    #[error("{0} not found")]
    NotFound(String),
    /// A row with the same unique key exists already.
    #[error("{0}")]
    Conflict(String),
}

// The query error is in the message; it is not also a `source()` (a chain would repeat it).
impl From<DbErr> for DbError {
    fn from(e: DbErr) -> Self {
        Self::Query(e)
    }
}

/// `database_max_connections` unless configured.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 8;

/// Opens the inventory database with the default pool size and applies pending migrations.
pub async fn connect(url: &str, timeout: Duration) -> Result<DatabaseConnection, DbError> {
    connect_pool(url, timeout, DEFAULT_MAX_CONNECTIONS).await
}

/// Opens the inventory database with at most `max_connections` pooled connections and
/// applies pending migrations.
pub async fn connect_pool(url: &str, timeout: Duration, max_connections: u32) -> Result<DatabaseConnection, DbError> {
    let redacted = redact_url(url);
    probe_postgres(url, &redacted, timeout).await?;
    let mut opts = ConnectOptions::new(url.to_owned());
    // Each connection to an in-memory SQLite database is a database of its own.
    let max_connections = if url.contains(":memory:") { 1 } else { max_connections.max(1) };
    opts.connect_timeout(timeout)
        .acquire_timeout(timeout.max(Duration::from_secs(30)))
        .max_connections(max_connections)
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            // WAL lets the CLI read while the scheduler writes; the busy timeout makes
            // concurrent writers from several processes wait instead of failing.
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                // Reads map the file (256 MiB at most), so the pooled connections share the
                // operating system's page cache instead of copying pages into their own, and
                // each keeps 16 MiB of pages instead of SQLite's 2 MiB (see BENCHMARKS.md,
                // "Search through the API").
                .pragma("mmap_size", SQLITE_MMAP_BYTES)
                .pragma("cache_size", SQLITE_CACHE_KIB)
        });
    let connecting = async {
        let mut tries = 0u64;
        loop {
            match Database::connect(opts.clone()).await {
                // A new SQLite file switching to WAL while another process does the same
                // answers SQLITE_BUSY before the busy timeout applies: wait and try again.
                Err(e) if is_sqlite_busy(&e) && tries < 20 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                other => return other,
            }
        }
    };
    let db = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(db)) => db,
        Ok(Err(cause)) => return Err(DbError::Connect { url: redacted, cause }),
        Err(_) => return Err(DbError::ConnectTimeout { url: redacted, timeout }),
    };
    migrate(&db).await.map_err(|cause| DbError::Migrate { url: redacted, cause })?;
    Ok(db)
}

/// SQLite's `mmap_size`: how much of the inventory file reads may map.
const SQLITE_MMAP_BYTES: &str = "268435456";
/// SQLite's `cache_size` per connection; negative means KiB.
const SQLITE_CACHE_KIB: &str = "-16384";

/// SQLite's "database is locked" (SQLITE_BUSY, code 5).
fn is_sqlite_busy(e: &DbErr) -> bool {
    use sea_orm::{RuntimeErr, sqlx};
    match e {
        DbErr::Conn(RuntimeErr::SqlxError(err)) | DbErr::Exec(RuntimeErr::SqlxError(err)) => {
            matches!(err.as_ref(), sqlx::Error::Database(d) if d.code().as_deref() == Some("5"))
        }
        _ => false,
    }
}

/// sqlx retries a refused PostgreSQL connection until its timeout; a server that is not
/// there should be one clear error now, so probe the TCP port first.
async fn probe_postgres(url: &str, redacted: &str, timeout: Duration) -> Result<(), DbError> {
    let Ok(parsed) = url::Url::parse(url) else { return Ok(()) };
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Ok(());
    }
    let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else { return Ok(()) };
    let port = parsed.port().unwrap_or(5432);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect((host, port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(DbError::Unreachable { url: redacted.to_owned(), reason: e.to_string() }),
        Err(_) => Err(DbError::ConnectTimeout { url: redacted.to_owned(), timeout }),
    }
}

/// Applies pending migrations. Several processes may start at once; one that loses the
/// race sees an error, waits, and finds nothing pending on a later try.
async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    let mut tries = 0;
    loop {
        match migration::Migrator::up(db, None).await {
            Ok(()) => return Ok(()),
            Err(err) => {
                tries += 1;
                if tries >= 5 {
                    return Err(err);
                }
                tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                if migration::Migrator::get_pending_migrations(db).await.is_ok_and(|p| p.is_empty()) {
                    return Ok(());
                }
            }
        }
    }
}
