//! HTTP API of the workflow engine (`/api/v1/flow/...`). Thin handlers: each checks the
//! permission in its extractor type and calls one service method.

use apikit::{ApiResult, AppState, ErrorBody, Json, Need, Query, Svc};
use axum::extract::Path;
use axum::http::StatusCode;
use kernel::Error;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::parse::ModelError;
use crate::runtime::{
    BufferedMessage, BulkMigration, Correlation, Definition, DefinitionSummary, DelayRow, Flow, HistoryEntry, Incident,
    IncidentFilter, Instance, InstanceDetail, InstanceFilter, MessageRequest, MigrateRequest, Resolution, StartRequest,
    Task, TaskAction, TaskFilter, TaskView,
};

/// Permission markers of the workflow engine.
pub mod perm {
    use identity::perms;
    apikit::permissions! {
        FlowModelRead = perms::FLOW_MODEL_READ,
        FlowModelManage = perms::FLOW_MODEL_MANAGE,
        FlowStart = perms::FLOW_START,
        FlowInstanceRead = perms::FLOW_INSTANCE_READ,
        FlowInstanceManage = perms::FLOW_INSTANCE_MANAGE,
        FlowTask = perms::FLOW_TASK,
    }
}

const TAG: &str = "流程";

apikit::page_type!(InstancePage, Instance, "A page of process instances.");
apikit::page_type!(TaskPage, Task, "A page of tasks.");
apikit::page_type!(IncidentPage, Incident, "A page of incidents.");

/// The workflow routes; the server registers the [`Flow`] service in `AppState::services`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_definitions, deploy))
        .routes(routes!(check_model))
        .routes(routes!(get_definition))
        .routes(routes!(list_handlers))
        .routes(routes!(list_instances, start_instance))
        .routes(routes!(get_instance))
        .routes(routes!(instance_history))
        .routes(routes!(cancel_instance))
        .routes(routes!(migrate_instance))
        .routes(routes!(migrate_version))
        .routes(routes!(list_messages, correlate_message))
        .routes(routes!(withdraw_message))
        .routes(routes!(broadcast_signal))
        .routes(routes!(list_tasks))
        .routes(routes!(get_task, act_on_task))
        .routes(routes!(delay_overview))
        .routes(routes!(list_incidents))
        .routes(routes!(resolve_incident))
}

/// A model to deploy or check.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// BPMN 2.0 XML, as saved by bpmn-js or Camunda Modeler.
    pub xml: String,
    /// Forms designed with form-js, by form key.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub forms: serde_json::Map<String, serde_json::Value>,
}

/// The result of checking a model.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    pub ok: bool,
    pub process_id: Option<String>,
    pub problems: Vec<ModelError>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DefinitionQuery {
    pub key: Option<String>,
    /// Only the latest version of each process.
    pub latest: Option<bool>,
}

/// Deployed process definitions.
#[utoipa::path(get, path = "/flow/definitions", tag = TAG, params(DefinitionQuery),
    responses((status = 200, body = Vec<DefinitionSummary>), (status = 403, body = ErrorBody)))]
pub async fn list_definitions(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowModelRead>,
    Query(q): Query<DefinitionQuery>,
) -> ApiResult<axum::Json<Vec<DefinitionSummary>>> {
    Ok(axum::Json(flow.definitions(&auth.caller, q.key.as_deref(), q.latest.unwrap_or(false)).await?))
}

/// Deploys a model as the next version of its process.
#[utoipa::path(post, path = "/flow/definitions", tag = TAG, request_body = DeployRequest,
    responses((status = 201, body = DefinitionSummary), (status = 422, body = ErrorBody)))]
pub async fn deploy(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowModelManage>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<(StatusCode, axum::Json<DefinitionSummary>)> {
    let d = flow.deploy(&auth.caller, &auth.actor(), &req.xml, req.forms).await?;
    Ok((StatusCode::CREATED, axum::Json(d)))
}

/// Checks a model without deploying it: every problem with its line and element.
#[utoipa::path(post, path = "/flow/definitions/check", tag = TAG, request_body = DeployRequest,
    responses((status = 200, body = CheckResult)))]
pub async fn check_model(
    Svc(flow): Svc<Flow>,
    _auth: Need<perm::FlowModelRead>,
    Json(req): Json<DeployRequest>,
) -> ApiResult<axum::Json<CheckResult>> {
    Ok(axum::Json(match flow.check_model(&req.xml) {
        Ok(d) => CheckResult { ok: true, process_id: Some(d.main_process().id.clone()), problems: vec![] },
        Err(problems) => CheckResult { ok: false, process_id: None, problems },
    }))
}

