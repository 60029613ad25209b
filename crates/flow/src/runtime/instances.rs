//! Process instances: start, correlate messages, signal, cancel, resolve incidents; search, the
//! tracking view (timeline, taken path, current position) and the incident list.

use std::collections::{BTreeMap, HashSet};

use identity::perms::{FLOW_INSTANCE_MANAGE, FLOW_INSTANCE_READ, FLOW_START};
use identity::{Actor, Caller};
use kernel::{Error, ErrorCode, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{DbResultExt, Row, Where, like_escape};

use super::batch::{Done, Job, StartJob};
use super::tasks::check_vars;
use super::unit::{StoredEvent, StoredKind, Unit};
use super::{Flow, to_json};
use std::sync::Arc;

use super::defs::Deployed;
use crate::engine::{Command, InstanceState};
use crate::model::{El, ElementKind, Trigger};

/// An instance as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Instance {
    pub id: String,
    pub definition_id: String,
    pub process_key: String,
    pub process_name: String,
    pub version: i64,
    pub business_key: Option<String>,
    /// `active`, `completed` or `terminated`.
    pub status: String,
    pub incidents: i64,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub started_by: Option<String>,
    pub parent_id: Option<String>,
}

/// One activity in the timeline of an instance.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineItem {
    pub token: u64,
    pub element_id: String,
    pub element_name: String,
    pub element_type: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub duration_ms: Option<i64>,
    /// `active`, `completed`, `cancelled` or `incident`.
    pub state: String,
    /// Who started / completed it (the actor of the step's transaction).
    pub started_by: Option<String>,
    pub ended_by: Option<String>,
    /// Variables changed when it ended.
    pub variables: Vec<String>,
    pub message: Option<String>,
}

/// One stored history row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub seq: i64,
    pub at: i64,
    pub actor: Option<String>,
    #[schema(value_type = Vec<Object>)]
    pub events: Value,
}

/// Everything the instance viewer shows.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstanceDetail {
    #[serde(flatten)]
    pub instance: Instance,
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
    /// Elements where the instance is now.
    pub active_elements: Vec<String>,
    /// Elements that completed at least once, and flows taken (for highlighting the path).
    pub completed_elements: Vec<String>,
    pub taken_flows: Vec<String>,
    pub timeline: Vec<TimelineItem>,
    /// Every incident of the instance, open and resolved.
    pub incident_list: Vec<Incident>,
    pub xml: String,
}

/// An incident.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: String,
    pub instance_id: String,
    pub process_key: String,
    pub business_key: Option<String>,
    pub token: i64,
    pub element_id: String,
    pub message: String,
    pub created_at: i64,
    pub resolved_at: Option<i64>,
    pub resolution: Option<String>,
}

/// Instance search.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InstanceFilter {
    pub process_key: Option<String>,
    pub business_key: Option<String>,
    /// `active`, `completed`, `terminated`, or `incident` (active with open incidents).
    pub status: Option<String>,
    /// Started by this user.
    pub started_by: Option<String>,
    /// A user who worked on a task of the instance.
    pub actor: Option<String>,
    pub started_from: Option<i64>,
    pub started_to: Option<i64>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct IncidentFilter {
    /// `open` (default), `resolved` or `all`.
    pub state: Option<String>,
    pub process_key: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// Starting an instance.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub process_key: String,
    /// A version; the latest when absent.
    pub version: Option<i64>,
    pub business_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
}

/// A message to correlate (event notification from another system or process).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    pub name: String,
    pub correlation_key: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
    /// Keep the message this many seconds (at most 30 days) when no instance waits for it yet
    /// and no process starts with it: the first instance that subscribes to it in that time
    /// takes it (message buffering). Absent or 0: such a message is refused.
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
    /// The publisher's own id for the message; publishing the same id again while the first is
    /// buffered is refused (`already_exists`), so a publisher can retry safely.
    #[serde(default)]
    pub message_id: Option<String>,
}

/// Longest time to live of a buffered message.
pub const MAX_MESSAGE_TTL_SECONDS: i64 = 30 * 86_400;

/// A message kept until an instance subscribes to it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BufferedMessage {
    pub id: String,
    pub name: String,
    pub correlation_key: Option<String>,
    pub message_id: Option<String>,
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
    pub published_at: i64,
    pub expires_at: i64,
    pub published_by: Option<String>,
}

