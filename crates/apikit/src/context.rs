//! The per-request context, reachable from anywhere in the request's task.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use identity::Actor;

/// What is known about the request being served.
#[derive(Debug, Default)]
pub struct RequestCtx {
    pub request_id: String,
    pub source_ip: Option<IpAddr>,
    /// Set by the authentication extractor.
    pub caller: Mutex<Option<CallerInfo>>,
}

#[derive(Debug, Clone)]
pub struct CallerInfo {
    pub id: String,
    pub username: String,
    pub org_id: String,
    pub is_app: bool,
    /// One of the three administrators.
    pub admin: bool,
}

impl CallerInfo {
    /// The caller as the anomaly detector and rate limiter key it.
    pub fn key(&self) -> String {
        format!("{}:{}", if self.is_app { "app" } else { "user" }, self.id)
    }
}

tokio::task_local! {
    pub static CTX: Arc<RequestCtx>;
}

/// The current request id, if inside a request.
pub fn request_id() -> Option<String> {
    CTX.try_with(|c| c.request_id.clone()).ok()
}

/// An audit actor for the current request (anonymous until a caller is known).
pub fn actor() -> Actor {
    CTX.try_with(|c| {
        let caller = c.caller.lock().expect("ctx lock").clone();
        Actor {
            user_id: caller.as_ref().map(|k| k.id.clone()),
            username: caller.as_ref().map(|k| k.username.clone()),
            org_id: caller.as_ref().map(|k| k.org_id.clone()),
            source_ip: c.source_ip.map(|ip| ip.to_string()),
            request_id: Some(c.request_id.clone()),
            channel: if caller.as_ref().is_some_and(|k| k.is_app) { audit::Channel::Api } else { audit::Channel::Web },
        }
    })
    .unwrap_or_default()
}

pub(crate) fn set_caller(info: CallerInfo) {
    let _ = CTX.try_with(|c| *c.caller.lock().expect("ctx lock") = Some(info));
}

pub fn source_ip() -> Option<IpAddr> {
    CTX.try_with(|c| c.source_ip).ok().flatten()
}
