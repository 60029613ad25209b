//! A unit of work: one transaction that steps one or more instances and applies every action.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use kernel::{Error, ErrorCode, Result};
use serde::Serialize;
use store::{Backend, DbResultExt, Row, Tx};

use super::defs::Deployed;
use super::handlers::{Handler, JobInput, JobResult};
use super::{Flow, to_json};
use crate::engine::{
    Action, Command, CommandError, Ctx, Event, EventKind, InstanceState, JobSpec, Status, TaskSpec, VarMap, step,
};

/// One history record as stored (element ids instead of indexes).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub(crate) struct StoredEvent {
    #[serde(rename = "t")]
    pub token: u64,
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub element: Option<String>,
    #[serde(flatten)]
    pub kind: StoredKind,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum StoredKind {
    Started,
    Completed,
    Cancelled,
    Taken { flow: String },
    Variables { names: Vec<String> },
    Incident { message: String },
}

struct Loaded {
    def: Arc<Deployed>,
    state: InstanceState,
    rev: i64,
    is_new: bool,
    business_key: Option<String>,
    org_id: Option<String>,
    started_by: Option<String>,
    started_at: i64,
    parent: Option<(String, u64)>,
    incidents: i64,
    events: Vec<Event>,
    /// Moved to another definition version in this unit.
    migrated: bool,
    /// Who acted on this instance, when a batch's units act for several people (else the
    /// unit's actor).
    actor: Option<String>,
}

pub(crate) struct Unit<'f> {
    flow: &'f Flow,
    pub tx: Tx,
    pub now: i64,
    actor: Option<String>,
    work: VecDeque<(String, Command, bool)>,
    loaded: HashMap<String, Loaded>,
    order: Vec<String>,
    steps: usize,
    /// Timers or jobs were scheduled: wake the engine's workers after the commit.
    wake: bool,
    /// Candidate org (code or id) → id, looked up once per unit.
    org_ids: HashMap<String, String>,
    /// Tasks created by the engine in this run, written together (multi-row) at its end.
    new_tasks: Vec<NewTask>,
    /// Their assignment messages, sent together with them.
    notices: Vec<notify::SendRequest>,
    /// Messages sent in this unit, announced after the commit.
    pub queued: notify::Queued,
    /// Buffered messages being delivered to (instance, token): each leaves the buffer only when
    /// its delivery succeeds (an event-based gateway takes one of several, the rest stay).
    from_buffer: HashMap<(String, u64), String>,
}

/// A task row to insert.
struct NewTask {
    id: String,
    instance_id: String,
    token: i64,
    element_id: String,
    name: String,
    def_key: String,
    def_name: String,
    business_key: Option<String>,
    assignee: Option<String>,
    candidate_users: String,
    candidate_groups: String,
    candidate_orgs: String,
    priority: i64,
    due_at: Option<i64>,
    follow_up_at: Option<i64>,
    form_key: Option<String>,
    inputs: String,
    org_id: Option<String>,
}

impl<'f> Unit<'f> {
    pub async fn begin(flow: &'f Flow, actor: Option<String>) -> Result<Unit<'f>> {
        let tx = flow.db().begin().await?;
        Ok(Unit {
            flow,
            tx,
            now: flow.now(),
            actor,
            work: VecDeque::new(),
            loaded: HashMap::new(),
            order: Vec::new(),
            steps: 0,
            wake: false,
            new_tasks: Vec::new(),
            notices: Vec::new(),
            queued: notify::Queued::default(),
            from_buffer: HashMap::new(),
            org_ids: HashMap::new(),
        })
    }

    pub fn flow(&self) -> &'f Flow {
        self.flow
    }

    /// Creates a new instance (written at flush) and queues its start.
    #[allow(clippy::too_many_arguments)]
    pub fn new_instance(
        &mut self,
        def: Arc<Deployed>,
        business_key: Option<String>,
        org_id: Option<String>,
        started_by: Option<String>,
        parent: Option<(String, u64)>,
        vars: VarMap,
        start: Option<crate::model::El>,
        primary: bool,
    ) -> String {
        let id = uuid::Uuid::now_v7().to_string();
        self.loaded.insert(
            id.clone(),
            Loaded {
                def,
                state: InstanceState::new(),
                rev: 0,
                is_new: true,
                business_key,
                org_id,
                started_by,
                started_at: self.now,
                parent,
                incidents: 0,
                events: Vec::new(),
                migrated: false,
                actor: None,
            },
        );
        self.order.push(id.clone());
        self.work.push_back((id.clone(), Command::Start { start, vars }, primary));
        id
    }

    /// Records who acts on an instance of this unit (a batch acting for several people).
    pub fn act_as(&mut self, instance: &str, username: &str) {
        if let Some(l) = self.loaded.get_mut(instance) {
            l.actor = Some(username.to_string());
        }
    }

    /// Who acts on an instance of this unit, when set by [`Unit::act_as`].
    pub fn actor_of(&self, instance: &str) -> Option<&str> {
        self.loaded.get(instance).and_then(|l| l.actor.as_deref())
    }

