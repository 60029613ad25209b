//! Deploying and loading process definitions (versioned by key).

use std::sync::Arc;

use identity::{Actor, Caller};
use kernel::{Error, ErrorCode, Result};
use serde::Serialize;
use store::{DbResultExt, Row};

use super::{Flow, to_json};
use crate::model::Definitions;
use crate::parse::ModelError;

/// A deployed definition, compiled and cached in memory.
#[derive(Debug)]
pub struct Deployed {
    pub id: String,
    pub key: String,
    pub version: i64,
    pub name: String,
    pub defs: Definitions,
    pub forms: serde_json::Map<String, serde_json::Value>,
}

impl Deployed {
    pub fn process(&self) -> &crate::model::Process {
        self.defs.main_process()
    }
}

/// A definition as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DefinitionSummary {
    pub id: String,
    pub key: String,
    pub version: i64,
    pub name: String,
    pub deployed_at: i64,
    pub deployed_by: Option<String>,
    /// Instances of this version still running.
    pub active_instances: i64,
}

/// A definition with its XML and forms.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Definition {
    #[serde(flatten)]
    pub summary: DefinitionSummary,
    pub xml: String,
    #[schema(value_type = Object)]
    pub forms: serde_json::Map<String, serde_json::Value>,
}

/// Maximum size of one form schema.
const MAX_FORM_BYTES: usize = 256 * 1024;

impl Flow {
    /// Validates a model without deploying it: every problem, with line and element.
    pub fn check_model(&self, xml: &str) -> std::result::Result<Definitions, Vec<ModelError>> {
        crate::compile(xml)
    }

    /// Deploys a model (and its forms) as the next version of its process key. Deploying the
    /// same XML and forms as the latest version returns that version instead of a copy.
    pub async fn deploy(
        &self,
        caller: &Caller,
        actor: &Actor,
        xml: &str,
        forms: serde_json::Map<String, serde_json::Value>,
    ) -> Result<DefinitionSummary> {
        caller.require(identity::perms::FLOW_MODEL_MANAGE)?;
        let defs = self.check_model(xml).map_err(model_error)?;
        for (key, schema) in &forms {
            if !schema.is_object() || to_json(schema)?.len() > MAX_FORM_BYTES {
                return Err(Error::validation(format!("form '{key}' must be a form-js schema object under 256 KiB")));
            }
            crate::forms::check_schema(schema).map_err(|e| Error::validation(format!("form '{key}': {e}")))?;
        }
        let proc = defs.main_process();
        let key = proc.id.clone();
        if key.len() > 100 {
            return Err(Error::validation("the process id must be at most 100 characters"));
        }
        let name = proc.name.clone().unwrap_or_else(|| key.clone());
        let forms_json = to_json(&forms)?;
        let checksum = data_encoding::HEXLOWER
            .encode(&crypto::hash::digest(crypto::hash::HashAlg::Sm3, format!("{xml}\u{0}{forms_json}").as_bytes()));
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let latest = sqlx::query(
            "SELECT id, version, checksum FROM flow_definitions WHERE key = $1 ORDER BY version DESC LIMIT 1",
        )
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        if let Some(row) = &latest
            && row.get::<String, _>(2) == checksum
        {
            let id: String = row.get(0);
            tx.rollback().await.db()?;
            return self.definition_summary(&id).await;
        }
        let version = latest.map(|r| r.get::<i64, _>(1)).unwrap_or(0) + 1;
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO flow_definitions (id, key, version, name, xml, forms, checksum, deployed_at, deployed_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(&key)
        .bind(version)
        .bind(&name)
        .bind(xml)
        .bind(&forms_json)
        .bind(&checksum)
        .bind(now)
        .bind(&caller.username)
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if store::is_unique_violation(&e) {
                Error::conflict("another version of this process was deployed at the same moment; try again")
            } else {
                store::db_error(e)
            }
        })?;
        // Timer start events: the new version takes over from the old ones.
        sqlx::query(
            "DELETE FROM flow_start_timers WHERE definition_id IN (SELECT id FROM flow_definitions WHERE key = $1)",
        )
        .bind(&key)
        .execute(&mut *tx)
        .await
        .db()?;
        for (element, due, every, cron, remaining) in start_timers(defs.main_process(), now)? {
            sqlx::query(
                "INSERT INTO flow_start_timers (definition_id, element_id, due_at, every_ms, cron, remaining) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&id)
            .bind(&element)
            .bind(due)
            .bind(every)
            .bind(cron)
            .bind(remaining)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        let entry = actor.entry(now, "flow.deploy").object("flow_definition", &id);
        let entry = audit::AuditEntry {
            detail: Some(format!("{{\"key\":{},\"version\":{version}}}", to_json(&key)?)),
            ..entry
        };
        self.identity().audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        let deployed =
            Arc::new(Deployed { id: id.clone(), key: key.clone(), version, name: name.clone(), defs, forms });
        self.inner.deployed.write().expect("deployed lock").insert(id.clone(), deployed);
        if let Some(cell) = self.inner.latest.read().expect("latest lock").get(&key) {
            cell.clear();
        }
        Ok(DefinitionSummary {
            id,
            key,
            version,
            name,
            deployed_at: now,
            deployed_by: Some(caller.username.clone()),
            active_instances: 0,
        })
    }

    /// The compiled definition with this id (cached).
    pub async fn deployed(&self, id: &str) -> Result<Arc<Deployed>> {
        if let Some(d) = self.inner.deployed.read().expect("deployed lock").get(id) {
            return Ok(d.clone());
        }
        let row = sqlx::query("SELECT key, version, name, xml, forms FROM flow_definitions WHERE id = $1")
            .bind(id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("process definition"))?;
        let xml: String = row.get(3);
        let defs = crate::compile(&xml)
            .map_err(|e| Error::internal(std::io::Error::other(format!("stored model no longer compiles: {e:?}"))))?;
        let forms = serde_json::from_str(&row.get::<String, _>(4)).unwrap_or_default();
        let d = Arc::new(Deployed {
            id: id.to_string(),
            key: row.get(0),
            version: row.get(1),
            name: row.get(2),
            defs,
            forms,
        });
        self.inner.deployed.write().expect("deployed lock").insert(id.to_string(), d.clone());
        Ok(d)
    }

    /// The id of a key's version (`None`: the latest, cached for `LATEST_TTL_MS`).
    pub async fn definition_id(&self, key: &str, version: Option<i64>) -> Result<String> {
        if version.is_some() {
            return self.definition_id_uncached(key, version).await;
        }
        let cell = self.inner.latest.read().expect("latest lock").get(key).cloned();
        let cell = match cell {
            Some(c) => c,
            None => self
                .inner
                .latest
                .write()
                .expect("latest lock")
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(kernel::cache::TtlCell::new(LATEST_TTL_MS)))
                .clone(),
        };
        cell.get(self.now(), || self.definition_id_uncached(key, None)).await
    }

