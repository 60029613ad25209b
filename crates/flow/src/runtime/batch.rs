//! Starts and task completions filed in batches (group commit, `store::group`): what callers
//! send while a batch is being written is filed in the next one, in one transaction — the task
//! rows read with one `IN`, the instances loaded together, the engine run once, and the tasks,
//! instances, history rows, assignment messages and audit records written with multi-row
//! statements. A caller's own mistakes (a task that is not theirs, a form that does not validate)
//! are answered to them alone; anything that fails the batch sends every item through alone.
//!
//! An item is put back for the next batch when its instance is already touched by another
//! person in this batch (each history row names one actor), or when its task is completed by an
//! earlier item (the next batch answers it as already completed).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use identity::{Actor, Caller};
use kernel::{Error, Result};
use serde_json::{Map, Value};
use store::DbResultExt;
use store::group::{Filed, GroupCommit, GroupWrite};

use super::defs::Deployed;
use super::instances::Instance;
use super::tasks::{TASK_COLUMNS, Task, TaskRow, mark_completed, task_from_row, var_names};
use super::unit::Unit;
use super::{Flow, Inner};
use crate::engine::{Command, Status};

/// Most items one transaction files.
pub(crate) const BATCH: usize = 64;

/// A start or a completion waiting to be filed.
pub(crate) enum Job {
    Start(Box<StartJob>),
    Complete(Box<CompleteJob>),
}

pub(crate) struct StartJob {
    pub username: String,
    pub org: Option<String>,
    pub actor: Actor,
    pub def: Arc<Deployed>,
    pub business_key: Option<String>,
    pub vars: Map<String, Value>,
}

pub(crate) struct CompleteJob {
    pub caller: Caller,
    pub actor: Actor,
    pub task_id: String,
    pub vars: Map<String, Value>,
}

impl Job {
    fn username(&self) -> &str {
        match self {
            Job::Start(s) => &s.username,
            Job::Complete(c) => &c.caller.username,
        }
    }
}

/// What a filed item became.
pub(crate) enum Done {
    Started(Instance),
    Completed(Task),
}

/// The engine's starts and completions as a group writer.
pub(crate) struct FlowWriter(pub Flow);

impl GroupWrite for FlowWriter {
    type Item = Job;
    type Out = Done;
    type Weak = std::sync::Weak<Inner>;

    fn downgrade(&self) -> Self::Weak {
        Arc::downgrade(&self.0.inner)
    }

    fn upgrade(weak: &Self::Weak) -> Option<Self> {
        weak.upgrade().map(|inner| FlowWriter(Flow { inner }))
    }

    async fn write(&self, items: &[Job]) -> Result<Vec<Filed<Done>>> {
        self.0.write_batch(items).await
    }
}

pub(crate) type Writer = GroupCommit<FlowWriter>;

/// A completion accepted into the batch.
struct Completing<'a> {
    at: usize,
    row: &'a TaskRow,
    detail: String,
}

impl Flow {
    /// Files a start or a completion with whatever else is waiting.
    pub(crate) async fn file(&self, job: Job) -> Result<Done> {
        self.inner.writer.submit(&FlowWriter(self.clone()), job).await
    }