    /// Queues a command for an instance. Errors of `primary` commands fail the unit; errors of
    /// cascaded ones (a message for an instance that moved on meanwhile) are logged.
    pub fn push(&mut self, instance: &str, cmd: Command, primary: bool) {
        self.work.push_back((instance.to_string(), cmd, primary));
    }

    /// The state of an instance in this unit (loading it if needed).
    pub async fn state(&mut self, instance: &str) -> Result<(&InstanceState, Arc<Deployed>)> {
        self.load(instance).await?;
        let l = &self.loaded[instance];
        Ok((&l.state, l.def.clone()))
    }

    async fn load(&mut self, id: &str) -> Result<()> {
        if self.loaded.contains_key(id) {
            return Ok(());
        }
        self.preload(&[id.to_string()]).await?;
        if !self.loaded.contains_key(id) {
            return Err(Error::not_found("process instance"));
        }
        Ok(())
    }

    /// Loads many instances in a few statements (`FOR UPDATE` on PostgreSQL). Unknown ids are
    /// skipped; commands for them fail as usual when they run.
    pub async fn preload(&mut self, ids: &[String]) -> Result<()> {
        let want: Vec<&String> = ids.iter().filter(|id| !self.loaded.contains_key(id.as_str())).collect();
        if self.flow.db().backend() == Backend::Sqlite {
            // One row per chunk: every row of a result is a hand-off from SQLite's worker thread,
            // so the instances come back as one JSON array (the state embedded as JSON, parsed
            // once with the rest). PostgreSQL locks the rows instead, which an aggregate cannot.
            // An `IN` list padded to a power of two: few statement shapes, one statement for a
            // batch of up to 1,024.
            for chunk in store::padded_pow2(&want).chunks(INSERT_ROWS * 32) {
                let sql = format!(
                    "SELECT json_group_array({INSTANCE_JSON}) FROM flow_instances WHERE id IN {}",
                    Backend::Sqlite.values(1, chunk.len(), 1)
                );
                let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                let json = q.fetch_one(&mut *self.tx).await.db()?;
                let rows: Vec<InstanceRow> = serde_json::from_str(&json).map_err(super::json_err)?;
                for r in rows {
                    self.insert_loaded(r).await?;
                }
            }
            return Ok(());
        }
        for chunk in store::chunks_pow2(&want, INSERT_ROWS * 8) {
            let sql = format!(
                "SELECT id, definition_id, state, rev, business_key, org_id, started_by, parent_id, parent_token, incidents, started_at
                 FROM flow_instances WHERE id IN {} ORDER BY id FOR UPDATE",
                self.flow.db().backend().values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.as_str());
            }
            let rows = q.fetch_all(&mut *self.tx).await.db()?;
            for row in rows {
                let state: InstanceState = serde_json::from_str(&row.get::<String, _>(2)).map_err(super::json_err)?;
                self.insert_loaded((
                    row.get(0),
                    row.get(1),
                    state,
                    row.get(3),
                    row.get(4),
                    row.get(5),
                    row.get(6),
                    row.get(7),
                    row.get(8),
                    row.get(9),
                    row.get(10),
                ))
                .await?;
            }
        }
        Ok(())
    }

    /// Takes instances read outside this unit's transaction (ahead of it, on a reader) as if
    /// loaded here. Safe because every changed instance is written only at the revision it was
    /// read at: one that moved on meanwhile fails the write with a conflict.
    pub(crate) async fn adopt(&mut self, rows: Vec<InstanceRow>) -> Result<()> {
        for r in rows {
            if !self.loaded.contains_key(&r.0) {
                self.insert_loaded(r).await?;
            }
        }
        Ok(())
    }

    async fn insert_loaded(&mut self, r: InstanceRow) -> Result<()> {
        let (
            id,
            definition_id,
            state,
            rev,
            business_key,
            org_id,
            started_by,
            parent_id,
            parent_token,
            incidents,
            started_at,
        ) = r;
        let def = self.flow.deployed(&definition_id).await?;
        let parent = match (parent_id, parent_token) {
            (Some(p), Some(t)) => Some((p, t as u64)),
            _ => None,
        };
        self.loaded.insert(
            id.clone(),
            Loaded {
                def,
                state,
                rev,
                is_new: false,
                business_key,
                org_id,
                started_by,
                started_at,
                parent,
                incidents,
                events: Vec::new(),
                migrated: false,
                actor: None,
            },
        );
        self.order.push(id);
        Ok(())
    }

    /// Runs queued commands (and everything they cascade into) until none is left.
    pub async fn run(&mut self) -> Result<()> {
        while let Some((id, cmd, primary)) = self.work.pop_front() {
            self.steps += 1;
            if self.steps > self.flow.options().max_cascade {
                return Err(Error::conflict(
                    "the change cascades into too many process steps (a message or call loop?)",
                ));
            }
            self.load(&id).await?;
            let buffered = match &cmd {
                Command::Deliver { token, .. } => self.from_buffer.remove(&(id.clone(), *token)),
                _ => None,
            };
            let l = self.loaded.get_mut(&id).expect("loaded");
            let def = l.def.clone();
            let actions = match step(
                def.process(),
                &mut l.state,
                cmd,
                Ctx { now: self.now, calendar: &self.flow.options().calendar },
            ) {
                Ok(a) => a,
                Err(e) if primary => return Err(command_error(e)),
                Err(e) => {
                    tracing::debug!(instance = %id, error = %e, "cascaded command skipped");
                    continue;
                }
            };
            if let Some(message) = buffered {
                sqlx::query("DELETE FROM flow_messages WHERE id = $1")
                    .bind(&message)
                    .execute(&mut *self.tx)
                    .await
                    .db()?;
            }
            for a in actions {
                self.apply(&id, &def, a).await?;
            }
        }
        self.insert_tasks().await
    }

    /// Writes the tasks created since the last call, `INSERT_ROWS` rows per statement, and
    /// queues their assignment messages.
    async fn insert_tasks(&mut self) -> Result<()> {
        let tasks = std::mem::take(&mut self.new_tasks);
        for chunk in store::chunks_pow2(&tasks, INSERT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO flow_tasks (id, instance_id, token, element_id, name, def_key, def_name, business_key, assignee,
                    candidate_users, candidate_groups, candidate_orgs, state, priority, due_at, follow_up_at, form_key, inputs,
                    org_id, created_at) VALUES ",
            );
            push_values(&mut sql, self.flow.db().backend(), chunk.len(), 20, None);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for t in chunk {
                q = q
                    .bind(&t.id)
                    .bind(&t.instance_id)
                    .bind(t.token)
                    .bind(&t.element_id)
                    .bind(&t.name)
                    .bind(&t.def_key)
                    .bind(&t.def_name)
                    .bind(&t.business_key)
                    .bind(&t.assignee)
                    .bind(&t.candidate_users)
                    .bind(&t.candidate_groups)
                    .bind(&t.candidate_orgs)
                    .bind("open")
                    .bind(t.priority)
                    .bind(t.due_at)
                    .bind(t.follow_up_at)
                    .bind(&t.form_key)
                    .bind(&t.inputs)
                    .bind(&t.org_id)
                    .bind(self.now);
            }
            q.execute(&mut *self.tx).await.db()?;
        }
        let notices = std::mem::take(&mut self.notices);
        if let Some(n) = self.flow.notifier()
            && !notices.is_empty()
        {
            let q = n.send_many_in(&mut self.tx, &notices).await?;
            self.queued.merge(q);
        }
        Ok(())
    }

    async fn apply(&mut self, id: &str, def: &Arc<Deployed>, a: Action) -> Result<()> {
        let p = def.process();
        let el_id = |el: usize| p.elements.get(el).map(|e| e.id.clone()).unwrap_or_default();
        match a {
            Action::History(e) => self.loaded.get_mut(id).expect("loaded").events.push(e),
            Action::CreateTask(spec) => self.create_task(id, def, spec).await?,
            Action::CancelTask { token } => {
                // A task created earlier in this run is written first, so that it is cancelled too.
                if self.new_tasks.iter().any(|t| t.instance_id == id && t.token == token as i64) {
                    self.insert_tasks().await?;
                }
                sqlx::query("UPDATE flow_tasks SET state = 'cancelled', completed_at = $3 WHERE instance_id = $1 AND token = $2 AND state = 'open'")
                    .bind(id)
                    .bind(token as i64)
                    .bind(self.now)
                    .execute(&mut *self.tx)
                    .await
                    .db()?;
            }
            Action::CreateJob(job) => self.create_job(id, def, job).await?,
            Action::CancelJob { token } => {
                sqlx::query("DELETE FROM flow_jobs WHERE instance_id = $1 AND token = $2")
                    .bind(id)
                    .bind(token as i64)
                    .execute(&mut *self.tx)
                    .await
                    .db()?;
            }
            Action::ScheduleTimer { token, element, due } => {
                sqlx::query(
                    "INSERT INTO flow_timers (instance_id, token, element_id, due_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (instance_id, token) DO UPDATE SET due_at = excluded.due_at",
                )
                .bind(id)
                .bind(token as i64)
                .bind(el_id(element))
                .bind(due)
                .execute(&mut *self.tx)
                .await
                .db()?;
                self.wake = true;
            }
            Action::CancelTimer { token } => {
                sqlx::query("DELETE FROM flow_timers WHERE instance_id = $1 AND token = $2")
                    .bind(id)
                    .bind(token as i64)
                    .execute(&mut *self.tx)
                    .await
                    .db()?;
            }
            Action::Subscribe { token, element, name, key, signal } => {
                if !signal && let Some((message, vars)) = self.buffered_message(&name, key.as_deref()).await? {
                    // A message published earlier with a time to live is delivered at once.
                    self.from_buffer.insert((id.to_string(), token), message);
                    self.push(id, Command::Deliver { token, vars }, false);
                    return Ok(());
                }
                sqlx::query(
                    "INSERT INTO flow_subscriptions (instance_id, token, element_id, name, correlation_key, signal, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (instance_id, token) DO UPDATE SET name = excluded.name, correlation_key = excluded.correlation_key",
                )
                .bind(id)
                .bind(token as i64)
                .bind(el_id(element))
                .bind(&name)
                .bind(&key)
                .bind(signal as i64)
                .bind(self.now)
                .execute(&mut *self.tx)
                .await
                .db()?;
            }
            Action::Unsubscribe { token } => {
                sqlx::query("DELETE FROM flow_subscriptions WHERE instance_id = $1 AND token = $2")
                    .bind(id)
                    .bind(token as i64)
                    .execute(&mut *self.tx)
                    .await
                    .db()?;
            }
            Action::PublishMessage { name, key, vars } => {
                self.correlate(&name, key.as_deref(), vars, false).await?;
            }
            Action::BroadcastSignal { name, vars } => {
                self.signal(&name, vars).await?;
            }
            Action::StartCall { token, process_id, version, vars, .. } => {
                let child = match self.flow.definition_id(&process_id, version).await {
                    Ok(d) => self.flow.deployed(&d).await,
                    Err(e) => Err(e),
                };
                match child {
                    Ok(child) => {
                        let l = &self.loaded[id];
                        let (bk, org, by) = (l.business_key.clone(), l.org_id.clone(), l.started_by.clone());
                        self.new_instance(child, bk, org, by, Some((id.to_string(), token)), vars, None, false);
                    }
                    Err(e) => self.push(
                        id,
                        Command::FailJob { token, message: format!("cannot call process: {}", e.message) },
                        false,
                    ),
                }
            }
            Action::CancelCall { token } => {
                let rows = sqlx::query(
                    "SELECT id FROM flow_instances WHERE parent_id = $1 AND parent_token = $2 AND status = 'active'",
                )
                .bind(id)
                .bind(token as i64)
                .fetch_all(&mut *self.tx)
                .await
                .db()?;
                for r in rows {
                    let child: String = r.get(0);
                    self.push(&child, Command::Cancel { reason: "the calling process cancelled it".into() }, false);
                }
                // A child created in this very unit is not in the table yet.
                let pending: Vec<String> = self
                    .loaded
                    .iter()
                    .filter(|(_, l)| l.is_new && l.parent.as_ref().is_some_and(|(pid, t)| pid == id && *t == token))
                    .map(|(cid, _)| cid.clone())
                    .collect();
                for c in pending {
                    self.push(&c, Command::Cancel { reason: "the calling process cancelled it".into() }, false);
                }
            }
            Action::Incident { token, element, message } => {
                sqlx::query(
                    "INSERT INTO flow_incidents (id, instance_id, token, element_id, message, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(id)
                .bind(token as i64)
                .bind(el_id(element))
                .bind(&message)
                .bind(self.now)
                .execute(&mut *self.tx)
                .await
                .db()?;
                self.loaded.get_mut(id).expect("loaded").incidents += 1;
                tracing::warn!(instance = %id, element = %el_id(element), %message, "process incident");
            }
            Action::ResolveIncident { token } => {
                let n = sqlx::query(
                    "UPDATE flow_incidents SET resolved_at = $3, resolution = 'resolved' WHERE instance_id = $1 AND token = $2 AND resolved_at IS NULL",
                )
                .bind(id)
                .bind(token as i64)
                .bind(self.now)
                .execute(&mut *self.tx)
                .await
                .db()?
                .rows_affected();
                let l = self.loaded.get_mut(id).expect("loaded");
                l.incidents = (l.incidents - n as i64).max(0);
            }
            Action::Completed => {
                let l = &self.loaded[id];
                if let Some((parent, token)) = l.parent.clone() {
                    let vars = l.state.vars().clone();
                    self.push(&parent, Command::ChildCompleted { token, vars }, false);
                }
            }
            Action::Terminated => {}
        }
        Ok(())
    }

    async fn create_task(&mut self, id: &str, def: &Arc<Deployed>, spec: TaskSpec) -> Result<()> {
        let l = &self.loaded[id];
        let (bk, org) = (l.business_key.clone(), l.org_id.clone());
        let mut orgs = Vec::new();
        for o in &spec.candidate_orgs {
            // Candidate orgs may be given by code or id; a batch of tasks asks for the same few.
            if let Some(id) = self.org_ids.get(o) {
                orgs.push(id.clone());
                continue;
            }
            let row = sqlx::query("SELECT id FROM orgs WHERE code = $1 OR id = $1")
                .bind(o)
                .fetch_optional(&mut *self.tx)
                .await
                .db()?;
            let id = row.map(|r| r.get::<String, _>(0)).unwrap_or_else(|| o.clone());
            self.org_ids.insert(o.clone(), id.clone());
            orgs.push(id);
        }
        let list = |v: &[String]| if v.is_empty() { String::new() } else { format!(",{},", v.join(",")) };
        self.new_tasks.push(NewTask {
            id: uuid::Uuid::now_v7().to_string(),
            instance_id: id.to_string(),
            token: spec.token as i64,
            element_id: def.process().elements[spec.element].id.clone(),
            name: spec.name.clone(),
            def_key: def.key.clone(),
            def_name: def.name.clone(),
            business_key: bk.clone(),
            assignee: spec.assignee.clone(),
            candidate_users: list(&spec.candidate_users),
            candidate_groups: list(&spec.candidate_groups),
            candidate_orgs: list(&orgs),
            priority: spec.priority,
            due_at: spec.due_at,
            follow_up_at: spec.follow_up_at,
            form_key: spec.form_key.clone(),
            inputs: to_json(&spec.inputs)?,
            org_id: org.clone(),
        });
        if self.flow.notifier().is_some() {
            let mut recipients: Vec<String> = spec.assignee.iter().cloned().collect();
            if spec.assignee.is_none() {
                recipients.extend(spec.candidate_users.iter().cloned());
            }
            if !recipients.is_empty() {
                let mut vars = serde_json::Map::new();
                vars.insert("task".into(), spec.name.clone().into());
                vars.insert("process".into(), def.name.clone().into());
                vars.insert("business_key".into(), bk.clone().unwrap_or_default().into());
                self.notices.push(notify::SendRequest {
                    template: Some("flow.task.assigned".into()),
                    variables: vars,
                    recipients,
                    link: Some("/flow/tasks".into()),
                    ..Default::default()
                });
            }
        }
        Ok(())
    }

    async fn create_job(&mut self, id: &str, def: &Arc<Deployed>, job: JobSpec) -> Result<()> {
        let element_id = def.process().elements[job.element].id.clone();
        match self.flow.handler(&job.handler) {
            Some(Handler::Inline(f)) => {
                let input = JobInput {
                    instance_id: id.to_string(),
                    element_id: element_id.clone(),
                    handler: job.handler.clone(),
                    headers: job.headers.clone(),
                    vars: job.vars.clone(),
                    attempt: 1,
                };
                match f(&input) {
                    JobResult::Done(vars) => self.push(id, Command::CompleteJob { token: job.token, vars }, false),
                    JobResult::BpmnError { code, message } => {
                        self.push(id, Command::ThrowError { token: job.token, code, message }, false)
                    }
                    JobResult::Failed(message) if job.retries <= 1 => {
                        self.push(id, Command::FailJob { token: job.token, message }, false)
                    }
                    JobResult::Failed(message) => {
                        let backoff = self.flow.options().job_backoff_ms;
                        self.insert_job(
                            id,
                            &element_id,
                            &job,
                            job.retries as i64 - 1,
                            1,
                            self.now + backoff,
                            Some(&message),
                        )
                        .await?;
                    }
                }
            }
            Some(Handler::Remote(_)) => {
                self.insert_job(id, &element_id, &job, job.retries as i64, 0, self.now, None).await?;
                self.wake = true;
            }
            None => {
                let message = format!("no handler is registered for task type '{}'", job.handler);
                self.push(id, Command::FailJob { token: job.token, message }, false);
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn insert_job(
        &mut self,
        id: &str,
        element_id: &str,
        job: &JobSpec,
        retries_left: i64,
        attempts: i64,
        run_at: i64,
        error: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO flow_jobs (instance_id, token, element_id, handler, retries_left, attempts, run_at, last_error, headers, vars, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (instance_id, token) DO UPDATE SET retries_left = excluded.retries_left, attempts = excluded.attempts,
                run_at = excluded.run_at, last_error = excluded.last_error, lease_until = NULL, vars = excluded.vars",
        )
        .bind(id)
        .bind(job.token as i64)
        .bind(element_id)
        .bind(&job.handler)
        .bind(retries_left)
        .bind(attempts)
        .bind(run_at)
        .bind(error)
        .bind(to_json(&job.headers)?)
        .bind(to_json(&job.vars)?)
        .bind(self.now)
        .execute(&mut *self.tx)
        .await
        .db()?;
        Ok(())
    }

    /// Delivers a message to the oldest matching subscription. Returns the instance reached.
    pub async fn correlate(
        &mut self,
        name: &str,
        key: Option<&str>,
        vars: VarMap,
        primary: bool,
    ) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT instance_id, token FROM flow_subscriptions
             WHERE name = $1 AND signal = 0 AND (correlation_key = $2 OR correlation_key IS NULL)
             ORDER BY created_at, instance_id, token LIMIT 1",
        )
        .bind(name)
        .bind(key)
        .fetch_optional(&mut *self.tx)
        .await
        .db()?;
        let Some(row) = row else { return Ok(None) };
        let (instance, token): (String, i64) = (row.get(0), row.get(1));
        self.consume_subscription(&instance, token).await?;
        self.push(&instance, Command::Deliver { token: token as u64, vars }, primary);
        Ok(Some(instance))
    }

    /// The oldest unexpired buffered message for a new subscription (a subscription without a
    /// key takes any message of its name), not already on its way to another token.
    async fn buffered_message(&mut self, name: &str, key: Option<&str>) -> Result<Option<(String, VarMap)>> {
        let sql = match key {
            Some(_) => {
                "SELECT id, variables FROM flow_messages WHERE name = $1 AND expires_at > $2 AND correlation_key = $3 ORDER BY published_at, id LIMIT 16"
            }
            None => {
                "SELECT id, variables FROM flow_messages WHERE name = $1 AND expires_at > $2 ORDER BY published_at, id LIMIT 16"
            }
        };
        let mut q = sqlx::query(sql).bind(name).bind(self.now);
        if let Some(k) = key {
            q = q.bind(k);
        }
        let rows = q.fetch_all(&mut *self.tx).await.db()?;
        for r in rows {
            let id: String = r.get(0);
            if self.from_buffer.values().any(|m| *m == id) {
                continue;
            }
            let vars: VarMap = serde_json::from_str(&r.get::<String, _>(1)).unwrap_or_default();
            return Ok(Some((id, vars)));
        }
        Ok(None)
    }

    /// Delivers a signal to every subscription of that name. Returns how many.
    pub async fn signal(&mut self, name: &str, vars: VarMap) -> Result<usize> {
        let rows = sqlx::query(
            "SELECT instance_id, token FROM flow_subscriptions WHERE name = $1 AND signal = 1 ORDER BY created_at",
        )
        .bind(name)
        .fetch_all(&mut *self.tx)
        .await
        .db()?;
        for r in &rows {
            let (instance, token): (String, i64) = (r.get(0), r.get(1));
            self.consume_subscription(&instance, token).await?;
            self.push(&instance, Command::Deliver { token: token as u64, vars: vars.clone() }, false);
        }
        Ok(rows.len())
    }

    async fn consume_subscription(&mut self, instance: &str, token: i64) -> Result<()> {
        sqlx::query("DELETE FROM flow_subscriptions WHERE instance_id = $1 AND token = $2")
            .bind(instance)
            .bind(token)
            .execute(&mut *self.tx)
            .await
            .db()?;
        Ok(())
    }

    /// Writes every touched instance and its history row. New instances and history rows go
    /// out as multi-row INSERTs (a batch of started instances costs a few statements, not two
    /// per instance); changed instances are updated one by one with their revision checked.
    pub async fn flush(&mut self) -> Result<()> {
        self.insert_tasks().await?;
        let mut new_rows: Vec<NewRow> = Vec::new();
        let mut history: Vec<History> = Vec::new();
        let mut updates: Vec<Update> = Vec::new();
        let mut observed: Vec<(Arc<dyn super::Observer>, super::InstanceChange)> = Vec::new();
        // Every instance stays in `order`: a unit may flush more than once (a capability running
        // several steps in one transaction), and each flush writes what changed since the last.
        for id in self.order.clone() {
            let Some(l) = self.loaded.get_mut(&id) else { continue };
            if !l.is_new && l.events.is_empty() && !l.migrated {
                continue; // loaded for reading only, or unchanged since the last flush
            }
            l.migrated = false;
            if let Some(o) = self.flow.observer(&l.def.key) {
                let p = l.def.process();
                let open_tasks = l
                    .state
                    .tokens
                    .values()
                    .filter(|t| t.wait == crate::engine::Wait::Task)
                    .filter_map(|t| p.elements.get(t.element).map(|e| e.id.clone()))
                    .collect();
                let completed = l
                    .events
                    .iter()
                    .filter(|e| e.kind == EventKind::Completed)
                    .filter_map(|e| p.elements.get(e.element).map(|x| x.id.clone()))
                    .collect();
                observed.push((
                    o,
                    super::InstanceChange {
                        instance_id: id.clone(),
                        process_key: l.def.key.clone(),
                        business_key: l.business_key.clone(),
                        status: l.state.status,
                        open_tasks,
                        completed,
                        variables: l.state.vars().clone(),
                        actor: l.actor.clone().or_else(|| self.actor.clone()),
                        now: self.now,
                    },
                ));
            }
            let status = match l.state.status {
                Status::Active => "active",
                Status::Completed => "completed",
                Status::Terminated => "terminated",
            };
            let ended_at = (l.state.status != Status::Active).then_some(self.now);
            let state = to_json(&l.state)?;
            if l.is_new {
                let (parent_id, parent_token) = match &l.parent {
                    Some((p, t)) => (Some(p.clone()), Some(*t as i64)),
                    None => (None, None),
                };
                new_rows.push(NewRow {
                    id: id.clone(),
                    definition_id: l.def.id.clone(),
                    def_key: l.def.key.clone(),
                    business_key: l.business_key.clone(),
                    status,
                    state,
                    incidents: l.incidents,
                    started_at: l.started_at,
                    ended_at,
                    started_by: l.started_by.clone(),
                    org_id: l.org_id.clone(),
                    parent_id,
                    parent_token,
                });
                l.is_new = false;
                l.rev = 1;
            } else {
                l.rev += 1;
                updates.push((id.clone(), state, status, l.incidents, ended_at, l.rev - 1, l.def.id.clone()));
            }
            if !l.events.is_empty() {
                let p = l.def.process();
                let stored: Vec<StoredEvent> = l.events.drain(..).map(|e| stored_event(p, e)).collect();
                history.push((id, l.rev, to_json(&stored)?, l.actor.clone().or_else(|| self.actor.clone())));
            }
        }
        for chunk in store::chunks_pow2(&new_rows, INSERT_ROWS) {
            let mut sql = String::from(
                "INSERT INTO flow_instances (id, definition_id, def_key, business_key, status, state, rev, incidents,
                    started_at, ended_at, started_by, org_id, parent_id, parent_token) VALUES ",
            );
            push_values(&mut sql, self.flow.db().backend(), chunk.len(), 13, Some(6));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(&r.id)
                    .bind(&r.definition_id)
                    .bind(&r.def_key)
                    .bind(&r.business_key)
                    .bind(r.status)
                    .bind(&r.state)
                    .bind(r.incidents)
                    .bind(r.started_at)
                    .bind(r.ended_at)
                    .bind(&r.started_by)
                    .bind(&r.org_id)
                    .bind(&r.parent_id)
                    .bind(r.parent_token);
            }
            q.execute(&mut *self.tx).await.db()?;
        }
        // Changed instances: one UPDATE … FROM (VALUES …) per chunk, each row checked against the
        // revision it was loaded at.
        self.write_rows(&updates, &history).await?;
        // Observers last, so they see the instance rows written. One call per observer.
        while let Some((o, first)) = observed.pop() {
            let mut batch = vec![first];
            let mut rest = Vec::new();
            for (o2, c) in observed.drain(..) {
                if Arc::ptr_eq(&o, &o2) { batch.push(c) } else { rest.push((o2, c)) }
            }
            observed = rest;
            batch.reverse();
            o.changed(&mut self.tx, &batch).await?;
        }
        Ok(())
    }

    /// Writes changed instances (each checked against the revision it was loaded at) and their
    /// history: multi-row statements of bound values.
    async fn write_rows(&mut self, updates: &[Update], history: &[History]) -> Result<()> {
        // SQLite takes more rows per statement: each statement is a hand-off to its worker thread.
        let wide = if self.flow.db().backend() == Backend::Sqlite { 4 } else { 1 };
        for chunk in store::chunks_pow2(updates, INSERT_ROWS * wide) {
            // `SELECT … UNION ALL SELECT …` rather than `VALUES … AS v(cols)`: SQLite cannot name
            // the columns of a VALUES list.
            const COLS: [(&str, &str); 7] = [
                ("id", "TEXT"),
                ("state", "TEXT"),
                ("status", "TEXT"),
                ("incidents", "BIGINT"),
                ("ended_at", "BIGINT"),
                ("rev", "BIGINT"),
                ("definition_id", "TEXT"),
            ];
            let backend = self.flow.db().backend();
            let selects: Vec<String> = (0..chunk.len()).map(|r| backend.select_row(r * 7 + 1, &COLS)).collect();
            let sql = format!(
                "UPDATE flow_instances SET state = v.state, status = v.status, rev = flow_instances.rev + 1,
                    incidents = v.incidents, ended_at = v.ended_at, definition_id = v.definition_id
                 FROM ({}) AS v
                 WHERE flow_instances.id = v.id AND flow_instances.rev = v.rev",
                selects.join(" UNION ALL ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, state, status, incidents, ended_at, rev, def) in chunk {
                q = q.bind(id).bind(state).bind(*status).bind(*incidents).bind(*ended_at).bind(*rev).bind(def);
            }
            let n = q.execute(&mut *self.tx).await.db()?.rows_affected();
            if n != chunk.len() as u64 {
                return Err(Error::conflict("a process instance was changed at the same moment; try again"));
            }
        }
        for chunk in store::chunks_pow2(history, INSERT_ROWS * 2 * wide) {
            let mut sql = String::from("INSERT INTO flow_history (instance_id, seq, at, actor, events) VALUES ");
            push_values(&mut sql, self.flow.db().backend(), chunk.len(), 5, None);
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, seq, events, actor) in chunk {
                q = q.bind(id).bind(*seq).bind(self.now).bind(actor).bind(events);
            }
            q.execute(&mut *self.tx).await.db()?;
        }
        Ok(())
    }

    /// Moves a waiting instance to another version of its process. Each token's element is
    /// found in the new version by the mapping (old id → new id; unmapped ids stay the same) and
    /// must be of the same kind in the matching container. The rows of tasks, timers, jobs,
    /// subscriptions and incidents follow the new element ids. Returns the ids that changed.
    pub async fn migrate(
        &mut self,
        id: &str,
        to: Arc<Deployed>,
        mapping: &std::collections::HashMap<String, String>,
    ) -> Result<Vec<(String, String)>> {
        self.insert_tasks().await?;
        self.load(id).await?;
        let l = self.loaded.get_mut(id).expect("loaded");
        if l.state.status != Status::Active {
            return Err(Error::conflict("only a running instance can be migrated"));
        }
        if l.def.key != to.key {
            return Err(Error::validation("an instance can only move to another version of its own process"));
        }
        let (old, new) = (l.def.process(), to.process());
        let map = |old_id: &str| mapping.get(old_id).cloned().unwrap_or_else(|| old_id.to_string());
        let mut changed = Vec::new();
        let mut moved = std::collections::HashMap::new();
        for t in l.state.tokens.values() {
            let from = &old.elements[t.element];
            let target = map(&from.id);
            let Some(ni) = new.element(&target) else {
                return Err(Error::validation(format!(
                    "'{}' has no counterpart '{target}' in version {}; map it",
                    from.id, to.version
                )));
            };
            let n = &new.elements[ni];
            if n.kind.bpmn_name() != from.kind.bpmn_name() {
                return Err(Error::validation(format!(
                    "'{}' ({}) cannot become '{}' ({})",
                    from.id,
                    from.kind.bpmn_name(),
                    n.id,
                    n.kind.bpmn_name()
                )));
            }
            let old_parent = from.parent.map(|p| map(&old.elements[p].id));
            let new_parent = n.parent.map(|p| new.elements[p].id.clone());
            if old_parent != new_parent {
                return Err(Error::validation(format!("'{}' would move to another (sub-)process", from.id)));
            }
            moved.insert(t.element, ni);
            if from.id != n.id {
                changed.push((from.id.clone(), n.id.clone()));
            }
        }
        for t in l.state.tokens.values_mut() {
            t.element = moved[&t.element];
            if let crate::engine::Wait::Join { via } = &mut t.wait {
                let fid = &old.flows[*via].id;
                *via = new.flows.iter().position(|f| &f.id == fid).ok_or_else(|| {
                    Error::validation(format!(
                        "the flow '{fid}' a token waits on at a join is missing in version {}",
                        to.version
                    ))
                })?;
            }
        }
        changed.sort();
        changed.dedup();
        for (from, to_id) in &changed {
            for table in ["flow_tasks", "flow_timers", "flow_jobs", "flow_subscriptions", "flow_incidents"] {
                let sql = format!("UPDATE {table} SET element_id = $3 WHERE instance_id = $1 AND element_id = $2");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id)
                    .bind(from)
                    .bind(to_id)
                    .execute(&mut *self.tx)
                    .await
                    .db()?;
            }
        }
        sqlx::query("UPDATE flow_tasks SET def_name = $2 WHERE instance_id = $1")
            .bind(id)
            .bind(&to.name)
            .execute(&mut *self.tx)
            .await
            .db()?;
        let l = self.loaded.get_mut(id).expect("loaded");
        l.def = to;
        l.migrated = true;
        Ok(changed)
    }

    /// Status and open incidents of an instance touched in this unit.
    pub fn summary(&self, id: &str) -> Option<(Status, i64)> {
        self.loaded.get(id).map(|l| (l.state.status, l.incidents))
    }

    /// Flushes and commits.
    pub async fn commit(mut self) -> Result<()> {
        self.flush().await?;
        self.tx.commit().await.db()?;
        if self.wake {
            self.flow.wake();
        }
        if let Some(n) = self.flow.notifier() {
            n.published(std::mem::take(&mut self.queued));
        }
        Ok(())
    }
}

