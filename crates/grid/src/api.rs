//! HTTP API of the grid platform (`/api/v1/grid/...`). Thin handlers: each checks the
//! permission in its extractor type and calls one service method.

use apikit::anomaly::Counted;
use apikit::{ApiResult, AppState, ErrorBody, Json, Need, Query, Svc};
use axum::extract::Path;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Grid;
use crate::areas::{ImportParams, ImportReport, Location};
use crate::attachments::Attachment;
use crate::cases::{Case, CaseAction, CaseDetail, CaseFilter, IntakeRequest, IntakeResult};
use crate::categories::{Category, CategoryInput, Suggestion};
use crate::delivery::Reconciliation;
use crate::people::{BaseChange, Person, PersonFilter, PersonInput, RecordImport};
use crate::places::{Geocode, Place, PlaceFilter, PlaceInput};
use crate::platforms::{Callback, CallbackResult, Delivery, DeliveryFilter, Platform, PlatformInput};
use crate::registry::{Facility, FacilityInput, OrgRecord, OrgRecordInput, RegistryFilter};
use crate::rules::{Route, RouteQuery, Rule, RuleInput};

/// Permission markers of the grid platform.
pub mod perm {
    use identity::perms;
    apikit::permissions! {
        GridAreaRead = perms::GRID_AREA_READ,
        GridManage = perms::GRID_MANAGE,
        GridCaseReport = perms::GRID_CASE_REPORT,
        GridCaseRead = perms::GRID_CASE_READ,
        GridCaseWork = perms::GRID_CASE_WORK,
        GridBaseRead = perms::GRID_BASE_READ,
        GridBaseManage = perms::GRID_BASE_MANAGE,
    }
}

const TAG: &str = "网格";

apikit::page_type!(CasePage, Case, "A page of cases.");
apikit::page_type!(PersonPage, Person, "A page of people.");
apikit::page_type!(FacilityPage, Facility, "A page of facilities.");
apikit::page_type!(OrgRecordPage, OrgRecord, "A page of organisations.");
apikit::page_type!(PlacePage, Place, "A page of places.");
apikit::page_type!(PlatformDeliveryPage, Delivery, "A page of messages to platforms.");

/// An uploaded file, sent as the raw request body.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct FileBody(pub Vec<u8>);

/// The grid routes; the server registers the [`Grid`] service in `AppState::services`.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(areas_geojson))
        .routes(routes!(import_areas))
        .routes(routes!(locate))
        .routes(routes!(assign_worker))
        .routes(routes!(list_categories, create_category))
        .routes(routes!(update_category))
        .routes(routes!(suggest_category))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(update_rule, delete_rule))
        .routes(routes!(test_route))
        .routes(routes!(list_cases, intake))
        .routes(routes!(case_map))
        .routes(routes!(get_case))
        .routes(routes!(act_on_case))
        .routes(routes!(upload_attachment))
        .routes(routes!(get_attachment))
        .routes(routes!(list_people, save_person))
        .routes(routes!(import_people))
        .routes(routes!(get_person))
        .routes(routes!(person_history))
        .routes(routes!(list_facilities, save_facility))
        .routes(routes!(import_facilities))
        .routes(routes!(facility_history))
        .routes(routes!(list_org_records, save_org_record))
        .routes(routes!(import_org_records))
        .routes(routes!(org_record_history))
        .routes(routes!(list_platforms, create_platform))
        .routes(routes!(update_platform))
        .routes(routes!(retry_platform))
        .routes(routes!(reconcile_platform, list_reconciliations))
        .routes(routes!(list_deliveries))
        .routes(routes!(platform_callback))
        .routes(routes!(platform_event))
        .routes(routes!(list_places, save_place))
        .routes(routes!(import_places))
        .routes(routes!(place_history))
        .routes(routes!(geocode))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AreaQuery {
    /// Org kind: district, street, community or grid.
    pub level: Option<String>,
    /// Only areas under this org.
    pub under: Option<String>,
}

