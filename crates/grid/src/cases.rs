//! Cases: intake from every source (one API, idempotent on source + external id), possible
//! duplicates, the case loop on the workflow engine (accept or reject → dispatch → handle →
//! verify → close; decline, extension, rework), and the observer that keeps each case's stage,
//! timestamps and timeline in step with its process instance.

use std::collections::HashMap;

use futures::future::BoxFuture;
use identity::perms::{GRID_CASE_READ, GRID_CASE_REPORT, GRID_CASE_WORK};
use identity::{Actor, Caller};
use kernel::{Error, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use spatial::{Crs, LonLat};
use store::{DbResultExt, Row, Tx, Where, like_escape};

use crate::Grid;
use crate::categories::Category;

/// Where events come from (事件来源).
pub const SOURCES: [&str; 7] = ["patrol", "hotline", "citizen", "video", "iot", "opinion", "third_party"];

/// A case is due soon (yellow) within this long of its stage deadline.
pub const DUE_SOON_MS: i64 = 2 * 3_600_000;

/// A new event from any source.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntakeRequest {
    /// patrol (网格巡查), hotline (12345), citizen (随手拍), video, iot, opinion (舆情), third_party.
    pub source: String,
    /// The sender's own id for this event: a resubmission with the same source and id returns
    /// the case already made instead of a second one.
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub description: String,
    /// Category by id or code; when both are absent the best suggestion for the text is used.
    pub category_id: Option<String>,
    pub category_code: Option<String>,
    /// normal (default), urgent or critical.
    pub urgency: Option<String>,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    /// Coordinate system of lon/lat: wgs84 (default), cgcs2000, gcj02 (Amap/Tencent, phones in China) or bd09 (Baidu).
    pub crs: Option<String>,
    pub address: Option<String>,
    /// The grid, when the position is not known.
    pub grid_id: Option<String>,
    /// Who reported it (a citizen's name, a platform's name); the caller's name by default.
    pub reporter: Option<String>,
    /// A grid worker solved it on the spot (自行处置): the case closes at once.
    #[serde(default)]
    pub resolved_on_spot: bool,
    /// Photos uploaded before (`POST /grid/attachments`), by id.
    #[serde(default)]
    pub attachments: Vec<String>,
}

/// A case as listed and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Case {
    pub id: String,
    pub case_no: String,
    pub source: String,
    pub external_id: Option<String>,
    pub title: String,
    pub description: String,
    pub category_id: String,
    pub category_name: String,
    pub category_code: String,
    pub urgency: String,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub address: Option<String>,
    pub grid_id: Option<String>,
    pub grid_name: Option<String>,
    pub reporter: String,
    pub department_id: Option<String>,
    pub department_name: Option<String>,
    /// report, accept, dispatch, handle, extension, verify, closed, rejected
    pub stage: String,
    /// open, closed, rejected, merged
    pub status: String,
    pub duplicate_of: Option<String>,
    /// The open main case (主件) of the same category nearby when this one was reported; cleared
    /// when the dispatcher accepts this case on its own.
    pub possible_duplicate_of: Option<String>,
    pub instance_id: Option<String>,
    pub stage_due_at: Option<i64>,
    /// normal, due_soon (yellow), overdue (red)
    pub flag: String,
    pub rework_count: i64,
    pub created_at: i64,
    pub accepted_at: Option<i64>,
    pub dispatched_at: Option<i64>,
    pub handled_at: Option<i64>,
    pub verified_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub updated_at: i64,
}

/// One step of a case's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseStep {
    pub seq: i64,
    pub at: i64,
    /// report, accept, reject, merge, dispatch, handle, decline, request_extension, extension_granted,
    /// extension_denied, verify_pass, verify_fail, close, close_on_spot
    pub action: String,
    /// The stage the case entered.
    pub stage: String,
    pub actor: Option<String>,
    pub note: Option<String>,
}

/// A case with its timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CaseDetail {
    #[serde(flatten)]
    pub case: Case,
    pub timeline: Vec<CaseStep>,
    /// Photos, with the step that added each.
    pub attachments: Vec<crate::attachments::Attachment>,
    /// What the caller may do now: the actions of the open task the caller can work.
    pub actions: Vec<String>,
    /// Third-party platforms the case was dispatched to or received from.
    pub platforms: Vec<crate::platforms::PlatformLink>,
    /// Messages to those platforms and their delivery.
    pub deliveries: Vec<crate::platforms::Delivery>,
    /// Set when the stored report or timeline fails its integrity check (changed outside the
    /// application): what failed. Such a case takes no action until restored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integrity_violation: Option<String>,
}

