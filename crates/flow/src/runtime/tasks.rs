//! User tasks (待办): inbox, done list, claim, complete with form data, transfer (转办),
//! delegate (委托), send back (退回), urge (催办), add a countersigner (加签).

use identity::perms::{FLOW_INSTANCE_MANAGE, FLOW_TASK};
use identity::{Actor, Caller};
use kernel::{Error, ErrorCode, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{DbResultExt, Row, Where, like_escape};

use super::batch::{CompleteJob, Done, Job};
use super::unit::Unit;
use super::{Flow, to_json};
use crate::engine::{Command, Wait};
use crate::model::{ElementKind, Looping};

/// A user task as listed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Task {
    pub id: String,
    pub instance_id: String,
    pub element_id: String,
    pub name: String,
    pub process_key: String,
    pub process_name: String,
    pub business_key: Option<String>,
    pub assignee: Option<String>,
    /// Who delegated the task (委托人), when delegated.
    pub owner: Option<String>,
    pub candidate_users: Vec<String>,
    pub candidate_groups: Vec<String>,
    pub state: String,
    pub priority: i64,
    pub due_at: Option<i64>,
    pub follow_up_at: Option<i64>,
    pub form_key: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub completed_by: Option<String>,
    pub urge_count: i64,
    /// `normal`, `due_soon` (yellow) or `overdue` (red).
    pub flag: String,
}

/// A task opened for work: the task, its form and the variables to fill it with.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: Task,
    /// The form-js schema, when the task has a form.
    #[schema(value_type = Option<Object>)]
    pub form: Option<Value>,
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
    /// Earlier user tasks of this instance the task may be sent back to.
    pub send_back_targets: Vec<StepRef>,
    /// True when this task is one signature of a parallel countersign (加签 possible).
    pub countersign: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StepRef {
    pub element_id: String,
    pub name: String,
}

/// Which tasks to list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskFilter {
    /// `inbox` (mine and claimable, the default), `done` (completed by me), `all` (managers).
    pub view: Option<String>,
    pub process_key: Option<String>,
    pub business_key: Option<String>,
    /// Text in the task or process name.
    pub q: Option<String>,
    /// `overdue` or `due_soon` only.
    pub flag: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// An action on a task.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskAction {
    /// Take a candidate task for oneself.
    Claim,
    /// Give a claimed task back to the candidates.
    Unclaim,
    /// Complete with form data (validated against the form).
    Complete {
        #[serde(default)]
        #[schema(value_type = Object)]
        variables: serde_json::Map<String, Value>,
    },
    /// 转办: hand the task over to another user for good.
    Transfer { to: String, comment: Option<String> },
    /// 委托: another user handles it on the assignee's behalf.
    Delegate { to: String, comment: Option<String> },
    /// 退回: send the work back to an earlier user task of the process.
    SendBack { to_element: String, reason: String },
    /// 催办: remind the assignee.
    Urge { comment: Option<String> },
    /// 加签: add a countersigner to a parallel countersign.
    AddSigner { user: String },
}

/// A task is due soon (yellow) within this many milliseconds of its deadline.
pub(crate) const DUE_SOON_MS: i64 = 4 * 3_600_000;

pub(super) const TASK_COLUMNS: &str =
    "t.id, t.instance_id, t.element_id, t.name, t.def_key, t.def_name, t.business_key, t.assignee, t.owner,
    t.candidate_users, t.candidate_groups, t.state, t.priority, t.due_at, t.follow_up_at, t.form_key, t.created_at,
    t.completed_at, t.completed_by, t.urge_count, t.candidate_orgs, t.token";

pub(super) struct TaskRow {
    pub task: Task,
    pub candidate_orgs: Vec<String>,
    pub token: u64,
}

fn split(s: &str) -> Vec<String> {
    s.split(',').filter(|x| !x.is_empty()).map(String::from).collect()
}