/// Area boundaries as a GeoJSON FeatureCollection (for the map and for export).
#[utoipa::path(get, path = "/grid/areas", tag = TAG, params(AreaQuery),
    responses((status = 200, description = "GeoJSON FeatureCollection (WGS84)", body = Object)))]
pub async fn areas_geojson(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridAreaRead>,
    Query(q): Query<AreaQuery>,
) -> ApiResult<axum::Json<serde_json::Value>> {
    Ok(axum::Json(g.areas_geojson(&auth.caller, q.level.as_deref(), q.under.as_deref()).await?))
}

/// Imports area boundaries from GeoJSON (each feature's `code` names its org). Invalid
/// polygons and unknown codes refuse the import; overlaps and gaps refuse it unless accepted.
#[utoipa::path(post, path = "/grid/areas/import", tag = TAG, params(ImportParams),
    request_body(content = String, content_type = "application/geo+json"),
    responses((status = 200, body = ImportReport), (status = 422, body = ErrorBody)))]
pub async fn import_areas(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Query(p): Query<ImportParams>,
    body: String,
) -> ApiResult<axum::Json<ImportReport>> {
    Ok(axum::Json(g.import_areas(&auth.caller, &auth.actor(), &body, &p).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LocateQuery {
    pub lon: f64,
    pub lat: f64,
    /// wgs84 (default), cgcs2000, gcj02 or bd09
    pub crs: Option<String>,
}

/// Which grid (and community, street, district) a point is in.
#[utoipa::path(get, path = "/grid/locate", tag = TAG, params(LocateQuery),
    responses((status = 200, body = Location), (status = 422, body = ErrorBody)))]
pub async fn locate(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridAreaRead>,
    Query(q): Query<LocateQuery>,
) -> ApiResult<axum::Json<Location>> {
    Ok(axum::Json(g.locate(&auth.caller, q.lon, q.lat, q.crs.as_deref()).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkerRequest {
    pub username: String,
}

/// Assigns a grid worker to a grid.
#[utoipa::path(post, path = "/grid/areas/{id}/workers", tag = TAG, params(("id" = String, Path)), request_body = WorkerRequest,
    responses((status = 204), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn assign_worker(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
    Json(req): Json<WorkerRequest>,
) -> ApiResult<StatusCode> {
    g.assign_worker(&auth.caller, &auth.actor(), &id, &req.username).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The category taxonomy (top classes and their categories).
#[utoipa::path(get, path = "/grid/categories", tag = TAG, responses((status = 200, body = Vec<Category>)))]
pub async fn list_categories(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridAreaRead>,
) -> ApiResult<axum::Json<Vec<Category>>> {
    Ok(axum::Json(g.categories(&auth.caller).await?))
}

/// Adds a category or top class.
#[utoipa::path(post, path = "/grid/categories", tag = TAG, request_body = CategoryInput,
    responses((status = 201, body = Category), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_category(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Json(input): Json<CategoryInput>,
) -> ApiResult<(StatusCode, axum::Json<Category>)> {
    Ok((StatusCode::CREATED, axum::Json(g.save_category(&auth.caller, &auth.actor(), None, input).await?)))
}

/// Changes a category: name, owner department, urgencies, time limits, keywords.
#[utoipa::path(put, path = "/grid/categories/{id}", tag = TAG, params(("id" = String, Path)), request_body = CategoryInput,
    responses((status = 200, body = Category), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_category(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
    Json(input): Json<CategoryInput>,
) -> ApiResult<axum::Json<Category>> {
    Ok(axum::Json(g.save_category(&auth.caller, &auth.actor(), Some(&id), input).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestRequest {
    pub text: String,
}

/// Suggested categories for free text (keywords and what dispatchers chose before).
#[utoipa::path(post, path = "/grid/categories/suggest", tag = TAG, request_body = SuggestRequest,
    responses((status = 200, body = Vec<Suggestion>)))]
pub async fn suggest_category(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Json(req): Json<SuggestRequest>,
) -> ApiResult<axum::Json<Vec<Suggestion>>> {
    Ok(axum::Json(g.suggest(&auth.caller, &req.text).await?))
}

/// Assignment rules (属主/属地).
#[utoipa::path(get, path = "/grid/rules", tag = TAG, responses((status = 200, body = Vec<Rule>)))]
pub async fn list_rules(Svc(g): Svc<Grid>, auth: Need<perm::GridCaseRead>) -> ApiResult<axum::Json<Vec<Rule>>> {
    Ok(axum::Json(g.rules(&auth.caller).await?))
}

/// Adds an assignment rule.
#[utoipa::path(post, path = "/grid/rules", tag = TAG, request_body = RuleInput,
    responses((status = 201, body = Rule), (status = 422, body = ErrorBody)))]
pub async fn create_rule(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Json(input): Json<RuleInput>,
) -> ApiResult<(StatusCode, axum::Json<Rule>)> {
    Ok((StatusCode::CREATED, axum::Json(g.save_rule(&auth.caller, &auth.actor(), None, input).await?)))
}

/// Replaces an assignment rule.
#[utoipa::path(put, path = "/grid/rules/{id}", tag = TAG, params(("id" = String, Path)), request_body = RuleInput,
    responses((status = 200, body = Rule), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_rule(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
    Json(input): Json<RuleInput>,
) -> ApiResult<axum::Json<Rule>> {
    Ok(axum::Json(g.save_rule(&auth.caller, &auth.actor(), Some(&id), input).await?))
}

/// Deletes an assignment rule.
#[utoipa::path(delete, path = "/grid/rules/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_rule(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    g.delete_rule(&auth.caller, &auth.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// "Where would this event go?": the department the rules choose, and why.
#[utoipa::path(post, path = "/grid/rules/test", tag = TAG, request_body = RouteQuery,
    responses((status = 200, body = Route), (status = 422, body = ErrorBody)))]
pub async fn test_route(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Json(q): Json<RouteQuery>,
) -> ApiResult<axum::Json<Route>> {
    Ok(axum::Json(g.test_route(&auth.caller, &q).await?))
}

/// Searches cases in the caller's scope.
#[utoipa::path(get, path = "/grid/cases", tag = TAG, params(CaseFilter),
    responses((status = 200, body = CasePage), (status = 400, body = ErrorBody)))]
pub async fn list_cases(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Query(f): Query<CaseFilter>,
) -> ApiResult<Counted<axum::Json<CasePage>>> {
    let page: CasePage = g.cases(&auth.caller, &f).await?.into();
    Ok(Counted(page.items.len(), axum::Json(page)))
}

/// Receives an event from any source (idempotent on source + external_id) and opens its case.
#[utoipa::path(post, path = "/grid/cases", tag = TAG, request_body = IntakeRequest,
    responses((status = 201, body = IntakeResult), (status = 200, description = "already received", body = IntakeResult),
        (status = 422, body = ErrorBody)))]
pub async fn intake(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseReport>,
    Json(req): Json<IntakeRequest>,
) -> ApiResult<(StatusCode, axum::Json<IntakeResult>)> {
    let r = g.intake(&auth.caller, &auth.actor(), req).await?;
    Ok((if r.created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(r)))
}

/// A case on the map.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CasePoint {
    pub id: String,
    pub case_no: String,
    pub title: String,
    pub lon: f64,
    pub lat: f64,
    pub stage: String,
    pub flag: String,
    pub urgency: String,
}

/// Open cases with a position, for the map (at most 2,000, newest first).
#[utoipa::path(get, path = "/grid/cases/map", tag = TAG, params(CaseFilter), responses((status = 200, body = Vec<CasePoint>)))]
pub async fn case_map(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Query(mut f): Query<CaseFilter>,
) -> ApiResult<axum::Json<Vec<CasePoint>>> {
    f.page = Some(1);
    f.page_size = Some(200);
    let mut out = Vec::new();
    for page in 1..=10 {
        f.page = Some(page);
        let p = g.cases(&auth.caller, &f).await?;
        let n = p.items.len();
        out.extend(p.items.into_iter().filter_map(|c| {
            Some(CasePoint {
                lon: c.lon?,
                lat: c.lat?,
                id: c.id,
                case_no: c.case_no,
                title: c.title,
                stage: c.stage,
                flag: c.flag,
                urgency: c.urgency,
            })
        }));
        if n < 200 {
            break;
        }
    }
    Ok(axum::Json(out))
}

/// One case with its timeline and the actions open to the caller.
#[utoipa::path(get, path = "/grid/cases/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = CaseDetail), (status = 404, body = ErrorBody)))]
pub async fn get_case(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<CaseDetail>> {
    Ok(axum::Json(g.case(&auth.caller, &id).await?))
}

/// Acts on a case: accept, reject, merge, dispatch, handle, decline, request_extension,
/// decide_extension, verify.
#[utoipa::path(post, path = "/grid/cases/{id}/actions", tag = TAG, params(("id" = String, Path)), request_body = CaseAction,
    responses((status = 200, body = CaseDetail), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn act_on_case(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseWork>,
    Path(id): Path<String>,
    Json(action): Json<CaseAction>,
) -> ApiResult<axum::Json<CaseDetail>> {
    Ok(axum::Json(g.act(&auth.caller, &auth.actor(), &id, action).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file name to show.
    pub name: Option<String>,
}

/// Uploads a photo (JPEG, PNG or WebP, checked by content; at most `[grid] max_attachment_bytes`).
/// Use its id in the intake's or an action's `attachments`; unused uploads are removed after a day.
#[utoipa::path(post, path = "/grid/attachments", tag = TAG, params(UploadQuery),
    request_body(content = FileBody, content_type = "image/jpeg"),
    responses((status = 201, body = Attachment), (status = 422, body = ErrorBody)))]
pub async fn upload_attachment(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Query(q): Query<UploadQuery>,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, axum::Json<Attachment>)> {
    let a = g.upload(&auth.caller, &auth.actor(), q.name.as_deref().unwrap_or("photo"), &body).await?;
    Ok((StatusCode::CREATED, axum::Json(a)))
}

/// The bytes of a photo (its uploader, or whoever may see its case).
#[utoipa::path(get, path = "/grid/attachments/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 404, body = ErrorBody)))]
pub async fn get_attachment(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridCaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::response::Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let (mime, data) = g.attachment_data(&auth.caller, &id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "private, max-age=86400".to_string()),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_string()),
        ],
        data,
    )
        .into_response())
}