    async fn definition_id_uncached(&self, key: &str, version: Option<i64>) -> Result<String> {
        let row = match version {
            Some(v) => sqlx::query("SELECT id FROM flow_definitions WHERE key = $1 AND version = $2")
                .bind(key)
                .bind(v)
                .fetch_optional(self.db().reader())
                .await
                .db()?,
            None => sqlx::query("SELECT id FROM flow_definitions WHERE key = $1 ORDER BY version DESC LIMIT 1")
                .bind(key)
                .fetch_optional(self.db().reader())
                .await
                .db()?,
        };
        row.map(|r| r.get(0)).ok_or_else(|| match version {
            Some(v) => Error::not_found(&format!("version {v} of process '{key}'")),
            None => Error::not_found(&format!("process '{key}'")),
        })
    }

    /// Every deployed version, newest first; `key` narrows to one process.
    pub async fn definitions(
        &self,
        caller: &Caller,
        key: Option<&str>,
        latest_only: bool,
    ) -> Result<Vec<DefinitionSummary>> {
        caller.require(identity::perms::FLOW_MODEL_READ)?;
        let mut sql = String::from(
            "SELECT d.id, d.key, d.version, d.name, d.deployed_at, d.deployed_by,
                    (SELECT COUNT(*) FROM flow_instances i WHERE i.definition_id = d.id AND i.status = 'active')
             FROM flow_definitions d WHERE 1 = 1",
        );
        if key.is_some() {
            sql.push_str(" AND d.key = $1");
        }
        if latest_only {
            sql.push_str(" AND d.version = (SELECT MAX(x.version) FROM flow_definitions x WHERE x.key = d.key)");
        }
        sql.push_str(" ORDER BY d.key, d.version DESC");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        if let Some(k) = key {
            q = q.bind(k.to_string());
        }
        let rows = q.fetch_all(self.db().reader()).await.db()?;
        Ok(rows.iter().map(summary_from_row).collect())
    }

