//! Middleware: request context and ids, metrics, audit of failed state-changing requests, and
//! verification of signed requests from connected applications.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use identity::apps::SignedRequest;
use kernel::ErrorCode;

use crate::anomaly::{Seen, Subject};
use crate::auth::AppCaller;
use crate::context::{CTX, RequestCtx};
use crate::error::{ApiError, FailureCode, err};
use crate::state::AppState;

/// Outermost layer: request id, source address, metrics, failure audit.
pub async fn request_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| (8..=64).contains(&v.len()) && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .map(str::to_string)
        .unwrap_or_else(kernel::ids::new_id);
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let forwarded = state
        .http
        .trust_forwarded_for
        .then(|| req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok());
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let path = req.uri().path().to_string();
    let source_ip = forwarded.or(peer);
    let ctx = Arc::new(RequestCtx { request_id: request_id.clone(), source_ip, ..Default::default() });
    let blocked = state
        .anomaly
        .has_blocks()
        .then(|| state.anomaly.blocked(&Subject::address(source_ip).key, state.clock.now_ms()))
        .flatten();
    let mut resp = match blocked {
        // An address blocked for abnormal calls gets nothing else.
        Some(secs) => ApiError(kernel::Error::rate_limited(secs)).into_response(),
        None => CTX.scope(ctx.clone(), next.run(req)).await,
    };
    let status = resp.status().as_u16();
    let rows = resp.extensions().get::<crate::anomaly::RowsOut>().map_or(0, |r| r.0);
    watch_for_anomalies(&state, &ctx, &method, route.as_deref(), &path, status, rows).await;
    let route_label = route.clone().unwrap_or_else(|| "unmatched".into());
    state.metrics.observe(method.as_str(), &route_label, status, started.elapsed().as_secs_f64() * 1000.0);
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    // State-changing requests that failed are audited too (successes are audited by the
    // services, in the transaction of the change; login steps audit themselves).
    let mutating = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let self_audited = route.as_deref().is_some_and(|r| r.starts_with("/api/v1/auth/"));
    if mutating && status >= 400 && !self_audited && route.is_some() {
        let code = resp.extensions().get::<FailureCode>().map(|c| c.0);
        let result = match code {
            Some(ErrorCode::Forbidden | ErrorCode::OutOfScope | ErrorCode::Unauthenticated | ErrorCode::CsrfFailed) => {
                audit::AuditResult::Denied
            }
            _ => audit::AuditResult::Failure,
        };
        let actor = CTX.sync_scope(ctx, crate::context::actor);
        let action = format!("http.{} {}", method.as_str().to_lowercase(), route.unwrap_or_default());
        let entry = actor
            .entry(state.clock.now_ms(), &action)
            .result(result, Some(code.map(|c| c.as_str().to_string()).unwrap_or_else(|| status.to_string())));
        if let Err(e) = state.audit.append_now(&state.db, &entry).await {
            tracing::error!(error = %e, "could not audit a failed request");
        }
    }
    resp
}

/// Feeds a finished request to the anomaly detector and raises what it finds.
async fn watch_for_anomalies(
    state: &AppState,
    ctx: &RequestCtx,
    method: &Method,
    route: Option<&str>,
    path: &str,
    status: u16,
    rows: u64,
) {
    // Most requests concern no rule; those are skipped before the caller is even looked at.
    if !crate::anomaly::Detector::concerns(method, route, status, rows, None) {
        return;
    }
    let caller = ctx.caller.lock().expect("ctx lock").clone();
    let admin = caller.as_ref().is_some_and(|c| c.admin);
    if !crate::anomaly::Detector::concerns(method, route, status, rows, Some(admin)) {
        return;
    }
    let subject = match &caller {
        Some(c) => Subject { key: c.key(), name: Some(c.username.clone()), ip: ctx.source_ip },
        None => Subject::address(ctx.source_ip),
    };
    let seen = Seen { subject: &subject, admin, method, route, path, status, rows };
    let now = state.clock.now_ms();
    if let Some(signal) = state.anomaly.observe(&state.identity.policy(), &seen, now) {
        raise(state, signal).await;
    }
}

async fn raise(state: &AppState, signal: identity::alerts::AlertSignal) {
    tracing::warn!(rule = signal.rule.as_str(), subject = %signal.subject, detail = %signal.detail, "security alert");
    if let Err(e) = state.identity.raise_alert(signal).await {
        tracing::error!(error = %e, "could not record a security alert");
    }
}

/// Verifies signed requests from connected applications before any handler runs.
pub async fn signed_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !req.headers().contains_key("x-zs-app-id") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, state.http.body_limit).await {
        Ok(b) => b,
        Err(_) => return err(ErrorCode::PayloadTooLarge, "the request body is larger than allowed").into_response(),
    };
    let h = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let (app_id, timestamp, nonce, signature) =
        (h("x-zs-app-id"), h("x-zs-timestamp"), h("x-zs-nonce"), h("x-zs-signature"));
    let signed = SignedRequest {
        app_id: &app_id,
        timestamp: &timestamp,
        nonce: &nonce,
        signature: &signature,
        method: parts.method.as_str(),
        path_and_query: &path_and_query,
        body: &bytes,
    };
    match state.identity.verify_signed(&signed).await {
        Ok((caller, limit)) => {
            parts.extensions.insert(AppCaller(caller, limit));
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
        Err(e) => {
            let mut entry = crate::context::actor().entry(state.clock.now_ms(), "auth.signed_request");
            entry.actor_name = Some(format!("app:{}", app_id.chars().take(40).collect::<String>()));
            entry.channel = audit::Channel::Api;
            let entry = entry.result(audit::AuditResult::Denied, Some(e.code.as_str().into()));
            if let Err(e) = state.audit.append_now(&state.db, &entry).await {
                tracing::error!(error = %e, "could not audit a refused signed request");
            }
            let policy = state.identity.policy();
            if let Some(signal) =
                state.anomaly.signature_failed(&policy, crate::context::source_ip(), &app_id, state.clock.now_ms())
            {
                raise(&state, signal).await;
            }
            ApiError(e).into_response()
        }
    }
}