/// People (人口) in the caller's scope; personal fields masked unless the caller holds `pi.unmask`.
#[utoipa::path(get, path = "/grid/people", tag = TAG, params(PersonFilter), responses((status = 200, body = PersonPage)))]
pub async fn list_people(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Query(f): Query<PersonFilter>,
) -> ApiResult<Counted<axum::Json<PersonPage>>> {
    let page: PersonPage = g.people(&auth.caller, &f).await?.into();
    Ok(Counted(page.items.len(), axum::Json(page)))
}

/// Adds a person, or updates the one with the same ID-card number.
#[utoipa::path(post, path = "/grid/people", tag = TAG, request_body = PersonInput,
    responses((status = 200, body = Person), (status = 422, body = ErrorBody)))]
pub async fn save_person(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    Json(input): Json<PersonInput>,
) -> ApiResult<axum::Json<Person>> {
    Ok(axum::Json(g.save_person(&auth.caller, &auth.actor(), input).await?))
}

/// Imports people from CSV or XLSX (a header row); answers a per-row report.
#[utoipa::path(post, path = "/grid/people/import", tag = TAG, request_body(content = FileBody, content_type = "text/csv", description = "CSV (UTF-8 or GB18030) or an XLSX workbook (its first sheet); the first row names the columns"),
    responses((status = 200, body = RecordImport), (status = 422, body = ErrorBody)))]
