//! Users and their grants.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use identity::roles::GrantInput;
use identity::users::{CreatedUser, NewUser, UserFilter, UserPatch};
use identity::{Grant, User};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::{Auth, Need, perm};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Json, PageParams, Query};
use crate::state::AppState;

crate::page_type!(UserPage, User, "A page of users.");

/// Users within the caller's `user.read` scope; mobile and e-mail masked unless `pi.unmask`.
#[utoipa::path(get, path = "/users", tag = "用户", params(UserFilter, PageParams),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorBody)))]
pub async fn list_users(
    State(state): State<AppState>,
    auth: Need<perm::UserRead>,
    Query(filter): Query<UserFilter>,
    Query(page): Query<PageParams>,
) -> ApiResult<crate::anomaly::Counted<axum::Json<UserPage>>> {
    let page = state.identity.list_users(&auth.caller, &filter, page.request()?).await?;
    let ids: Vec<&str> = page.items.iter().map(|u| u.id.as_str()).collect();
    audit_unmasked_read(&state, &auth, &ids).await?;
    Ok(crate::anomaly::Counted(ids.len(), axum::Json(page.into())))
}

/// Reads of personal data in full (callers holding `pi.unmask`) are audited, naming the users.
async fn audit_unmasked_read(state: &AppState, auth: &Auth, user_ids: &[&str]) -> ApiResult<()> {
    if user_ids.is_empty() || !auth.caller.has(identity::perms::PI_UNMASK) {
        return Ok(());
    }
    let entry = auth
        .actor()
        .entry(state.clock.now_ms(), "pi.read_unmasked")
        .detail(serde_json::json!({"object_type": "user", "ids": user_ids}));
    state.audit.append_now(&state.db, &entry).await?;
    Ok(())
}

/// Creates a user in orgs within the caller's `user.manage` scope. Answers the one-time
/// initial password, which must be changed at first login.
#[utoipa::path(post, path = "/users", tag = "用户", request_body = NewUser,
    responses((status = 201, body = CreatedUser), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_user(
    State(state): State<AppState>,
    auth: Need<perm::UserManage>,
    Json(new): Json<NewUser>,
) -> ApiResult<(StatusCode, axum::Json<CreatedUser>)> {
    let created = state.identity.create_user(&auth.caller, &auth.actor(), new).await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// One user (oneself, or within `user.read` scope).
#[utoipa::path(get, path = "/users/{id}", tag = "用户", params(("id" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get_user(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<User>> {
    let user = state.identity.get_user(&auth.caller, &id).await?;
    audit_unmasked_read(&state, &auth, &[user.id.as_str()]).await?;
    Ok(axum::Json(user))
}

/// Changes a user's details or status (disabling ends their sessions).
#[utoipa::path(patch, path = "/users/{id}", tag = "用户", params(("id" = String, Path)), request_body = UserPatch,
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    auth: Need<perm::UserManage>,
    Path(id): Path<String>,
    Json(p): Json<UserPatch>,
) -> ApiResult<axum::Json<User>> {
    Ok(axum::Json(state.identity.update_user(&auth.caller, &auth.actor(), &id, p).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ResetPassword {
    /// The new one-time password to hand over; it must be changed at next login.
    pub initial_password: String,
}

/// Gives the user a new one-time password and ends their sessions.
#[utoipa::path(post, path = "/users/{id}/reset-password", tag = "用户", params(("id" = String, Path)),
    responses((status = 200, body = ResetPassword), (status = 404, body = ErrorBody)))]
pub async fn reset_password(
    State(state): State<AppState>,
    auth: Need<perm::UserManage>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<ResetPassword>> {
    let initial_password = state.identity.reset_password(&auth.caller, &auth.actor(), &id).await?;
    Ok(axum::Json(ResetPassword { initial_password }))
}

/// Lifts a lockout.
#[utoipa::path(post, path = "/users/{id}/unlock", tag = "用户", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn unlock_user(
    State(state): State<AppState>,
    auth: Need<perm::UserManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.identity.unlock_user(&auth.caller, &auth.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The roles a user holds, with their data scopes.
#[utoipa::path(get, path = "/users/{id}/grants", tag = "用户", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Grant>), (status = 404, body = ErrorBody)))]
pub async fn list_grants(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<Grant>>> {
    Ok(axum::Json(state.identity.list_grants(&auth.caller, &id).await?))
}

/// Grants a role with a data scope, within the grantor's own permissions and scope
/// (分级授权). Granting `sysadmin`, `secadmin` or `auditor` is the security administrator's.
#[utoipa::path(post, path = "/users/{id}/grants", tag = "用户", params(("id" = String, Path)), request_body = GrantInput,
    responses((status = 201, body = Option<Grant>), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create_grant(
    State(state): State<AppState>,
    auth: Need<perm::GrantManage>,
    Path(id): Path<String>,
    Json(input): Json<GrantInput>,
) -> ApiResult<(StatusCode, axum::Json<Option<Grant>>)> {
    let g = state.identity.grant(&auth.caller, &auth.actor(), &id, input).await?;
    Ok((StatusCode::CREATED, axum::Json(g)))
}

/// Revokes a grant.
#[utoipa::path(delete, path = "/users/{id}/grants/{grant_id}", tag = "用户",
    params(("id" = String, Path), ("grant_id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_grant(
    State(state): State<AppState>,
    auth: Need<perm::GrantManage>,
    Path((id, grant_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.identity.revoke_grant(&auth.caller, &auth.actor(), &id, &grant_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
