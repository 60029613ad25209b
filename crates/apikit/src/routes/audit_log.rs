//! The auditor's view of the audit log. Every search, export and verification is itself audited.

use audit::{AuditFilter, AuditRecord, Checkpoint, VerifyReport};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use kernel::PageRequest;
use serde::Serialize;
use utoipa::ToSchema;

use crate::anomaly::Counted;
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
) -> ApiResult<Counted<axum::Json<RecordPage>>> {
    let p = audit::search(&state.db, &filter, page.request()?).await?;
    audit_own_read(&state, &auth, "audit.search", &filter).await?;
    let rows = p.items.len();
    Ok(Counted(rows, axum::Json(RecordPage { items: p.items, total: p.total, page: p.page, page_size: p.page_size })))
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
    let mut rows = 0;
    loop {
        let page = PageRequest { page: page_no, page_size: PageRequest::MAX_PAGE_SIZE };
        let p = audit::search(&state.db, &filter, page).await?;
        rows += p.items.len();
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
    resp.extensions_mut().insert(crate::anomaly::RowsOut(rows as u64));
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

/// The archives and the retention settings in force.
#[derive(Serialize, ToSchema)]
pub struct ArchiveList {
    /// Newest first.
    pub items: Vec<audit::Archive>,
    /// Days every record stays in the database at least (≥ 180).
    pub retention_days: i64,
    /// The daily job archives records older than this many days (0: only by hand).
    pub archive_after_days: i64,
    /// The daily job also purges archived segments past the retention period.
    pub auto_purge: bool,
    /// The chain in the database starts after this seq (0: nothing purged).
    pub archived_through: i64,
}

/// Archives and retention settings.
#[utoipa::path(get, path = "/audit/archives", tag = "安全审计", responses((status = 200, body = ArchiveList)))]
pub async fn list_archives(
    State(state): State<AppState>,
    _auth: Need<perm::AuditRead>,
) -> ApiResult<axum::Json<ArchiveList>> {
    let items = audit::list_archives(&state.db, &state.audit).await?;
    let archived_through = items.iter().filter(|a| a.purged_at.is_some()).map(|a| a.last_seq).max().unwrap_or(0);
    let o = &state.audit_opts;
    Ok(axum::Json(ArchiveList {
        items,
        retention_days: o.retention_days,
        archive_after_days: o.archive_after_days,
        auto_purge: o.auto_purge,
        archived_through,
    }))
}

/// Which records to archive.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArchiveRequest {
    /// The first day not archived (`YYYY-MM-DD`, China time; or an RFC 3339 time): every sealed
    /// record written before it and not archived yet goes into the new archive. A time still to
    /// come archives everything written so far.
    #[schema(example = "2026-10-01")]
    pub before: String,
}

/// Archives the sealed records written before a day into a new file, verifying them on the way.
#[utoipa::path(post, path = "/audit/archives", tag = "安全审计", request_body = ArchiveRequest,
    responses((status = 201, body = audit::Archive), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_archive(
    State(state): State<AppState>,
    auth: Need<perm::AuditRetention>,
    crate::extract::Json(req): crate::extract::Json<ArchiveRequest>,
) -> ApiResult<(axum::http::StatusCode, axum::Json<audit::Archive>)> {
    let before = kernel::calendar::parse_day_or_time(&req.before)
        .ok_or_else(|| kernel::Error::validation("before: expected a day as YYYY-MM-DD or an RFC 3339 time"))?;
    let now = state.clock.now_ms();
    // A day still to come means "everything so far".
    let before = before.min(now);
    state.sealer.seal_all().await?;
    let o = &state.audit_opts;
    let entry = auth.actor().entry(now, "audit.archive");
    let archived =
        audit::archive(&state.db, &state.audit, o, state.clock.as_ref(), &o.archive_dir, before, entry).await?;
    state.sealer.wake();
    match archived {
        Some(a) => Ok((axum::http::StatusCode::CREATED, axum::Json(a))),
        None => Err(kernel::Error::conflict(format!(
            "no sealed records written before {} are left to archive",
            req.before.trim()
        ))
        .into()),
    }
}

/// Removes archived segments past the retention period from the database, oldest first; each
/// only if its file is in place and verifies. Says why the others were kept.
#[utoipa::path(post, path = "/audit/archives/purge", tag = "安全审计", responses((status = 200, body = audit::PurgeReport)))]
pub async fn purge_archived(
    State(state): State<AppState>,
    auth: Need<perm::AuditRetention>,
) -> ApiResult<axum::Json<audit::PurgeReport>> {
    let o = &state.audit_opts;
    let entry = auth.actor().entry(state.clock.now_ms(), "audit.purge");
    let report =
        audit::purge(&state.db, &state.audit, state.clock.as_ref(), &o.archive_dir, o.retention_days, entry).await?;
    state.sealer.wake();
    Ok(axum::Json(report))
}

fn archive_seq(s: &str) -> kernel::Result<i64> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| kernel::Error::not_found("audit archive"))
}

