//! The HTTP kit every capability's API is built with: the shared [`AppState`], the error body
//! `{code, message, request_id}`, authentication extractors whose type names the permission they
//! require ([`Need`]), JSON and query extractors with clear errors, rate limiting, metrics, the
//! request context (request id, source address, caller) and the audit of failed requests.
//! `routes` holds the platform's own API: authentication, orgs, users, roles, policy,
//! connected applications and the audit log.

pub mod anomaly;
pub mod auth;
pub mod background;
pub mod context;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod middleware;
pub mod netlist;
pub mod ratelimit;
pub mod routes;
pub mod state;

pub use auth::{Auth, Need, Permission, SessionAuth};
pub use error::{ApiError, ApiResult, ErrorBody};
pub use extract::{Json, Query};
pub use state::{AppState, Services, Svc};