const INSERT_ROWS: usize = store::ROWS_PER_STATEMENT;

/// An instance row as one JSON array (SQLite), in [`InstanceRow`]'s order, the state embedded.
pub(crate) const INSTANCE_JSON: &str =
    "json_array(id, definition_id, json(state), rev, business_key, org_id, started_by,
    parent_id, parent_token, incidents, started_at)";

/// An instance row as preloaded: id, definition id, state, rev, business key, org, started by,
/// parent, parent token, incidents, started at.
pub(crate) type InstanceRow = (
    String,
    String,
    InstanceState,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    i64,
    i64,
);

/// A history row to write: (instance, seq, events as JSON, actor).
type History = (String, i64, String, Option<String>);

/// A changed instance: (id, state, status, incidents, ended_at, loaded revision, definition id).
type Update = (String, String, &'static str, i64, Option<i64>, i64, String);

struct NewRow {
    id: String,
    definition_id: String,
    def_key: String,
    business_key: Option<String>,
    status: &'static str,
    state: String,
    incidents: i64,
    started_at: i64,
    ended_at: Option<i64>,
    started_by: Option<String>,
    org_id: Option<String>,
    parent_id: Option<String>,
    parent_token: Option<i64>,
}

/// Appends `rows` groups of `cols` placeholders; `literal_at` (0-based column) is the literal 1
/// (the revision of a new instance) instead of a placeholder.
/// `rows` lists of `cols` placeholders bound in order (see [`Backend::values`]), with the
/// literal `1` inserted at column `literal_at`.
fn push_values(sql: &mut String, backend: Backend, rows: usize, cols: usize, literal_at: Option<usize>) {
    let mut n = 0;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols + usize::from(literal_at.is_some()) {
            if c > 0 {
                sql.push_str(", ");
            }
            if Some(c) == literal_at {
                sql.push('1');
            } else {
                n += 1;
                sql.push_str(&backend.mark(n));
            }
        }
        sql.push(')');
    }
}

fn stored_event(p: &crate::model::Process, e: Event) -> StoredEvent {
    let element = p.elements.get(e.element).map(|x| x.id.clone());
    let kind = match e.kind {
        EventKind::Started => StoredKind::Started,
        EventKind::Completed => StoredKind::Completed,
        EventKind::Cancelled => StoredKind::Cancelled,
        EventKind::Taken { flow } => {
            StoredKind::Taken { flow: p.flows.get(flow).map(|f| f.id.clone()).unwrap_or_default() }
        }
        EventKind::Variables { names } => StoredKind::Variables { names },
        EventKind::Incident { message } => StoredKind::Incident { message },
    };
    StoredEvent { token: e.token, element, kind }
}

pub(crate) fn command_error(e: CommandError) -> Error {
    match e {
        CommandError::NoSuchToken(_) => Error::new(ErrorCode::Conflict, "this step is no longer active in the process"),
        CommandError::WrongWait { waiting, .. } => {
            Error::conflict(format!("this step is not waiting for that; it waits for {waiting}"))
        }
        CommandError::NotActive => Error::conflict("the process instance has already ended"),
        CommandError::Invalid(m) => Error::validation(m),
    }
}
