//! The auditor's view of the audit log. Every search, export and verification is itself audited.

use audit::{AuditFilter, AuditRecord, Checkpoint, VerifyReport};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kernel::PageRequest;
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Need, perm};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{PageParams, Query};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct RecordPage {
    pub items: Vec<AuditRecord>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
}

async fn audit_own_read(
    state: &AppState,
    auth: &crate::Auth,
    action: &str,
    filter: &AuditFilter,
) -> kernel::Result<()> {
    let entry = auth.actor().entry(state.clock.now_ms(), action).detail(serde_json::json!({
        "actor": filter.actor, "action": filter.action, "object_type": filter.object_type, "object_id": filter.object_id,
        "result": filter.result, "from": filter.from, "to": filter.to,
    }));
    state.audit.append_now(&state.db, &entry).await
}

/// Searches the log, newest first.
#[utoipa::path(get, path = "/audit/records", tag = "安全审计", params(AuditFilter, PageParams),
    responses((status = 200, body = RecordPage), (status = 400, body = ErrorBody)))]
pub async fn search_records(
    State(state): State<AppState>,
    auth: Need<perm::AuditRead>,
    Query(filter): Query<AuditFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<axum::Json<RecordPage>> {
    let p = audit::search(&state.db, &filter, page.request()?).await?;
    audit_own_read(&state, &auth, "audit.search", &filter).await?;
    Ok(axum::Json(RecordPage { items: p.items, total: p.total, page: p.page, page_size: p.page_size }))
}

/// Exports matching records as CSV (at most 100,000 rows per export).
#[utoipa::path(get, path = "/audit/records.csv", tag = "安全审计", params(AuditFilter),
    responses((status = 200, content_type = "text/csv", body = String)))]
pub async fn export_csv(
    State(state): State<AppState>,
    auth: Need<perm::AuditExport>,
    Query(filter): Query<AuditFilter>,
) -> ApiResult<Response> {
    let mut out = String::from(
        "\u{feff}id,seq,time,actor,actor_id,actor_org,source_ip,request_id,channel,action,object_type,object_id,result,reason,detail\n",
    );
    let mut page_no = 1;
    loop {
        let page = PageRequest { page: page_no, page_size: PageRequest::MAX_PAGE_SIZE };
        let p = audit::search(&state.db, &filter, page).await?;
        for r in &p.items {
            let e = &r.entry;
            let cells = [
                r.id.to_string(),
                r.seq.map(|s| s.to_string()).unwrap_or_default(),
                kernel::clock::to_rfc3339(e.at),
                e.actor_name.clone().unwrap_or_default(),
                e.actor_id.clone().unwrap_or_default(),
                e.actor_org.clone().unwrap_or_default(),
                e.source_ip.clone().unwrap_or_default(),
                e.request_id.clone().unwrap_or_default(),
                e.channel.as_str().into(),
                e.action.clone(),
                e.object_type.clone().unwrap_or_default(),
                e.object_id.clone().unwrap_or_default(),
                e.result.as_str().into(),
                e.reason.clone().unwrap_or_default(),
                e.detail.clone().unwrap_or_default(),
            ];
            out.push_str(&cells.iter().map(|c| csv_cell(c)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        if p.items.len() < page.page_size as usize || page_no >= 500 {
            break;
        }
        page_no += 1;
    }
    audit_own_read(&state, &auth, "audit.export", &filter).await?;
    let mut resp = out.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    resp.headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"audit-log.csv\""));
    Ok(resp)
}

/// Quotes a CSV cell and defuses spreadsheet formulas (CSV injection).
fn csv_cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() };
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Walks the whole chain and names the first record altered, deleted, inserted or reordered.
#[utoipa::path(post, path = "/audit/verify", tag = "安全审计", responses((status = 200, body = VerifyReport)))]
pub async fn verify_chain(
    State(state): State<AppState>,
    auth: Need<perm::AuditVerify>,
) -> ApiResult<axum::Json<VerifyReport>> {
    state.sealer.seal_all().await?;
    let report = audit::verify(&state.db, &state.audit, &state.audit_opts, state.clock.as_ref(), &[]).await?;
    let entry = auth.actor().entry(state.clock.now_ms(), "audit.verify").detail(serde_json::json!({
        "ok": report.ok, "records": report.records_checked, "problem": report.problem.as_ref().map(|p| &p.message),
    }));
    state.audit.append_now(&state.db, &entry).await?;
    Ok(axum::Json(report))
}

/// The checkpoints (sequence number and head hash), to keep outside the database.
#[utoipa::path(get, path = "/audit/checkpoints", tag = "安全审计", responses((status = 200, body = Vec<Checkpoint>)))]
pub async fn list_checkpoints(
    State(state): State<AppState>,
    _auth: Need<perm::AuditRead>,
) -> ApiResult<axum::Json<Vec<Checkpoint>>> {
    Ok(axum::Json(audit::checkpoints(&state.db).await?))
}
