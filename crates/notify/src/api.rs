//! HTTP API of the message service (`/api/v1/notify/...`), with the live unread count as
//! server-sent events.

use std::convert::Infallible;
use std::time::Duration;

use apikit::{ApiResult, AppState, Auth, ErrorBody, Json, Need, Query, Svc};
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use kernel::PageRequest;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{Delivery, DeliveryFilter, Message, Notify, Preferences, SendRequest, Template};

/// Permission markers of the message service.
pub mod perm {
    use identity::perms;
    apikit::permissions! {
        NotifyManage = perms::NOTIFY_MANAGE,
    }
}

const TAG: &str = "消息服务";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(inbox))
        .routes(routes!(unread))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(stream))
        .routes(routes!(get_preferences, put_preferences))
        .routes(routes!(list_templates, save_template))
        .routes(routes!(send))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend))
}

apikit::page_type!(MessagePage, Message, "A page of inbox messages.");
apikit::page_type!(DeliveryPage, Delivery, "A page of deliveries.");

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    pub unread: Option<bool>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Unread {
    pub unread: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Sent {
    pub recipients: usize,
}

/// My inbox (站内信), newest first.
#[utoipa::path(get, path = "/notify/inbox", tag = TAG, params(InboxQuery), responses((status = 200, body = MessagePage)))]
pub async fn inbox(Svc(n): Svc<Notify>, auth: Auth, Query(q): Query<InboxQuery>) -> ApiResult<axum::Json<MessagePage>> {
    let page = PageRequest::new(q.page, q.page_size)?;
    Ok(axum::Json(n.inbox(&auth.caller, q.unread.unwrap_or(false), page).await?.into()))
}

/// How many of my messages are unread.
#[utoipa::path(get, path = "/notify/unread", tag = TAG, responses((status = 200, body = Unread)))]
pub async fn unread(Svc(n): Svc<Notify>, auth: Auth) -> ApiResult<axum::Json<Unread>> {
    Ok(axum::Json(Unread { unread: n.unread_count(&auth.caller.id).await? }))
}

/// Marks one message read.
#[utoipa::path(post, path = "/notify/inbox/{id}/read", tag = TAG, params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn mark_read(Svc(n): Svc<Notify>, auth: Auth, Path(id): Path<String>) -> ApiResult<StatusCode> {
    n.mark_read(&auth.caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Which messages "mark all read" covers.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadAll {
    /// Only messages created up to this time (unix ms): those the user has seen.
    pub before: Option<i64>,
}

/// Marks every message (up to `before`) read.
#[utoipa::path(post, path = "/notify/inbox/read-all", tag = TAG, request_body = ReadAll, responses((status = 204), (status = 400, body = ErrorBody)))]
pub async fn mark_all_read(Svc(n): Svc<Notify>, auth: Auth, Json(r): Json<ReadAll>) -> ApiResult<StatusCode> {
    n.mark_all_read(&auth.caller, r.before).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Live unread count as server-sent events (`event: unread`, data `{"unread": n}`), sent at
/// once and on every change; a comment every 20 s keeps proxies from closing the stream.
#[utoipa::path(get, path = "/notify/stream", tag = TAG, responses((status = 200, description = "text/event-stream")))]
pub async fn stream(Svc(n): Svc<Notify>, auth: Auth) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let user = auth.caller.id.clone();
    let mut rx = n.subscribe();
    let s = async_stream(move |tx: futures::channel::mpsc::UnboundedSender<Result<Event, Infallible>>| async move {
        let count = n.unread_count(&user).await.unwrap_or(0);
        let _ = tx.unbounded_send(Ok(Event::default().event("unread").data(format!("{{\"unread\":{count}}}"))));
        loop {
            match rx.recv().await {
                Ok(changed) if changed == user => {
                    let count = n.unread_count(&user).await.unwrap_or(0);
                    if tx
                        .unbounded_send(Ok(Event::default().event("unread").data(format!("{{\"unread\":{count}}}"))))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if tx.is_closed() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    });
    Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(20)))
}

/// Runs `f` as a task feeding an unbounded channel; the stream ends when the task does.
fn async_stream<F, Fut, T>(f: F) -> futures::channel::mpsc::UnboundedReceiver<T>
where
    F: FnOnce(futures::channel::mpsc::UnboundedSender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures::channel::mpsc::unbounded();
    tokio::spawn(f(tx));
    rx
}

/// My channels and quiet hours.
#[utoipa::path(get, path = "/notify/preferences", tag = TAG, responses((status = 200, body = Preferences)))]
pub async fn get_preferences(Svc(n): Svc<Notify>, auth: Auth) -> ApiResult<axum::Json<Preferences>> {
    Ok(axum::Json(n.preferences(&auth.caller).await?))
}

/// Saves my channels and quiet hours.
#[utoipa::path(put, path = "/notify/preferences", tag = TAG, request_body = Preferences,
    responses((status = 200, body = Preferences), (status = 422, body = ErrorBody)))]
pub async fn put_preferences(
    Svc(n): Svc<Notify>,
    auth: Auth,
    Json(p): Json<Preferences>,
) -> ApiResult<axum::Json<Preferences>> {
    Ok(axum::Json(n.save_preferences(&auth.caller, p).await?))
}

/// Message templates.
#[utoipa::path(get, path = "/notify/templates", tag = TAG, responses((status = 200, body = Vec<Template>), (status = 403, body = ErrorBody)))]
pub async fn list_templates(
    Svc(n): Svc<Notify>,
    auth: Need<perm::NotifyManage>,
) -> ApiResult<axum::Json<Vec<Template>>> {
    Ok(axum::Json(n.templates(&auth.caller).await?))
}

/// Creates or replaces a template.
#[utoipa::path(put, path = "/notify/templates", tag = TAG, request_body = Template,
    responses((status = 200, body = Template), (status = 422, body = ErrorBody)))]
pub async fn save_template(
    Svc(n): Svc<Notify>,
    auth: Need<perm::NotifyManage>,
    Json(t): Json<Template>,
) -> ApiResult<axum::Json<Template>> {
    Ok(axum::Json(n.save_template(&auth.caller, &auth.actor(), t).await?))
}

/// Sends a message (a template or a title and body) to users.
#[utoipa::path(post, path = "/notify/send", tag = TAG, request_body = SendRequest,
    responses((status = 200, body = Sent), (status = 422, body = ErrorBody)))]
pub async fn send(
    Svc(n): Svc<Notify>,
    auth: Need<perm::NotifyManage>,
    Json(req): Json<SendRequest>,
) -> ApiResult<axum::Json<Sent>> {
    Ok(axum::Json(Sent { recipients: n.send(&auth.caller, &auth.actor(), req).await? }))
}

/// The send log: each delivery by recipient and channel with its state.
#[utoipa::path(get, path = "/notify/deliveries", tag = TAG, params(DeliveryFilter), responses((status = 200, body = DeliveryPage)))]
pub async fn list_deliveries(
    Svc(n): Svc<Notify>,
    auth: Need<perm::NotifyManage>,
    Query(f): Query<DeliveryFilter>,
) -> ApiResult<axum::Json<DeliveryPage>> {
    Ok(axum::Json(n.deliveries(&auth.caller, &f).await?.into()))
}

/// Sends a delivery again.
#[utoipa::path(post, path = "/notify/deliveries/{id}/resend", tag = TAG, params(("id" = String, Path)),
    responses((status = 204), (status = 409, body = ErrorBody)))]
pub async fn resend(
    Svc(n): Svc<Notify>,
    auth: Need<perm::NotifyManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    n.resend(&auth.caller, &auth.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
