//! Login, the login steps, logout, and who-am-I.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use identity::auth::{Stage, TotpSetup};
use identity::{Scope, perms};
use kernel::ErrorCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Auth, SESSION_COOKIE, SessionAuth};
use crate::context;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

/// Where the session stands, and the token to send as `X-CSRF-Token` on state-changing requests.
#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub stage: Stage,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// Whether the client reached us over HTTPS: configured, or said by a trusted proxy.
fn over_tls(state: &AppState, headers: &HeaderMap) -> bool {
    let forwarded_https =
        headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("https"));
    state.http.secure_cookies || (state.http.trust_forwarded_for && forwarded_https)
}

fn session_cookie(secure: bool, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}"
    ))
    .expect("cookie is ASCII")
}

/// Logs in with username and password. Answers the session's stage; a stage other than
/// `active` names the next step (second factor, password change, two-factor enrolment).
#[utoipa::path(post, path = "/auth/login", tag = "认证", request_body = LoginRequest,
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    req_headers: HeaderMap,
    Json(req): Json<LoginRequest>,
) -> ApiResult<Response> {
    if req.username.len() > 64 || req.password.len() > 256 {
        return Err(ApiError(kernel::Error::new(ErrorCode::InvalidCredentials, "username or password is wrong")));
    }
    let now = state.clock.now_ms();
    let policy = state.identity.policy();
    let ip = context::source_ip().map(|i| i.to_string()).unwrap_or_else(|| "unknown".into());
    state
        .limiter
        .check(&format!("login-ip:{ip}"), policy.login_rate_per_minute, now)
        .map_err(|s| ApiError(kernel::Error::rate_limited(s)))?;
    let s = state.identity.login(&req.username, &req.password, &context::actor()).await?;
    // An administrator outside the administration networks gets no session, even with the password.
    if !state.http.admin_networks.is_empty()
        && state.identity.admin_role_of(&s.user_id).await?.is_some()
        && let Err(e) = crate::auth::check_admin_network(&state)
    {
        if let Ok(session) = state.identity.authenticate(&s.token).await {
            state.identity.logout(&session, &context::actor()).await?;
        }
        let entry = context::actor()
            .entry(now, "auth.login")
            .object("user", &s.user_id)
            .result(audit::AuditResult::Denied, Some("outside the administration networks".into()));
        state.identity.audit_now(entry).await?;
        return Err(e);
    }
    let max_age = (s.expires_at - now) / 1000;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, session_cookie(over_tls(&state, &req_headers), &s.token, max_age));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((headers, axum::Json(SessionView { stage: s.stage, csrf_token: s.csrf_token, expires_at: s.expires_at }))
        .into_response())
}

/// The current session's stage and CSRF token (after a page reload).
#[utoipa::path(get, path = "/auth/session", tag = "认证",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody)))]
pub async fn session(auth: SessionAuth) -> ApiResult<axum::Json<SessionView>> {
    let s = auth.session;
    Ok(axum::Json(SessionView { stage: s.stage, csrf_token: s.csrf_token, expires_at: s.expires_at }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// A 6-digit code from the authenticator app, or a recovery code.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct StageView {
    pub stage: Stage,
}

/// Checks the second factor for a session in stage `mfa`.
#[utoipa::path(post, path = "/auth/mfa", tag = "认证", request_body = CodeRequest,
    responses((status = 200, body = StageView), (status = 401, body = ErrorBody)))]