    async fn definition_summary(&self, id: &str) -> Result<DefinitionSummary> {
        let row = sqlx::query(
            "SELECT d.id, d.key, d.version, d.name, d.deployed_at, d.deployed_by,
                    (SELECT COUNT(*) FROM flow_instances i WHERE i.definition_id = d.id AND i.status = 'active')
             FROM flow_definitions d WHERE d.id = $1",
        )
        .bind(id)
        .fetch_optional(self.db().reader())
        .await
        .db()?
        .ok_or_else(|| Error::not_found("process definition"))?;
        Ok(summary_from_row(&row))
    }

    /// One definition with its XML and forms.
    pub async fn definition(&self, caller: &Caller, id: &str) -> Result<Definition> {
        caller.require(identity::perms::FLOW_MODEL_READ)?;
        let summary = self.definition_summary(id).await?;
        let row = sqlx::query("SELECT xml, forms FROM flow_definitions WHERE id = $1")
            .bind(id)
            .fetch_one(self.db().reader())
            .await
            .db()?;
        Ok(Definition {
            summary,
            xml: row.get(0),
            forms: serde_json::from_str(&row.get::<String, _>(1)).unwrap_or_default(),
        })
    }
}

/// How long the latest version of a process key is taken from memory.
const LATEST_TTL_MS: i64 = 1_000;

/// A timer start event to schedule: (element id, due, every ms, cron expression, repetitions left).
type StartTimer = (String, i64, Option<i64>, Option<String>, Option<i64>);

/// The timer start events of a process with their first due time: (element id, due, every ms for
/// ISO cycles, the expression of cron cycles, repetitions left after the first). Expressions cannot be used here (no instance yet).
fn start_timers(p: &crate::model::Process, now: i64) -> Result<Vec<StartTimer>> {
    use crate::model::{ElementKind, Text, TimerSpec, Trigger};
    let mut out = Vec::new();
    for s in p.start_events(None) {
        let el = &p.elements[s];
        let ElementKind::StartEvent { trigger: Trigger::Timer(spec), .. } = &el.kind else { continue };
        let literal = |t: &Text| match t {
            Text::Literal(l) => Ok(l.clone()),
            Text::Expr(_) => Err(Error::validation(format!(
                "the timer start event '{}' must use a fixed time, not an expression",
                el.id
            ))),
        };
        let bad = |e: String| Error::validation(format!("the timer start event '{}': {e}", el.id));
        let row = match spec {
            TimerSpec::Date(t) => {
                (el.id.clone(), crate::timer::parse_date(&literal(t)?).map_err(bad)?, None, None, None)
            }
            TimerSpec::Duration(t) => {
                let d = crate::timer::parse_duration(&literal(t)?).map_err(bad)?;
                (el.id.clone(), d.after(now).ok_or_else(|| bad("out of range".into()))?, None, None, None)
            }
            TimerSpec::Cycle(t) => {
                let c = crate::timer::parse_cycle(&literal(t)?, now).map_err(bad)?;
                let every = c.cron.is_none().then_some(c.every_ms);
                (el.id.clone(), c.first_due, every, c.cron, c.repetitions.map(i64::from))
            }
        };
        out.push(row);
    }
    Ok(out)
}

fn summary_from_row(r: &store::AnyRow) -> DefinitionSummary {
    DefinitionSummary {
        id: r.get(0),
        key: r.get(1),
        version: r.get(2),
        name: r.get(3),
        deployed_at: r.get(4),
        deployed_by: r.get(5),
        active_instances: r.get(6),
    }
}

/// A model that failed to compile: `validation_failed` listing every problem.
pub(crate) fn model_error(errors: Vec<ModelError>) -> Error {
    let shown: Vec<String> = errors.iter().take(20).map(|e| e.to_string()).collect();
    let more = if errors.len() > 20 { format!(" (and {} more)", errors.len() - 20) } else { String::new() };
    Error::new(
        ErrorCode::ValidationFailed,
        format!("the model has {} problem(s): {}{more}", errors.len(), shown.join("; ")),
    )
}