pub(super) fn task_from_row(r: &store::AnyRow, now: i64) -> TaskRow {
    let due_at: Option<i64> = r.get(13);
    let state: String = r.get(11);
    let flag = match due_at {
        Some(d) if state == "open" && d <= now => "overdue",
        Some(d) if state == "open" && d - now <= DUE_SOON_MS => "due_soon",
        _ => "normal",
    };
    TaskRow {
        task: Task {
            id: r.get(0),
            instance_id: r.get(1),
            element_id: r.get(2),
            name: r.get(3),
            process_key: r.get(4),
            process_name: r.get(5),
            business_key: r.get(6),
            assignee: r.get(7),
            owner: r.get(8),
            candidate_users: split(&r.get::<String, _>(9)),
            candidate_groups: split(&r.get::<String, _>(10)),
            state,
            priority: r.get(12),
            due_at,
            follow_up_at: r.get(14),
            form_key: r.get(15),
            created_at: r.get(16),
            completed_at: r.get(17),
            completed_by: r.get(18),
            urge_count: r.get(19),
            flag: flag.into(),
        },
        candidate_orgs: split(&r.get::<String, _>(20)),
        token: r.get::<i64, _>(21) as u64,
    }
}

/// True when the caller is among the task's candidates.
fn is_candidate(caller: &Caller, t: &TaskRow) -> bool {
    t.task.candidate_users.contains(&caller.username)
        || t.task.candidate_groups.iter().any(|g| caller.roles.contains(g))
        || t.candidate_orgs.iter().any(|o| caller.org_ids.iter().any(|c| c.0 == *o))
}

impl Flow {
    /// Lists tasks: the inbox (assigned to me, or unassigned with me among the candidates), my
    /// done list, or every task for a process manager.
    pub async fn tasks(&self, caller: &Caller, f: &TaskFilter) -> Result<Page<Task>> {
        caller.require(FLOW_TASK)?;
        let page = PageRequest::new(f.page, f.page_size)?;
        let now = self.now();
        let mut w = Where::new();
        match f.view.as_deref().unwrap_or("inbox") {
            "inbox" => {
                w.and_sql("t.state = 'open'");
                let mut parts = vec!["t.assignee = ?".to_string()];
                let mut vals: Vec<store::Value> = vec![caller.username.clone().into()];
                parts.push("(t.assignee IS NULL AND t.candidate_users LIKE ? ESCAPE '\\')".into());
                vals.push(format!("%,{},%", like_escape(&caller.username)).into());
                for r in &caller.roles {
                    parts.push("(t.assignee IS NULL AND t.candidate_groups LIKE ? ESCAPE '\\')".into());
                    vals.push(format!("%,{},%", like_escape(r)).into());
                }
                for o in &caller.org_ids {
                    parts.push("(t.assignee IS NULL AND t.candidate_orgs LIKE ? ESCAPE '\\')".into());
                    vals.push(format!("%,{},%", like_escape(&o.0)).into());
                }
                w.and(&format!("({})", parts.join(" OR ")), vals);
            }
            "done" => {
                w.and("t.state = 'completed' AND t.completed_by = ?", [caller.username.clone().into()]);
            }
            "all" => {
                let scope = caller.require(FLOW_INSTANCE_MANAGE)?.clone();
                scope.restrict(&mut w, "t.org_id", None);
            }
            other => {
                return Err(Error::new(
                    ErrorCode::InvalidQuery,
                    format!("view must be inbox, done or all, not '{other}'"),
                ));
            }
        }
        if let Some(k) = &f.process_key {
            w.and("t.def_key = ?", [k.clone().into()]);
        }
        if let Some(b) = &f.business_key {
            w.and("t.business_key = ?", [b.clone().into()]);
        }
        if let Some(q) = f.q.as_deref().filter(|q| !q.trim().is_empty()) {
            let pat = format!("%{}%", like_escape(q.trim()));
            w.and("(t.name LIKE ? ESCAPE '\\' OR t.def_name LIKE ? ESCAPE '\\')", [pat.clone().into(), pat.into()]);
        }
        match f.flag.as_deref() {
            None => {}
            Some("overdue") => {
                w.and("t.state = 'open' AND t.due_at <= ?", [now.into()]);
            }
            Some("due_soon") => {
                w.and("t.state = 'open' AND t.due_at > ? AND t.due_at <= ?", [now.into(), (now + DUE_SOON_MS).into()]);
            }
            Some(other) => {
                return Err(Error::new(
                    ErrorCode::InvalidQuery,
                    format!("flag must be overdue or due_soon, not '{other}'"),
                ));
            }
        }
        let order = if f.view.as_deref() == Some("done") {
            "t.completed_at DESC, t.id"
        } else {
            "t.priority DESC, t.created_at, t.id"
        };
        let (rows, total) = store::fetch_page(self.db(), &w, TASK_COLUMNS, "FROM flow_tasks t", order, page).await?;
        Ok(Page::new(rows.iter().map(|r| task_from_row(r, now).task).collect(), total, page))
    }