/// What became of a published message.
#[derive(Debug, Clone)]
pub enum Correlation {
    /// Delivered to a waiting instance, or it started one.
    Delivered(Box<Instance>),
    /// Nobody waited: kept in the buffer until it expires.
    Buffered(BufferedMessage),
}

/// Moving an instance to another version (实例迁移).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    pub version: i64,
    /// Element id in the current version → element id in the target version; unmapped ids stay.
    #[serde(default)]
    pub mapping: std::collections::HashMap<String, String>,
}

/// What a migration of every instance of a version did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BulkMigration {
    pub migrated: i64,
    /// Instances that could not move (each stays on its version), with why.
    pub failed: Vec<MigrationFailure>,
    /// Running instances left on the version beyond this call's limit: call again.
    pub remaining: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MigrationFailure {
    pub instance_id: String,
    pub business_key: Option<String>,
    pub message: String,
}

/// Instances one bulk migration moves at most.
pub const BULK_MIGRATION_LIMIT: i64 = 5_000;

/// How to resolve an incident.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Run the failed step again.
    Retry,
    /// Treat a failed service task as done.
    Skip,
    /// Cancel the whole instance.
    Cancel,
}

const INSTANCE_COLUMNS: &str =
    "i.id, i.definition_id, i.def_key, d.name, d.version, i.business_key, i.status, i.incidents,
    i.started_at, i.ended_at, i.started_by, i.parent_id";

fn instance_from_row(r: &store::AnyRow) -> Instance {
    Instance {
        id: r.get(0),
        definition_id: r.get(1),
        process_key: r.get(2),
        process_name: r.get(3),
        version: r.get(4),
        business_key: r.get(5),
        status: r.get(6),
        incidents: r.get(7),
        started_at: r.get(8),
        ended_at: r.get(9),
        started_by: r.get(10),
        parent_id: r.get(11),
    }
}

impl Flow {
    /// Starts an instance of the latest (or a given) version of a process.
    pub async fn start(&self, caller: &Caller, actor: &Actor, req: StartRequest) -> Result<Instance> {
        caller.require(FLOW_START)?;
        let vars = check_vars(req.variables)?;
        if let Some(b) = &req.business_key
            && (b.trim().is_empty() || b.chars().count() > 200)
        {
            return Err(Error::validation("business_key must be 1-200 characters"));
        }
        let def_id = self.definition_id(&req.process_key, req.version).await?;
        let def = self.deployed(&def_id).await?;
        if def.process().none_start(None).is_none() {
            return Err(Error::validation("this process starts by message or timer, not by hand"));
        }
        let mut vars = vars;
        vars.entry("initiator").or_insert_with(|| Value::String(caller.username.clone()));
        // Starts are filed in batches with the others waiting (`batch.rs`).
        let job = StartJob {
            username: caller.username.clone(),
            org: Some(caller.primary_org_id.0.clone()).filter(|o| !o.is_empty()),
            actor: actor.clone(),
            def,
            business_key: req.business_key,
            vars,
        };
        match self.file(Job::Start(Box::new(job))).await? {
            Done::Started(i) => Ok(i),
            Done::Completed(_) => Err(Error::internal("a start was answered with a completion")),
        }
    }

    /// Starts many instances in one transaction (bulk intake, benchmarks). Not audited per
    /// instance: the caller audits the batch.
    pub async fn start_batch(
        &self,
        def_id: &str,
        batch: Vec<(Option<String>, serde_json::Map<String, Value>)>,
    ) -> Result<Vec<String>> {
        let def = self.deployed(def_id).await?;
        let mut unit = Unit::begin(self, None).await?;
        let ids = batch
            .into_iter()
            .map(|(bk, vars)| unit.new_instance(def.clone(), bk, None, None, None, vars, None, true))
            .collect();
        unit.run().await?;
        unit.commit().await?;
        Ok(ids)
    }