/// What checking an archive's file found, and whether it is the file written for the archive.
#[derive(Serialize, ToSchema)]
pub struct ArchiveCheck {
    pub archive: audit::Archive,
    /// Whether the file is in the archive directory.
    pub file_present: bool,
    /// The file's records verify and its digest and hashes are the archive record's.
    pub ok: bool,
    pub report: Option<audit::FileReport>,
    pub problem: Option<String>,
}

/// Checks an archive's file record by record and against the archive record.
#[utoipa::path(post, path = "/audit/archives/{first_seq}/verify", tag = "安全审计", params(("first_seq" = String, Path)),
    responses((status = 200, body = ArchiveCheck), (status = 404, body = ErrorBody)))]
pub async fn verify_archive(
    State(state): State<AppState>,
    auth: Need<perm::AuditVerify>,
    axum::extract::Path(first_seq): axum::extract::Path<String>,
) -> ApiResult<axum::Json<ArchiveCheck>> {
    let a = audit::get_archive(&state.db, &state.audit, archive_seq(&first_seq)?).await?;
    let path = a.path_in(&state.audit_opts.archive_dir);
    let file_present = path.as_ref().is_some_and(|p| p.exists());
    let (report, problem) = match path.filter(|_| file_present) {
        None => (None, Some("the archive file is not in the archive directory".to_string())),
        Some(p) => {
            let log = state.audit.clone();
            let r = tokio::task::spawn_blocking(move || audit::verify_file(&p, &log))
                .await
                .map_err(kernel::Error::internal)??;
            let problem = r.problem.clone().or_else(|| {
                (!a.written_as(&r))
                    .then(|| "the file is not the one written for this archive (its digest differs)".to_string())
            });
            (Some(r), problem)
        }
    };
    let problem = problem.or_else(|| (!a.intact).then(|| "the archive record fails its MAC".to_string()));
    let entry = auth
        .actor()
        .entry(state.clock.now_ms(), "audit.archive.verify")
        .object("audit_archive", a.first_seq.to_string());
    state
        .audit
        .append_now(&state.db, &entry.detail(serde_json::json!({ "ok": problem.is_none(), "problem": problem })))
        .await?;
    Ok(axum::Json(ArchiveCheck { ok: problem.is_none(), archive: a, file_present, report, problem }))
}

/// Downloads an archive file (gzip'd JSON Lines; `zhongshu audit verify-archive` checks it).
#[utoipa::path(get, path = "/audit/archives/{first_seq}/file", tag = "安全审计", params(("first_seq" = String, Path)),
    responses((status = 200, content_type = "application/gzip", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn download_archive(
    State(state): State<AppState>,
    auth: Need<perm::AuditExport>,
    axum::extract::Path(first_seq): axum::extract::Path<String>,
) -> ApiResult<Response> {
    let a = audit::get_archive(&state.db, &state.audit, archive_seq(&first_seq)?).await?;
    let path = a.path_in(&state.audit_opts.archive_dir).ok_or_else(|| kernel::Error::not_found("archive file"))?;
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(kernel::Error::not_found("archive file (it is no longer in the archive directory)").into());
        }
        Err(e) => return Err(kernel::Error::internal(e).into()),
    };
    let entry = auth
        .actor()
        .entry(state.clock.now_ms(), "audit.archive.download")
        .object("audit_archive", a.first_seq.to_string());
    state.audit.append_now(&state.db, &entry).await?;
    let mut resp = bytes.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/gzip"));
    let disposition = format!("attachment; filename=\"{}\"", a.file_name);
    resp.headers_mut()
        .insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&disposition).map_err(kernel::Error::internal)?);
    Ok(resp)
}