/// The answer to an intake.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IntakeResult {
    pub case: Case,
    /// False when this was a resubmission of an event already received.
    pub created: bool,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CaseFilter {
    /// open (default), closed, rejected, merged, all
    pub status: Option<String>,
    pub stage: Option<String>,
    pub source: Option<String>,
    /// A category or top class id.
    pub category_id: Option<String>,
    pub department_id: Option<String>,
    /// Cases in this area (any org: district, street, community, grid).
    pub area_id: Option<String>,
    /// overdue or due_soon
    pub flag: Option<String>,
    /// Text in the case number, title, description or address.
    pub q: Option<String>,
    /// Only cases waiting for the caller's org (my department's or my grid's work).
    #[serde(default)]
    pub mine: bool,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// An action on a case.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum CaseAction {
    /// 立案: file the case, optionally correcting category and urgency; with `department_id`
    /// given, dispatch it in the same step.
    Accept {
        category_id: Option<String>,
        urgency: Option<String>,
        note: Option<String>,
        department_id: Option<String>,
        override_reason: Option<String>,
    },
    /// 不予立案.
    Reject { reason: String },
    /// Merge into another open case (a duplicate); the case ends.
    Merge { into: String },
    /// 派遣: to the suggested department, or another one with a reason (override).
    Dispatch { department_id: Option<String>, override_reason: Option<String>, note: Option<String> },
    /// 处置 done, with feedback (and photos of the result).
    Handle {
        feedback: String,
        #[serde(default)]
        attachments: Vec<String>,
    },
    /// The department declines: the case goes back to the dispatcher.
    Decline { reason: String },
    /// Ask for more time (working days).
    RequestExtension { days: i64, reason: String },
    /// The dispatch centre decides an extension request.
    DecideExtension { approve: bool, note: Option<String> },
    /// 核查: passed closes the case, failed sends it back for rework (返工).
    Verify {
        passed: bool,
        note: Option<String>,
        #[serde(default)]
        attachments: Vec<String>,
    },
}

pub(crate) const COLUMNS: &str = "c.id, c.case_no, c.source, c.external_id, c.title, c.description, c.category_id, k.name, k.code, c.urgency,
    c.lon, c.lat, c.address, c.grid_id, g.name, c.reporter, c.department_id, d.name, c.stage, c.status, c.duplicate_of,
    c.possible_duplicate_of, c.instance_id, c.stage_due_at, c.rework_count, c.created_at, c.accepted_at, c.dispatched_at,
    c.handled_at, c.verified_at, c.closed_at, c.updated_at";
pub(crate) const FROM: &str = "FROM grid_cases c JOIN grid_categories k ON k.id = c.category_id
    LEFT JOIN orgs g ON g.id = c.grid_id LEFT JOIN orgs d ON d.id = c.department_id";

fn flag(due: Option<i64>, status: &str, now: i64) -> String {
    match due {
        Some(d) if status == "open" && d <= now => "overdue",
        Some(d) if status == "open" && d - now <= DUE_SOON_MS => "due_soon",
        _ => "normal",
    }
    .into()
}

pub(crate) fn from_row(r: &store::AnyRow, now: i64) -> Case {
    let status: String = r.get(19);
    let due: Option<i64> = r.get(23);
    Case {
        id: r.get(0),
        case_no: r.get(1),
        source: r.get(2),
        external_id: r.get(3),
        title: r.get(4),
        description: r.get(5),
        category_id: r.get(6),
        category_name: r.get(7),
        category_code: r.get(8),
        urgency: r.get(9),
        lon: r.get(10),
        lat: r.get(11),
        address: r.get(12),
        grid_id: r.get(13),
        grid_name: r.get(14),
        reporter: r.get(15),
        department_id: r.get(16),
        department_name: r.get(17),
        stage: r.get(18),
        flag: flag(due, &status, now),
        status,
        duplicate_of: r.get(20),
        possible_duplicate_of: r.get(21),
        instance_id: r.get(22),
        stage_due_at: due,
        rework_count: r.get(24),
        created_at: r.get(25),
        accepted_at: r.get(26),
        dispatched_at: r.get(27),
        handled_at: r.get(28),
        verified_at: r.get(29),
        closed_at: r.get(30),
        updated_at: r.get(31),
    }
}

fn text(v: Option<String>, what: &str, max: usize, required: bool) -> Result<Option<String>> {
    let v = v.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    match &v {
        None if required => Err(Error::validation(format!("{what} is required"))),
        Some(s) if s.chars().count() > max => {
            Err(Error::validation(format!("{what} must be at most {max} characters")))
        }
        _ => Ok(v),
    }
}

/// The user task element of each action.
fn element_of(a: &CaseAction) -> &'static str {
    match a {
        CaseAction::Accept { .. } | CaseAction::Reject { .. } | CaseAction::Merge { .. } => "accept",
        CaseAction::Dispatch { .. } => "dispatch",
        CaseAction::Handle { .. } | CaseAction::Decline { .. } | CaseAction::RequestExtension { .. } => "handle",
        CaseAction::DecideExtension { .. } => "approve_extension",
        CaseAction::Verify { .. } => "verify",
    }
}

fn actions_at(element: &str) -> &'static [&'static str] {
    match element {
        "accept" => &["accept", "reject", "merge"],
        "dispatch" => &["dispatch"],
        "handle" => &["handle", "decline", "request_extension"],
        "approve_extension" => &["decide_extension"],
        "verify" => &["verify"],
        _ => &[],
    }
}

fn stage_name(s: &str) -> &'static str {
    match s {
        "accept" => "立案审核",
        "dispatch" => "派遣",
        "handle" => "处置",
        "approve_extension" | "extension" => "延期审批",
        "verify" => "核查",
        _ => "当前",
    }
}

impl Grid {
    /// Receives an event from any source and opens its case (or returns the case already opened
    /// for the same source and external id).
    pub async fn intake(&self, caller: &Caller, actor: &Actor, req: IntakeRequest) -> Result<IntakeResult> {
        self.intake_from(caller, actor, req, None).await
    }