pub async fn import_people(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<RecordImport>> {
    Ok(axum::Json(g.import_people(&auth.caller, &auth.actor(), &body).await?))
}

/// One person.
#[utoipa::path(get, path = "/grid/people/{id}", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Person), (status = 404, body = ErrorBody)))]
pub async fn get_person(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Person>> {
    Ok(axum::Json(g.person(&auth.caller, &id).await?))
}

/// Which fields of a person changed when, and by whom (never the values).
#[utoipa::path(get, path = "/grid/people/{id}/history", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Vec<BaseChange>), (status = 404, body = ErrorBody)))]
pub async fn person_history(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<BaseChange>>> {
    Ok(axum::Json(g.person_history(&auth.caller, &id).await?))
}

/// Facilities (物设/部件) in the caller's scope.
#[utoipa::path(get, path = "/grid/facilities", tag = TAG, params(RegistryFilter), responses((status = 200, body = FacilityPage)))]
pub async fn list_facilities(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Query(f): Query<RegistryFilter>,
) -> ApiResult<Counted<axum::Json<FacilityPage>>> {
    let page: FacilityPage = g.facilities(&auth.caller, &f).await?.into();
    Ok(Counted(page.items.len(), axum::Json(page)))
}

/// Adds a facility (placed in its grid by position), or updates the one with the same component code.
#[utoipa::path(post, path = "/grid/facilities", tag = TAG, request_body = FacilityInput,
    responses((status = 200, body = Facility), (status = 422, body = ErrorBody)))]
pub async fn save_facility(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    Json(input): Json<FacilityInput>,
) -> ApiResult<axum::Json<Facility>> {
    Ok(axum::Json(g.save_facility(&auth.caller, &auth.actor(), input).await?))
}

/// Imports facilities from CSV (部件编码, 名称, 经度, 纬度, 坐标系, 权属部门, 状态, 地址).
#[utoipa::path(post, path = "/grid/facilities/import", tag = TAG, request_body(content = FileBody, content_type = "text/csv", description = "CSV (UTF-8 or GB18030) or an XLSX workbook (its first sheet); the first row names the columns"),
    responses((status = 200, body = RecordImport), (status = 422, body = ErrorBody)))]
