//! Roles and permissions, the security policy, connected applications, system information.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use identity::alerts::{AlertFilter, SecurityAlert};
use identity::apps::{App, CreatedApp, NewApp};
use identity::perms::{CATALOGUE, PermInfo};
use identity::roles::RoleInput;
use identity::{Role, SecurityPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Need, perm};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, PageParams, Query};
use crate::state::AppState;

/// All roles with their permissions.
#[utoipa::path(get, path = "/roles", tag = "角色权限", responses((status = 200, body = Vec<Role>)))]
pub async fn list_roles(State(state): State<AppState>, auth: Need<perm::RoleRead>) -> ApiResult<axum::Json<Vec<Role>>> {
    Ok(axum::Json(state.identity.list_roles(&auth.caller).await?))
}

/// Defines a business role (security administrator).
#[utoipa::path(post, path = "/roles", tag = "角色权限", request_body = RoleInput,
    responses((status = 201, body = Role), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    auth: Need<perm::RoleManage>,
    Json(input): Json<RoleInput>,
) -> ApiResult<(StatusCode, axum::Json<Role>)> {
    Ok((StatusCode::CREATED, axum::Json(state.identity.create_role(&auth.caller, &auth.actor(), input).await?)))
}

/// Changes a business role.
#[utoipa::path(put, path = "/roles/{id}", tag = "角色权限", params(("id" = String, Path)), request_body = RoleInput,
    responses((status = 200, body = Role), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update_role(
    State(state): State<AppState>,
    auth: Need<perm::RoleManage>,
    Path(id): Path<String>,
    Json(input): Json<RoleInput>,
) -> ApiResult<axum::Json<Role>> {
    Ok(axum::Json(state.identity.update_role(&auth.caller, &auth.actor(), &id, input).await?))
}

/// The permission catalogue.
#[utoipa::path(get, path = "/permissions", tag = "角色权限", responses((status = 200, body = Vec<PermInfo>)))]
pub async fn list_permissions(_auth: Need<perm::RoleRead>) -> axum::Json<Vec<PermInfo>> {
    axum::Json(CATALOGUE.to_vec())
}

/// The security policy in force.
#[utoipa::path(get, path = "/security-policy", tag = "安全策略", responses((status = 200, body = SecurityPolicy)))]
pub async fn get_policy(State(state): State<AppState>, _auth: Need<perm::PolicyRead>) -> axum::Json<SecurityPolicy> {
    axum::Json(state.identity.policy())
}

/// Replaces the security policy (security administrator); audited with before and after.
#[utoipa::path(put, path = "/security-policy", tag = "安全策略", request_body = SecurityPolicy,
    responses((status = 200, body = SecurityPolicy), (status = 422, body = ErrorBody)))]
pub async fn put_policy(
    State(state): State<AppState>,
    auth: Need<perm::PolicyManage>,
    Json(p): Json<SecurityPolicy>,
) -> ApiResult<axum::Json<SecurityPolicy>> {
    Ok(axum::Json(state.identity.set_policy(&auth.actor(), p).await?))
}

/// Connected applications.
#[utoipa::path(get, path = "/apps", tag = "接入应用", responses((status = 200, body = Vec<App>)))]
pub async fn list_apps(State(state): State<AppState>, auth: Need<perm::AppRead>) -> ApiResult<axum::Json<Vec<App>>> {
    Ok(axum::Json(state.identity.list_apps(&auth.caller).await?))
}

/// Registers an application; the secret is shown only in this answer.
#[utoipa::path(post, path = "/apps", tag = "接入应用", request_body = NewApp,
    responses((status = 201, body = CreatedApp), (status = 422, body = ErrorBody)))]
pub async fn create_app(
    State(state): State<AppState>,
    auth: Need<perm::AppManage>,
    Json(new): Json<NewApp>,
) -> ApiResult<(StatusCode, axum::Json<CreatedApp>)> {
    Ok((StatusCode::CREATED, axum::Json(state.identity.create_app(&auth.caller, &auth.actor(), new).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Enabled {
    pub enabled: bool,
}

/// Enables or disables an application.
#[utoipa::path(put, path = "/apps/{id}/enabled", tag = "接入应用", params(("id" = String, Path)), request_body = Enabled,
    responses((status = 200, body = App), (status = 404, body = ErrorBody)))]
pub async fn set_app_enabled(
    State(state): State<AppState>,
    auth: Need<perm::AppManage>,
    Path(id): Path<String>,
    Json(e): Json<Enabled>,
) -> ApiResult<axum::Json<App>> {
    Ok(axum::Json(state.identity.set_app_enabled(&auth.caller, &auth.actor(), &id, e.enabled).await?))
}

#[derive(Serialize, ToSchema)]
pub struct SystemInfo {
    pub version: &'static str,
    pub database: &'static str,
    pub audit_algorithm: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct AlertPage {
    pub items: Vec<SecurityAlert>,
    pub total: i64,
    pub page: u32,
    pub page_size: u32,
    /// Alerts still open (for the badge).
    pub open: i64,
}

/// Security alerts from abnormal-call detection, the most recent first (security administrator).
#[utoipa::path(get, path = "/security/alerts", tag = "安全策略", params(AlertFilter, PageParams),
    responses((status = 200, body = AlertPage), (status = 400, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_alerts(
    State(state): State<AppState>,
    auth: Need<perm::PolicyRead>,
    Query(filter): Query<AlertFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<axum::Json<AlertPage>> {
    let p = state.identity.list_alerts(&auth.caller, &filter, page.request()?).await?;
    let open = state.identity.open_alert_count().await?;
    Ok(axum::Json(AlertPage { items: p.items, total: p.total, page: p.page, page_size: p.page_size, open }))
}

#[derive(Deserialize, ToSchema)]
pub struct HandleAlert {
    /// What was found or done (1-500 characters).
    pub note: String,
}

/// Marks an alert handled with a note; a block it put on its subject ends.
#[utoipa::path(post, path = "/security/alerts/{id}/handle", tag = "安全策略", params(("id" = String, Path)),
    request_body = HandleAlert,
    responses((status = 200, body = SecurityAlert), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn handle_alert(
    State(state): State<AppState>,
    auth: Need<perm::PolicyManage>,
    Path(id): Path<String>,
    Json(input): Json<HandleAlert>,
) -> ApiResult<axum::Json<SecurityAlert>> {
    let alert = state.identity.handle_alert(&auth.caller, &auth.actor(), &id, &input.note).await?;
    state.anomaly.unblock(&alert.subject);
    Ok(axum::Json(alert))
}

/// Version and configuration facts for the system administrator.
#[utoipa::path(get, path = "/system/info", tag = "系统", responses((status = 200, body = SystemInfo)))]
pub async fn system_info(State(state): State<AppState>, _auth: Need<perm::ConfigRead>) -> axum::Json<SystemInfo> {
    axum::Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        database: state.db.backend().name(),
        audit_algorithm: state.audit_opts.algorithm.name(),
    })
}