pub async fn verify_mfa(
    State(state): State<AppState>,
    auth: SessionAuth,
    Json(req): Json<CodeRequest>,
) -> ApiResult<axum::Json<StageView>> {
    let now = state.clock.now_ms();
    state
        .limiter
        .check(&format!("mfa:{}", auth.session.user_id), 10, now)
        .map_err(|s| ApiError(kernel::Error::rate_limited(s)))?;
    let stage = state.identity.verify_second_factor(&auth.session, &req.code, &auth.actor()).await?;
    Ok(axum::Json(StageView { stage }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    pub new_password: String,
}

/// Changes the own password (required in stage `change_password`, allowed when `active`).
#[utoipa::path(post, path = "/auth/password", tag = "认证", request_body = PasswordChange,
    responses((status = 200, body = StageView), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    auth: SessionAuth,
    Json(req): Json<PasswordChange>,
) -> ApiResult<axum::Json<StageView>> {
    let stage =
        state.identity.change_password(&auth.session, &req.current_password, &req.new_password, &auth.actor()).await?;
    Ok(axum::Json(StageView { stage }))
}

/// Starts two-factor enrolment: a secret and an `otpauth://` URI for the QR code.
#[utoipa::path(post, path = "/auth/totp/setup", tag = "认证", responses((status = 200, body = TotpSetup), (status = 409, body = ErrorBody)))]
pub async fn totp_setup(State(state): State<AppState>, auth: SessionAuth) -> ApiResult<axum::Json<TotpSetup>> {
    Ok(axum::Json(state.identity.totp_begin(&auth.session, &auth.actor()).await?))
}

#[derive(Serialize, ToSchema)]
pub struct TotpEnabled {
    /// One-time recovery codes, shown only now.
    pub recovery_codes: Vec<String>,
    pub stage: Stage,
}

/// Confirms enrolment with the first code; answers ten recovery codes.
#[utoipa::path(post, path = "/auth/totp/enable", tag = "认证", request_body = CodeRequest,
    responses((status = 200, body = TotpEnabled), (status = 401, body = ErrorBody)))]
pub async fn totp_enable(
    State(state): State<AppState>,
    auth: SessionAuth,
    Json(req): Json<CodeRequest>,
) -> ApiResult<axum::Json<TotpEnabled>> {
    let (recovery_codes, stage) = state.identity.totp_enable(&auth.session, &req.code, &auth.actor()).await?;
    Ok(axum::Json(TotpEnabled { recovery_codes, stage }))
}

/// Ends the session.
#[utoipa::path(post, path = "/auth/logout", tag = "认证", responses((status = 204)))]
pub async fn logout(State(state): State<AppState>, req_headers: HeaderMap, auth: SessionAuth) -> ApiResult<Response> {
    state.identity.logout(&auth.session, &auth.actor()).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(header::SET_COOKIE, session_cookie(over_tls(&state, &req_headers), "", 0));
    Ok(resp)
}

/// A portal module the user may open.
#[derive(Serialize, ToSchema)]
pub struct Module {
    pub key: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub path: &'static str,
    pub group: &'static str,
}