pub async fn import_facilities(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<RecordImport>> {
    Ok(axum::Json(g.import_registry(&auth.caller, &auth.actor(), "facility", &body).await?))
}

/// Which fields of a facility changed when, and by whom.
#[utoipa::path(get, path = "/grid/facilities/{id}/history", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Vec<BaseChange>), (status = 404, body = ErrorBody)))]
pub async fn facility_history(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<BaseChange>>> {
    Ok(axum::Json(g.registry_history(&auth.caller, "facility", &id).await?))
}

/// Organisations (组织) in the caller's scope.
#[utoipa::path(get, path = "/grid/org-records", tag = TAG, params(RegistryFilter), responses((status = 200, body = OrgRecordPage)))]
pub async fn list_org_records(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Query(f): Query<RegistryFilter>,
) -> ApiResult<Counted<axum::Json<OrgRecordPage>>> {
    let page: OrgRecordPage = g.org_records(&auth.caller, &f).await?.into();
    Ok(Counted(page.items.len(), axum::Json(page)))
}

/// Adds an organisation, or updates the one with the same unified social credit code.
#[utoipa::path(post, path = "/grid/org-records", tag = TAG, request_body = OrgRecordInput,
    responses((status = 200, body = OrgRecord), (status = 422, body = ErrorBody)))]
pub async fn save_org_record(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    Json(input): Json<OrgRecordInput>,
) -> ApiResult<axum::Json<OrgRecord>> {
    Ok(axum::Json(g.save_org_record(&auth.caller, &auth.actor(), input).await?))
}

/// Imports organisations from CSV (统一社会信用代码, 名称, 类型, 地址, 网格).
#[utoipa::path(post, path = "/grid/org-records/import", tag = TAG, request_body(content = FileBody, content_type = "text/csv", description = "CSV (UTF-8 or GB18030) or an XLSX workbook (its first sheet); the first row names the columns"),
    responses((status = 200, body = RecordImport), (status = 422, body = ErrorBody)))]