    async fn task_row(&self, id: &str, tx: Option<&mut store::Tx>) -> Result<TaskRow> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM flow_tasks t WHERE t.id = $1");
        let q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id.to_string());
        let row = match tx {
            Some(tx) => q.fetch_optional(&mut **tx).await,
            None => q.fetch_optional(self.db().reader()).await,
        }
        .db()?
        .ok_or_else(|| Error::not_found("task"))?;
        Ok(task_from_row(&row, self.now()))
    }

    /// Who may see a task: the assignee, the owner, candidates, those who completed it, and
    /// process managers whose scope covers it.
    pub(super) fn may_see(&self, caller: &Caller, t: &TaskRow) -> bool {
        let me = Some(caller.username.as_str());
        t.task.assignee.as_deref() == me
            || t.task.owner.as_deref() == me
            || t.task.completed_by.as_deref() == me
            || (t.task.assignee.is_none() && is_candidate(caller, t))
            || caller.has(FLOW_INSTANCE_MANAGE)
    }

    /// Opens a task: the task, its form and the instance's variables.
    pub async fn task(&self, caller: &Caller, id: &str) -> Result<TaskView> {
        caller.require(FLOW_TASK)?;
        let t = self.task_row(id, None).await?;
        if !self.may_see(caller, &t) {
            return Err(Error::not_found("task"));
        }
        let row = sqlx::query("SELECT definition_id, state FROM flow_instances WHERE id = $1")
            .bind(&t.task.instance_id)
            .fetch_one(self.db().reader())
            .await
            .db()?;
        let def = self.deployed(&row.get::<String, _>(0)).await?;
        let state: crate::engine::InstanceState =
            serde_json::from_str(&row.get::<String, _>(1)).map_err(super::json_err)?;
        let p = def.process();
        let form = t.task.form_key.as_ref().and_then(|k| def.forms.get(k).cloned());
        let mut variables = state.vars().clone();
        let inputs: serde_json::Map<String, Value> = sqlx::query("SELECT inputs FROM flow_tasks WHERE id = $1")
            .bind(id)
            .fetch_one(self.db().reader())
            .await
            .db()
            .map(|r| serde_json::from_str(&r.get::<String, _>(0)).unwrap_or_default())?;
        variables.extend(inputs);
        let here = p.element(&t.task.element_id);
        let send_back_targets = p
            .elements
            .iter()
            .filter(|e| matches!(e.kind, ElementKind::UserTask(_)))
            .filter(|e| Some(e.id.as_str()) != Some(t.task.element_id.as_str()))
            .filter(|e| {
                here.is_some_and(|h| {
                    p.elements[h].parent == e.parent && p.element(&e.id).is_some_and(|x| p.can_reach(x, h))
                })
            })
            .map(|e| StepRef { element_id: e.id.clone(), name: e.label().to_string() })
            .collect();
        let countersign =
            here.is_some_and(|h| matches!(&p.elements[h].looping, Some(Looping::Multi(m)) if !m.sequential));
        Ok(TaskView { task: t.task, form, variables, send_back_targets, countersign })
    }

    /// Performs an action on a task.
    pub async fn task_action(&self, caller: &Caller, actor: &Actor, id: &str, action: TaskAction) -> Result<Task> {
        caller.require(FLOW_TASK)?;
        if let TaskAction::Complete { variables } = action {
            // Completions are filed in batches with the others waiting (`batch.rs`).
            let job =
                CompleteJob { caller: caller.clone(), actor: actor.clone(), task_id: id.to_string(), vars: variables };
            return match self.file(Job::Complete(Box::new(job))).await? {
                Done::Completed(t) => Ok(t),
                Done::Started(_) => Err(Error::internal("a completion was answered with a start")),
            };
        }
        let mut unit = Unit::begin(self, Some(caller.username.clone())).await?;
        let t = self.task_row(id, Some(&mut unit.tx)).await?;
        if !self.may_see(caller, &t) {
            return Err(Error::not_found("task"));
        }
        if t.task.state != "open" {
            return Err(Error::conflict(format!(
                "the task is already {}",
                if t.task.state == "completed" { "completed" } else { "cancelled" }
            )));
        }
        let me = caller.username.clone();
        let mine = t.task.assignee.as_deref() == Some(me.as_str());
        let manager = caller.has(FLOW_INSTANCE_MANAGE);
        let now = unit.now;
        let (audit_action, detail) = match action {
            TaskAction::Claim => {
                if t.task.assignee.is_some() {
                    return Err(Error::conflict("the task has already been claimed"));
                }
                if !is_candidate(caller, &t) {
                    return Err(Error::forbidden("you are not a candidate for this task"));
                }
                self.set_assignee(&mut unit, id, Some(&me), None, Some(now)).await?;
                ("flow.task.claim", None)
            }
            TaskAction::Unclaim => {
                if !mine && !manager {
                    return Err(Error::forbidden("only the assignee can give the task back"));
                }
                if t.task.candidate_users.is_empty()
                    && t.task.candidate_groups.is_empty()
                    && t.candidate_orgs.is_empty()
                {
                    return Err(Error::conflict("the task has no candidates to give it back to"));
                }
                self.set_assignee(&mut unit, id, None, None, None).await?;
                ("flow.task.unclaim", None)
            }
            TaskAction::Complete { .. } => return Err(Error::internal("completions are filed in batches")),
            TaskAction::Transfer { to, comment } => {
                if !mine && !manager {
                    return Err(Error::forbidden("only the assignee or a process manager can transfer the task"));
                }
                let to = self.user_exists(&mut unit, &to).await?;
                self.set_assignee(&mut unit, id, Some(&to), None, Some(now)).await?;
                ("flow.task.transfer", Some(to_json(&serde_json::json!({"to": to, "comment": comment}))?))
            }
            TaskAction::Delegate { to, comment } => {
                if !mine {
                    return Err(Error::forbidden("only the assignee can delegate the task"));
                }
                let to = self.user_exists(&mut unit, &to).await?;
                if to == me {
                    return Err(Error::validation("you cannot delegate a task to yourself"));
                }
                self.set_assignee(&mut unit, id, Some(&to), Some(&me), Some(now)).await?;
                ("flow.task.delegate", Some(to_json(&serde_json::json!({"to": to, "comment": comment}))?))
            }
            TaskAction::SendBack { to_element, reason } => {
                if !mine && !manager {
                    return Err(Error::forbidden("only the assignee or a process manager can send the task back"));
                }
                let reason = reason.trim().to_string();
                if reason.is_empty() || reason.chars().count() > 500 {
                    return Err(Error::validation("give a reason for sending back (1-500 characters)"));
                }
                let (_, def) = unit.state(&t.task.instance_id).await?;
                let to = def
                    .process()
                    .element(&to_element)
                    .filter(|e| matches!(def.process().elements[*e].kind, ElementKind::UserTask(_)))
                    .ok_or_else(|| Error::validation(format!("'{to_element}' is not a user task of this process")))?;
                let mut vars = serde_json::Map::new();
                vars.insert("sendBackReason".into(), Value::String(reason.clone()));
                vars.insert("sentBackBy".into(), Value::String(me.clone()));
                sqlx::query(
                    "UPDATE flow_tasks SET state = 'cancelled', completed_at = $2, completed_by = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(now)
                .bind(&me)
                .execute(&mut *unit.tx)
                .await
                .db()?;
                unit.push(&t.task.instance_id, Command::Move { token: t.token, to, vars }, true);
                ("flow.task.send_back", Some(to_json(&serde_json::json!({"to": to_element, "reason": reason}))?))
            }
            TaskAction::Urge { comment } => {
                sqlx::query("UPDATE flow_tasks SET urge_count = urge_count + 1, last_urged_at = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *unit.tx)
                    .await
                    .db()?;
                if let Some(n) = self.notifier() {
                    let recipients = match &t.task.assignee {
                        Some(a) => vec![a.clone()],
                        None => t.task.candidate_users.clone(),
                    };
                    let mut vars = serde_json::Map::new();
                    vars.insert("task".into(), t.task.name.clone().into());
                    vars.insert("process".into(), t.task.process_name.clone().into());
                    vars.insert("business_key".into(), t.task.business_key.clone().unwrap_or_default().into());
                    vars.insert("by".into(), caller.display_name.clone().into());
                    vars.insert("comment".into(), comment.clone().unwrap_or_default().into());
                    let req = notify::SendRequest {
                        template: Some("flow.task.urge".into()),
                        variables: vars,
                        recipients,
                        link: Some("/flow/tasks".into()),
                        ..Default::default()
                    };
                    let q = n.send_in(&mut unit.tx, &req).await?;
                    unit.queued.merge(q);
                }
                ("flow.task.urge", comment.map(|c| to_json(&c)).transpose()?)
            }
            TaskAction::AddSigner { user } => {
                if !mine && !manager {
                    return Err(Error::forbidden("only a countersigner or a process manager can add a countersigner"));
                }
                let user = self.user_exists(&mut unit, &user).await?;
                let (state, def) = unit.state(&t.task.instance_id).await?;
                let el = def.process().element(&t.task.element_id);
                let body = state
                    .tokens
                    .iter()
                    .find(|(_, x)| Some(x.element) == el && matches!(x.wait, Wait::MultiBody { .. }))
                    .map(|(id, _)| *id)
                    .ok_or_else(|| Error::conflict("this task is not part of a countersign"))?;
                unit.push(
                    &t.task.instance_id,
                    Command::AddInstance { token: body, item: Value::String(user.clone()) },
                    true,
                );
                ("flow.task.add_signer", Some(to_json(&user)?))
            }
        };
        unit.run().await?;
        unit.flush().await?;
        let mut entry = actor.entry(now, audit_action).object("flow_task", id);
        entry.detail = detail;
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        let after = self.task_row(id, Some(&mut unit.tx)).await?;
        unit.commit().await?;
        Ok(after.task)
    }

    /// Element ids of an instance's open user tasks the caller may work now: assigned to them,
    /// or unclaimed with them among the candidates (what `FlowTx::complete_task` accepts).
    pub async fn workable_elements(&self, caller: &Caller, instance_id: &str) -> Result<Vec<String>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM flow_tasks t WHERE t.instance_id = $1 AND t.state = 'open' ORDER BY t.created_at"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(instance_id).fetch_all(self.db().reader()).await.db()?;
        let now = self.now();
        Ok(rows
            .iter()
            .map(|r| task_from_row(r, now))
            .filter(|t| match &t.task.assignee {
                Some(a) => *a == caller.username,
                None => is_candidate(caller, t),
            })
            .map(|t| t.task.element_id)
            .collect())
    }

    /// Completes an open task the caller may see (see `FlowTx::complete_task`).
    pub(crate) async fn complete_in(
        &self,
        unit: &mut Unit<'_>,
        caller: &Caller,
        actor: &Actor,
        id: &str,
        variables: serde_json::Map<String, Value>,
        auto_claim: bool,
    ) -> Result<String> {
        let t = self.task_row(id, Some(&mut unit.tx)).await?;
        if !self.may_see(caller, &t) {
            return Err(Error::not_found("task"));
        }
        if t.task.state != "open" {
            return Err(Error::conflict("the task has already been dealt with"));
        }
        let vars = self.completion_vars(unit, caller, &t, variables, auto_claim).await?;
        let detail = var_names(&vars)?;
        mark_completed(unit, &[(id, caller.username.as_str())]).await?;
        unit.push(&t.task.instance_id, Command::CompleteTask { token: t.token, vars }, true);
        let mut entry = actor.entry(unit.now, "flow.task.complete").object("flow_task", id);
        entry.detail = Some(detail.clone());
        self.identity().audit_log().append(&mut unit.tx, &entry).await?;
        Ok(detail)
    }

    /// Checks the caller may complete `t` (open, visible to them) and validates the form data:
    /// answers the variables to set.
    pub(super) async fn completion_vars(
        &self,
        unit: &mut Unit<'_>,
        caller: &Caller,
        t: &TaskRow,
        variables: serde_json::Map<String, Value>,
        auto_claim: bool,
    ) -> Result<serde_json::Map<String, Value>> {
        let me = &caller.username;
        let mine = t.task.assignee.as_deref() == Some(me.as_str());
        let claimable = auto_claim && t.task.assignee.is_none() && is_candidate(caller, t);
        if !mine && !claimable {
            let hint =
                if t.task.assignee.is_none() { "claim the task first" } else { "the task is assigned to someone else" };
            return Err(Error::forbidden(format!("you cannot complete this task: {hint}")));
        }
        let (_, def) = unit.state(&t.task.instance_id).await?;
        match t.task.form_key.as_ref().and_then(|k| def.forms.get(k)) {
            Some(schema) => crate::forms::validate(schema, &variables).map_err(|errs| {
                Error::validation(format!("the form has {} problem(s): {}", errs.len(), errs.join("; ")))
            }),
            None => check_vars(variables),
        }
    }

    /// The open task at `element_id` of an instance, read in the unit's transaction.
    pub(crate) async fn open_task_in(
        &self,
        unit: &mut Unit<'_>,
        instance_id: &str,
        element_id: &str,
    ) -> Result<Option<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM flow_tasks t WHERE t.instance_id = $1 AND t.element_id = $2 AND t.state = 'open' ORDER BY t.created_at LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(instance_id)
            .bind(element_id)
            .fetch_optional(&mut *unit.tx)
            .await
            .db()?;
        Ok(row.map(|r| task_from_row(&r, unit.now).task))
    }

    async fn set_assignee(
        &self,
        unit: &mut Unit<'_>,
        id: &str,
        to: Option<&str>,
        owner: Option<&str>,
        at: Option<i64>,
    ) -> Result<()> {
        sqlx::query("UPDATE flow_tasks SET assignee = $2, owner = $3, claimed_at = $4 WHERE id = $1")
            .bind(id)
            .bind(to)
            .bind(owner)
            .bind(at)
            .execute(&mut *unit.tx)
            .await
            .db()?;
        Ok(())
    }

    async fn user_exists(&self, unit: &mut Unit<'_>, username: &str) -> Result<String> {
        let row = sqlx::query("SELECT username FROM users WHERE username_key = $1 AND status = 'active'")
            .bind(username.trim().to_lowercase())
            .fetch_optional(&mut *unit.tx)
            .await
            .db()?;
        row.map(|r| r.get(0)).ok_or_else(|| Error::validation(format!("there is no active user '{}'", username.trim())))
    }
}