    /// Delivers a message to the instance waiting for it (by name and correlation key); else
    /// starts a process with a matching message start event; else, with a time to live, keeps
    /// it for the first instance that subscribes before it expires.
    pub async fn correlate(&self, caller: &Caller, actor: &Actor, req: MessageRequest) -> Result<Correlation> {
        caller.require(FLOW_START)?;
        let name = req.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::validation("the message name must be 1-200 characters"));
        }
        let ttl = req.ttl_seconds.unwrap_or(0);
        if !(0..=MAX_MESSAGE_TTL_SECONDS).contains(&ttl) {
            return Err(Error::validation(format!(
                "ttl_seconds must be between 0 and {MAX_MESSAGE_TTL_SECONDS} (30 days)"
            )));
        }
        if let Some(m) = &req.message_id
            && (m.trim().is_empty() || m.chars().count() > 200)
        {
            return Err(Error::validation("message_id must be 1-200 characters"));
        }
        let vars = check_vars(req.variables)?;
        let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
        let Some(id) = unit.correlate(&name, req.correlation_key.as_deref(), vars.clone(), true).await? else {
            drop(unit);
            // No waiting instance: a process with a message start event for this name starts.
            match self.start_by_message(caller, actor, &name, req.correlation_key.clone(), vars.clone()).await {
                Err(e) if e.code == ErrorCode::NotFound && ttl > 0 => {}
                other => return other.map(|i| Correlation::Delivered(Box::new(i))),
            }
            return self
                .buffer_message(caller, actor, name, req.correlation_key, req.message_id, vars, ttl)
                .await
                .map(Correlation::Buffered);
        };
        unit.run().await?;
        unit.flush().await?;
        let mut entry = actor.entry(unit.now, "flow.message.correlate").object("flow_instance", &id);
        entry.detail = Some(to_json(&serde_json::json!({"name": req.name, "key": req.correlation_key}))?);
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        unit.commit().await?;
        Ok(Correlation::Delivered(Box::new(self.instance_row(&id).await?)))
    }

    #[allow(clippy::too_many_arguments)]
    async fn buffer_message(
        &self,
        caller: &Caller,
        actor: &Actor,
        name: String,
        correlation_key: Option<String>,
        message_id: Option<String>,
        variables: serde_json::Map<String, Value>,
        ttl: i64,
    ) -> Result<BufferedMessage> {
        let now = self.now();
        let m = BufferedMessage {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            correlation_key,
            message_id: message_id.map(|m| m.trim().to_string()),
            variables,
            published_at: now,
            expires_at: now + ttl * 1000,
            published_by: Some(caller.username.clone()),
        };
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO flow_messages (id, name, correlation_key, message_id, variables, published_at, expires_at, published_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&m.id)
        .bind(&m.name)
        .bind(&m.correlation_key)
        .bind(&m.message_id)
        .bind(to_json(&m.variables)?)
        .bind(m.published_at)
        .bind(m.expires_at)
        .bind(&m.published_by)
        .execute(&mut *tx)
        .await
        .map_err(|e| match store::is_unique_violation(&e) {
            true => Error::new(
                ErrorCode::AlreadyExists,
                format!(
                    "message '{}' with id '{}' is already buffered",
                    m.name,
                    m.message_id.as_deref().unwrap_or_default()
                ),
            ),
            false => store::db_error(e),
        })?;
        let entry = actor.entry(now, "flow.message.buffer").object("flow_message", &m.id).detail(serde_json::json!({
            "name": m.name, "key": m.correlation_key, "message_id": m.message_id, "ttl_seconds": ttl,
        }));
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        Ok(m)
    }

    /// Buffered messages that have not expired, oldest first; `name` narrows to one.
    pub async fn buffered_messages(&self, caller: &Caller, name: Option<&str>) -> Result<Vec<BufferedMessage>> {
        caller.require(FLOW_INSTANCE_READ)?;
        let mut w = Where::new();
        w.and("expires_at > ?", [self.now().into()]);
        if let Some(n) = name.map(str::trim).filter(|n| !n.is_empty()) {
            w.and("name = ?", [n.to_string().into()]);
        }
        let sql = format!(
            "SELECT id, name, correlation_key, message_id, variables, published_at, expires_at, published_by
             FROM flow_messages {} ORDER BY published_at, id LIMIT 500",
            w.clause()
        );
        let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_all(self.db().reader()).await.db()?;
        Ok(rows
            .iter()
            .map(|r| BufferedMessage {
                id: r.get(0),
                name: r.get(1),
                correlation_key: r.get(2),
                message_id: r.get(3),
                variables: serde_json::from_str(&r.get::<String, _>(4)).unwrap_or_default(),
                published_at: r.get(5),
                expires_at: r.get(6),
                published_by: r.get(7),
            })
            .collect())
    }

    /// Withdraws a buffered message before anyone takes it.
    pub async fn withdraw_message(&self, caller: &Caller, actor: &Actor, id: &str) -> Result<()> {
        caller.require(FLOW_INSTANCE_MANAGE)?;
        let mut tx = self.db().begin().await?;
        let n = sqlx::query("DELETE FROM flow_messages WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        if n == 0 {
            return Err(Error::not_found("buffered message"));
        }
        let entry = actor.entry(self.now(), "flow.message.withdraw").object("flow_message", id);
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        Ok(())
    }

    async fn start_by_message(
        &self,
        caller: &Caller,
        actor: &Actor,
        name: &str,
        key: Option<String>,
        vars: serde_json::Map<String, Value>,
    ) -> Result<Instance> {
        let starts = self.latest_starting_on(|t| matches!(t, Trigger::Message(m) if m.name == name)).await?;
        if let Some((def, start)) = starts.into_iter().next() {
            let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
            let org = Some(caller.primary_org_id.0.clone()).filter(|o| !o.is_empty());
            let id =
                unit.new_instance(def.clone(), key, org, Some(caller.username.clone()), None, vars, Some(start), true);
            unit.run().await?;
            unit.flush().await?;
            let entry = actor.entry(unit.now, "flow.instance.start").object("flow_instance", &id);
            self.identity().audit_log().append(&mut unit.tx, &entry).await?;
            unit.commit().await?;
            return self.instance_row(&id).await;
        }
        Err(Error::new(
            ErrorCode::NotFound,
            format!(
                "no process instance waits for message '{name}'{} and no process starts with it",
                key.map(|k| format!(" with key '{k}'")).unwrap_or_default()
            ),
        ))
    }

    /// The latest version of every process with a process-level start event whose trigger
    /// `matches`, with that start event.
    async fn latest_starting_on(&self, matches: impl Fn(&Trigger) -> bool) -> Result<Vec<(Arc<Deployed>, El)>> {
        let mut out = Vec::new();
        for d in self.definitions(&identity::users::system_caller(), None, true).await? {
            let def = self.deployed(&d.id).await?;
            let p = def.process();
            let start = p
                .start_events(None)
                .find(|s| matches!(&p.elements[*s].kind, ElementKind::StartEvent { trigger, .. } if matches(trigger)));
            if let Some(start) = start {
                out.push((def.clone(), start));
            }
        }
        Ok(out)
    }

    /// The instance, if the caller may see it (the row only; see [`Self::instance`] for the
    /// tracking view).
    async fn visible_instance(&self, caller: &Caller, id: &str) -> Result<Instance> {
        let mut w = Where::new();
        w.and("i.id = ?", [id.to_string().into()]);
        self.restrict_instances(caller, &mut w)?;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM flow_instances i JOIN flow_definitions d ON d.id = i.definition_id {}",
            w.clause()
        );
        let row = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_optional(self.db().reader()).await.db()?;
        row.as_ref().map(instance_from_row).ok_or_else(|| Error::not_found("process instance"))
    }

    /// Sends a signal to every instance waiting for it. Returns how many were reached.
    pub async fn broadcast(
        &self,
        caller: &Caller,
        actor: &Actor,
        name: &str,
        vars: serde_json::Map<String, Value>,
    ) -> Result<usize> {
        caller.require(FLOW_INSTANCE_MANAGE)?;
        let vars = check_vars(vars)?;
        let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
        let mut n = unit.signal(name, vars.clone()).await?;
        // Processes whose (latest version's) start event is this signal start too.
        for (def, start) in
            self.latest_starting_on(|t| matches!(t, Trigger::Signal { name: sig } if sig == name)).await?
        {
            let org = Some(caller.primary_org_id.0.clone()).filter(|o| !o.is_empty());
            unit.new_instance(
                def.clone(),
                None,
                org,
                Some(caller.username.clone()),
                None,
                vars.clone(),
                Some(start),
                false,
            );
            n += 1;
        }
        unit.run().await?;
        unit.flush().await?;
        let mut entry = actor.entry(unit.now, "flow.signal.broadcast");
        entry.detail = Some(to_json(&serde_json::json!({"name": name, "reached": n}))?);
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        unit.commit().await?;
        Ok(n)
    }

    /// Cancels an instance (and the processes it called).
    pub async fn cancel(&self, caller: &Caller, actor: &Actor, id: &str, reason: &str) -> Result<Instance> {
        let inst = self.visible_instance(caller, id).await?;
        let mine = inst.started_by.as_deref() == Some(caller.username.as_str());
        if !mine {
            caller.require(FLOW_INSTANCE_MANAGE)?;
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.chars().count() > 500 {
            return Err(Error::validation("give a reason for cancelling (1-500 characters)"));
        }
        let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
        unit.push(id, Command::Cancel { reason: reason.to_string() }, true);
        unit.run().await?;
        unit.flush().await?;
        let mut entry = actor.entry(unit.now, "flow.instance.cancel").object("flow_instance", id);
        entry.reason = Some(reason.to_string());
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        unit.commit().await?;
        self.instance_row(id).await
    }

    /// Moves a running instance to another version of its process with an explicit element mapping.
    pub async fn migrate(&self, caller: &Caller, actor: &Actor, id: &str, req: MigrateRequest) -> Result<Instance> {
        caller.require(FLOW_INSTANCE_MANAGE)?;
        let current = self.visible_instance(caller, id).await?;
        let target = self.deployed(&self.definition_id(&current.process_key, Some(req.version)).await?).await?;
        if target.id == current.definition_id {
            return Err(Error::validation("the instance already runs on that version"));
        }
        let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
        let changed = unit.migrate(id, target, &req.mapping).await?;
        unit.flush().await?;
        let mut entry = actor.entry(unit.now, "flow.instance.migrate").object("flow_instance", id);
        entry.detail =
            Some(to_json(&serde_json::json!({"from": current.version, "to": req.version, "changed": changed}))?);
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        unit.commit().await?;
        self.instance_row(id).await
    }

    /// Moves every running instance of a version (that the caller may see) to another version with
    /// the same element mapping, each in its own transaction: one that cannot move stays where it
    /// is and is reported, the others move.
    pub async fn migrate_version(
        &self,
        caller: &Caller,
        actor: &Actor,
        definition_id: &str,
        req: MigrateRequest,
    ) -> Result<BulkMigration> {
        caller.require(FLOW_INSTANCE_MANAGE)?;
        let from = self.deployed(definition_id).await?;
        let target = self.definition_id(&from.key, Some(req.version)).await?;
        if target == from.id {
            return Err(Error::validation("choose another version to move the instances to"));
        }
        let mut w = Where::new();
        self.restrict_instances(caller, &mut w)?;
        w.and("i.definition_id = ? AND i.status = 'active'", [from.id.clone().into()]);
        let sql = format!("SELECT i.id, i.business_key FROM flow_instances i {} ORDER BY i.started_at", w.clause());
        let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_all(self.db().reader()).await.db()?;
        let total = rows.len() as i64;
        let mut out =
            BulkMigration { migrated: 0, failed: Vec::new(), remaining: (total - BULK_MIGRATION_LIMIT).max(0) };
        for r in rows.iter().take(BULK_MIGRATION_LIMIT as usize) {
            let id: String = r.get(0);
            match self.migrate(caller, actor, &id, req.clone()).await {
                Ok(_) => out.migrated += 1,
                Err(e) => {
                    out.failed.push(MigrationFailure { instance_id: id, business_key: r.get(1), message: e.message })
                }
            }
        }
        Ok(out)
    }

    /// Resolves an incident: retry the step, skip a failed service task, or cancel the instance.
    pub async fn resolve_incident(
        &self,
        caller: &Caller,
        actor: &Actor,
        incident_id: &str,
        how: Resolution,
    ) -> Result<Incident> {
        caller.require(FLOW_INSTANCE_MANAGE)?;
        let row = sqlx::query("SELECT instance_id, token, resolved_at FROM flow_incidents WHERE id = $1")
            .bind(incident_id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("incident"))?;
        if row.get::<Option<i64>, _>(2).is_some() {
            return Err(Error::conflict("the incident is already resolved"));
        }
        let (instance, token): (String, i64) = (row.get(0), row.get(1));
        let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
        let cmd = match how {
            Resolution::Retry => Command::Retry { token: token as u64 },
            Resolution::Skip => Command::Skip { token: token as u64 },
            Resolution::Cancel => Command::Cancel { reason: "incident resolved by cancelling".into() },
        };
        unit.push(&instance, cmd, true);
        unit.run().await?;
        sqlx::query("UPDATE flow_incidents SET resolution = $2, resolved_at = COALESCE(resolved_at, $3) WHERE id = $1")
            .bind(incident_id)
            .bind(match how {
                Resolution::Retry => "retried",
                Resolution::Skip => "skipped",
                Resolution::Cancel => "cancelled",
            })
            .bind(unit.now)
            .execute(&mut *unit.tx)
            .await
            .db()?;
        unit.flush().await?;
        let entry = actor.entry(unit.now, "flow.incident.resolve").object("flow_incident", incident_id);
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        unit.commit().await?;
        self.incident(incident_id).await
    }

    async fn incident(&self, id: &str) -> Result<Incident> {
        let sql = format!(
            "SELECT {INCIDENT_COLUMNS} FROM flow_incidents n JOIN flow_instances i ON i.id = n.instance_id WHERE n.id = $1"
        );
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(self.db().reader()).await.db()?;
        row.as_ref().map(incident_from_row).ok_or_else(|| Error::not_found("incident"))
    }

    pub(crate) async fn instance_row(&self, id: &str) -> Result<Instance> {
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS} FROM flow_instances i JOIN flow_definitions d ON d.id = i.definition_id WHERE i.id = $1"
        );
        let row =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string()).fetch_optional(self.db().reader()).await.db()?;
        row.as_ref().map(instance_from_row).ok_or_else(|| Error::not_found("process instance"))
    }

    /// Searches instances within the caller's scope (plus the ones they started).
    pub async fn instances(&self, caller: &Caller, f: &InstanceFilter) -> Result<Page<Instance>> {
        let page = PageRequest::new(f.page, f.page_size)?;
        let mut w = Where::new();
        self.restrict_instances(caller, &mut w)?;
        if let Some(k) = &f.process_key {
            w.and("i.def_key = ?", [k.clone().into()]);
        }
        if let Some(b) = f.business_key.as_deref().filter(|b| !b.is_empty()) {
            w.and("i.business_key LIKE ? ESCAPE '\\'", [format!("%{}%", like_escape(b)).into()]);
        }
        match f.status.as_deref() {
            None => {}
            Some(s @ ("active" | "completed" | "terminated")) => {
                w.and("i.status = ?", [s.to_string().into()]);
            }
            Some("incident") => {
                w.and_sql("i.status = 'active' AND i.incidents > 0");
            }
            Some(other) => {
                return Err(Error::new(
                    ErrorCode::InvalidQuery,
                    format!("status must be active, completed, terminated or incident, not '{other}'"),
                ));
            }
        }
        if let Some(u) = &f.started_by {
            w.and("i.started_by = ?", [u.clone().into()]);
        }
        if let Some(a) = &f.actor {
            w.and(
                "i.id IN (SELECT instance_id FROM flow_tasks WHERE completed_by = ? OR assignee = ?)",
                [a.clone().into(), a.clone().into()],
            );
        }
        if let Some(t) = f.started_from {
            w.and("i.started_at >= ?", [t.into()]);
        }
        if let Some(t) = f.started_to {
            w.and("i.started_at < ?", [t.into()]);
        }
        let from = "FROM flow_instances i JOIN flow_definitions d ON d.id = i.definition_id";
        let (rows, total) =
            store::fetch_page(self.db(), &w, INSTANCE_COLUMNS, from, "i.started_at DESC, i.id", page).await?;
        Ok(Page::new(rows.iter().map(instance_from_row).collect(), total, page))
    }

    fn restrict_instances(&self, caller: &Caller, w: &mut Where) -> Result<()> {
        let scope = caller.scope(FLOW_INSTANCE_READ);
        if scope.all {
            return Ok(());
        }
        if scope.is_empty() && !caller.has(FLOW_START) {
            return Err(Error::forbidden("you may not view process instances"));
        }
        // Own instances, instances the caller worked on, and those in the read scope.
        let mut parts = vec![
            "i.started_by = ?".to_string(),
            "i.id IN (SELECT instance_id FROM flow_tasks WHERE assignee = ? OR completed_by = ?)".to_string(),
        ];
        let mut vals: Vec<store::Value> =
            vec![caller.username.clone().into(), caller.username.clone().into(), caller.username.clone().into()];
        for p in &scope.subtrees {
            parts.push("i.org_id IN (SELECT id FROM orgs WHERE path >= ? AND path < ?)".into());
            vals.push(p.clone().into());
            vals.push(identity::scope::subtree_end(p).into());
        }
        for o in &scope.orgs {
            parts.push("i.org_id = ?".into());
            vals.push(o.clone().into());
        }
        w.and(&format!("({})", parts.join(" OR ")), vals);
        Ok(())
    }

    /// The tracking view of one instance.
    pub async fn instance(&self, caller: &Caller, id: &str) -> Result<InstanceDetail> {
        let mut w = Where::new();
        w.and("i.id = ?", [id.to_string().into()]);
        self.restrict_instances(caller, &mut w)?;
        let sql = format!(
            "SELECT {INSTANCE_COLUMNS}, i.state FROM flow_instances i JOIN flow_definitions d ON d.id = i.definition_id {}",
            w.clause()
        );
        let row = w
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("process instance"))?;
        let instance = instance_from_row(&row);
        let state: InstanceState = serde_json::from_str(&row.get::<String, _>(12)).map_err(super::json_err)?;
        let def = self.deployed(&instance.definition_id).await?;
        let p = def.process();
        let history =
            sqlx::query("SELECT seq, at, actor, events FROM flow_history WHERE instance_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(self.db().reader())
                .await
                .db()?;
        let mut items: BTreeMap<u64, TimelineItem> = BTreeMap::new();
        let mut completed = HashSet::new();
        let mut taken = HashSet::new();
        for h in &history {
            let at: i64 = h.get(1);
            let actor: Option<String> = h.get(2);
            let events: Vec<StoredEvent> = serde_json::from_str(&h.get::<String, _>(3)).unwrap_or_default();
            let mut changed: Vec<String> = Vec::new();
            for e in events {
                let Some(el_id) = e.element.clone() else {
                    if let StoredKind::Variables { names } = &e.kind {
                        changed.extend(names.iter().cloned());
                    }
                    continue;
                };
                let el = p.element(&el_id).map(|x| &p.elements[x]);
                let item = items.entry(e.token).or_insert_with(|| TimelineItem {
                    token: e.token,
                    element_id: el_id.clone(),
                    element_name: el.map(|x| x.label().to_string()).unwrap_or_else(|| el_id.clone()),
                    element_type: el.map(|x| x.kind.bpmn_name().to_string()).unwrap_or_default(),
                    started_at: at,
                    ended_at: None,
                    duration_ms: None,
                    state: "active".into(),
                    started_by: actor.clone(),
                    ended_by: None,
                    variables: vec![],
                    message: None,
                });
                match e.kind {
                    StoredKind::Started => {}
                    StoredKind::Completed | StoredKind::Cancelled => {
                        item.ended_at = Some(at);
                        item.duration_ms = Some(at - item.started_at);
                        item.ended_by = actor.clone();
                        item.variables = changed.clone();
                        if matches!(e.kind, StoredKind::Completed) {
                            item.state = "completed".into();
                            completed.insert(el_id);
                        } else {
                            item.state = "cancelled".into();
                        }
                    }
                    StoredKind::Taken { flow } => {
                        taken.insert(flow);
                    }
                    StoredKind::Incident { message } => {
                        item.state = "incident".into();
                        item.message = Some(message);
                    }
                    StoredKind::Variables { names } => changed.extend(names),
                }
            }
        }
        let mut timeline: Vec<TimelineItem> = items.into_values().collect();
        timeline.sort_by_key(|t| (t.started_at, t.token));
        let mut active: Vec<String> = state.tokens.values().map(|t| p.elements[t.element].id.clone()).collect();
        active.sort();
        active.dedup();
        let incidents = {
            let sql = format!(
                "SELECT {INCIDENT_COLUMNS} FROM flow_incidents n JOIN flow_instances i ON i.id = n.instance_id WHERE n.instance_id = $1 ORDER BY n.created_at"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_all(self.db().reader())
                .await
                .db()?
                .iter()
                .map(incident_from_row)
                .collect()
        };
        let xml: String = sqlx::query("SELECT xml FROM flow_definitions WHERE id = $1")
            .bind(&instance.definition_id)
            .fetch_one(self.db().reader())
            .await
            .db()?
            .get(0);
        let mut completed_elements: Vec<String> = completed.into_iter().collect();
        completed_elements.sort();
        let mut taken_flows: Vec<String> = taken.into_iter().collect();
        taken_flows.sort();
        Ok(InstanceDetail {
            variables: state.vars().clone(),
            instance,
            active_elements: active,
            completed_elements,
            taken_flows,
            timeline,
            incident_list: incidents,
            xml,
        })
    }

    /// The raw history rows of an instance.
    pub async fn history(&self, caller: &Caller, id: &str) -> Result<Vec<HistoryEntry>> {
        self.visible_instance(caller, id).await?;
        let rows = sqlx::query("SELECT seq, at, actor, events FROM flow_history WHERE instance_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(self.db().reader())
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|r| HistoryEntry {
                seq: r.get(0),
                at: r.get(1),
                actor: r.get(2),
                events: serde_json::from_str(&r.get::<String, _>(3)).unwrap_or(Value::Null),
            })
            .collect())
    }

    /// Incidents, newest first.
    pub async fn incidents(&self, caller: &Caller, f: &IncidentFilter) -> Result<Page<Incident>> {
        let scope = caller.require(FLOW_INSTANCE_MANAGE)?.clone();
        let page = PageRequest::new(f.page, f.page_size)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "i.org_id", None);
        match f.state.as_deref().unwrap_or("open") {
            "open" => {
                w.and_sql("n.resolved_at IS NULL");
            }
            "resolved" => {
                w.and_sql("n.resolved_at IS NOT NULL");
            }
            "all" => {}
            other => {
                return Err(Error::new(
                    ErrorCode::InvalidQuery,
                    format!("state must be open, resolved or all, not '{other}'"),
                ));
            }
        }
        if let Some(k) = &f.process_key {
            w.and("i.def_key = ?", [k.clone().into()]);
        }
        let from = "FROM flow_incidents n JOIN flow_instances i ON i.id = n.instance_id";
        let (rows, total) =
            store::fetch_page(self.db(), &w, INCIDENT_COLUMNS, from, "n.created_at DESC, n.id", page).await?;
        Ok(Page::new(rows.iter().map(incident_from_row).collect(), total, page))
    }
}