pub async fn import_org_records(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<RecordImport>> {
    Ok(axum::Json(g.import_registry(&auth.caller, &auth.actor(), "org_record", &body).await?))
}

/// Which fields of an organisation changed when, and by whom.
#[utoipa::path(get, path = "/grid/org-records/{id}/history", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Vec<BaseChange>), (status = 404, body = ErrorBody)))]
pub async fn org_record_history(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<BaseChange>>> {
    Ok(axum::Json(g.registry_history(&auth.caller, "org_record", &id).await?))
}

/// Third-party platforms (数字城管, 综治, 12345) with their delivery figures.
#[utoipa::path(get, path = "/grid/platforms", tag = TAG, responses((status = 200, body = Vec<Platform>)))]
pub async fn list_platforms(Svc(g): Svc<Grid>, auth: Need<perm::GridManage>) -> ApiResult<axum::Json<Vec<Platform>>> {
    Ok(axum::Json(g.platforms(&auth.caller).await?))
}

/// Registers a third-party platform: its org (cases dispatched there go to the platform), its
/// connected application (which signs its calls to us), its endpoint, our credentials there and
/// its dialect.
#[utoipa::path(post, path = "/grid/platforms", tag = TAG, request_body = PlatformInput,
    responses((status = 201, body = Platform), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_platform(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Json(input): Json<PlatformInput>,
) -> ApiResult<(StatusCode, axum::Json<Platform>)> {
    Ok((StatusCode::CREATED, axum::Json(g.create_platform(&auth.caller, &auth.actor(), input).await?)))
}

/// Changes a platform (the stored secret stays unless a new one is given).
#[utoipa::path(put, path = "/grid/platforms/{id}", tag = TAG, params(("id" = String, Path)), request_body = PlatformInput,
    responses((status = 200, body = Platform), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_platform(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
    Json(input): Json<PlatformInput>,
) -> ApiResult<axum::Json<Platform>> {
    Ok(axum::Json(g.update_platform(&auth.caller, &auth.actor(), &id, input).await?))
}

/// What to retry.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// One message; all the platform's pending messages when absent.
    pub delivery_id: Option<String>,
}

/// How many messages were made due.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RetryResult {
    pub count: u64,
}

/// Sends a platform's pending messages (or one) now, lifting the pause after failures.
#[utoipa::path(post, path = "/grid/platforms/{id}/retry", tag = TAG, params(("id" = String, Path)), request_body = RetryRequest,
    responses((status = 200, body = RetryResult), (status = 404, body = ErrorBody)))]
pub async fn retry_platform(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
    Json(r): Json<RetryRequest>,
) -> ApiResult<axum::Json<RetryResult>> {
    let count = g.retry_deliveries(&auth.caller, &auth.actor(), &id, r.delivery_id.as_deref()).await?;
    Ok(axum::Json(RetryResult { count }))
}

/// Reconciles now the cases a platform holds with what it says of them (runs nightly too).
#[utoipa::path(post, path = "/grid/platforms/{id}/reconciliations", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Reconciliation), (status = 422, body = ErrorBody)))]
pub async fn reconcile_platform(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Reconciliation>> {
    Ok(axum::Json(g.reconcile(&auth.caller, &auth.actor(), &id).await?))
}

/// The latest reconciliation runs with a platform.
#[utoipa::path(get, path = "/grid/platforms/{id}/reconciliations", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Vec<Reconciliation>), (status = 404, body = ErrorBody)))]
pub async fn list_reconciliations(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<Reconciliation>>> {
    Ok(axum::Json(g.reconciliations(&auth.caller, &id).await?))
}

/// The delivery log: messages to platforms, newest first.
#[utoipa::path(get, path = "/grid/deliveries", tag = TAG, params(DeliveryFilter),
    responses((status = 200, body = PlatformDeliveryPage), (status = 400, body = ErrorBody)))]
pub async fn list_deliveries(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridManage>,
    Query(f): Query<DeliveryFilter>,
) -> ApiResult<axum::Json<PlatformDeliveryPage>> {
    Ok(axum::Json(g.deliveries(&auth.caller, &f).await?.into()))
}

