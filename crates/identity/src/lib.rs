//! Identity and graded authorisation (认证服务, 分级授权): the organisation tree, users, roles
//! with permission codes, grants with data scopes, the three separated administrators
//! (三员分立), the password policy and lockout, sessions, TOTP two-factor authentication, and
//! connected applications with signed requests.
//!
//! Every list or read in the platform filters by the caller's [`Scope`] for the permission it
//! needs: [`Caller::scope`] gives it, [`Scope::restrict`] turns it into SQL.
//!
//! Architecture invariant: an account holds at most one administrator role (a single column),
//! and administrator accounts hold no business grants.

pub mod alerts;
pub mod apps;
pub mod auth;
mod cache;
mod integrity;
pub mod model;
pub mod orgs;
pub mod perms;
pub mod policy;
pub mod roles;
pub mod scope;
pub mod service;
pub mod users;

pub use integrity::IntegrityFinding;
pub use model::*;
pub use perms::Perm;
pub use policy::SecurityPolicy;
pub use scope::{Caller, Scope};
pub use service::{Actor, Identity, IdentityOptions};

pub static MIGRATIONS: store::MigrationSet = store::migrations!("identity": 1 => portable "0001_identity", 2 => portable "0002_account_expiry", 3 => portable "0003_security_alerts", 4 => portable "0004_user_row_mac");