/// Open tasks of one department with their deadline flags (延误流程概况).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DelayRow {
    pub org_id: Option<String>,
    pub org_name: Option<String>,
    pub open_tasks: i64,
    pub due_soon: i64,
    pub overdue: i64,
}

impl Flow {
    /// Open tasks per department (the assignee's, else the instance's), with how many are due
    /// soon and overdue; most overdue first.
    pub async fn delay_overview(&self, caller: &Caller) -> Result<Vec<DelayRow>> {
        let scope = caller.scope(FLOW_INSTANCE_READ);
        if scope.is_empty() {
            return Err(Error::forbidden("you may not view the process overview"));
        }
        let now = self.now();
        let mut w = Where::new();
        w.and_sql("t.state = 'open'");
        scope.restrict(&mut w, "COALESCE(u.primary_org_id, t.org_id)", None);
        let n = w.len();
        let sql = format!(
            "SELECT COALESCE(u.primary_org_id, t.org_id) AS dept, o.name, COUNT(*),
                    SUM(CASE WHEN t.due_at > ${a} AND t.due_at <= ${b} THEN 1 ELSE 0 END),
                    SUM(CASE WHEN t.due_at <= ${a} THEN 1 ELSE 0 END)
             FROM flow_tasks t LEFT JOIN users u ON u.username = t.assignee
             LEFT JOIN orgs o ON o.id = COALESCE(u.primary_org_id, t.org_id)
             {} GROUP BY COALESCE(u.primary_org_id, t.org_id), o.name ORDER BY 5 DESC, 3 DESC",
            w.clause(),
            a = n + 1,
            b = n + 2
        );
        let rows = w
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .bind(now)
            .bind(now + super::tasks::DUE_SOON_MS)
            .fetch_all(self.db().reader())
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|r| DelayRow {
                org_id: r.get(0),
                org_name: r.get(1),
                open_tasks: r.get(2),
                due_soon: r.get(3),
                overdue: r.get(4),
            })
            .collect())
    }
}

const INCIDENT_COLUMNS: &str = "n.id, n.instance_id, i.def_key, i.business_key, n.token, n.element_id, n.message, n.created_at, n.resolved_at, n.resolution";

fn incident_from_row(r: &store::AnyRow) -> Incident {
    Incident {
        id: r.get(0),
        instance_id: r.get(1),
        process_key: r.get(2),
        business_key: r.get(3),
        token: r.get(4),
        element_id: r.get(5),
        message: r.get(6),
        created_at: r.get(7),
        resolved_at: r.get(8),
        resolution: r.get(9),
    }
}