/// A platform's callback — acceptance, return, handling result, verification feedback (核实反馈) —
/// signed by its connected application. Takes effect once per `callback_id`.
#[utoipa::path(post, path = "/grid/platforms/{code}/callbacks", tag = TAG, params(("code" = String, Path)),
    request_body = Callback,
    responses((status = 200, body = CallbackResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn platform_callback(
    Svc(g): Svc<Grid>,
    auth: apikit::Auth,
    Path(code): Path<String>,
    Json(cb): Json<Callback>,
) -> ApiResult<axum::Json<CallbackResult>> {
    Ok(axum::Json(g.platform_callback(&auth.caller, &auth.actor(), &code, cb).await?))
}

/// An event sent by a platform in its own words (mapped by its dialect), signed by its
/// connected application; idempotent on the platform's event id.
#[utoipa::path(post, path = "/grid/platforms/{code}/events", tag = TAG, params(("code" = String, Path)),
    request_body = Object,
    responses((status = 201, body = IntakeResult), (status = 200, description = "already received", body = IntakeResult),
        (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn platform_event(
    Svc(g): Svc<Grid>,
    auth: apikit::Auth,
    Path(code): Path<String>,
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> ApiResult<(StatusCode, axum::Json<IntakeResult>)> {
    let r = g.platform_event(&auth.caller, &auth.actor(), &code, body).await?;
    Ok((if r.created { StatusCode::CREATED } else { StatusCode::OK }, axum::Json(r)))
}

/// Places (地所): buildings and houses in the caller's scope.
#[utoipa::path(get, path = "/grid/places", tag = TAG, params(PlaceFilter), responses((status = 200, body = PlacePage)))]
pub async fn list_places(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Query(f): Query<PlaceFilter>,
) -> ApiResult<Counted<axum::Json<PlacePage>>> {
    let page: PlacePage = g.places(&auth.caller, &f).await?.into();
    Ok(Counted(page.items.len(), axum::Json(page)))
}

/// Adds a building (placed in its grid by position) or a house (in its building), or updates the
/// one with the same code.
#[utoipa::path(post, path = "/grid/places", tag = TAG, request_body = PlaceInput,
    responses((status = 200, body = Place), (status = 422, body = ErrorBody)))]
pub async fn save_place(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    Json(input): Json<PlaceInput>,
) -> ApiResult<axum::Json<Place>> {
    Ok(axum::Json(g.save_place(&auth.caller, &auth.actor(), input).await?))
}

/// Imports places from CSV or XLSX (编码, 类型, 所属楼栋, 名称, 地址, 经度, 纬度, 坐标系, 用途, 层数);
/// answers a per-row report.
#[utoipa::path(post, path = "/grid/places/import", tag = TAG, request_body(content = FileBody, content_type = "text/csv", description = "CSV (UTF-8 or GB18030) or an XLSX workbook (its first sheet); the first row names the columns"),
    responses((status = 200, body = RecordImport), (status = 422, body = ErrorBody)))]
pub async fn import_places(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseManage>,
    body: axum::body::Bytes,
) -> ApiResult<axum::Json<RecordImport>> {
    Ok(axum::Json(g.import_registry(&auth.caller, &auth.actor(), "place", &body).await?))
}

/// Which fields of a place changed, when and by whom.
#[utoipa::path(get, path = "/grid/places/{id}/history", tag = TAG, params(("id" = String, Path)),
    responses((status = 200, body = Vec<BaseChange>), (status = 404, body = ErrorBody)))]
pub async fn place_history(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridBaseRead>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Vec<BaseChange>>> {
    Ok(axum::Json(g.registry_history(&auth.caller, "place", &id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GeocodeQuery {
    pub address: String,
}

/// Where an address is: the most specific registered building or house it begins with (null when none).
#[utoipa::path(get, path = "/grid/geocode", tag = TAG, params(GeocodeQuery),
    responses((status = 200, body = Option<Geocode>), (status = 422, body = ErrorBody)))]
pub async fn geocode(
    Svc(g): Svc<Grid>,
    auth: Need<perm::GridAreaRead>,
    Query(q): Query<GeocodeQuery>,
) -> ApiResult<axum::Json<Option<Geocode>>> {
    Ok(axum::Json(g.geocode_for(&auth.caller, &q.address).await?))
}