/// One definition with its XML and forms.
#[utoipa::path(get, path = "/flow/definitions/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Definition), (status = 404, body = ErrorBody)))]
pub async fn get_definition(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowModelRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Definition>> {
    Ok(axum::Json(flow.definition(&auth.caller, &id).await?))
}

/// Names of the service-task handlers registered on this node.
#[utoipa::path(get, path = "/flow/handlers", tag = TAG, responses((status = 200, body = Vec<String>)))]
pub async fn list_handlers(
    Svc(flow): Svc<Flow>,
    _auth: Need<perm::FlowModelRead>,
) -> ApiResult<axum::Json<Vec<String>>> {
    Ok(axum::Json(flow.handler_names()))
}

/// Searches process instances.
#[utoipa::path(get, path = "/flow/instances", tag = TAG, params(InstanceFilter),
    responses((status = 200, body = InstancePage), (status = 400, body = ErrorBody)))]
pub async fn list_instances(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowStart>,
    Query(f): Query<InstanceFilter>,
) -> ApiResult<axum::Json<InstancePage>> {
    Ok(axum::Json(flow.instances(&auth.caller, &f).await?.into()))
}

/// Starts a process instance.
#[utoipa::path(post, path = "/flow/instances", tag = TAG, request_body = StartRequest,
    responses((status = 201, body = Instance), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn start_instance(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowStart>,
    Json(req): Json<StartRequest>,
) -> ApiResult<(StatusCode, axum::Json<Instance>)> {
    let i = flow.start(&auth.caller, &auth.actor(), req).await?;
    Ok((StatusCode::CREATED, axum::Json(i)))
}

/// The tracking view: variables, current position, taken path, timeline, incidents, diagram.
#[utoipa::path(get, path = "/flow/instances/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = InstanceDetail), (status = 404, body = ErrorBody)))]
pub async fn get_instance(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowStart>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<InstanceDetail>> {
    Ok(axum::Json(flow.instance(&auth.caller, &id).await?))
}

/// The raw history rows of an instance.
#[utoipa::path(get, path = "/flow/instances/{id}/history", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Vec<HistoryEntry>), (status = 404, body = ErrorBody)))]
pub async fn instance_history(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowStart>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<HistoryEntry>>> {
    Ok(axum::Json(flow.history(&auth.caller, &id).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub reason: String,
}

/// Cancels an instance (its initiator, or a process manager).
#[utoipa::path(post, path = "/flow/instances/{id}/cancel", tag = TAG, params(("id" = String, Path)), request_body = CancelRequest,
    responses((status = 200, body = Instance), (status = 409, body = ErrorBody)))]
pub async fn cancel_instance(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowStart>,
    Path(id): Path<String>,
    Json(req): Json<CancelRequest>,
) -> ApiResult<axum::Json<Instance>> {
    Ok(axum::Json(flow.cancel(&auth.caller, &auth.actor(), &id, &req.reason).await?))
}

/// Delivers a message (event notification) to the instance waiting for it, or starts a
/// process with a matching message start event (200, the instance). With `ttl_seconds`, a
/// message nobody waits for yet is buffered until an instance subscribes to it (202).
#[utoipa::path(post, path = "/flow/messages", tag = TAG, request_body = MessageRequest,
    responses((status = 200, body = Instance, description = "delivered, or it started an instance"),
        (status = 202, body = BufferedMessage, description = "nobody waits yet: buffered until it expires"),
        (status = 404, body = ErrorBody, description = "nobody waits, nothing starts with it and no ttl_seconds"),
        (status = 409, body = ErrorBody, description = "a message with this message_id is already buffered")))]
pub async fn correlate_message(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowStart>,
    Json(req): Json<MessageRequest>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    Ok(match flow.correlate(&auth.caller, &auth.actor(), req).await? {
        Correlation::Delivered(i) => axum::Json(*i).into_response(),
        Correlation::Buffered(m) => (StatusCode::ACCEPTED, axum::Json(m)).into_response(),
    })
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessageFilter {
    /// Only messages of this name.
    pub name: Option<String>,
}

/// Buffered messages that no instance has taken yet and that have not expired, oldest first.
#[utoipa::path(get, path = "/flow/messages", tag = TAG, params(MessageFilter),
    responses((status = 200, body = Vec<BufferedMessage>)))]
pub async fn list_messages(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceRead>,
    Query(f): Query<MessageFilter>,
) -> ApiResult<axum::Json<Vec<BufferedMessage>>> {
    Ok(axum::Json(flow.buffered_messages(&auth.caller, f.name.as_deref()).await?))
}

/// Withdraws a buffered message before an instance takes it.
#[utoipa::path(delete, path = "/flow/messages/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn withdraw_message(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    flow.withdraw_message(&auth.caller, &auth.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalRequest {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SignalResult {
    pub reached: usize,
}

