//! The organisation tree.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use identity::Org;
use identity::orgs::{NewOrg, OrgPatch};

use crate::auth::{Need, perm};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::Json;
use crate::state::AppState;

/// The orgs within the caller's `org.read` scope, parents before children.
#[utoipa::path(get, path = "/orgs", tag = "组织机构", responses((status = 200, body = Vec<Org>), (status = 403, body = ErrorBody)))]
pub async fn list_orgs(State(state): State<AppState>, auth: Need<perm::OrgRead>) -> ApiResult<axum::Json<Vec<Org>>> {
    Ok(axum::Json(state.identity.list_orgs(&auth.caller).await?))
}

/// Creates an org under a parent within the caller's `org.manage` scope.
#[utoipa::path(post, path = "/orgs", tag = "组织机构", request_body = NewOrg,
    responses((status = 201, body = Org), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_org(
    State(state): State<AppState>,
    auth: Need<perm::OrgManage>,
    Json(new): Json<NewOrg>,
) -> ApiResult<(StatusCode, axum::Json<Org>)> {
    let org = state.identity.create_org(&auth.caller, &auth.actor(), new).await?;
    Ok((StatusCode::CREATED, axum::Json(org)))
}

/// One org.
#[utoipa::path(get, path = "/orgs/{id}", tag = "组织机构", params(("id" = String, Path)),
    responses((status = 200, body = Org), (status = 404, body = ErrorBody)))]
pub async fn get_org(
    State(state): State<AppState>,
    auth: Need<perm::OrgRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Org>> {
    Ok(axum::Json(state.identity.get_org(&auth.caller, &id).await?))
}

/// Renames, recodes or reorders an org.
#[utoipa::path(patch, path = "/orgs/{id}", tag = "组织机构", params(("id" = String, Path)), request_body = OrgPatch,
    responses((status = 200, body = Org), (status = 404, body = ErrorBody)))]
pub async fn update_org(
    State(state): State<AppState>,
    auth: Need<perm::OrgManage>,
    Path(id): Path<String>,
    Json(p): Json<OrgPatch>,
) -> ApiResult<axum::Json<Org>> {
    Ok(axum::Json(state.identity.update_org(&auth.caller, &auth.actor(), &id, p).await?))
}

/// Deletes an empty org.
#[utoipa::path(delete, path = "/orgs/{id}", tag = "组织机构", params(("id" = String, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn delete_org(
    State(state): State<AppState>,
    auth: Need<perm::OrgManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.identity.delete_org(&auth.caller, &auth.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
