//! Third-party platforms (第三方平台对接, B2.1 and B4): 数字城管, 综治 and 12345.
//!
//! A platform stands in the org tree as an org (a case dispatched to that org goes to the
//! platform) and calls us as a connected application of that org (signed requests). Messages to
//! it — dispatches (派遣) and status reports (受理, 办结, 核实反馈 …) — are written to the
//! outbox by the case observer, in the transaction of the case step that causes them, and
//! delivered by the relay ([`crate::delivery`]) until the platform acknowledges them. The
//! platform calls back with acceptance, handling results and verification feedback, which
//! complete the case's open task as the platform; it can also send us events.
//!
//! Each platform speaks its own dialect: [`Mapping`] renames fields and category codes both ways,
//! adds constant fields, names the paths and says how the acknowledgement reads.

use std::collections::{BTreeMap, HashMap};

use identity::perms::{FLOW_TASK, GRID_CASE_REPORT, GRID_CASE_WORK, GRID_MANAGE};
use identity::scope::CallerKind;
use identity::{Actor, Caller};
use kernel::{Error, ErrorCode, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use spatial::{Crs, LonLat};
use store::{DbResultExt, Row, Tx, Where};

use crate::Grid;
use crate::cases::{IntakeRequest, IntakeResult, Sync};

/// Kinds of platform.
pub const KINDS: [&str; 4] = ["city_management", "governance", "hotline", "other"];

/// What a platform's connected application must be allowed to do.
pub const APP_SCOPES: [&str; 3] = [GRID_CASE_REPORT, GRID_CASE_WORK, FLOW_TASK];

/// How a platform's messages read.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Mapping {
    /// Our field name → the platform's. Fields not listed keep our names; a field mapped to ""
    /// is left out. Applied backwards to what the platform sends.
    pub fields: BTreeMap<String, String>,
    /// Our category code → the platform's (both ways).
    pub categories: BTreeMap<String, String>,
    /// Fields added to every message (e.g. the platform's code for our system).
    #[schema(value_type = Object)]
    pub constants: Map<String, Value>,
    pub paths: Paths,
    pub ack: Ack,
    /// The platform's coordinate system: wgs84, cgcs2000, gcj02 or bd09.
    pub crs: String,
}

/// Where on the platform each kind of message goes (appended to the endpoint).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Paths {
    pub dispatch: String,
    pub status: String,
    /// Reconciliation: the state of a list of dispatches.
    pub query: String,
}

/// How the platform acknowledges a message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Ack {
    /// The JSON field with the result code (`a.b` for nested fields).
    pub code_field: String,
    /// Codes that mean "received" (compared as text).
    pub ok_codes: Vec<String>,
    /// The field with the platform's own number for the case, if it gives one.
    pub ticket_field: String,
    /// The field with the platform's message, shown when it refuses.
    pub message_field: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Mapping {
            fields: BTreeMap::new(),
            categories: BTreeMap::new(),
            constants: Map::new(),
            paths: Paths::default(),
            ack: Ack::default(),
            crs: "wgs84".into(),
        }
    }
}

impl Default for Paths {
    fn default() -> Self {
        Paths { dispatch: "/api/events".into(), status: "/api/status".into(), query: "/api/query".into() }
    }
}

impl Default for Ack {
    fn default() -> Self {
        Ack {
            code_field: "code".into(),
            ok_codes: vec!["0".into(), "200".into()],
            ticket_field: "data.ticket_no".into(),
            message_field: "msg".into(),
        }
    }
}

/// A value at a dotted path.
pub fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').filter(|s| !s.is_empty()).try_fold(v, |v, k| v.get(k))
}