/// Broadcasts a signal to every instance waiting for it.
#[utoipa::path(post, path = "/flow/signals", tag = TAG, request_body = SignalRequest, responses((status = 200, body = SignalResult)))]
pub async fn broadcast_signal(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceManage>,
    Json(req): Json<SignalRequest>,
) -> ApiResult<axum::Json<SignalResult>> {
    if req.name.trim().is_empty() {
        return Err(Error::validation("name is required").into());
    }
    Ok(axum::Json(SignalResult {
        reached: flow.broadcast(&auth.caller, &auth.actor(), &req.name, req.variables).await?,
    }))
}

/// Tasks: the inbox (待办), the done list (已办), or all (process managers).
#[utoipa::path(get, path = "/flow/tasks", tag = TAG, params(TaskFilter), responses((status = 200, body = TaskPage)))]
pub async fn list_tasks(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowTask>,
    Query(f): Query<TaskFilter>,
) -> ApiResult<axum::Json<TaskPage>> {
    Ok(axum::Json(flow.tasks(&auth.caller, &f).await?.into()))
}

/// Opens a task with its form and variables.
#[utoipa::path(get, path = "/flow/tasks/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
pub async fn get_task(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowTask>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<TaskView>> {
    Ok(axum::Json(flow.task(&auth.caller, &id).await?))
}

/// Acts on a task: claim, unclaim, complete, transfer, delegate, send back, urge, add a signer.
#[utoipa::path(post, path = "/flow/tasks/{id}", tag = TAG, params(("id" = String, Path)), request_body = TaskAction,
    responses((status = 200, body = Task), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn act_on_task(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowTask>,
    Path(id): Path<String>,
    Json(action): Json<TaskAction>,
) -> ApiResult<axum::Json<Task>> {
    Ok(axum::Json(flow.task_action(&auth.caller, &auth.actor(), &id, action).await?))
}

/// Incidents (failed jobs, expression errors, unhandled errors).
#[utoipa::path(get, path = "/flow/incidents", tag = TAG, params(IncidentFilter), responses((status = 200, body = IncidentPage)))]
pub async fn list_incidents(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceManage>,
    Query(f): Query<IncidentFilter>,
) -> ApiResult<axum::Json<IncidentPage>> {
    Ok(axum::Json(flow.incidents(&auth.caller, &f).await?.into()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub resolution: Resolution,
}

/// Resolves an incident: retry, skip (failed service task), or cancel the instance.
#[utoipa::path(post, path = "/flow/incidents/{id}/resolve", tag = TAG, params(("id" = String, Path)), request_body = ResolveRequest,
    responses((status = 200, body = Incident), (status = 409, body = ErrorBody)))]
pub async fn resolve_incident(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceManage>,
    Path(id): Path<String>,
    Json(req): Json<ResolveRequest>,
) -> ApiResult<axum::Json<Incident>> {
    Ok(axum::Json(flow.resolve_incident(&auth.caller, &auth.actor(), &id, req.resolution).await?))
}

/// Open tasks per department with due-soon and overdue counts (延误流程概况).
#[utoipa::path(get, path = "/flow/overview/delays", tag = TAG, responses((status = 200, body = Vec<DelayRow>), (status = 403, body = ErrorBody)))]
pub async fn delay_overview(Svc(flow): Svc<Flow>, auth: Need<perm::FlowStart>) -> ApiResult<axum::Json<Vec<DelayRow>>> {
    Ok(axum::Json(flow.delay_overview(&auth.caller).await?))
}

/// Moves a running instance to another version of its process (element mapping for renamed steps).
#[utoipa::path(post, path = "/flow/instances/{id}/migrate", tag = TAG, params(("id" = String, Path)), request_body = MigrateRequest,
    responses((status = 200, body = Instance), (status = 422, body = ErrorBody)))]
pub async fn migrate_instance(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceManage>,
    Path(id): Path<String>,
    Json(req): Json<MigrateRequest>,
) -> ApiResult<axum::Json<Instance>> {
    Ok(axum::Json(flow.migrate(&auth.caller, &auth.actor(), &id, req).await?))
}

/// Moves every running instance of a version (by its definition id) to another version with one
/// element mapping; each moves on its own, those that cannot are listed.
#[utoipa::path(post, path = "/flow/definitions/{id}/migrate", tag = TAG, params(("id" = String, Path)), request_body = MigrateRequest,
    responses((status = 200, body = BulkMigration), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn migrate_version(
    Svc(flow): Svc<Flow>,
    auth: Need<perm::FlowInstanceManage>,
    Path(id): Path<String>,
    Json(req): Json<MigrateRequest>,
) -> ApiResult<axum::Json<BulkMigration>> {
    Ok(axum::Json(flow.migrate_version(&auth.caller, &auth.actor(), &id, req).await?))
}
