//! Storage: one [`Db`] over embedded SQLite or PostgreSQL with the same SQL, a versioned
//! migration runner with one folder of migrations per backend and component, and the test
//! harness that runs a storage test on every configured backend.
//!
//! SQL conventions (so one string serves both backends through sqlx's `Any` driver):
//! `$1..$n` placeholders; timestamps are BIGINT unix milliseconds; ids, JSON and enums are TEXT;
//! booleans are BIGINT 0/1.
//!
//! Architecture invariant: on SQLite every write goes through one connection (the write pool has
//! size one), so writers queue in process instead of failing with `SQLITE_BUSY`; readers use a
//! separate pool and never block the writer (WAL).

mod db;
mod filter;
pub mod group;
mod migrate;
pub mod testing;

pub use db::{
    Backend, Db, DbOptions, DbResultExt, PoolStats, ROWS_PER_STATEMENT, Tx, chunks_pow2, db_error, install_drivers,
    is_unique_violation, padded_pow2,
};
pub use filter::{AnyQuery, Value, Where, fetch_page, like_escape};
pub use migrate::{Migration, MigrationSet, migrate};
pub use sqlx::{Any, AnyPool, Row, any::AnyRow};
