//! A small versioned migration runner: each component ships its migrations for both backends,
//! applied in order, each in its own transaction, recorded with a checksum so an edited
//! migration is refused instead of silently diverging.

use kernel::{Error, ErrorCode};
use sqlx::Row;

use crate::{Backend, Db, DbResultExt};

/// One migration, with the SQL for each backend.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

/// The migrations of one component (crate), in version order.
#[derive(Debug, Clone, Copy)]
pub struct MigrationSet {
    pub component: &'static str,
    pub migrations: &'static [Migration],
}

/// Declares a component's migrations. `N => "name"` reads
/// `migrations/{sqlite,postgres}/name.sql`; `N => portable "name"` reads one
/// `migrations/portable/name.sql` written in the SQL both backends share.
#[macro_export]
macro_rules! migrations {
    ($component:literal: $( $version:literal => $($kind:ident)? $name:literal ),* $(,)?) => {
        $crate::MigrationSet {
            component: $component,
            migrations: &[ $( $crate::migrations!(@one $version, $($kind)? $name), )* ],
        }
    };
    (@one $version:literal, portable $name:literal) => {{
        const SQL: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/portable/", $name, ".sql"));
        $crate::Migration { version: $version, name: $name, sqlite: SQL, postgres: SQL }
    }};
    (@one $version:literal, $name:literal) => {
        $crate::Migration {
            version: $version,
            name: $name,
            sqlite: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres/", $name, ".sql")),
        }
    };
}

const LOCK_KEY: i64 = 0x7a68_6f6e_6773_6875; // "zhongshu"

/// Applies every pending migration of `sets`, in the order given. Returns how many ran.
pub async fn migrate(db: &Db, sets: &[&MigrationSet]) -> Result<usize, Error> {
    let mut conn = db.writer().acquire().await.db()?;
    if db.backend() == Backend::Postgres {
        // Several nodes may start together: only one migrates at a time.
        sqlx::query("SELECT pg_advisory_lock($1)").bind(LOCK_KEY).execute(&mut *conn).await.db()?;
    }
    let result = run(db.backend(), &mut conn, sets).await;
    if db.backend() == Backend::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)").bind(LOCK_KEY).execute(&mut *conn).await.db()?;
    }
    result
}

async fn run(backend: Backend, conn: &mut sqlx::AnyConnection, sets: &[&MigrationSet]) -> Result<usize, Error> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            component TEXT NOT NULL,
            version BIGINT NOT NULL,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at BIGINT NOT NULL,
            PRIMARY KEY (component, version)
        )",
    )
    .execute(&mut *conn)
    .await
    .db()?;
    let mut applied = 0;
    for set in sets {
        let rows = sqlx::query("SELECT version, checksum FROM schema_migrations WHERE component = $1")
            .bind(set.component)
            .fetch_all(&mut *conn)
            .await
            .db()?;
        let done: Vec<(i64, String)> = rows.iter().map(|r| (r.get::<i64, _>(0), r.get::<String, _>(1))).collect();
        for m in set.migrations {
            let sql = match backend {
                Backend::Sqlite => m.sqlite,
                Backend::Postgres => m.postgres,
            };
            let sum = checksum(sql);
            if let Some((_, old)) = done.iter().find(|(v, _)| *v == m.version) {
                if *old != sum {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        format!("migration {}/{} was changed after it was applied", set.component, m.name),
                    ));
                }
                continue;
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await.db()?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await
                .map_err(|e| Error::internal(format!("migration {}/{} failed: {e}", set.component, m.name)))?;
            sqlx::query(
                "INSERT INTO schema_migrations (component, version, name, checksum, applied_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(set.component)
            .bind(m.version)
            .bind(m.name)
            .bind(&sum)
            .bind(chrono_now_ms())
            .execute(&mut *tx)
            .await
            .db()?;
            tx.commit().await.db()?;
            tracing::info!(component = set.component, migration = m.name, "applied migration");
            applied += 1;
        }
    }
    Ok(applied)
}

fn chrono_now_ms() -> i64 {
    use kernel::Clock;
    kernel::SystemClock.now_ms()
}

/// FNV-1a 64 of the SQL text: enough to notice an edited migration.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