/// A scalar as text (numbers and strings alike).
pub fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Mapping {
    /// Checks the mapping is usable.
    pub fn check(&self) -> Result<()> {
        for (k, v) in self.fields.iter().chain(self.categories.iter()) {
            if k.is_empty() || k.len() > 64 || v.len() > 64 {
                return Err(Error::validation("mapped names must be 1-64 characters"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for v in self.fields.values().filter(|v| !v.is_empty()) {
            if !seen.insert(v) {
                return Err(Error::validation(format!("two fields are mapped to '{v}'")));
            }
        }
        for (what, p) in
            [("dispatch", &self.paths.dispatch), ("status", &self.paths.status), ("query", &self.paths.query)]
        {
            if !p.starts_with('/') || p.len() > 200 || p.contains(char::is_whitespace) {
                return Err(Error::validation(format!("the {what} path must start with '/' and have no spaces")));
            }
        }
        if self.ack.code_field.is_empty() || self.ack.ok_codes.is_empty() {
            return Err(Error::validation(
                "say which acknowledgement field and codes mean the platform received a message",
            ));
        }
        Crs::parse(&self.crs)?;
        if serde_json::to_string(self).map(|s| s.len()).unwrap_or(usize::MAX) > 64 * 1024 {
            return Err(Error::validation("the mapping is larger than 64 KiB"));
        }
        Ok(())
    }

    /// Our message in the platform's words.
    pub fn to_theirs(&self, ours: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for (k, v) in ours {
            let name = self.fields.get(k).map(String::as_str).unwrap_or(k);
            if name.is_empty() {
                continue;
            }
            let v = match (k.as_str(), v) {
                ("category_code", Value::String(c)) => {
                    Value::String(self.categories.get(c).cloned().unwrap_or_else(|| c.clone()))
                }
                _ => v.clone(),
            };
            out.insert(name.to_string(), v);
        }
        for (k, v) in &self.constants {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
        out
    }

    /// The platform's message in our words.
    pub fn to_ours(&self, theirs: &Map<String, Value>) -> Map<String, Value> {
        let back: HashMap<&str, &str> =
            self.fields.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (v.as_str(), k.as_str())).collect();
        let cats: HashMap<&str, &str> = self.categories.iter().map(|(k, v)| (v.as_str(), k.as_str())).collect();
        let mut out = Map::new();
        for (k, v) in theirs {
            if self.constants.contains_key(k) && !back.contains_key(k.as_str()) {
                continue;
            }
            let name = back.get(k.as_str()).copied().unwrap_or(k);
            let v = match (name, v) {
                ("category_code", v) => match as_text(v) {
                    Some(c) => Value::String(cats.get(c.as_str()).map(|s| s.to_string()).unwrap_or(c)),
                    None => v.clone(),
                },
                _ => v.clone(),
            };
            out.insert(name.to_string(), v);
        }
        out
    }
}

/// A platform as shown to its administrators.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Platform {
    pub id: String,
    pub code: String,
    pub name: String,
    pub kind: String,
    pub org_id: String,
    pub org_name: String,
    pub app_id: String,
    pub endpoint: String,
    pub out_key: String,
    pub sign_alg: String,
    pub mapping: Mapping,
    pub timeout_ms: i64,
    pub alert_after_minutes: i64,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    /// Messages waiting to be delivered, and the oldest one's time.
    pub pending: i64,
    pub oldest_pending_at: Option<i64>,
    /// Pending longer than the alert time.
    pub overdue: i64,
    pub delivered: i64,
    pub last_error: Option<String>,
}

/// A platform to create or change.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlatformInput {
    /// Short code used in callback URLs: letters, digits, '-' and '_'.
    pub code: String,
    pub name: String,
    pub kind: String,
    /// The org standing for the platform (a department): cases dispatched to it go to the platform.
    pub org_id: String,
    /// The connected application (接入应用) the platform signs its calls with; it must belong to `org_id`.
    pub app_id: String,
    /// The platform's base URL.
    pub endpoint: String,
    /// Our key at the platform.
    pub out_key: String,
    /// Our secret at the platform; keeps the stored one when absent on a change.
    pub out_secret: Option<String>,
    pub sign_alg: Option<String>,
    #[serde(default)]
    pub mapping: Mapping,
    pub timeout_ms: Option<i64>,
    pub alert_after_minutes: Option<i64>,
    pub enabled: Option<bool>,
}

/// One message to a platform.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = PlatformDelivery)]
pub struct Delivery {
    pub id: String,
    pub platform_id: String,
    pub platform_name: String,
    pub case_id: String,
    pub case_no: String,
    pub seq: i64,
    /// dispatch or status
    pub kind: String,
    /// For status messages: accepted, rejected, dispatched, handled, verified, verify_failed, closed.
    pub status: Option<String>,
    pub idem_key: String,
    /// pending or delivered
    pub state: String,
    /// Pending longer than the platform's alert time.
    pub overdue: bool,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub ticket: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// A case's standing with a platform.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlatformLink {
    pub platform_id: String,
    pub platform_name: String,
    /// out: dispatched to the platform; in: received from it.
    pub direction: String,
    /// What the platform last told us: accepted, returned, handled, verified, verify_failed.
    pub remote_state: Option<String>,
    pub remote_note: Option<String>,
    pub remote_at: Option<i64>,
    pub ticket: Option<String>,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    pub platform_id: Option<String>,
    /// pending, delivered, overdue
    pub state: Option<String>,
    /// Case number or id.
    pub case: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// A callback from a platform (our protocol; the platform's connected application signs it).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Callback {
    /// The platform's id for this callback: a callback sent twice takes effect once.
    pub callback_id: String,
    /// accepted (受理), returned (退回), handled (办结, with `note` as the result),
    /// verified (核实反馈, with `passed`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The case: our dispatch id (the idempotency key we sent), our case number, or — for
    /// events the platform sent us — its own event id.
    pub dispatch_id: Option<String>,
    pub case_no: Option<String>,
    pub external_id: Option<String>,
    /// The platform's own number for the case.
    pub ticket: Option<String>,
    pub note: Option<String>,
    /// For `verified`: whether the case passed verification.
    pub passed: Option<bool>,
}

/// What a callback did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallbackResult {
    pub case_no: String,
    /// applied (the case moved), recorded (noted on the case), stale (the case had already moved
    /// on; nothing changed), duplicate (this callback was received before).
    pub outcome: String,
    pub stage: String,
}

/// The enabled platforms' connections, by platform id.
pub(crate) type Conns = std::sync::Arc<HashMap<String, Conn>>;

/// One platform's connection, ready to send.
#[derive(Clone)]
pub(crate) struct Conn {
    pub id: String,
    pub code: String,
    pub name: String,
    pub endpoint: String,
    pub out_key: String,
    pub secret: String,
    pub alg: crypto::HashAlg,
    pub mapping: Mapping,
    pub timeout_ms: i64,
}

const COLUMNS: &str =
    "p.id, p.code, p.name, p.kind, p.org_id, o.name, p.app_id, p.endpoint, p.out_key, p.sign_alg, p.mapping,
    p.timeout_ms, p.alert_after_minutes, p.enabled, p.created_at, p.updated_at, p.out_secret_enc";
const FROM: &str = "FROM grid_platforms p JOIN orgs o ON o.id = p.org_id";

fn from_row(r: &store::AnyRow) -> Platform {
    Platform {
        id: r.get(0),
        code: r.get(1),
        name: r.get(2),
        kind: r.get(3),
        org_id: r.get(4),
        org_name: r.get(5),
        app_id: r.get(6),
        endpoint: r.get(7),
        out_key: r.get(8),
        sign_alg: r.get(9),
        mapping: serde_json::from_str(&r.get::<String, _>(10)).unwrap_or_default(),
        timeout_ms: r.get(11),
        alert_after_minutes: r.get(12),
        enabled: r.get::<i64, _>(13) != 0,
        created_at: r.get(14),
        updated_at: r.get(15),
        pending: 0,
        oldest_pending_at: None,
        overdue: 0,
        delivered: 0,
        last_error: None,
    }
}

pub(crate) fn alg_of(name: &str) -> Option<crypto::HashAlg> {
    match name {
        "hmac-sm3" => Some(crypto::HashAlg::Sm3),
        "hmac-sha256" => Some(crypto::HashAlg::Sha256),
        _ => None,
    }
}

/// The username a platform's steps are recorded under.
pub fn actor_name(app_id: &str) -> String {
    format!("app:{app_id}")
}

const DELIVERY_COLUMNS: &str = "x.id, x.platform_id, p.name, x.case_id, c.case_no, x.seq, x.kind, x.payload, x.idem_key, x.state,
    x.attempts, x.next_at, x.last_error, x.last_attempt_at, x.ticket, x.created_at, x.delivered_at, p.alert_after_minutes";
const DELIVERY_FROM: &str =
    "FROM grid_outbox x JOIN grid_platforms p ON p.id = x.platform_id JOIN grid_cases c ON c.id = x.case_id";

fn delivery_from_row(r: &store::AnyRow, now: i64) -> Delivery {
    let payload: Value = serde_json::from_str(&r.get::<String, _>(7)).unwrap_or(Value::Null);
    let state: String = r.get(9);
    let created_at: i64 = r.get(15);
    let alert: i64 = r.get(17);
    Delivery {
        id: r.get(0),
        platform_id: r.get(1),
        platform_name: r.get(2),
        case_id: r.get(3),
        case_no: r.get(4),
        seq: r.get(5),
        kind: r.get(6),
        status: payload.get("status").and_then(Value::as_str).map(String::from),
        idem_key: r.get(8),
        overdue: state == "pending" && created_at + alert * 60_000 <= now,
        state,
        attempts: r.get(10),
        next_at: r.get(11),
        last_error: r.get(12),
        last_attempt_at: r.get(13),
        ticket: r.get(14),
        created_at,
        delivered_at: r.get(16),
    }
}

impl Grid {
    /// All platforms with their delivery figures (`grid.manage`).
    pub async fn platforms(&self, caller: &Caller) -> Result<Vec<Platform>> {
        caller.require(GRID_MANAGE)?;
        let sql = format!("SELECT {COLUMNS} {FROM} ORDER BY p.code");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db().reader()).await.db()?;
        let mut out: Vec<Platform> = rows.iter().map(from_row).collect();
        let now = self.now();
        let stats = sqlx::query(
            "SELECT x.platform_id, x.state, COUNT(*), MIN(x.created_at),
                SUM(CASE WHEN x.created_at + p.alert_after_minutes * 60000 <= $1 THEN 1 ELSE 0 END)
             FROM grid_outbox x JOIN grid_platforms p ON p.id = x.platform_id GROUP BY x.platform_id, x.state",
        )
        .bind(now)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        for r in stats {
            let pid: String = r.get(0);
            let Some(p) = out.iter_mut().find(|p| p.id == pid) else { continue };
            let n: i64 = r.get(2);
            if r.get::<String, _>(1) == "pending" {
                p.pending = n;
                p.oldest_pending_at = r.get(3);
                p.overdue = r.get::<Option<i64>, _>(4).unwrap_or(0);
            } else {
                p.delivered = n;
            }
        }
        for p in out.iter_mut().filter(|p| p.pending > 0) {
            p.last_error = sqlx::query(
                "SELECT last_error FROM grid_outbox WHERE platform_id = $1 AND state = 'pending' AND last_error IS NOT NULL
                 ORDER BY last_attempt_at DESC LIMIT 1",
            )
            .bind(&p.id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .map(|r| r.get(0));
        }
        Ok(out)
    }

    pub(crate) async fn platform_row(&self, key: &str) -> Result<(Platform, String)> {
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE p.id = $1 OR p.code = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("platform"))?;
        Ok((from_row(&row), row.get(16)))
    }

    /// Registers a third-party platform (`grid.manage`).
    pub async fn create_platform(&self, caller: &Caller, actor: &Actor, input: PlatformInput) -> Result<Platform> {
        caller.require(GRID_MANAGE)?;
        let secret = input
            .out_secret
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| Error::validation("give our secret at the platform (out_secret)"))?;
        let checked = self.check_platform(&input).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let r = sqlx::query(
            "INSERT INTO grid_platforms (id, code, name, kind, org_id, app_id, endpoint, out_key, out_secret_enc, sign_alg,
                mapping, timeout_ms, alert_after_minutes, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15)",
        )
        .bind(&id)
        .bind(&checked.code)
        .bind(&checked.name)
        .bind(&input.kind)
        .bind(&input.org_id)
        .bind(&input.app_id)
        .bind(&checked.endpoint)
        .bind(input.out_key.trim())
        .bind(self.identity().keys().seal("grid_platforms.out_secret", secret.trim()))
        .bind(&checked.alg)
        .bind(crate::to_json(&input.mapping)?)
        .bind(checked.timeout_ms)
        .bind(checked.alert_after)
        .bind(input.enabled.unwrap_or(true) as i64)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            return Err(if store::is_unique_violation(&e) {
                Error::conflict("another platform already has this code, org or connected application")
            } else {
                store::db_error(e)
            });
        }
        let entry = actor.entry(now, "grid.platform.create").object("grid_platform", &id).detail(json!({
            "code": checked.code, "endpoint": checked.endpoint, "app_id": input.app_id,
        }));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.forget_conns();
        Ok(self.platform_row(&id).await?.0)
    }

    /// Changes a platform (`grid.manage`).
    pub async fn update_platform(
        &self,
        caller: &Caller,
        actor: &Actor,
        id: &str,
        input: PlatformInput,
    ) -> Result<Platform> {
        caller.require(GRID_MANAGE)?;
        let (old, old_secret) = self.platform_row(id).await?;
        let checked = self.check_platform(&input).await?;
        let secret = match input.out_secret.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(s) => self.identity().keys().seal("grid_platforms.out_secret", s),
            None => old_secret,
        };
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let r = sqlx::query(
            "UPDATE grid_platforms SET code = $2, name = $3, kind = $4, org_id = $5, app_id = $6, endpoint = $7, out_key = $8,
                out_secret_enc = $9, sign_alg = $10, mapping = $11, timeout_ms = $12, alert_after_minutes = $13, enabled = $14,
                updated_at = $15 WHERE id = $1",
        )
        .bind(&old.id)
        .bind(&checked.code)
        .bind(&checked.name)
        .bind(&input.kind)
        .bind(&input.org_id)
        .bind(&input.app_id)
        .bind(&checked.endpoint)
        .bind(input.out_key.trim())
        .bind(secret)
        .bind(&checked.alg)
        .bind(crate::to_json(&input.mapping)?)
        .bind(checked.timeout_ms)
        .bind(checked.alert_after)
        .bind(input.enabled.unwrap_or(old.enabled) as i64)
        .bind(now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = r {
            return Err(if store::is_unique_violation(&e) {
                Error::conflict("another platform already has this code, org or connected application")
            } else {
                store::db_error(e)
            });
        }
        let entry = actor.entry(now, "grid.platform.update").object("grid_platform", &old.id).detail(json!({
            "code": checked.code, "endpoint": checked.endpoint, "secret_changed": input.out_secret.is_some(),
        }));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.forget_conns();
        Ok(self.platform_row(&old.id).await?.0)
    }

    async fn check_platform(&self, input: &PlatformInput) -> Result<CheckedPlatform> {
        let code = input.code.trim().to_string();
        if code.is_empty()
            || code.len() > 32
            || !code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::validation("the code must be 1-32 letters, digits, '-' or '_'"));
        }
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 50 {
            return Err(Error::validation("the name must be 1-50 characters"));
        }
        if !KINDS.contains(&input.kind.as_str()) {
            return Err(Error::validation(format!("kind must be one of {}", KINDS.join(", "))));
        }
        let endpoint = input.endpoint.trim().trim_end_matches('/').to_string();
        match reqwest::Url::parse(&endpoint) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
            _ => return Err(Error::validation("the endpoint must be an http:// or https:// URL")),
        }
        if input.out_key.trim().is_empty() || input.out_key.len() > 100 {
            return Err(Error::validation("give our key at the platform (out_key, at most 100 characters)"));
        }
        let alg = input.sign_alg.clone().unwrap_or_else(|| "hmac-sm3".into());
        if alg_of(&alg).is_none() {
            return Err(Error::validation("sign_alg must be hmac-sm3 or hmac-sha256"));
        }
        input.mapping.check()?;
        let timeout_ms = input.timeout_ms.unwrap_or(10_000);
        if !(100..=120_000).contains(&timeout_ms) {
            return Err(Error::validation("timeout_ms must be between 100 and 120000"));
        }
        let alert_after = input.alert_after_minutes.unwrap_or(30);
        if !(1..=10_080).contains(&alert_after) {
            return Err(Error::validation("alert_after_minutes must be between 1 and 10080 (a week)"));
        }
        let org = self.org(&input.org_id).await.map_err(|_| Error::validation("the platform's org does not exist"))?;
        if org.kind == "grid" {
            return Err(Error::validation("a platform stands for a department-like org, not a grid"));
        }
        let app = self
            .identity()
            .app_summary(&input.app_id)
            .await
            .map_err(|_| Error::validation("the connected application does not exist"))?;
        if app.org_id != org.id {
            return Err(Error::validation(format!(
                "the connected application {} belongs to another org; it must belong to {}",
                app.name, org.name
            )));
        }
        let missing: Vec<&str> = APP_SCOPES.iter().copied().filter(|s| !app.scopes.iter().any(|a| a == s)).collect();
        if !missing.is_empty() {
            return Err(Error::validation(format!(
                "the connected application {} lacks {}: the security administrator gives them in 接入应用",
                app.name,
                missing.join(", ")
            )));
        }
        Ok(CheckedPlatform { code, name, endpoint, alg, timeout_ms, alert_after })
    }

    /// Messages to platforms, newest first (`grid.manage`).
    pub async fn deliveries(&self, caller: &Caller, f: &DeliveryFilter) -> Result<Page<Delivery>> {
        caller.require(GRID_MANAGE)?;
        let mut w = Where::new();
        if let Some(p) = f.platform_id.as_deref().filter(|s| !s.is_empty()) {
            w.and("(x.platform_id = ? OR p.code = ?)", [p.into(), p.into()]);
        }
        let now = self.now();
        match f.state.as_deref() {
            None | Some("") => {}
            Some(s @ ("pending" | "delivered")) => {
                w.and("x.state = ?", [s.into()]);
            }
            Some("overdue") => {
                w.and("x.state = 'pending' AND x.created_at + p.alert_after_minutes * 60000 <= ?", [now.into()]);
            }
            Some(other) => return Err(Error::validation(format!("unknown state '{other}'"))),
        }
        if let Some(c) = f.case.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            w.and("(c.case_no = ? OR c.id = ?)", [c.into(), c.into()]);
        }
        let page = PageRequest::new(f.page, f.page_size)?;
        let (rows, total) =
            store::fetch_page(self.db(), &w, DELIVERY_COLUMNS, DELIVERY_FROM, "x.created_at DESC, x.seq DESC", page)
                .await?;
        Ok(Page {
            items: rows.iter().map(|r| delivery_from_row(r, now)).collect(),
            total,
            page: page.page,
            page_size: page.page_size,
        })
    }

    /// A case's messages to platforms and its standing with each (for the case view; the
    /// caller was checked by reading the case).
    pub(crate) async fn case_platforms(&self, case_id: &str) -> Result<(Vec<PlatformLink>, Vec<Delivery>)> {
        let rows = sqlx::query(
            "SELECT l.platform_id, p.name, l.direction, l.remote_state, l.remote_note, l.remote_at, l.ticket
             FROM grid_platform_links l JOIN grid_platforms p ON p.id = l.platform_id WHERE l.case_id = $1 ORDER BY l.created_at",
        )
        .bind(case_id)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let links = rows
            .iter()
            .map(|r| PlatformLink {
                platform_id: r.get(0),
                platform_name: r.get(1),
                direction: r.get(2),
                remote_state: r.get(3),
                remote_note: r.get(4),
                remote_at: r.get(5),
                ticket: r.get(6),
            })
            .collect();
        let sql =
            format!("SELECT {DELIVERY_COLUMNS} {DELIVERY_FROM} WHERE x.case_id = $1 ORDER BY x.platform_id, x.seq");
        let now = self.now();
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(case_id).fetch_all(self.db().reader()).await.db()?;
        Ok((links, rows.iter().map(|r| delivery_from_row(r, now)).collect()))
    }

    /// Makes a platform's pending messages (or one of them) due now and lifts the pause after
    /// failures (`grid.manage`). Returns how many were made due.
    pub async fn retry_deliveries(
        &self,
        caller: &Caller,
        actor: &Actor,
        platform: &str,
        delivery: Option<&str>,
    ) -> Result<u64> {
        caller.require(GRID_MANAGE)?;
        let (p, _) = self.platform_row(platform).await?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let n = sqlx::query(
            "UPDATE grid_outbox SET next_at = $2 WHERE platform_id = $1 AND state = 'pending' AND ($3 = '' OR id = $3)",
        )
        .bind(&p.id)
        .bind(now)
        .bind(delivery.unwrap_or(""))
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected();
        let entry = actor.entry(now, "grid.platform.retry").object("grid_platform", &p.id).detail(json!({
            "delivery": delivery, "count": n,
        }));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.inner.breakers.lock().expect("breakers lock").remove(&p.id);
        Ok(n)
    }

    /// The connected application of a platform (by id or code).
    pub async fn platform_app(&self, platform: &str) -> Result<String> {
        Ok(self.platform_row(platform).await?.0.app_id)
    }

    /// The platform as a caller, checked: the signed request came from its connected application.
    async fn calling_platform(&self, caller: &Caller, code: &str) -> Result<Platform> {
        let (p, _) = self.platform_row(code).await?;
        if caller.kind != CallerKind::App || caller.id != p.app_id {
            return Err(Error::forbidden(format!("only {}'s connected application may call this", p.name)));
        }
        if !p.enabled {
            return Err(Error::new(ErrorCode::Unavailable, format!("the platform {} is disabled here", p.name)));
        }
        Ok(p)
    }

    /// A callback from a platform: acceptance, return, handling result or verification feedback
    /// (核实反馈). Completes the case's open task as the platform; takes effect once per
    /// `callback_id`.
    pub async fn platform_callback(
        &self,
        caller: &Caller,
        actor: &Actor,
        code: &str,
        cb: Callback,
    ) -> Result<CallbackResult> {
        let p = self.calling_platform(caller, code).await?;
        self.apply_callback(&p, caller, actor, cb).await
    }

    /// Applies a callback of platform `p`, made by its application `caller` (or found missing
    /// at reconciliation).
    pub(crate) async fn apply_callback(
        &self,
        p: &Platform,
        caller: &Caller,
        actor: &Actor,
        cb: Callback,
    ) -> Result<CallbackResult> {
        let callback_id = cb.callback_id.trim().to_string();
        if callback_id.is_empty() || callback_id.len() > 100 {
            return Err(Error::validation("callback_id must be 1-100 characters"));
        }
        let kind = cb.kind.as_str();
        if !["accepted", "returned", "handled", "verified"].contains(&kind) {
            return Err(Error::validation("type must be accepted, returned, handled or verified"));
        }
        let note = cb.note.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        if note.as_ref().is_some_and(|n| n.chars().count() > 2000) {
            return Err(Error::validation("the note must be at most 2000 characters"));
        }
        if kind == "verified" && cb.passed.is_none() {
            return Err(Error::validation("a verification callback says whether the case passed (passed)"));
        }
        if (kind == "returned" || kind == "handled") && note.is_none() {
            return Err(Error::validation(format!("a '{kind}' callback needs the reason or result in note")));
        }
        let (case_id, direction) = self.linked_case(p, &cb).await?;
        // A platform's word moves a case only while its stored record is intact, as a user's does.
        self.ensure_case_intact(&case_id).await?;
        let case = self.case_row(&case_id).await?;
        // Which task the callback completes, with what.
        let mut vars = Map::new();
        let element = match (kind, direction.as_str()) {
            ("returned", "out") => {
                vars.insert("outcome".into(), "declined".into());
                vars.insert(
                    "handle_note".into(),
                    format!("{}退回：{}", p.name, note.clone().unwrap_or_default()).into(),
                );
                Some("handle")
            }
            ("handled", "out") => {
                vars.insert("outcome".into(), "handled".into());
                vars.insert(
                    "handle_note".into(),
                    format!("{}办结：{}", p.name, note.clone().unwrap_or_default()).into(),
                );
                Some("handle")
            }
            ("verified", "in") => {
                let passed = cb.passed.unwrap_or(false);
                vars.insert("verify_passed".into(), passed.into());
                let what = if passed { "核实通过" } else { "核实不通过" };
                let text = match &note {
                    Some(n) => format!("{}{what}：{n}", p.name),
                    None => format!("{}{what}", p.name),
                };
                vars.insert("verify_note".into(), text.into());
                Some("verify")
            }
            ("accepted", _) => None,
            _ => {
                return Err(Error::validation(format!(
                    "a '{kind}' callback does not apply to a case {} {}",
                    if direction == "out" { "dispatched to" } else { "received from" },
                    p.name
                )));
            }
        };
        let remote_state = match (kind, cb.passed) {
            ("verified", Some(false)) => "verify_failed",
            _ => kind,
        };
        let platform_caller = self.platform_caller(caller, p);
        let mut ft = self.flow().begin(Some(&platform_caller.username)).await?;
        let now = ft.now();
        let inserted = sqlx::query(
            "INSERT INTO grid_platform_inbox (platform_id, callback_id, case_id, kind, outcome, received_at)
             VALUES ($1, $2, $3, $4, 'pending', $5) ON CONFLICT (platform_id, callback_id) DO NOTHING",
        )
        .bind(&p.id)
        .bind(&callback_id)
        .bind(&case_id)
        .bind(kind)
        .bind(now)
        .execute(&mut **ft.tx())
        .await
        .db()?
        .rows_affected();
        if inserted == 0 {
            drop(ft);
            return Ok(CallbackResult { case_no: case.case_no, outcome: "duplicate".into(), stage: case.stage });
        }
        let mut outcome = "recorded";
        if let Some(element) = element
            && case.status == "open"
            && let Some(inst) = &case.instance_id
        {
            if let Some(task) = ft.open_task(inst, element).await? {
                ft.complete_task(&platform_caller, actor, &task.id, vars).await?;
                outcome = "applied";
            } else {
                outcome = "stale";
            }
        } else if element.is_some() {
            outcome = "stale";
        }
        sqlx::query(
            "UPDATE grid_platform_links SET remote_state = $3, remote_note = $4, remote_at = $5, ticket = COALESCE($6, ticket)
             WHERE platform_id = $1 AND case_id = $2",
        )
        .bind(&p.id)
        .bind(&case_id)
        .bind(remote_state)
        .bind(&note)
        .bind(now)
        .bind(cb.ticket.as_deref().map(str::trim).filter(|s| !s.is_empty() && s.len() <= 100))
        .execute(&mut **ft.tx())
        .await
        .db()?;
        sqlx::query("UPDATE grid_platform_inbox SET outcome = $3 WHERE platform_id = $1 AND callback_id = $2")
            .bind(&p.id)
            .bind(&callback_id)
            .bind(outcome)
            .execute(&mut **ft.tx())
            .await
            .db()?;
        let entry = actor.entry(now, "grid.platform.callback").object("grid_case", &case_id).detail(json!({
            "platform": p.code, "type": kind, "callback_id": callback_id, "outcome": outcome,
        }));
        self.identity().audit_log().append(ft.tx(), &entry).await?;
        ft.commit().await?;
        let c = self.case_row(&case_id).await?;
        Ok(CallbackResult { case_no: c.case_no, outcome: outcome.into(), stage: c.stage })
    }

    /// The case a callback is about, and how it is linked to the platform.
    async fn linked_case(&self, p: &Platform, cb: &Callback) -> Result<(String, String)> {
        let clean = |s: &Option<String>| s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
        let row = if let Some(d) = clean(&cb.dispatch_id) {
            sqlx::query(
                "SELECT l.case_id, l.direction FROM grid_outbox x JOIN grid_platform_links l
                    ON l.platform_id = x.platform_id AND l.case_id = x.case_id WHERE x.platform_id = $1 AND x.idem_key = $2",
            )
            .bind(&p.id)
            .bind(d)
            .fetch_optional(self.db().reader())
            .await
            .db()?
        } else if let Some(n) = clean(&cb.case_no) {
            sqlx::query(
                "SELECT l.case_id, l.direction FROM grid_cases c JOIN grid_platform_links l ON l.case_id = c.id
                 WHERE l.platform_id = $1 AND c.case_no = $2",
            )
            .bind(&p.id)
            .bind(n)
            .fetch_optional(self.db().reader())
            .await
            .db()?
        } else if let Some(e) = clean(&cb.external_id) {
            sqlx::query(
                "SELECT l.case_id, l.direction FROM grid_cases c JOIN grid_platform_links l ON l.case_id = c.id
                 WHERE l.platform_id = $1 AND c.source = $2 AND c.external_id = $3",
            )
            .bind(&p.id)
            .bind(source_of(&p.kind))
            .bind(e)
            .fetch_optional(self.db().reader())
            .await
            .db()?
        } else {
            return Err(Error::validation("name the case: dispatch_id, case_no or external_id"));
        };
        let r = row.ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                format!("no case sent to or received from {} matches this callback", p.name),
            )
        })?;
        Ok((r.get(0), r.get(1)))
    }

    /// The platform's caller (its application, `app:<app id>`), named as the platform.
    fn platform_caller(&self, caller: &Caller, p: &Platform) -> Caller {
        let mut c = caller.clone();
        c.display_name = p.name.clone();
        c
    }

    /// An event sent by a platform in its own words: mapped to ours and taken in like any other
    /// event, remembered as the platform's (its status reports go back to it, and its
    /// verification feedback closes the case).
    pub async fn platform_event(
        &self,
        caller: &Caller,
        actor: &Actor,
        code: &str,
        body: Map<String, Value>,
    ) -> Result<IntakeResult> {
        let p = self.calling_platform(caller, code).await?;
        let ours = p.mapping.to_ours(&body);
        let s = |k: &str| ours.get(k).and_then(as_text).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        let f = |k: &str| -> Result<Option<f64>> {
            match ours.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => Ok(n.as_f64()),
                Some(Value::String(t)) if t.trim().is_empty() => Ok(None),
                Some(Value::String(t)) => t
                    .trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::validation(format!("{k} must be a number, not '{t}'"))),
                Some(_) => Err(Error::validation(format!("{k} must be a number"))),
            }
        };
        let external_id = s("external_id").ok_or_else(|| {
            let name = p.mapping.fields.get("external_id").cloned().unwrap_or_else(|| "external_id".into());
            Error::validation(format!("the event has no id: {} names it in the field '{name}'", p.name))
        })?;
        let req = IntakeRequest {
            source: source_of(&p.kind).into(),
            external_id: Some(external_id),
            title: s("title"),
            description: s("description").unwrap_or_default(),
            category_id: None,
            category_code: s("category_code"),
            urgency: s("urgency"),
            lon: f("lon")?,
            lat: f("lat")?,
            crs: Some(p.mapping.crs.clone()),
            address: s("address"),
            grid_id: None,
            reporter: s("reporter").or_else(|| Some(p.name.clone())),
            resolved_on_spot: false,
            attachments: vec![],
        };
        self.intake_from(caller, actor, req, Some((p.id.clone(), p.org_id.clone()))).await
    }
}