    /// Files `jobs` in one unit (see the module's notes); answers each in order. An `Err` means
    /// nothing was written, and the queue files each job alone.
    async fn write_batch(&self, jobs: &[Job]) -> Result<Vec<Filed<Done>>> {
        let common = jobs.first().map(Job::username).filter(|u| jobs.iter().all(|j| j.username() == *u));
        let mut unit = Unit::begin(self, common.map(String::from)).await?;
        let now = unit.now;
        let backend = self.db().backend();
        let mut out: Vec<Option<Filed<Done>>> = jobs.iter().map(|_| None).collect();

        // The tasks to complete, read together, and their instances.
        let task_ids: Vec<&str> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Complete(c) => Some(c.task_id.as_str()),
                Job::Start(_) => None,
            })
            .collect();
        let mut rows: HashMap<String, TaskRow> = HashMap::new();
        for chunk in store::chunks_pow2(&task_ids, 32) {
            let sql =
                format!("SELECT {TASK_COLUMNS} FROM flow_tasks t WHERE t.id IN {}", backend.values(1, chunk.len(), 1));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(*id);
            }
            for r in q.fetch_all(&mut *unit.tx).await.db()? {
                let t = task_from_row(&r, now);
                rows.insert(t.task.id.clone(), t);
            }
        }
        let instances: Vec<String> = rows.values().map(|t| t.task.instance_id.clone()).collect();
        unit.preload(&instances).await?;

        let mut completing: Vec<Completing> = Vec::new();
        let mut taken: HashSet<&str> = HashSet::new();
        let mut started: Vec<(usize, String)> = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            match job {
                Job::Complete(c) => {
                    let Some(t) = rows.get(&c.task_id).filter(|t| self.may_see(&c.caller, t)) else {
                        out[i] = Some(Filed::Done(Err(Error::not_found("task"))));
                        continue;
                    };
                    if t.task.state != "open" {
                        let what = if t.task.state == "completed" { "completed" } else { "cancelled" };
                        out[i] = Some(Filed::Done(Err(Error::conflict(format!("the task is already {what}")))));
                        continue;
                    }
                    let me = c.caller.username.as_str();
                    if taken.contains(t.task.id.as_str()) || unit.actor_of(&t.task.instance_id).is_some_and(|a| a != me)
                    {
                        out[i] = Some(Filed::Again);
                        continue;
                    }
                    let vars = match self.completion_vars(&mut unit, &c.caller, t, c.vars.clone(), false).await {
                        Ok(v) => v,
                        Err(e) => {
                            out[i] = Some(Filed::Done(Err(e)));
                            continue;
                        }
                    };
                    let detail = var_names(&vars)?;
                    taken.insert(t.task.id.as_str());
                    unit.act_as(&t.task.instance_id, me);
                    unit.push(&t.task.instance_id, Command::CompleteTask { token: t.token, vars }, true);
                    completing.push(Completing { at: i, row: t, detail });
                }
                Job::Start(s) => {
                    let id = unit.new_instance(
                        s.def.clone(),
                        s.business_key.clone(),
                        s.org.clone(),
                        Some(s.username.clone()),
                        None,
                        s.vars.clone(),
                        None,
                        true,
                    );
                    unit.act_as(&id, &s.username);
                    started.push((i, id));
                }
            }
        }
        if completing.is_empty() && started.is_empty() {
            drop(unit);
            return Ok(out.into_iter().map(|o| o.unwrap_or(Filed::Again)).collect());
        }

        // A task taken meanwhile fails the batch (each item is then filed alone and answered on
        // its own).
        let done: Vec<(&str, &str)> = completing
            .iter()
            .map(|c| match &jobs[c.at] {
                Job::Complete(job) => Ok((c.row.task.id.as_str(), job.caller.username.as_str())),
                Job::Start(_) => Err(Error::internal("a completion without its job")),
            })
            .collect::<Result<_>>()?;
        mark_completed(&mut unit, &done).await?;
        unit.run().await?;
        unit.flush().await?;

        let mut entries = Vec::with_capacity(completing.len() + started.len());
        for c in &completing {
            let Job::Complete(job) = &jobs[c.at] else { unreachable!("a completion") };
            let mut e = job.actor.entry(now, "flow.task.complete").object("flow_task", &c.row.task.id);
            e.detail = Some(c.detail.clone());
            entries.push(e);
        }
        for (i, id) in &started {
            let Job::Start(job) = &jobs[*i] else { unreachable!("a start") };
            entries.push(job.actor.entry(now, "flow.instance.start").object("flow_instance", id));
        }
        self.identity().audit_log().append_many(&mut unit.tx, &entries).await?;
        let summaries: Vec<(Status, i64)> =
            started.iter().map(|(_, id)| unit.summary(id).unwrap_or((Status::Active, 0))).collect();
        unit.commit().await?;

        for c in completing {
            let Job::Complete(job) = &jobs[c.at] else { unreachable!("a completion") };
            let me = &job.caller.username;
            let mut task = c.row.task.clone();
            task.state = "completed".into();
            task.completed_at = Some(now);
            task.completed_by = Some(me.clone());
            task.assignee = task.assignee.or_else(|| Some(me.clone()));
            task.flag = "normal".into();
            out[c.at] = Some(Filed::Done(Ok(Done::Completed(task))));
        }
        for ((i, id), (status, incidents)) in started.into_iter().zip(summaries) {
            let Job::Start(job) = &jobs[i] else { unreachable!("a start") };
            let def = &job.def;
            out[i] = Some(Filed::Done(Ok(Done::Started(Instance {
                id,
                definition_id: def.id.clone(),
                process_key: def.key.clone(),
                process_name: def.name.clone(),
                version: def.version,
                business_key: job.business_key.clone(),
                status: match status {
                    Status::Active => "active",
                    Status::Completed => "completed",
                    Status::Terminated => "terminated",
                }
                .into(),
                incidents,
                started_at: now,
                ended_at: (status != Status::Active).then_some(now),
                started_by: Some(job.username.clone()),
                parent_id: None,
            }))));
        }
        Ok(out.into_iter().map(|o| o.unwrap_or(Filed::Again)).collect())
    }
}