    /// Intake, for an event sent by a third-party platform (its id and org) or not.
    pub(crate) async fn intake_from(
        &self,
        caller: &Caller,
        actor: &Actor,
        req: IntakeRequest,
        platform: Option<(String, String)>,
    ) -> Result<IntakeResult> {
        caller.require(GRID_CASE_REPORT)?;
        let source = req.source.trim().to_string();
        if !SOURCES.contains(&source.as_str()) {
            return Err(Error::validation(format!("unknown source '{source}': use one of {}", SOURCES.join(", "))));
        }
        // A resubmission (same source and external id) is recognised by the writer, which files
        // the batch: no read here.
        let external_id = text(req.external_id, "external_id", 100, false)?;
        let description = text(Some(req.description), "the description", 2000, true)?.unwrap_or_default();
        let address = text(req.address, "the address", 200, false)?;
        let reporter = text(req.reporter, "the reporter", 50, false)?.unwrap_or_else(|| caller.display_name.clone());
        // Where: a position (converted to WGS84) → its grid; or a grid; or the place the address
        // names; or nowhere known.
        let mut located: Option<String> = None;
        let (point, grid_id) = match (req.lon, req.lat) {
            (Some(lon), Some(lat)) => {
                let crs = req.crs.as_deref().map(Crs::parse).transpose()?.unwrap_or_default();
                let p = spatial::coord::to_wgs84(crs, LonLat::checked(lon, lat)?);
                let g = self.grid_at(p).await?.ok_or_else(|| crate::areas::outside(p))?;
                (Some(p), Some(g))
            }
            (Some(_), None) | (None, Some(_)) => return Err(Error::validation("give both lon and lat, or neither")),
            (None, None) => match req.grid_id.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => {
                    let o = self.org(g).await.map_err(|_| Error::validation("the grid does not exist"))?;
                    if o.kind != "grid" {
                        return Err(Error::validation(format!("{} is not a grid", o.name)));
                    }
                    (None, Some(o.id))
                }
                // Only an address: the registered building or house it names places the event.
                None if address.is_some() => match self.geocode(address.as_deref().unwrap_or_default()).await? {
                    Some(found) => {
                        located = Some(found.place.address.clone());
                        (Some(LonLat::new(found.place.lon, found.place.lat)), Some(found.place.grid_id))
                    }
                    None => (None, None),
                },
                None if source == "hotline" || source == "opinion" => (None, None),
                None => {
                    return Err(Error::validation("give the position (lon, lat), the grid, or at least the address"));
                }
            },
        };
        // What: the category given, or the best suggestion for the text.
        let category = match (req.category_id.as_deref(), req.category_code.as_deref()) {
            (Some(id), _) if !id.is_empty() => self.category(id).await?,
            (_, Some(code)) if !code.is_empty() => self.category_by_code(code).await?,
            _ => {
                let text = format!("{} {}", req.title.clone().unwrap_or_default(), description);
                match self.suggest(caller, &text).await?.into_iter().next() {
                    Some(s) => s.category,
                    None => self
                        .category_by_code("ZZ0501")
                        .await
                        .map_err(|_| Error::validation("choose a category: none could be suggested for this text"))?,
                }
            }
        };
        if category.parent_id.is_none() {
            return Err(Error::validation(format!("{} is a top class; choose one of its categories", category.name)));
        }
        if !category.enabled {
            return Err(Error::validation(format!("category {} is disabled", category.name)));
        }
        let urgency =
            req.urgency.map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).unwrap_or_else(|| "normal".into());
        if !category.urgencies.contains(&urgency) {
            return Err(Error::validation(format!("urgency must be one of {}", category.urgencies.join(", "))));
        }
        let title = text(req.title, "the title", 100, false)?.unwrap_or_else(|| match &address {
            Some(a) => format!("{}：{}", category.name, a),
            None => category.name.clone(),
        });
        if req.resolved_on_spot && source != "patrol" {
            return Err(Error::validation("only grid patrol reports can be resolved on the spot"));
        }
        let route = self.route(&category.id, grid_id.as_deref()).await?;
        let center = self.dispatch_center().await?;
        let def_id = self.case_definition().await?;
        let def = self.flow().deployed(&def_id).await?;
        let mut vars = Map::new();
        vars.insert("dispatch_center".into(), center.id.clone().into());
        vars.insert(
            "department".into(),
            route.department.as_ref().map(|d| Value::String(d.id.clone())).unwrap_or(Value::Null),
        );
        // A platform's own events are verified by the platform (核实反馈).
        let verifier = match &platform {
            Some((_, org)) => org.clone(),
            None => grid_id.clone().unwrap_or_else(|| center.id.clone()),
        };
        vars.insert("verifier_org".into(), verifier.into());
        vars.insert("limits".into(), Value::Object(category.limits.clone()));
        vars.insert("handle_limit".into(), category.limits.get("handle").cloned().unwrap_or(Value::Null));
        vars.insert("resolved_on_spot".into(), req.resolved_on_spot.into());
        vars.insert("category".into(), category.name.clone().into());
        vars.insert("urgency".into(), urgency.clone().into());
        vars.insert("source".into(), source.clone().into());

        // Possible duplicates are looked for by the writer, which also sees the events filed with
        // this one.
        let mut note = route.explanation.clone();
        if let Some(place) = &located {
            note = format!("按地址定位到“{place}”；{note}");
        }
        let id = uuid::Uuid::now_v7().to_string();
        let item = crate::intake::Prepared {
            id: id.clone(),
            source: source.clone(),
            external_id: external_id.clone(),
            title,
            description,
            category_id: category.id.clone(),
            urgency,
            point,
            address,
            org_id: grid_id.clone().unwrap_or_else(|| center.id.clone()),
            grid_id,
            reporter,
            reporter_id: caller.id.clone(),
            username: caller.username.clone(),
            department: route.department.as_ref().map(|d| d.id.clone()),
            rule: route.rule.as_ref().map(|r| r.id.clone()),
            vars,
            attachments: req.attachments,
            note,
            def,
            platform: platform.map(|(id, _)| id),
            audit: actor.entry(0, "grid.case.report").object("grid_case", &id),
        };
        match self.file(item).await {
            Ok(crate::intake::Filed::New(case)) => Ok(IntakeResult { case: *case, created: true }),
            Ok(crate::intake::Filed::Existing(existing)) => {
                Ok(IntakeResult { case: self.case_row(&existing).await?, created: false })
            }
            Err(e) => {
                // The same event sent twice at the same moment: the other one won.
                if let Some(ext) = &external_id
                    && let Some(c) = self.case_by_external(&source, ext).await?
                {
                    return Ok(IntakeResult { case: c, created: false });
                }
                Err(e)
            }
        }
    }

    async fn case_by_external(&self, source: &str, ext: &str) -> Result<Option<Case>> {
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE c.source = $1 AND c.external_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(source)
            .bind(ext)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        Ok(row.map(|r| from_row(&r, self.now())))
    }

    pub(crate) async fn case_row(&self, id: &str) -> Result<Case> {
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE c.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db().reader()).await.db()?;
        row.map(|r| from_row(&r, self.now())).ok_or_else(|| Error::not_found("case"))
    }

    fn scope_where(&self, caller: &Caller, w: &mut Where) -> Result<()> {
        let scope = caller.require(GRID_CASE_READ)?;
        scope.restrict_any(w, &["c.org_id", "c.department_id"], Some("c.reporter_user"));
        Ok(())
    }

    /// Lists cases in the caller's scope (their area's cases and their department's).
    pub async fn cases(&self, caller: &Caller, f: &CaseFilter) -> Result<Page<Case>> {
        let mut w = Where::new();
        self.scope_where(caller, &mut w)?;
        match f.status.as_deref().unwrap_or("open") {
            "all" => {}
            s @ ("open" | "closed" | "rejected" | "merged") => {
                w.and("c.status = ?", [s.into()]);
            }
            other => return Err(Error::validation(format!("unknown status '{other}'"))),
        }
        if let Some(s) = f.stage.as_deref().filter(|s| !s.is_empty()) {
            w.and("c.stage = ?", [s.into()]);
        }
        if let Some(s) = f.source.as_deref().filter(|s| !s.is_empty()) {
            w.and("c.source = ?", [s.into()]);
        }
        if let Some(c) = f.category_id.as_deref().filter(|s| !s.is_empty()) {
            w.and("(c.category_id = ? OR k.parent_id = ?)", [c.into(), c.into()]);
        }
        if let Some(d) = f.department_id.as_deref().filter(|s| !s.is_empty()) {
            w.and("c.department_id = ?", [d.into()]);
        }
        self.area_filter(&mut w, "c.org_id", f.area_id.as_deref()).await?;
        let now = self.now();
        match f.flag.as_deref() {
            None | Some("") => {}
            Some("overdue") => {
                w.and("c.status = 'open' AND c.stage_due_at <= ?", [now.into()]);
            }
            Some("due_soon") => {
                w.and(
                    "c.status = 'open' AND c.stage_due_at > ? AND c.stage_due_at <= ?",
                    [now.into(), (now + DUE_SOON_MS).into()],
                );
            }
            Some(other) => return Err(Error::validation(format!("unknown flag '{other}'"))),
        }
        if let Some(q) = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let p = format!("%{}%", like_escape(q));
            w.and(
                "(c.case_no LIKE ? ESCAPE '\\' OR c.title LIKE ? ESCAPE '\\' OR c.description LIKE ? ESCAPE '\\' OR c.address LIKE ? ESCAPE '\\')",
                [p.clone().into(), p.clone().into(), p.clone().into(), p.into()],
            );
        }
        if f.mine {
            // Candidate orgs are stored as ",id1,id2,".
            let orgs: Vec<store::Value> =
                caller.org_ids.iter().map(|o| format!("%,{},%", like_escape(&o.0)).into()).collect();
            let any_org = if orgs.is_empty() {
                "1 = 0".to_string()
            } else {
                vec!["t.candidate_orgs LIKE ? ESCAPE '\\'"; orgs.len()].join(" OR ")
            };
            w.and(
                &format!(
                    "c.status = 'open' AND EXISTS (SELECT 1 FROM flow_tasks t WHERE t.instance_id = c.instance_id AND t.state = 'open'
                        AND (t.assignee = ? OR (t.assignee IS NULL AND ({any_org}))))"
                ),
                std::iter::once(store::Value::from(caller.username.clone())).chain(orgs),
            );
        }
        let page = PageRequest::new(f.page, f.page_size)?;
        let (rows, total) = store::fetch_page(self.db(), &w, COLUMNS, FROM, "c.created_at DESC, c.id", page).await?;
        Ok(Page {
            items: rows.iter().map(|r| from_row(r, now)).collect(),
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// One case with its timeline and what the caller may do.
    pub async fn case(&self, caller: &Caller, id: &str) -> Result<CaseDetail> {
        let (case, rows, integrity_violation) = self.case_checked(caller, id).await?;
        let timeline = rows
            .iter()
            .map(|r| CaseStep {
                seq: r.get(1),
                at: r.get(2),
                action: r.get(3),
                stage: r.get(4),
                actor: r.get(5),
                note: r.get(6),
            })
            .collect();
        let mut actions = Vec::new();
        if case.status == "open"
            && caller.has(GRID_CASE_WORK)
            && integrity_violation.is_none()
            && let Some(inst) = &case.instance_id
        {
            for element in self.flow().workable_elements(caller, inst).await? {
                actions.extend(actions_at(&element).iter().map(|s| s.to_string()));
            }
        }
        let attachments = self.attachments(id).await?;
        let (platforms, deliveries) = self.case_platforms(id).await?;
        Ok(CaseDetail { case, timeline, attachments, actions, platforms, deliveries, integrity_violation })
    }

    /// A case in the caller's scope with its timeline rows (sealed) and what its integrity check
    /// found (`Some`: the record or its timeline was altered outside the platform).
    async fn case_checked(&self, caller: &Caller, id: &str) -> Result<(Case, Vec<store::AnyRow>, Option<String>)> {
        let mut w = Where::new();
        self.scope_where(caller, &mut w)?;
        w.and("c.id = ?", [id.into()]);
        let sql = format!("SELECT {COLUMNS} {FROM} {}", w.clause());
        let row = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_optional(self.db().reader()).await.db()?;
        let case = row.map(|r| from_row(&r, self.now())).ok_or_else(|| Error::not_found("case"))?;
        // The timeline, with the seal of each step for the integrity check.
        let sql = format!(
            "SELECT {}, row_mac FROM grid_case_log WHERE case_id = $1 ORDER BY seq",
            crate::integrity::STEP_COLUMNS
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(self.db().reader()).await.db()?;
        let integrity_violation = self.check_case_integrity(id, &rows).await?;
        Ok((case, rows, integrity_violation))
    }

    /// Performs an action on a case: completes its open task of that stage (claiming it when
    /// the caller is a candidate) with the action's variables.
    pub async fn act(&self, caller: &Caller, actor: &Actor, id: &str, action: CaseAction) -> Result<CaseDetail> {
        caller.require(GRID_CASE_WORK)?;
        // The case and its timeline as sealed (not the whole detail: that is read once, after).
        let (case, _, integrity_violation) = self.case_checked(caller, id).await?;
        if let Some(what) = integrity_violation {
            return Err(Error::new(kernel::ErrorCode::IntegrityViolation, what));
        }
        if case.status != "open" {
            return Err(Error::conflict(format!("the case is already {}", case.status)));
        }
        let instance = case.instance_id.clone().ok_or_else(|| Error::conflict("the case has no process"))?;
        let element = element_of(&action);
        let mut vars = Map::new();
        let mut learn: Option<String> = None;
        let mut set_category: Option<(Category, String)> = None;
        let mut dispatch_too: Option<Map<String, Value>> = None;
        let mut merge_into: Option<String> = None;
        let mut photos: Option<(&str, Vec<String>)> = None;
        match action {
            CaseAction::Accept { category_id, urgency, note, department_id, override_reason } => {
                vars.insert("accepted".into(), true.into());
                vars.insert("accept_note".into(), text(note, "the note", 500, false)?.unwrap_or_default().into());
                let cat = match category_id.filter(|c| !c.is_empty()) {
                    Some(c) => self.category(&c).await?,
                    None => self.category(&case.category_id).await?,
                };
                if cat.parent_id.is_none() || !cat.enabled {
                    return Err(Error::validation(format!("{} cannot be used: choose an enabled category", cat.name)));
                }
                let urgency = urgency.filter(|u| !u.is_empty()).unwrap_or(case.urgency.clone());
                if !cat.urgencies.contains(&urgency) {
                    return Err(Error::validation(format!("urgency must be one of {}", cat.urgencies.join(", "))));
                }
                if cat.id != case.category_id {
                    // A corrected category brings its own limits and route.
                    vars.insert("limits".into(), Value::Object(cat.limits.clone()));
                    vars.insert("handle_limit".into(), cat.limits.get("handle").cloned().unwrap_or(Value::Null));
                    vars.insert("category".into(), cat.name.clone().into());
                    let route = self.route(&cat.id, case.grid_id.as_deref()).await?;
                    vars.insert(
                        "department".into(),
                        route.department.map(|d| Value::String(d.id)).unwrap_or(Value::Null),
                    );
                }
                learn = Some(format!("{} {}", case.title, case.description));
                set_category = Some((cat, urgency));
                if let Some(d) = department_id.filter(|d| !d.is_empty()) {
                    let mut dv = Map::new();
                    let current = Value::from(case.department_id.clone());
                    let suggested = vars.get("department").unwrap_or(&current).clone();
                    self.dispatch_vars(&case, &mut dv, Some(d), override_reason, None, Some(&suggested)).await?;
                    dispatch_too = Some(dv);
                }
            }
            CaseAction::Reject { reason } => {
                vars.insert("accepted".into(), false.into());
                vars.insert("accept_note".into(), text(Some(reason), "the reason", 500, true)?.into());
            }
            CaseAction::Merge { into } => {
                if into == case.id {
                    return Err(Error::validation("a case cannot be merged into itself"));
                }
                let target = self
                    .case(caller, &into)
                    .await
                    .map_err(|_| Error::validation("the case to merge into does not exist"))?
                    .case;
                if target.status != "open" {
                    return Err(Error::validation(format!("case {} is {}, not open", target.case_no, target.status)));
                }
                vars.insert("accepted".into(), false.into());
                vars.insert("merged_into".into(), target.id.clone().into());
                vars.insert("accept_note".into(), format!("合并至 {}", target.case_no).into());
                merge_into = Some(target.id);
            }
            CaseAction::Dispatch { department_id, override_reason, note } => {
                let current = Value::from(case.department_id.clone());
                self.dispatch_vars(&case, &mut vars, department_id, override_reason, note, Some(&current)).await?;
            }
            CaseAction::Handle { feedback, attachments } => {
                photos = Some(("handle", attachments));
                vars.insert("outcome".into(), "handled".into());
                vars.insert("handle_note".into(), text(Some(feedback), "the feedback", 2000, true)?.into());
            }
            CaseAction::Decline { reason } => {
                vars.insert("outcome".into(), "declined".into());
                vars.insert("handle_note".into(), text(Some(reason), "the reason", 500, true)?.into());
            }
            CaseAction::RequestExtension { days, reason } => {
                if !(1..=30).contains(&days) {
                    return Err(Error::validation("an extension is 1 to 30 working days"));
                }
                vars.insert("outcome".into(), "extension".into());
                vars.insert("extension_days".into(), days.into());
                vars.insert(
                    "handle_note".into(),
                    format!(
                        "申请延期{days}个工作日：{}",
                        text(Some(reason), "the reason", 500, true)?.unwrap_or_default()
                    )
                    .into(),
                );
            }
            CaseAction::DecideExtension { approve, note } => {
                vars.insert("extension_granted".into(), approve.into());
                vars.insert("approval_note".into(), text(note, "the note", 500, false)?.unwrap_or_default().into());
                if approve {
                    let days = self.variable(&instance, "extension_days").await?.and_then(|v| v.as_i64()).unwrap_or(1);
                    vars.insert("handle_limit".into(), format!("P{days}D").into());
                }
            }
            CaseAction::Verify { passed, note, attachments } => {
                photos = Some(("verify", attachments));
                vars.insert("verify_passed".into(), passed.into());
                let note = text(note, "the note", 500, !passed)
                    .map_err(|_| Error::validation("say what is still wrong when verification fails"))?;
                vars.insert("verify_note".into(), note.unwrap_or_default().into());
            }
        }
        let mut ft = self.flow().begin(Some(&caller.username)).await?;
        let task = ft.open_task(&instance, element).await?.ok_or_else(|| {
            Error::conflict(format!(
                "the case is not waiting for {} now (it is at: {})",
                stage_name(element),
                stage_name(&case.stage)
            ))
        })?;
        if let Some((cat, urgency)) = &set_category {
            // Accepted (立案) rather than merged: no longer a possible duplicate, and from now on a
            // main case that later reports nearby are compared with.
            sqlx::query(
                "UPDATE grid_cases SET category_id = $2, urgency = $3, possible_duplicate_of = NULL WHERE id = $1",
            )
            .bind(&case.id)
            .bind(&cat.id)
            .bind(urgency)
            .execute(&mut **ft.tx())
            .await
            .db()?;
            if let Some(t) = &learn {
                Grid::learn(ft.tx(), t, &cat.id).await?;
            }
        }
        if let Some(target) = &merge_into {
            sqlx::query("UPDATE grid_cases SET duplicate_of = $2 WHERE id = $1")
                .bind(&case.id)
                .bind(target)
                .execute(&mut **ft.tx())
                .await
                .db()?;
        }
        if let Some((stage, ids)) = &photos {
            Grid::link(ft.tx(), &caller.username, &case.id, stage, ids).await?;
        }
        ft.complete_task(caller, actor, &task.id, vars).await?;
        if let Some(dv) = dispatch_too {
            ft.run().await?;
            let t = ft
                .open_task(&instance, "dispatch")
                .await?
                .ok_or_else(|| Error::conflict("the case did not reach dispatch"))?;
            ft.complete_task(caller, actor, &t.id, dv).await?;
        }
        ft.commit().await?;
        self.case(caller, id).await
    }

    async fn dispatch_vars(
        &self,
        case: &Case,
        vars: &mut Map<String, Value>,
        department_id: Option<String>,
        override_reason: Option<String>,
        note: Option<String>,
        suggested: Option<&Value>,
    ) -> Result<()> {
        let suggested = suggested.and_then(Value::as_str).map(String::from);
        let dept = department_id
            .filter(|d| !d.is_empty())
            .or(suggested.clone())
            .ok_or_else(|| Error::validation("no department is suggested for this case: choose one"))?;
        let o = self.org(&dept).await.map_err(|_| Error::validation("the department does not exist"))?;
        if o.kind == "grid" {
            return Err(Error::validation("a case is dispatched to a department or an office, not to a grid"));
        }
        let reason = text(override_reason, "the override reason", 500, false)?;
        let overridden = suggested.as_deref() != Some(dept.as_str());
        if overridden && suggested.is_some() && reason.is_none() {
            return Err(Error::validation(format!(
                "the rules suggest another department for case {}: give a reason for choosing {}",
                case.case_no, o.name
            )));
        }
        vars.insert("department".into(), dept.into());
        let mut n = text(note, "the note", 500, false)?.unwrap_or_default();
        if overridden && let Some(r) = reason {
            n = if n.is_empty() { format!("改派原因：{r}") } else { format!("{n}；改派原因：{r}") };
        }
        vars.insert(
            "dispatch_note".into(),
            format!("派遣至{}{}", o.name, if n.is_empty() { String::new() } else { format!("（{n}）") }).into(),
        );
        Ok(())
    }

    async fn variable(&self, instance: &str, name: &str) -> Result<Option<Value>> {
        let row = sqlx::query("SELECT state FROM flow_instances WHERE id = $1")
            .bind(instance)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        let Some(row) = row else { return Ok(None) };
        let state: flow::InstanceState =
            serde_json::from_str(&row.get::<String, _>(0)).map_err(|e| Error::internal(e.to_string()))?;
        Ok(state.vars().get(name).cloned())
    }
}

/// Keeps cases in step with their process instances (see the crate's invariant).
pub(crate) struct CaseObserver {
    pub seals: std::sync::Arc<crate::integrity::Seals>,
}

impl flow::Observer for CaseObserver {
    fn changed<'a>(&'a self, tx: &'a mut Tx, changes: &'a [flow::InstanceChange]) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            for chunk in changes.chunks(CHUNK) {
                sync_cases(tx, chunk, &self.seals).await?;
            }
            Ok(())
        })
    }
}