struct CheckedPlatform {
    code: String,
    name: String,
    endpoint: String,
    alg: String,
    timeout_ms: i64,
    alert_after: i64,
}

/// Signs a JSON POST the way connected applications sign theirs (`X-Zs-App-Id`, `-Timestamp`,
/// `-Nonce`, `-Signature` over method, path, timestamp, nonce and the body's hash): our messages
/// to platforms, and the simulator's calls to us.
pub(crate) fn signed_post(
    req: reqwest::RequestBuilder,
    alg: crypto::HashAlg,
    key: &str,
    secret: &str,
    path_and_query: &str,
    body: Vec<u8>,
    now_ms: i64,
) -> reqwest::RequestBuilder {
    let ts = (now_ms / 1000).to_string();
    let nonce = crypto::random::token();
    let sig = identity::apps::sign(alg, secret, "POST", path_and_query, &ts, &nonce, &body);
    req.header(reqwest::header::CONTENT_TYPE, "application/json; charset=utf-8")
        .header("X-Zs-App-Id", key)
        .header("X-Zs-Timestamp", ts)
        .header("X-Zs-Nonce", nonce)
        .header("X-Zs-Signature", sig)
        .body(body)
}

/// The intake source of a platform's events.
pub fn source_of(kind: &str) -> &'static str {
    if kind == "hotline" { "hotline" } else { "third_party" }
}

