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
    /// Abnormal-call detection (see [`crate::anomaly`]).
    pub anomaly: Arc<crate::anomaly::Detector>,
    pub metrics: Arc<Metrics>,
    pub http: HttpOptions,
    /// The capability services (workflow, messaging, …) by type; handlers take them with
    /// [`Svc`].
    pub services: Services,
}

/// A type map of capability services, filled once at start-up.
#[derive(Clone, Default)]
pub struct Services(axum::http::Extensions);

impl Services {
    pub fn insert<T: Clone + Send + Sync + 'static>(&mut self, service: T) {
        self.0.insert(service);
    }

    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<&T> {
        self.0.get::<T>()
    }
}

/// Extracts a capability service registered in [`AppState::services`].
pub struct Svc<T>(pub T);

impl<T: Clone + Send + Sync + 'static> axum::extract::FromRequestParts<AppState> for Svc<T> {
    type Rejection = crate::ApiError;

    async fn from_request_parts(_: &mut axum::http::request::Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        state.services.get::<T>().cloned().map(Svc).ok_or_else(|| {
            crate::ApiError(kernel::Error::internal(std::io::Error::other(format!(
                "service {} is not registered",
                std::any::type_name::<T>()
            ))))
        })
    }
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
    /// Where the three administrators may work from (empty: anywhere).
    pub admin_networks: Vec<crate::netlist::Net>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            secure_cookies: false,
            body_limit: 2 * 1024 * 1024,
            trust_forwarded_for: false,
            admin_networks: Vec::new(),
        }
    }
}
