//! The state every handler receives.

use std::sync::Arc;

use audit::{AuditLog, AuditOptions, Sealer};
use identity::Identity;
use kernel::Clock;
use store::Db;

use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

/// Shared application state. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub identity: Identity,
    pub audit: AuditLog,
    pub audit_opts: AuditOptions,
    pub sealer: Sealer,
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<RateLimiter>,
    pub metrics: Arc<Metrics>,
    pub http: HttpOptions,
}

/// HTTP behaviour settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Mark the session cookie `Secure` (when served over TLS, directly or behind a proxy).
    pub secure_cookies: bool,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Trust `X-Forwarded-For` from the proxy in front (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { secure_cookies: false, body_limit: 2 * 1024 * 1024, trust_forwarded_for: false }
    }
}