/// A message to write to the outbox.
struct NewMessage {
    platform_id: String,
    case_id: String,
    kind: &'static str,
    payload: Map<String, Value>,
}

/// Writes the messages to platforms that a batch of case steps causes, in the observer's
/// transaction: a dispatch to a platform's org sends the case there; each step of a case
/// received from or dispatched to a platform is reported to it — except steps the platform
/// took itself.
pub(crate) async fn enqueue_for_steps(tx: &mut Tx, syncs: &[Sync]) -> Result<()> {
    let stepped: Vec<&Sync> = syncs.iter().filter(|s| !s.steps.is_empty()).collect();
    if stepped.is_empty() {
        return Ok(());
    }
    let platforms: Vec<(String, String, String)> =
        sqlx::query("SELECT id, org_id, app_id FROM grid_platforms WHERE enabled = 1")
            .fetch_all(&mut **tx)
            .await
            .db()?
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    if platforms.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = stepped.iter().map(|s| s.id.as_str()).collect();
    let sql = format!(
        "SELECT platform_id, case_id, direction, ticket FROM grid_platform_links WHERE case_id IN ({})",
        crate::cases::marks(0, ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for i in &ids {
        q = q.bind(*i);
    }
    let mut links: HashMap<String, Vec<(String, String, Option<String>)>> = HashMap::new();
    for r in q.fetch_all(&mut **tx).await.db()? {
        links.entry(r.get(1)).or_default().push((r.get(0), r.get(2), r.get(3)));
    }
    let mut messages: Vec<NewMessage> = Vec::new();
    let mut new_links: Vec<(String, String)> = Vec::new();
    for s in &stepped {
        let department = s.department.as_deref();
        for (action, _, note) in &s.steps {
            if action == "dispatch"
                && let Some((pid, _, _)) = platforms.iter().find(|(_, org, _)| Some(org.as_str()) == department)
            {
                messages.push(NewMessage {
                    platform_id: pid.clone(),
                    case_id: s.id.clone(),
                    kind: "dispatch",
                    payload: Map::new(),
                });
                if !links.get(&s.id).is_some_and(|l| l.iter().any(|(p, _, _)| p == pid)) {
                    new_links.push((pid.clone(), s.id.clone()));
                }
            }
            for (pid, direction, ticket) in links.get(&s.id).into_iter().flatten() {
                let Some((_, org, app)) = platforms.iter().find(|(id, _, _)| id == pid) else { continue };
                // The platform's own steps are not echoed back to it; the closing they lead to is.
                if s.actor.as_deref() == Some(actor_name(app).as_str()) && action != "close" {
                    continue;
                }
                let status = match (direction.as_str(), action.as_str()) {
                    ("in", "accept") => "accepted",
                    ("in", "reject") | ("in", "merge") => "rejected",
                    ("in", "dispatch") => "dispatched",
                    ("in", "handle") => "handled",
                    (_, "verify_pass") if direction == "in" || department == Some(org.as_str()) => "verified",
                    (_, "verify_fail") if direction == "in" || department == Some(org.as_str()) => "verify_failed",
                    (_, "close") | (_, "close_on_spot") if direction == "in" || department == Some(org.as_str()) => {
                        "closed"
                    }
                    _ => continue,
                };
                let mut payload = Map::new();
                payload.insert("status".into(), status.into());
                payload.insert("note".into(), note.clone().map(Value::String).unwrap_or(Value::Null));
                payload.insert("at".into(), s.now.into());
                if let Some(t) = ticket {
                    payload.insert("ticket".into(), t.clone().into());
                }
                messages.push(NewMessage { platform_id: pid.clone(), case_id: s.id.clone(), kind: "status", payload });
            }
        }
    }
    if messages.is_empty() {
        return Ok(());
    }
    // What the messages say about each case.
    let mut case_ids: Vec<&str> = messages.iter().map(|m| m.case_id.as_str()).collect();
    case_ids.sort_unstable();
    case_ids.dedup();
    let sql = format!(
        "SELECT c.id, c.case_no, c.title, c.description, k.code, k.name, c.urgency, c.lon, c.lat, c.address, g.code, g.name,
            c.reporter, c.source, c.external_id, c.created_at, c.stage_due_at
         FROM grid_cases c JOIN grid_categories k ON k.id = c.category_id LEFT JOIN orgs g ON g.id = c.grid_id
         WHERE c.id IN ({})",
        crate::cases::marks(0, case_ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for i in &case_ids {
        q = q.bind(*i);
    }
    let mut facts: HashMap<String, Map<String, Value>> = HashMap::new();
    for r in q.fetch_all(&mut **tx).await.db()? {
        let m = json!({
            "case_no": r.get::<String, _>(1),
            "title": r.get::<String, _>(2),
            "description": r.get::<String, _>(3),
            "category_code": r.get::<String, _>(4),
            "category_name": r.get::<String, _>(5),
            "urgency": r.get::<String, _>(6),
            "lon": r.get::<Option<f64>, _>(7),
            "lat": r.get::<Option<f64>, _>(8),
            "address": r.get::<Option<String>, _>(9),
            "grid_code": r.get::<Option<String>, _>(10),
            "grid_name": r.get::<Option<String>, _>(11),
            "reporter": r.get::<String, _>(12),
            "source": r.get::<String, _>(13),
            "external_id": r.get::<Option<String>, _>(14),
            "reported_at": r.get::<i64, _>(15),
            "due_at": r.get::<Option<i64>, _>(16),
        });
        if let Value::Object(m) = m {
            facts.insert(r.get(0), m);
        }
    }
    // The stage deadline is the one just set by this change.
    for s in &stepped {
        if let Some(f) = facts.get_mut(&s.id) {
            f.insert("due_at".into(), s.due.map(Value::from).unwrap_or(Value::Null));
        }
    }
    let sql = format!(
        "SELECT platform_id, case_id, MAX(seq) FROM grid_outbox WHERE case_id IN ({}) GROUP BY platform_id, case_id",
        crate::cases::marks(0, case_ids.len())
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for i in &case_ids {
        q = q.bind(*i);
    }
    let mut seqs: HashMap<(String, String), i64> =
        q.fetch_all(&mut **tx).await.db()?.into_iter().map(|r| ((r.get(0), r.get(1)), r.get(2))).collect();
    let now = stepped.first().map(|s| s.now).unwrap_or_default();
    for (pid, cid) in &new_links {
        sqlx::query(
            "INSERT INTO grid_platform_links (platform_id, case_id, direction, created_at) VALUES ($1, $2, 'out', $3)
             ON CONFLICT (platform_id, case_id) DO NOTHING",
        )
        .bind(pid)
        .bind(cid)
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
    }
    for m in messages {
        let Some(f) = facts.get(&m.case_id) else { continue };
        let seq = seqs.entry((m.platform_id.clone(), m.case_id.clone())).or_insert(0);
        *seq += 1;
        let case_no = f.get("case_no").and_then(Value::as_str).unwrap_or_default();
        let idem_key = format!("zs-{case_no}-{seq}");
        let mut payload = if m.kind == "dispatch" {
            f.clone()
        } else {
            let mut p = Map::new();
            p.insert("case_no".into(), case_no.into());
            p.insert("external_id".into(), f.get("external_id").cloned().unwrap_or(Value::Null));
            p
        };
        payload.extend(m.payload);
        sqlx::query(
            "INSERT INTO grid_outbox (id, platform_id, case_id, seq, kind, idem_key, payload, state, attempts, next_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&m.platform_id)
        .bind(&m.case_id)
        .bind(*seq)
        .bind(m.kind)
        .bind(&idem_key)
        .bind(crate::to_json(&payload)?)
        .bind(now)
        .execute(&mut **tx)
        .await
        .db()?;
    }
    Ok(())
}

/// Our message with its coordinates in the platform's system, in the platform's words.
pub(crate) fn outgoing(mapping: &Mapping, idem_key: &str, payload: &Map<String, Value>) -> Map<String, Value> {
    let mut ours = payload.clone();
    ours.insert("dispatch_id".into(), idem_key.into());
    if let (Some(lon), Some(lat)) = (ours.get("lon").and_then(Value::as_f64), ours.get("lat").and_then(Value::as_f64))
        && let Ok(crs) = Crs::parse(&mapping.crs)
    {
        let p = spatial::coord::from_wgs84(crs, LonLat::new(lon, lat));
        ours.insert("lon".into(), p.lon.into());
        ours.insert("lat".into(), p.lat.into());
    }
    mapping.to_theirs(&ours)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_renames_both_ways_and_keeps_the_rest() {
        let m = Mapping {
            fields: [("case_no", "caseNo"), ("description", "eventDesc"), ("grid_name", "")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            categories: [("BJ0102".to_string(), "0102".to_string())].into_iter().collect(),
            constants: json!({"sysCode": "ZHONGSHU"}).as_object().cloned().unwrap(),
            ..Mapping::default()
        };
        m.check().unwrap();
        let ours = json!({"case_no": "2026112100001", "description": "井盖破损", "category_code": "BJ0102",
            "grid_name": "一网格", "urgency": "normal"});
        let theirs = m.to_theirs(ours.as_object().unwrap());
        assert_eq!(
            Value::Object(theirs.clone()),
            json!({"caseNo": "2026112100001", "eventDesc": "井盖破损", "category_code": "0102", "urgency": "normal", "sysCode": "ZHONGSHU"})
        );
        let back = m.to_ours(&theirs);
        assert_eq!(back.get("case_no"), Some(&json!("2026112100001")));
        assert_eq!(back.get("category_code"), Some(&json!("BJ0102")));
        assert!(!back.contains_key("sysCode"), "constants are ours, not the event's");
    }

    #[test]
    fn a_bad_mapping_is_refused_with_the_reason() {
        let mut m = Mapping::default();
        m.fields.insert("title".into(), "name".into());
        m.fields.insert("reporter".into(), "name".into());
        assert!(m.check().unwrap_err().message.contains("two fields"));
        let mut m = Mapping::default();
        m.paths.dispatch = "api/events".into();
        assert!(m.check().unwrap_err().message.contains("dispatch path"));
        let m = Mapping { crs: "mars".into(), ..Mapping::default() };
        assert!(m.check().is_err());
    }

    #[test]
    fn outgoing_positions_are_in_the_platforms_system() {
        let m = Mapping { crs: "gcj02".into(), ..Mapping::default() };
        let p = json!({"lon": 117.0, "lat": 36.65}).as_object().cloned().unwrap();
        let out = outgoing(&m, "zs-1-1", &p);
        assert_eq!(out["dispatch_id"], "zs-1-1");
        let back = spatial::coord::to_wgs84(
            Crs::Gcj02,
            LonLat::new(out["lon"].as_f64().unwrap(), out["lat"].as_f64().unwrap()),
        );
        assert!((back.lon - 117.0).abs() < 1e-7 && (back.lat - 36.65).abs() < 1e-7);
        assert!((out["lon"].as_f64().unwrap() - 117.0).abs() > 1e-4, "GCJ-02 is offset");
    }

    #[test]
    fn lookups_follow_dotted_paths() {
        let v = json!({"code": 0, "data": {"ticket_no": "SZCG-1"}});
        assert_eq!(lookup(&v, "data.ticket_no").and_then(as_text).as_deref(), Some("SZCG-1"));
        assert_eq!(lookup(&v, "code").and_then(as_text).as_deref(), Some("0"));
        assert!(lookup(&v, "data.nothing").is_none());
    }
}