/// The portal's modules and the permission each needs. Capability crates add theirs here.
pub const MODULES: &[(Module, &str)] = &[
    (
        Module {
            key: "grid_cases",
            name: "事件调度台",
            description: "事件受理、立案、派遣、处置、核查与结案，地图与时限预警",
            path: "/grid/cases",
            group: "网格治理",
        },
        perms::GRID_CASE_READ,
    ),
    (
        Module {
            key: "grid_mobile",
            name: "网格员移动端",
            description: "手机上报事件（拍照、定位）、我的任务、核查、我的网格地图",
            path: "/m",
            group: "网格治理",
        },
        perms::GRID_CASE_REPORT,
    ),
    (
        Module {
            key: "grid_people",
            name: "基础信息",
            description: "人口信息采集、批量导入、重点人群与修改记录",
            path: "/grid/people",
            group: "网格治理",
        },
        perms::GRID_BASE_READ,
    ),
    (
        Module {
            key: "grid_admin",
            name: "网格与规则",
            description: "网格边界导入与地图、网格员、事件分类与时限、派遣规则",
            path: "/grid/admin",
            group: "网格治理",
        },
        perms::GRID_MANAGE,
    ),
    (
        Module {
            key: "flow_tasks",
            name: "待办事项",
            description: "待办、已办，办理、转办、委托、退回、催办",
            path: "/flow/tasks",
            group: "流程中心",
        },
        perms::FLOW_TASK,
    ),
    (
        Module {
            key: "flow_instances",
            name: "流程监控",
            description: "流程实例查询、流转记录与流程图跟踪",
            path: "/flow/instances",
            group: "流程中心",
        },
        perms::FLOW_START,
    ),
    (
        Module {
            key: "flow_models",
            name: "流程设计",
            description: "BPMN 流程建模、表单设计、发布与版本",
            path: "/flow/models",
            group: "流程中心",
        },
        perms::FLOW_MODEL_READ,
    ),
    (
        Module {
            key: "notify_admin",
            name: "消息管理",
            description: "消息模板、发送记录与重发、发送通知",
            path: "/notify/admin",
            group: "流程中心",
        },
        perms::NOTIFY_MANAGE,
    ),
    (
        Module {
            key: "flow_incidents",
            name: "流程异常",
            description: "失败的服务任务与流程错误的处理",
            path: "/flow/incidents",
            group: "流程中心",
        },
        perms::FLOW_INSTANCE_MANAGE,
    ),
    (
        Module {
            key: "orgs",
            name: "组织机构",
            description: "行政区划与部门的组织树",
            path: "/admin/orgs",
            group: "系统管理",
        },
        perms::ORG_READ,
    ),
    (
        Module {
            key: "users",
            name: "用户管理",
            description: "用户、所属组织与授权",
            path: "/admin/users",
            group: "系统管理",
        },
        perms::USER_READ,
    ),
    (
        Module {
            key: "roles",
            name: "角色权限",
            description: "角色与权限定义",
            path: "/admin/roles",
            group: "安全管理",
        },
        perms::ROLE_READ,
    ),
    (
        Module {
            key: "policy",
            name: "安全策略",
            description: "口令、锁定与会话策略",
            path: "/admin/policy",
            group: "安全管理",
        },
        perms::POLICY_READ,
    ),
    (
        Module {
            key: "alerts",
            name: "安全告警",
            description: "调用异常监测：频繁拒绝、数据遍历、签名失败、非工作时间操作",
            path: "/admin/alerts",
            group: "安全管理",
        },
        perms::POLICY_READ,
    ),
    (
        Module {
            key: "apps",
            name: "接入应用",
            description: "接入系统的签名凭证与限流",
            path: "/admin/apps",
            group: "安全管理",
        },
        perms::APP_READ,
    ),
    (
        Module {
            key: "audit",
            name: "安全审计",
            description: "审计日志查询、导出与完整性校验",
            path: "/admin/audit",
            group: "安全审计",
        },
        perms::AUDIT_READ,
    ),
];

/// The caller: identity, permissions with their data scopes, and the portal modules.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub primary_org_id: String,
    pub primary_org_name: String,
    pub admin_role: Option<identity::AdminRole>,
    pub permissions: HashMap<String, Scope>,
    pub modules: Vec<Module>,
    pub csrf_token: Option<String>,
}

/// Who am I, what may I do, which modules may I open.
#[utoipa::path(get, path = "/me", tag = "认证", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub async fn me(auth: Auth) -> ApiResult<axum::Json<Me>> {
    let c = auth.caller;
    let modules = MODULES
        .iter()
        .filter(|(_, p)| c.has(p))
        .map(|(m, _)| Module { key: m.key, name: m.name, description: m.description, path: m.path, group: m.group })
        .collect();
    Ok(axum::Json(Me {
        id: c.id,
        username: c.username,
        display_name: c.display_name,
        primary_org_id: c.primary_org_id.0,
        primary_org_name: c.primary_org_name,
        admin_role: c.admin_role,
        permissions: c.permissions,
        modules,
        csrf_token: auth.session.map(|s| s.csrf_token),
    }))
}
