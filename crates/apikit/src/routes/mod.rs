//! The platform's own API under `/api/v1`: authentication, orgs, users, roles and grants,
//! security policy, connected applications, the audit log and system information.

pub mod audit_log;
pub mod auth;
pub mod orgs;
pub mod security;
pub mod users;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Every route of the platform's own API (relative to `/api/v1`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(auth::session))
        .routes(routes!(auth::verify_mfa))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::totp_setup))
        .routes(routes!(auth::totp_enable))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(orgs::list_orgs, orgs::create_org))
        .routes(routes!(orgs::get_org, orgs::update_org, orgs::delete_org))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user, users::update_user))
        .routes(routes!(users::reset_password))
        .routes(routes!(users::unlock_user))
        .routes(routes!(users::list_grants, users::create_grant))
        .routes(routes!(users::revoke_grant))
        .routes(routes!(security::list_roles, security::create_role))
        .routes(routes!(security::update_role))
        .routes(routes!(security::list_permissions))
        .routes(routes!(security::get_policy, security::put_policy))
        .routes(routes!(security::list_apps, security::create_app))
        .routes(routes!(security::set_app_enabled))
        .routes(routes!(security::list_alerts))
        .routes(routes!(security::handle_alert))
        .routes(routes!(security::system_info))
        .routes(routes!(audit_log::search_records))
        .routes(routes!(audit_log::export_csv))
        .routes(routes!(audit_log::verify_chain))
        .routes(routes!(audit_log::list_checkpoints))
        .routes(routes!(audit_log::list_archives, audit_log::create_archive))
        .routes(routes!(audit_log::purge_archived))
        .routes(routes!(audit_log::verify_archive))
        .routes(routes!(audit_log::download_archive))
}
