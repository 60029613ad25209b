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

    /// The backend of a connection or transaction.
    pub fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") { Backend::Sqlite } else { Backend::Postgres }
    }

    /// `rows` parenthesised lists of `cols` placeholders, numbered from `first` (1-based), for a
    /// statement whose every value is bound in the order it appears — a multi-row INSERT, or a
    /// row source of `SELECT … UNION ALL SELECT …` written with [`Backend::mark`].
    ///
    /// SQLite gets `?`: it binds `$n` by looking each name up in a list, so a statement of n
    /// parameters costs O(n²) to bind, while `?` binds by position. (Do not mix the two in one
    /// statement: sqlx counts `?` on its own.)
    pub fn values(self, rows: usize, cols: usize, first: usize) -> String {
        let mut sql = String::with_capacity(rows * (cols * 5 + 4));
        for r in 0..rows {
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..cols {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&self.mark(first + r * cols + c));
            }
            sql.push(')');
        }
        sql
    }

    /// One row of a row source bound in order, `SELECT CAST(? AS type) AS name, …`, its values
    /// numbered from `first`: `UPDATE … FROM (SELECT … UNION ALL SELECT …) AS v` updates many
    /// rows in one statement (SQLite cannot name the columns of a VALUES list).
    pub fn select_row(self, first: usize, cols: &[(&str, &str)]) -> String {
        let mut sql = String::from("SELECT ");
        for (i, (name, ty)) in cols.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("CAST({} AS {ty}) AS {name}", self.mark(first + i)));
        }
        sql
    }

    /// The placeholder of the `n`-th value (1-based) of a statement bound in order: `?` on
    /// SQLite, `$n` on PostgreSQL (see [`Backend::values`]).
    pub fn mark(self, n: usize) -> String {
        match self {
            Backend::Sqlite => "?".into(),
            Backend::Postgres => format!("${n}"),
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
    /// Held by every clone: the SQLite checkpointer stops when the last one is dropped.
    _alive: std::sync::Arc<()>,
}

/// SQLite: WAL pages after which the writer checkpoints in its own commit — a safety net only;
/// the checkpointer task keeps the WAL short without holding up the writer.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;
/// SQLite: how often the checkpointer copies committed pages from the WAL into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

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
                let make = |max: u32, extra: &str| {
                    let pragmas = format!("{pragmas} {extra}");
                    // No ping before handing out a connection: an in-process SQLite connection
                    // cannot have been lost, each ping is a round trip to its worker thread, and
                    // a request cancelled during that ping would drop the connection (sqlx's
                    // `Pool::acquire` notes) — for the single writer, a reconnect.
                    AnyPoolOptions::new()
                        .max_connections(max)
                        .acquire_timeout(opts.acquire_timeout)
                        .test_before_acquire(false)
                        .after_connect(move |conn, _| {
                            let pragmas = pragmas.clone();
                            Box::pin(async move {
                                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(pragmas))).await?;
                                Ok(())
                            })
                        })
                };
                // Open the writer first so the file and WAL mode exist before readers connect.
                let autocheckpoint = format!("PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT_PAGES};");
                let write = make(1, &autocheckpoint).connect_with(connect.clone()).await.map_err(db_error)?;
                let read = make(opts.max_connections, "").connect_with(connect).await.map_err(db_error)?;
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                let sqlite_path = (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path));
                let alive = std::sync::Arc::new(());
                if sqlite_path.is_some() {
                    spawn_checkpointer(read.clone(), std::sync::Arc::downgrade(&alive));
                }
                Db { read, write, backend, sqlite_path, _alive: alive }
            }
            Backend::Postgres => {
                let pool = AnyPoolOptions::new()
                    .max_connections(opts.max_connections)
                    .acquire_timeout(opts.acquire_timeout)
                    .connect_with(connect)
                    .await
                    .map_err(db_error)?;
                Db { read: pool.clone(), write: pool, backend, sqlite_path: None, _alive: std::sync::Arc::new(()) }
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

/// Checkpoints the SQLite WAL from a reader connection every `CHECKPOINT_EVERY`, so that the
/// writer's commits do not (SQLite's own automatic checkpoint runs inside the committing
/// connection, holding up every write queued behind it). Passive: it never waits for readers or
/// the writer. Ends when the `Db` is dropped or closed.
fn spawn_checkpointer(read: AnyPool, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() || read.is_closed() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&read).await {
                if read.is_closed() {
                    break;
                }
                tracing::warn!(error = %e, "WAL checkpoint failed; the writer's own checkpoint takes over");
            }
        }
    });
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

/// Rows per multi-row statement for bulk writers (with [`chunks_pow2`]): each statement is a
/// round trip to SQLite's worker thread, so fewer is faster (32 rather than 8–16: +10 % intake,
/// `zs-bench grid-intake`). Placeholders are `?` on SQLite ([`Backend::values`]), which bind
/// without the linear name lookup `$n` costs.
pub const ROWS_PER_STATEMENT: usize = 32;

/// Splits `items` into chunks of `max` (a power of two), and what is left into chunks of
/// decreasing powers of two (45 by 16: 16, 16, 8, 4, 1). A multi-row statement written per chunk
/// then has at most log2(max) + 1 shapes, whose prepared forms stay in each connection's
/// statement cache instead of pushing each other out.
pub fn chunks_pow2<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    debug_assert!(max.is_power_of_two());
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max { max } else { 1 << (usize::BITS - 1 - rest.len().leading_zeros()) };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// `items` repeated at the end up to the next power of two, for an `IN (…)` list: as few
/// statement shapes as [`chunks_pow2`] gives, and the same answer.
pub fn padded_pow2<T: Clone>(items: &[T]) -> Vec<T> {
    let mut out = items.to_vec();
    if let Some(last) = items.last() {
        out.resize(items.len().next_power_of_two(), last.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_in_powers_of_two() {
        let v: Vec<u32> = (0..45).collect();
        let sizes: Vec<usize> = chunks_pow2(&v, 16).map(<[u32]>::len).collect();
        assert_eq!(sizes, [16, 16, 8, 4, 1]);
        let all: Vec<u32> = chunks_pow2(&v, 16).flatten().copied().collect();
        assert_eq!(all, v);
        assert_eq!(chunks_pow2::<u32>(&[], 8).count(), 0);
        assert_eq!(padded_pow2(&[1, 2, 3]), [1, 2, 3, 3]);
        assert_eq!(padded_pow2(&[1, 2]), [1, 2]);
        assert!(padded_pow2::<u8>(&[]).is_empty());
    }

    #[test]
    fn placeholders_per_backend() {
        assert_eq!(Backend::Sqlite.values(2, 2, 1), "(?, ?), (?, ?)");
        assert_eq!(Backend::Postgres.values(2, 2, 3), "($3, $4), ($5, $6)");
        assert_eq!(
            Backend::Postgres.select_row(1, &[("id", "TEXT"), ("n", "BIGINT")]),
            "SELECT CAST($1 AS TEXT) AS id, CAST($2 AS BIGINT) AS n"
        );
    }
}