/// Variables from a client: at most 200 names, 64 KiB of JSON.
/// Marks open tasks completed by (task id, username), `claimed_at` and `assignee` filled in when
/// they were unclaimed; a task no longer open fails the whole call.
pub(super) async fn mark_completed(unit: &mut Unit<'_>, done: &[(&str, &str)]) -> Result<()> {
    let backend = unit.flow().db().backend();
    for chunk in store::chunks_pow2(done, 32) {
        const COLS: [(&str, &str); 3] = [("id", "TEXT"), ("by_user", "TEXT"), ("at", "BIGINT")];
        let selects: Vec<String> = (0..chunk.len()).map(|r| backend.select_row(r * 3 + 1, &COLS)).collect();
        let sql = format!(
            "UPDATE flow_tasks SET state = 'completed', completed_at = v.at, completed_by = v.by_user,
                assignee = COALESCE(flow_tasks.assignee, v.by_user), claimed_at = COALESCE(flow_tasks.claimed_at, v.at)
             FROM ({}) AS v WHERE flow_tasks.id = v.id AND flow_tasks.state = 'open'",
            selects.join(" UNION ALL ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (id, by) in chunk {
            q = q.bind(*id).bind(*by).bind(unit.now);
        }
        if q.execute(&mut *unit.tx).await.db()?.rows_affected() != chunk.len() as u64 {
            return Err(Error::conflict("the task was completed at the same moment by someone else"));
        }
    }
    Ok(())
}

/// The names of the variables a completion sets, as its audit detail.
pub(super) fn var_names(vars: &serde_json::Map<String, Value>) -> Result<String> {
    to_json(&vars.keys().collect::<Vec<_>>())
}

pub(crate) fn check_vars(vars: serde_json::Map<String, Value>) -> Result<serde_json::Map<String, Value>> {
    if vars.len() > 200 {
        return Err(Error::validation("at most 200 variables may be set at once"));
    }
    for k in vars.keys() {
        let ok = !k.is_empty() && k.chars().count() <= 64 && k.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !ok {
            return Err(Error::validation(format!(
                "'{k}' is not a valid variable name (letters, digits and _; at most 64)"
            )));
        }
    }
    if to_json(&vars)?.len() > 64 * 1024 {
        return Err(Error::validation("the variables are larger than 64 KiB"));
    }
    Ok(vars)
}