/// A timeline row: case, seq, at, action, stage entered, actor, note.
type LogRow = (String, i64, i64, String, String, Option<String>, Option<String>);

/// Instances per batch of observer statements.
const CHUNK: usize = 128;
const ROWS: usize = store::ROWS_PER_STATEMENT;

fn var_str<'v>(vars: &'v Map<String, Value>, k: &str) -> Option<&'v str> {
    vars.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// What one change does to its case.
pub(crate) struct Sync {
    pub id: String,
    pub stage: String,
    pub status: &'static str,
    pub due: Option<i64>,
    pub department: Option<String>,
    pub rework: i64,
    pub stamps: [Option<i64>; 5],
    /// Timeline steps: action, stage entered, note.
    pub steps: Vec<(String, String, Option<String>)>,
    pub now: i64,
    pub actor: Option<String>,
}

pub(crate) fn marks(from: usize, n: usize) -> String {
    (from + 1..=from + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Brings the cases of a batch of changed instances in step, in a handful of statements: their
/// rows with their open tasks' first deadline and their last timeline number in one read, then
/// multi-row updates and timeline inserts.
async fn sync_cases(tx: &mut Tx, changes: &[flow::InstanceChange], seals: &crate::integrity::Seals) -> Result<()> {
    let backend = store::Backend::of(tx);
    // Each case with its open tasks' first deadline and its last timeline number.
    let ids = store::padded_pow2(&changes.iter().map(|c| c.instance_id.as_str()).collect::<Vec<_>>());
    let sql = format!(
        "SELECT c.id, c.instance_id, c.rework_count,
            (SELECT MIN(t.due_at) FROM flow_tasks t WHERE t.instance_id = c.instance_id AND t.state = 'open'),
            (SELECT MAX(l.seq) FROM grid_case_log l WHERE l.case_id = c.id)
         FROM grid_cases c WHERE c.instance_id IN {}",
        backend.values(1, ids.len(), 1)
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for i in &ids {
        q = q.bind(*i);
    }
    let rows = q.fetch_all(&mut **tx).await.db()?;
    if rows.is_empty() {
        return Ok(()); // instances started by hand outside the grid platform
    }
    // Instance id → (case id, rework count, first open deadline); case id → last timeline number.
    let mut cases: HashMap<String, (String, i64, Option<i64>)> = HashMap::new();
    let mut seqs: HashMap<String, i64> = HashMap::new();
    for r in rows {
        let id: String = r.get(0);
        seqs.insert(id.clone(), r.get::<Option<i64>, _>(4).unwrap_or(0));
        cases.insert(r.get(1), (id, r.get(2), r.get(3)));
    }

    let mut syncs = Vec::with_capacity(changes.len());
    for c in changes {
        let Some((id, rework, due)) = cases.get(&c.instance_id) else { continue };
        let mut s = plan(c, id.clone(), *rework);
        if s.status == "open" {
            s.due = *due;
        }
        syncs.push(s);
    }
    for chunk in store::chunks_pow2(&syncs, ROWS) {
        const COLS: [(&str, &str); 12] = [
            ("id", "TEXT"),
            ("stage", "TEXT"),
            ("status", "TEXT"),
            ("due", "BIGINT"),
            ("department", "TEXT"),
            ("rework", "BIGINT"),
            ("accepted_at", "BIGINT"),
            ("dispatched_at", "BIGINT"),
            ("handled_at", "BIGINT"),
            ("verified_at", "BIGINT"),
            ("closed_at", "BIGINT"),
            ("now", "BIGINT"),
        ];
        let selects: Vec<String> = (0..chunk.len()).map(|r| backend.select_row(r * COLS.len() + 1, &COLS)).collect();
        let sql = format!(
            "UPDATE grid_cases SET stage = v.stage, status = v.status, stage_due_at = v.due,
                department_id = COALESCE(v.department, grid_cases.department_id), rework_count = v.rework,
                accepted_at = COALESCE(v.accepted_at, grid_cases.accepted_at), dispatched_at = COALESCE(v.dispatched_at, grid_cases.dispatched_at),
                handled_at = COALESCE(v.handled_at, grid_cases.handled_at), verified_at = COALESCE(v.verified_at, grid_cases.verified_at),
                closed_at = COALESCE(v.closed_at, grid_cases.closed_at), updated_at = v.now
             FROM ({}) AS v WHERE grid_cases.id = v.id",
            selects.join(" UNION ALL ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q
                .bind(&s.id)
                .bind(&s.stage)
                .bind(s.status)
                .bind(s.due)
                .bind(&s.department)
                .bind(s.rework)
                .bind(s.stamps[0])
                .bind(s.stamps[1])
                .bind(s.stamps[2])
                .bind(s.stamps[3])
                .bind(s.stamps[4])
                .bind(s.now);
        }
        q.execute(&mut **tx).await.db()?;
    }
    let mut rows: Vec<LogRow> = Vec::new();
    for s in &syncs {
        for (action, stage, note) in &s.steps {
            let seq = seqs.entry(s.id.clone()).or_insert(0);
            *seq += 1;
            rows.push((s.id.clone(), *seq, s.now, action.clone(), stage.clone(), s.actor.clone(), note.clone()));
        }
    }
    for chunk in store::chunks_pow2(&rows, ROWS * 2) {
        let sql = format!(
            "INSERT INTO grid_case_log (case_id, seq, at, action, stage, actor, note, row_mac) VALUES {}",
            backend.values(chunk.len(), 8, 1)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, seq, at, action, stage, actor, note) in chunk {
            let note = note.as_deref().filter(|n| !n.is_empty());
            let mac = seals.step(&crate::integrity::Step {
                case_id: id,
                seq: *seq,
                at: *at,
                action,
                stage,
                actor: actor.as_deref(),
                note,
            });
            q = q.bind(id).bind(*seq).bind(*at).bind(action).bind(stage).bind(actor).bind(note).bind(mac);
        }
        q.execute(&mut **tx).await.db()?;
    }
    crate::platforms::enqueue_for_steps(tx, &syncs).await
}

/// The new stage, status, timestamps and timeline steps of a case after a change.
fn plan(c: &flow::InstanceChange, id: String, rework: i64) -> Sync {
    let v = &c.variables;
    let mut stamps: [Option<i64>; 5] = [None; 5]; // accepted, dispatched, handled, verified, closed
    let mut rework = rework;
    let mut steps: Vec<(String, Option<String>)> = Vec::new();
    let note = |k: &str| var_str(v, k).map(String::from);
    for el in &c.completed {
        match el.as_str() {
            "accept" => {
                if v.get("accepted") == Some(&Value::Bool(true)) {
                    stamps[0] = Some(c.now);
                    steps.push(("accept".into(), note("accept_note")));
                } else if var_str(v, "merged_into").is_some() {
                    steps.push(("merge".into(), note("accept_note")));
                } else {
                    steps.push(("reject".into(), note("accept_note")));
                }
            }
            "dispatch" => {
                stamps[1] = Some(c.now);
                steps.push(("dispatch".into(), note("dispatch_note")));
            }
            "handle" => {
                let action = match var_str(v, "outcome").unwrap_or("handled") {
                    "declined" => "decline",
                    "extension" => "request_extension",
                    _ => {
                        stamps[2] = Some(c.now);
                        "handle"
                    }
                };
                steps.push((action.into(), note("handle_note")));
            }
            "approve_extension" => {
                let granted = v.get("extension_granted") == Some(&Value::Bool(true));
                steps.push((
                    if granted { "extension_granted" } else { "extension_denied" }.into(),
                    note("approval_note"),
                ));
            }
            "verify" => {
                if v.get("verify_passed") == Some(&Value::Bool(true)) {
                    stamps[3] = Some(c.now);
                    steps.push(("verify_pass".into(), note("verify_note")));
                } else {
                    rework += 1;
                    steps.push(("verify_fail".into(), note("verify_note")));
                }
            }
            "closed_on_spot" => {
                stamps[4] = Some(c.now);
                steps.push(("close_on_spot".into(), Some("网格员自行处置".into())));
            }
            "closed" => {
                stamps[4] = Some(c.now);
                steps.push(("close".into(), None));
            }
            _ => {}
        }
    }
    let (stage, status) = match c.status {
        flow::Status::Active => {
            let open = c.open_tasks.first().map(String::as_str).unwrap_or("report");
            (if open == "approve_extension" { "extension" } else { open }.to_string(), "open")
        }
        _ if c.completed.iter().any(|e| e == "rejected") => {
            ("rejected".to_string(), if var_str(v, "merged_into").is_some() { "merged" } else { "rejected" })
        }
        _ => {
            stamps[4].get_or_insert(c.now);
            ("closed".to_string(), "closed")
        }
    };
    let n = steps.len();
    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(i, (action, note))| {
            // Each step enters the stage the next one leaves; the last enters the current stage.
            let entered = if i + 1 == n { stage.clone() } else { entered_by(&action).to_string() };
            (action, entered, note)
        })
        .collect();
    Sync {
        id,
        stage,
        status,
        due: None,
        department: var_str(v, "department").map(String::from),
        rework,
        stamps,
        steps,
        now: c.now,
        actor: c.actor.clone(),
    }
}

/// The stage an action leads to in the shipped process (for steps inside one unit).
fn entered_by(action: &str) -> &'static str {
    match action {
        "accept" | "decline" => "dispatch",
        "dispatch" | "extension_granted" | "extension_denied" | "verify_fail" => "handle",
        "request_extension" => "extension",
        "handle" => "verify",
        "reject" | "merge" => "rejected",
        _ => "closed",
    }
}
