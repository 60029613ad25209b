//! Authentication extractors. A handler names what it needs in its signature:
//! `Need<UserManage>` admits only callers holding `user.manage`; `Auth` any active caller;
//! `SessionAuth` a session in any stage (for the login steps themselves).

use std::marker::PhantomData;
use std::ops::Deref;

use axum::extract::FromRequestParts;
use axum::http::Method;
use axum::http::request::Parts;
use identity::auth::{Session, Stage};
use identity::{Actor, Caller};
use kernel::ErrorCode;

use crate::context::{self, CallerInfo};
use crate::error::{ApiError, err};
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "zs_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A caller already authenticated by a signed request (set by the signing middleware).
#[derive(Clone)]
pub struct AppCaller(pub Caller, pub i64);

/// An authenticated caller with an active session or a valid request signature.
pub struct Auth {
    pub caller: Caller,
    pub session: Option<Session>,
}

impl Auth {
    /// The audit actor for this request.
    pub fn actor(&self) -> Actor {
        self.caller.actor(context::source_ip().map(|ip| ip.to_string()), context::request_id())
    }
}

pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Resolves the session from the cookie, checking CSRF on state-changing requests.
async fn session_of(parts: &Parts, state: &AppState) -> Result<Session, ApiError> {
    let token = cookie(parts, SESSION_COOKIE)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err(ErrorCode::Unauthenticated, "log in first"))?;
    let session = state.identity.authenticate(token).await?;
    check_csrf(parts, &session)?;
    if !state.http.admin_networks.is_empty() && state.identity.admin_role_of(&session.user_id).await?.is_some() {
        check_admin_network(state)?;
    }
    Ok(session)
}

/// The three administrators work only from the administration networks, when configured.
pub fn check_admin_network(state: &AppState) -> Result<(), ApiError> {
    if crate::netlist::allowed(&state.http.admin_networks, context::source_ip()) {
        Ok(())
    } else {
        Err(err(
            ErrorCode::Forbidden,
            "administrator accounts may be used only from the administration network; use an administration terminal",
        ))
    }
}

/// Like [`session_of`] for active sessions, through the identity service's short-lived cache.
async fn active_session_of(parts: &Parts, state: &AppState) -> Result<(Session, Caller), ApiError> {
    let token = cookie(parts, SESSION_COOKIE)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| err(ErrorCode::Unauthenticated, "log in first"))?;
    let (session, caller) = state.identity.authenticate_active(token).await?;
    check_csrf(parts, &session)?;
    Ok((session, caller))
}

fn check_csrf(parts: &Parts, session: &Session) -> Result<(), ApiError> {
    if !is_safe(&parts.method) {
        let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !crypto::hash::constant_time_eq(sent.as_bytes(), session.csrf_token.as_bytes()) {
            return Err(err(ErrorCode::CsrfFailed, "the X-CSRF-Token header is missing or wrong; reload the page"));
        }
    }
    Ok(())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let now = state.clock.now_ms();
        if let Some(AppCaller(caller, limit)) = parts.extensions.get::<AppCaller>().cloned() {
            refuse_if_blocked(state, &format!("app:{}", caller.id), now)?;
            state
                .limiter
                .check(&format!("app:{}", caller.id), limit as u32, now)
                .map_err(|s| ApiError(kernel::Error::rate_limited(s)))?;
            context::set_caller(CallerInfo {
                id: caller.id.clone(),
                username: caller.username.clone(),
                org_id: caller.primary_org_id.0.clone(),
                is_app: true,
                admin: false,
            });
            return Ok(Auth { caller, session: None });
        }
        let (session, caller) = active_session_of(parts, state).await?;
        if caller.admin_role.is_some() {
            check_admin_network(state)?;
        }
        refuse_if_blocked(state, &format!("user:{}", session.user_id), now)?;
        let rate = state.identity.policy().api_rate_per_minute;
        state
            .limiter
            .check(&format!("user:{}", session.user_id), rate, now)
            .map_err(|s| ApiError(kernel::Error::rate_limited(s)))?;
        context::set_caller(CallerInfo {
            id: caller.id.clone(),
            username: caller.username.clone(),
            org_id: caller.primary_org_id.0.clone(),
            is_app: false,
            admin: caller.admin_role.is_some(),
        });
        Ok(Auth { caller, session: Some(session) })
    }
}

/// Refuses a caller the anomaly detector has blocked (see [`crate::anomaly`]).
fn refuse_if_blocked(state: &AppState, key: &str, now: i64) -> Result<(), ApiError> {
    match state.anomaly.blocked(key, now) {
        Some(secs) => Err(ApiError(kernel::Error::rate_limited(secs))),
        None => Ok(()),
    }
}

/// A session in any stage: for the login steps (second factor, password change, enrolment).
pub struct SessionAuth {
    pub session: Session,
}

impl SessionAuth {
    pub fn actor(&self) -> Actor {
        let mut a = context::actor();
        a.user_id = Some(self.session.user_id.clone());
        a
    }

    pub fn stage(&self) -> Stage {
        self.session.stage
    }
}

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let session = session_of(parts, state).await?;
        if let Ok(caller) = state.identity.load_caller(&session.user_id, None).await {
            context::set_caller(CallerInfo {
                id: caller.id.clone(),
                username: caller.username.clone(),
                org_id: caller.primary_org_id.0.clone(),
                is_app: false,
                admin: caller.admin_role.is_some(),
            });
        }
        Ok(SessionAuth { session })
    }
}

/// A permission as a type, so handlers show what they need.
pub trait Permission: Send + Sync + 'static {
    const CODE: &'static str;
}

/// An authenticated caller holding permission `P`.
pub struct Need<P: Permission> {
    pub auth: Auth,
    _p: PhantomData<P>,
}

impl<P: Permission> Need<P> {
    /// The data scope of `P` for this caller.
    pub fn scope(&self) -> identity::Scope {
        self.auth.caller.scope(P::CODE)
    }
}

impl<P: Permission> Deref for Need<P> {
    type Target = Auth;

    fn deref(&self) -> &Auth {
        &self.auth
    }
}

impl<P: Permission> FromRequestParts<AppState> for Need<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_request_parts(parts, state).await?;
        auth.caller.require(P::CODE)?;
        Ok(Need { auth, _p: PhantomData })
    }
}

/// Declares permission marker types.
#[macro_export]
macro_rules! permissions {
    ($($name:ident = $code:expr),* $(,)?) => {$(
        #[doc = concat!("The `", stringify!($name), "` permission.")]
        pub struct $name;
        impl $crate::Permission for $name {
            const CODE: &'static str = $code;
        }
    )*};
}

/// Marker types for the platform's own permissions.
pub mod perm {
    use identity::perms;
    crate::permissions! {
        OrgRead = perms::ORG_READ,
        OrgManage = perms::ORG_MANAGE,
        UserRead = perms::USER_READ,
        UserManage = perms::USER_MANAGE,
        RoleRead = perms::ROLE_READ,
        RoleManage = perms::ROLE_MANAGE,
        GrantManage = perms::GRANT_MANAGE,
        PolicyRead = perms::POLICY_READ,
        PolicyManage = perms::POLICY_MANAGE,
        AppRead = perms::APP_READ,
        AppManage = perms::APP_MANAGE,
        AuditRead = perms::AUDIT_READ,
        AuditExport = perms::AUDIT_EXPORT,
        AuditVerify = perms::AUDIT_VERIFY,
        AuditRetention = perms::AUDIT_RETENTION,
        ConfigRead = perms::CONFIG_READ,
    }
}
