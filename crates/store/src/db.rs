use std::sync::Once;
use std::time::Duration;

use kernel::{Error, ErrorCode};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

/// A write transaction. Everything a use case changes — state, audit, outbox — goes in one.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

/// Which database is behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Pool sizing and timeouts.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Maximum connections of the read pool (and of the write pool on PostgreSQL).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before failing with `unavailable`.
    pub acquire_timeout: Duration,
    /// SQLite: how long a connection waits on a lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

/// A connection to the platform's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db {
    read: AnyPool,
    write: AnyPool,
    backend: Backend,
    /// The database file, for SQLite.
    sqlite_path: Option<std::path::PathBuf>,
}

/// Pool figures for `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStats {
    pub read_size: u32,
    pub read_idle: usize,
    pub write_size: u32,
    pub write_idle: usize,
}

static DRIVERS: Once = Once::new();

/// Registers the SQLite and PostgreSQL drivers for `Any` connections (idempotent).
pub fn install_drivers() {
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

impl Db {
    /// Connects to `sqlite://path` or `postgres://…`.
    pub async fn connect(url: &str, opts: &DbOptions) -> Result<Db, Error> {
        install_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(Error::new(ErrorCode::BadRequest, "database url must start with sqlite: or postgres://"));
        };
        let connect: AnyConnectOptions = url
            .parse()
            .map_err(|e| Error::new(ErrorCode::BadRequest, format!("database url is not valid: {e}")).with_source(e))?;
        let db = match backend {
            Backend::Sqlite => {
                let busy_ms = opts.busy_timeout.as_millis();
                // 16 MiB page cache per connection and memory-mapped reads: bulk reads (audit
                // verification, exports) are bound by page access.
                let pragmas = format!(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA busy_timeout = {busy_ms}; PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456; \
                     PRAGMA temp_store = MEMORY;"
                );
                let make = |max: u32| {
                    let pragmas = pragmas.clone();
                    AnyPoolOptions::new().max_connections(max).acquire_timeout(opts.acquire_timeout).after_connect(
                        move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move {
                                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(pragmas))).await?;
                                Ok(())
                            })
                        },
                    )
                };
                // Open the writer first so the file and WAL mode exist before readers connect.
                let write = make(1).connect_with(connect.clone()).await.map_err(db_error)?;
                let read = make(opts.max_connections).connect_with(connect).await.map_err(db_error)?;
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                let sqlite_path = (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path));
                Db { read, write, backend, sqlite_path }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(opts.max_connections)
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(db_error)?;
                Db { read: pool.clone(), write: pool, backend, sqlite_path: None }
            }
        };
        Ok(db)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The SQLite database file, for native bulk readers (None on PostgreSQL).
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        self.sqlite_path.as_deref()
    }

    /// The pool for reads. On SQLite it never sees uncommitted writes of the write pool.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for writes outside a transaction (prefer [`Db::begin`]).
    pub fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> Result<Tx, Error> {
        self.write.begin().await.map_err(db_error)
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.read).await.map_err(db_error)?;
        Ok(())
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            read_size: self.read.size(),
            read_idle: self.read.num_idle(),
            write_size: self.write.size(),
            write_idle: self.write.num_idle(),
        }
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

/// Maps a database error to a client-visible error, keeping the cause for the logs.
pub fn db_error(e: sqlx::Error) -> Error {
    match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            Error::new(ErrorCode::Unavailable, "the database is not reachable; try again shortly").with_source(e)
        }
        sqlx::Error::RowNotFound => Error::new(ErrorCode::NotFound, "not found"),
        _ if is_unique_violation(&e) => {
            Error::new(ErrorCode::AlreadyExists, "an object with the same key already exists").with_source(e)
        }
        _ => Error::internal(e),
    }
}

/// True when `e` is a unique-constraint violation on either backend.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// `.db()?` turns a sqlx result into a platform result.
pub trait DbResultExt<T> {
    fn db(self) -> Result<T, Error>;
}

impl<T> DbResultExt<T> for Result<T, sqlx::Error> {
    fn db(self) -> Result<T, Error> {
        self.map_err(db_error)
    }
}
