//! Test support: a fresh database per test on every configured backend.
//!
//! SQLite always runs. PostgreSQL runs when `ZHONGSHU_TEST_POSTGRES_URL` names a server the
//! tests may create databases on; under CI (`CI` set) its absence is an error, so the
//! PostgreSQL half can never be skipped unnoticed.

use std::path::PathBuf;

use crate::{Backend, Db, DbOptions, MigrationSet, migrate};

pub const POSTGRES_URL_ENV: &str = "ZHONGSHU_TEST_POSTGRES_URL";

/// The backends storage tests run on here.
pub fn test_backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if std::env::var(POSTGRES_URL_ENV).is_ok_and(|u| !u.is_empty()) {
        v.push(Backend::Postgres);
    } else if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
        panic!("{POSTGRES_URL_ENV} must be set under CI so the PostgreSQL half of the storage suite runs");
    }
    v
}

/// A database made for one test. The SQLite file lives as long as this value.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    /// Creates an empty database on `backend` and applies `sets`.
    pub async fn new(backend: Backend, sets: &[&MigrationSet]) -> TestDb {
        let (url, dir) = match backend {
            Backend::Sqlite => {
                let dir = TempDir::new();
                (format!("sqlite://{}?mode=rwc", dir.0.join("test.db").display()), Some(dir))
            }
            Backend::Postgres => (create_pg_database().await, None),
        };
        let opts = DbOptions { max_connections: 4, ..DbOptions::default() };
        let db = Db::connect(&url, &opts).await.expect("connect test database");
        migrate(&db, sets).await.expect("migrate test database");
        TestDb { db, url, _dir: dir }
    }
}

async fn create_pg_database() -> String {
    let admin_url = std::env::var(POSTGRES_URL_ENV).expect("postgres url");
    let admin = Db::connect(&admin_url, &DbOptions { max_connections: 1, ..DbOptions::default() })
        .await
        .expect("connect to the PostgreSQL test server");
    let name = format!("zs_test_{}", uuid::Uuid::now_v7().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(admin.writer())
        .await
        .expect("create test database");
    admin.close().await;
    // Replace the database name (the path after the host) in the admin URL.
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin_url.clone(), String::new()),
    };
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_end = base[after_scheme..].find('/').map(|i| i + after_scheme).unwrap_or(base.len());
    format!("{}/{name}{query}", &base[..host_end])
}

/// A temporary directory removed on drop (kept when `ZHONGSHU_KEEP_TEST_DIRS` is set).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let dir = std::env::temp_dir().join(format!("zhongshu-test-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("ZHONGSHU_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
