//! The auditor's search over the log, and checkpoints for export.

use kernel::{Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use store::{Db, DbResultExt, Row, Value, Where, like_escape};

use crate::model::{AuditRecord, AuditResult, RECORD_COLUMNS};

/// Search filters; all optional, combined with AND.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams, utoipa::ToSchema)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Actor username (exact) or user id.
    pub actor: Option<String>,
    /// Action, exact (`user.create`) or a prefix ending in `.` (`user.`).
    pub action: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub result: Option<String>,
    /// From this time (unix ms, inclusive).
    pub from: Option<i64>,
    /// Up to this time (unix ms, exclusive).
    pub to: Option<i64>,
    pub request_id: Option<String>,
}

/// A checkpoint: the chain head hash after `seq` records.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Checkpoint {
    pub seq: i64,
    pub root_hash: String,
    pub algorithm: String,
    pub created_at: i64,
}

/// Lists records, newest first.
pub async fn search(db: &Db, filter: &AuditFilter, page: PageRequest) -> Result<Page<AuditRecord>> {
    if let Some(r) = &filter.result
        && AuditResult::parse(r).is_none()
    {
        return Err(kernel::Error::new(kernel::ErrorCode::InvalidQuery, "result must be success, failure or denied"));
    }
    let mut w = Where::new();
    if let Some(a) = filter.actor.as_deref().filter(|s| !s.is_empty()) {
        w.and("(r.actor_name = ? OR r.actor_id = ?)", [a.into(), a.into()]);
    }
    if let Some(a) = filter.action.as_deref().filter(|s| !s.is_empty()) {
        match a.strip_suffix('.') {
            Some(prefix) => w.and("r.action LIKE ? ESCAPE '\\'", [format!("{}.%", like_escape(prefix)).into()]),
            None => w.and("r.action = ?", [a.into()]),
        };
    }
    if let Some(v) = filter.object_type.as_deref().filter(|s| !s.is_empty()) {
        w.and("r.object_type = ?", [v.into()]);
    }
    if let Some(v) = filter.object_id.as_deref().filter(|s| !s.is_empty()) {
        w.and("r.object_id = ?", [v.into()]);
    }
    if let Some(v) = filter.result.as_deref() {
        w.and("r.result = ?", [v.into()]);
    }
    if let Some(v) = filter.request_id.as_deref().filter(|s| !s.is_empty()) {
        w.and("r.request_id = ?", [v.into()]);
    }
    if let Some(v) = filter.from {
        w.and("r.at >= ?", [Value::Int(v)]);
    }
    if let Some(v) = filter.to {
        w.and("r.at < ?", [Value::Int(v)]);
    }
    let where_sql = w.clause();
    let count_sql = format!("SELECT COUNT(*) FROM audit_records r {where_sql}");
    let total: i64 = w.bind(sqlx::query(sqlx::AssertSqlSafe(count_sql))).fetch_one(db.reader()).await.db()?.get(0);
    let n = w.len();
    let list_sql = format!(
        "SELECT c.seq, {RECORD_COLUMNS} FROM audit_records r LEFT JOIN audit_chain c ON c.record_id = r.id
         {where_sql} ORDER BY r.id DESC LIMIT ${} OFFSET ${}",
        n + 1,
        n + 2
    );
    let rows = w
        .bind(sqlx::query(sqlx::AssertSqlSafe(list_sql)))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(db.reader())
        .await
        .db()?;
    let items = rows.iter().map(|r| AuditRecord::from_row(r, 1, r.get::<Option<i64>, _>(0))).collect();
    Ok(Page::new(items, total, page))
}

/// All checkpoints, oldest first.
pub async fn checkpoints(db: &Db) -> Result<Vec<Checkpoint>> {
    let rows = sqlx::query("SELECT seq, root_hash, algorithm, created_at FROM audit_checkpoints ORDER BY seq")
        .fetch_all(db.reader())
        .await
        .db()?;
    Ok(rows
        .iter()
        .map(|r| Checkpoint { seq: r.get(0), root_hash: r.get(1), algorithm: r.get(2), created_at: r.get(3) })
        .collect())
}
