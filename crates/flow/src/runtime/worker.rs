//! Background work: fire due timers and run remote jobs. On PostgreSQL any number of nodes run
//! these loops together: due rows are claimed with `FOR UPDATE SKIP LOCKED`; on SQLite one
//! in-process worker does the same job.

use std::time::Duration;

use kernel::Result;
use store::{Backend, DbResultExt, Row};
use tokio::sync::watch;

use super::handlers::{Handler, JobInput, JobResult};
use super::unit::{INSTANCE_JSON, InstanceRow, Unit};
use super::{Flow, obj};
use crate::engine::Command;

/// Timers fired per transaction.
const TIMER_BATCH: i64 = 500;
/// Batches fired one after another while the next is read ahead (SQLite) before the due timers
/// are looked up afresh: a timer that comes due behind the read-ahead position (one created
/// already due meanwhile) waits at most this many batches.
const TIMER_CHAIN: usize = 16;
/// Remote jobs claimed at a time.
const JOB_BATCH: i64 = 16;

/// Starts the timer and job workers and the deadline warnings among `bg`'s loops.
pub fn spawn_workers(flow: &Flow, bg: &mut apikit::background::Background) {
    {
        let flow = flow.clone();
        let rx = bg.stop_signal();
        bg.spawn(async move { timer_loop(flow, rx).await });
    }
    {
        let flow = flow.clone();
        let rx = bg.stop_signal();
        bg.spawn(async move { job_loop(flow, rx).await });
    }
    {
        let flow = flow.clone();
        let rx = bg.stop_signal();
        bg.spawn(async move { deadline_loop(flow, rx).await });
    }
}

async fn pause(flow: &Flow, rx: &mut watch::Receiver<bool>, ms: u64) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms)) => false,
        _ = flow.inner.wake.notified() => false,
        _ = rx.changed() => true,
    }
}

async fn timer_loop(flow: Flow, mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow() {
            return;
        }
        if let Err(e) = flow.fire_start_timers().await {
            tracing::warn!(error = %e, "timer start events");
        }
        let wait = match flow.fire_due_timers().await {
            Ok(n) if n as i64 >= TIMER_BATCH => 0,
            Ok(_) => match flow.next_timer_in().await {
                Ok(Some(ms)) => ms.clamp(0, flow.options().poll_ms as i64) as u64,
                _ => flow.options().poll_ms,
            },
            Err(e) => {
                tracing::warn!(error = %e, "timer worker");
                1000
            }
        };
        if wait > 0 && pause(&flow, &mut rx, wait).await {
            return;
        }
    }
}

/// Every minute: the deadline warnings (a backlog in paced batches), then the history cleanup.
async fn deadline_loop(flow: Flow, mut rx: watch::Receiver<bool>) {
    loop {
        for _ in 0..WARN_ROUNDS {
            let started = std::time::Instant::now();
            match flow.warn_deadlines().await {
                // A backlog drains in the background: after each full batch the worker rests
                // three times as long as the batch took, so the single writer stays free for
                // requests most of the time.
                Ok(n) if n as i64 >= WARN_BATCH => {
                    if rest(&mut rx, started.elapsed() * 3).await {
                        return;
                    }
                }
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "deadline warnings");
                    break;
                }
            }
        }
        if let Err(e) = flow.cleanup_history().await {
            tracing::warn!(error = %e, "history cleanup");
        }
        if rest(&mut rx, Duration::from_secs(60)).await {
            return;
        }
    }
}

/// Sleeps for `d`; true when the workers are told to stop meanwhile.
async fn rest(rx: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = rx.changed() => true,
    }
}

async fn job_loop(flow: Flow, mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow() {
            return;
        }
        let wait = match flow.run_due_jobs().await {
            Ok(n) if n > 0 => 0,
            Ok(_) => flow.options().poll_ms,
            Err(e) => {
                tracing::warn!(error = %e, "job worker");
                1000
            }
        };
        if wait > 0 && pause(&flow, &mut rx, wait).await {
            return;
        }
    }
}

/// Due timers read ahead on a reader connection, with their instances.
#[doc(hidden)]
#[derive(serde::Deserialize)]
pub struct DueBatch {
    /// (due_at, instance, token, rowid) in due order.
    timers: Vec<(i64, String, i64, i64)>,
    instances: Vec<InstanceRow>,
}

/// Tasks warned about at once, at most.
const WARN_BATCH: i64 = 500;
/// Task ids per UPDATE of the warning level.
const WARN_IDS_PER_UPDATE: usize = 128;
/// Batches of warnings per round of the deadline worker, at most (a backlog drains over rounds).
const WARN_ROUNDS: usize = 20;

impl Flow {
    /// Sends the deadline warnings (预警): a yellow one to the assignee (or candidates) when a
    /// task is due within four hours, a red one to the assignee and their supervisors once it is
    /// overdue. Each task is warned once per level. Returns how many warnings went out (at most
    /// [`WARN_BATCH`]; the worker calls again while batches come back full).
    ///
    /// One transaction per batch with a few statements, whatever its size (the messages through
    /// `send_many_in`, the tasks' levels by one UPDATE per level): a statement per warning held
    /// the single writer for a tenth of a second per 500 warnings, which intake felt as a spike.
    pub async fn warn_deadlines(&self) -> Result<usize> {
        let Some(n) = self.notifier() else { return Ok(0) };
        let now = self.now();
        let mut tx = self.db().begin().await?;
        // One range of `flow_tasks_warn` (warned, due_at; open tasks) per level: not warned and
        // due soon, warned yellow and overdue. (Written as an OR, SQLite would walk every open
        // task and sort them.)
        let level = |warned: i64, until: &str| {
            format!(
                "SELECT * FROM (SELECT id, name, def_name, business_key, assignee, candidate_users, due_at FROM flow_tasks
                 WHERE state = 'open' AND due_at IS NOT NULL AND warned = {warned} AND due_at <= {until}
                 ORDER BY due_at LIMIT $3) AS w{warned}"
            )
        };
        let sql =
            format!("SELECT * FROM ({} UNION ALL {}) AS w ORDER BY due_at LIMIT $3", level(0, "$1"), level(1, "$2"));
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now + super::tasks::DUE_SOON_MS)
            .bind(now)
            .bind(WARN_BATCH)
            .fetch_all(&mut *tx)
            .await
            .db()?;
        let mut reqs = Vec::with_capacity(rows.len());
        let (mut yellow, mut red): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for r in &rows {
            let (id, due_at): (String, i64) = (r.get(0), r.get(6));
            let assignee: Option<String> = r.get(4);
            // A task that went straight to overdue gets only the red warning.
            let overdue = due_at <= now;
            let mut recipients: Vec<String> = match &assignee {
                Some(a) => vec![a.clone()],
                None => r.get::<String, _>(5).split(',').filter(|x| !x.is_empty()).map(String::from).collect(),
            };
            if overdue
                && let Some(a) = &assignee
                && let Some(uid) = self.identity().user_id_by_username(a).await?
            {
                recipients.extend(self.identity().supervisors(&uid).await?.into_iter().map(|(_, u)| u));
            }
            let mut vars = serde_json::Map::new();
            vars.insert("task".into(), r.get::<String, _>(1).into());
            vars.insert("process".into(), r.get::<String, _>(2).into());
            vars.insert("business_key".into(), r.get::<Option<String>, _>(3).unwrap_or_default().into());
            vars.insert("assignee".into(), assignee.clone().unwrap_or_else(|| "待认领".into()).into());
            vars.insert("due".into(), crate::timer::fmt_local(due_at).into());
            let template = if overdue { "flow.task.overdue" } else { "flow.task.due_soon" };
            reqs.push(notify::SendRequest {
                template: Some(template.into()),
                variables: vars,
                recipients,
                urgent: overdue,
                link: Some("/flow/tasks".into()),
                ..Default::default()
            });
            if overdue { red.push(id) } else { yellow.push(id) }
        }
        let queued = n.send_many_in(&mut tx, &reqs).await?;
        let backend = self.db().backend();
        for (level, ids) in [(1i64, &yellow), (2, &red)] {
            for chunk in store::chunks_pow2(ids, WARN_IDS_PER_UPDATE) {
                let sql = format!(
                    "UPDATE flow_tasks SET warned = {} WHERE id IN {}",
                    backend.mark(1),
                    backend.values(1, chunk.len(), 2)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(level);
                for id in chunk {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await.db()?;
            }
        }
        tx.commit().await.db()?;
        n.published(queued);
        Ok(reqs.len())
    }

    /// Removes completed and cancelled instances (with history, tasks and incidents) that ended
    /// more than `history_retention_days` ago. Returns how many instances were removed.
    pub async fn cleanup_history(&self) -> Result<u64> {
        // Expired buffered messages go whatever the history policy.
        let expired = sqlx::query("DELETE FROM flow_messages WHERE expires_at <= $1")
            .bind(self.now())
            .execute(self.db().writer())
            .await
            .db()?
            .rows_affected();
        if expired > 0 {
            tracing::info!(messages = expired, "removed expired buffered messages");
        }
        let days = self.options().history_retention_days;
        if days <= 0 {
            return Ok(0);
        }
        let cutoff = self.now() - days * 86_400_000;
        let mut tx = self.db().begin().await?;
        // `flow_instances_ended` answers this by a range (it runs every minute, on the writer).
        let old = "SELECT id FROM flow_instances WHERE status <> 'active' AND ended_at < $1";
        for table in ["flow_history", "flow_tasks", "flow_incidents"] {
            let sql = format!("DELETE FROM {table} WHERE instance_id IN ({old})");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cutoff).execute(&mut *tx).await.db()?;
        }
        let n = sqlx::query("DELETE FROM flow_instances WHERE status <> 'active' AND ended_at < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
        tx.commit().await.db()?;
        if n > 0 {
            tracing::info!(instances = n, days, "removed old process history");
        }
        Ok(n)
    }

    /// Asks the read pool whether any row is due (`$1` = now) before a worker takes the writer:
    /// idle polling and wake-ups then cost no write transaction.
    async fn any_due(&self, sql: &'static str) -> Result<bool> {
        Ok(sqlx::query(sql).bind(self.now()).fetch_optional(self.db().reader()).await.db()?.is_some())
    }

    /// Milliseconds until the next timer is due (`None`: no timers).
    pub async fn next_timer_in(&self) -> Result<Option<i64>> {
        let row = sqlx::query("SELECT MIN(due_at) FROM flow_timers").fetch_one(self.db().reader()).await.db()?;
        Ok(row.get::<Option<i64>, _>(0).map(|d| d - self.now()))
    }

    /// Starts an instance for every due timer start event (and schedules the next one of a
    /// cycle). Returns how many instances were started.
    pub async fn fire_start_timers(&self) -> Result<usize> {
        if !self.any_due("SELECT 1 FROM flow_start_timers WHERE due_at <= $1 LIMIT 1").await? {
            return Ok(0);
        }
        let mut unit = Unit::begin(self, Some("system".into())).await?;
        let skip = if self.db().backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT definition_id, element_id, due_at, every_ms, remaining, cron FROM flow_start_timers WHERE due_at <= $1 ORDER BY due_at LIMIT 100{skip}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(unit.now).fetch_all(&mut *unit.tx).await.db()?;
        if rows.is_empty() {
            return Ok(0);
        }
        for r in &rows {
            let (def_id, element): (String, String) = (r.get(0), r.get(1));
            let (due, every, remaining): (i64, Option<i64>, Option<i64>) = (r.get(2), r.get(3), r.get(4));
            let cron: Option<String> = r.get(5);
            // The next due time: one interval on (missed ones are not caught up), or the cron
            // expression's next occurrence after now (none: the cycle ends).
            let next = match (&cron, every) {
                (Some(c), _) => crate::timer::cron_next(c, unit.now).ok(),
                (None, Some(every)) => Some(due.max(unit.now - every) + every),
                (None, None) => None,
            };
            match (next, remaining) {
                (Some(next), rem) if rem != Some(0) => {
                    sqlx::query("UPDATE flow_start_timers SET due_at = $3, remaining = $4 WHERE definition_id = $1 AND element_id = $2")
                        .bind(&def_id)
                        .bind(&element)
                        .bind(next)
                        .bind(rem.map(|r| r - 1))
                        .execute(&mut *unit.tx)
                        .await
                        .db()?;
                }
                _ => {
                    sqlx::query("DELETE FROM flow_start_timers WHERE definition_id = $1 AND element_id = $2")
                        .bind(&def_id)
                        .bind(&element)
                        .execute(&mut *unit.tx)
                        .await
                        .db()?;
                }
            }
            let def = self.deployed(&def_id).await?;
            let start = def.process().element(&element);
            unit.new_instance(def, None, None, Some("system".into()), None, Default::default(), start, false);
        }
        unit.run().await?;
        unit.commit().await?;
        Ok(rows.len())
    }

    /// Fires every timer due now, a batch per transaction. Returns how many fired.
    ///
    /// On SQLite the batches form a pipeline: while the one writer fires a batch, the next is
    /// read on a reader connection (the timers after the batch's last, with their instances), so
    /// the writer's work and the reading overlap. What was read ahead is checked in the write —
    /// the timer rows are deleted by rowid and counted, the instances are written only at the
    /// revision read — and a batch that changed meanwhile is claimed again inside the write.
    pub async fn fire_due_timers(&self) -> Result<usize> {
        if !self.any_due("SELECT 1 FROM flow_timers WHERE due_at <= $1 LIMIT 1").await? {
            return Ok(0);
        }
        if self.db().backend() == Backend::Postgres {
            return self.claim_and_fire_timers().await;
        }
        let mut fired = 0;
        let mut ahead = None;
        for _ in 0..TIMER_CHAIN {
            let batch = match ahead.take() {
                Some(b) => b,
                None => self.read_due_timers(None, "[]").await?,
            };
            if batch.timers.is_empty() {
                break;
            }
            let full = batch.timers.len() as i64 >= TIMER_BATCH;
            let (n, next) = if full {
                // The batch's instances are not read ahead again: the write changes them.
                let after = batch.timers.iter().map(|t| (t.0, t.3)).max();
                let ids: Vec<&str> = batch.timers.iter().map(|t| t.1.as_str()).collect();
                let ids = serde_json::to_string(&ids).map_err(super::json_err)?;
                let (n, next) = tokio::join!(self.fire_read_timers(batch), self.read_due_timers(after, &ids));
                let next = next.inspect_err(|e| tracing::warn!(error = %e, "reading due timers ahead")).ok();
                (n?, next)
            } else {
                (self.fire_read_timers(batch).await?, None)
            };
            match n {
                Some(n) => {
                    fired += n;
                    ahead = next;
                }
                // Changed since it was read (fired or cancelled meanwhile, another writer):
                // claim inside the write, and start reading afresh.
                None => fired += self.claim_and_fire_timers().await?,
            }
            if !full {
                break;
            }
        }
        Ok(fired)
    }

    /// Reads (on a reader connection) the next batch of due timers after `after` (due time,
    /// rowid) in due order, with their instances as they are now, except those in `skip` (a
    /// JSON array of ids). SQLite only: one statement, one snapshot, one row. Public for the
    /// tests of what [`Flow::fire_read_timers`] checks.
    #[doc(hidden)]
    pub async fn read_due_timers(&self, after: Option<(i64, i64)>, skip: &str) -> Result<DueBatch> {
        let (due, rowid) = after.unwrap_or((i64::MIN, i64::MIN));
        let sql = format!(
            "WITH due AS MATERIALIZED (
                SELECT rowid AS r, due_at, instance_id, token FROM flow_timers
                WHERE due_at <= $1 AND (due_at, rowid) > ($2, $3) ORDER BY due_at, rowid LIMIT $4)
             SELECT json_object(
                'timers', (SELECT json_group_array(json_array(due_at, instance_id, token, r)) FROM due),
                'instances', (SELECT json_group_array({INSTANCE_JSON}) FROM flow_instances
                    WHERE id IN (SELECT instance_id FROM due) AND id NOT IN (SELECT value FROM json_each($5))))"
        );
        let json: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(self.now())
            .bind(due)
            .bind(rowid)
            .bind(TIMER_BATCH)
            .bind(skip)
            .fetch_one(self.db().reader())
            .await
            .db()?;
        serde_json::from_str(&json).map_err(super::json_err)
    }

    /// Fires a batch read ahead; `None` when its timers are no longer all there (nothing is
    /// written then).
    #[doc(hidden)]
    pub async fn fire_read_timers(&self, batch: DueBatch) -> Result<Option<usize>> {
        let mut unit = Unit::begin(self, Some("system".into())).await?;
        let rowids: Vec<i64> = batch.timers.iter().map(|t| t.3).collect();
        let n = sqlx::query("DELETE FROM flow_timers WHERE rowid IN (SELECT value FROM json_each($1))")
            .bind(serde_json::to_string(&rowids).map_err(super::json_err)?)
            .execute(&mut *unit.tx)
            .await
            .db()?
            .rows_affected();
        if n != rowids.len() as u64 {
            return Ok(None);
        }
        unit.adopt(batch.instances).await?;
        let fired = batch.timers.into_iter().map(|(due, instance, token, _)| (due, instance, token)).collect();
        match self.fire_claimed(unit, fired).await {
            Ok(n) => Ok(Some(n)),
            // An instance changed after it was read (its revision moved on).
            Err(e) if e.code == kernel::ErrorCode::Conflict => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Claims a batch of due timers inside the write transaction and fires it.
    async fn claim_and_fire_timers(&self) -> Result<usize> {
        let mut unit = Unit::begin(self, Some("system".into())).await?;
        // (due_at, instance, token), fired in order of due time.
        let fired: Vec<(i64, String, i64)> = if self.db().backend() == Backend::Postgres {
            // Claimed and removed in one statement, skipping what another node holds.
            let rows = sqlx::query(
                "DELETE FROM flow_timers WHERE (instance_id, token) IN
                    (SELECT instance_id, token FROM flow_timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED)
                 RETURNING instance_id, token, due_at",
            )
            .bind(unit.now)
            .bind(TIMER_BATCH)
            .fetch_all(&mut *unit.tx)
            .await
            .db()?;
            rows.iter().map(|r| (r.get(2), r.get(0), r.get(1))).collect()
        } else {
            // One writer: read the batch as one row (each row of a result is a hand-off from
            // SQLite's worker thread), then delete exactly those rows by rowid.
            let json: String = sqlx::query_scalar(
                "SELECT json_object('rowids', json_group_array(rowid), 'timers', json_group_array(json_array(due_at, instance_id, token)))
                 FROM (SELECT rowid, due_at, instance_id, token FROM flow_timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2)",
            )
            .bind(unit.now)
            .bind(TIMER_BATCH)
            .fetch_one(&mut *unit.tx)
            .await
            .db()?;
            #[derive(serde::Deserialize)]
            struct Claimed {
                rowids: Vec<i64>,
                timers: Vec<(i64, String, i64)>,
            }
            let claimed: Claimed = serde_json::from_str(&json).map_err(super::json_err)?;
            if !claimed.rowids.is_empty() {
                let rowids = serde_json::to_string(&claimed.rowids).map_err(super::json_err)?;
                let n = sqlx::query("DELETE FROM flow_timers WHERE rowid IN (SELECT value FROM json_each($1))")
                    .bind(rowids)
                    .execute(&mut *unit.tx)
                    .await
                    .db()?
                    .rows_affected();
                if n != claimed.rowids.len() as u64 {
                    return Err(kernel::Error::conflict(
                        "the due timers changed while they were claimed; trying again",
                    ));
                }
            }
            claimed.timers
        };
        self.fire_claimed(unit, fired).await
    }

    /// Fires the timers claimed in `unit` and commits it. Returns how many fired.
    async fn fire_claimed(&self, mut unit: Unit<'_>, mut fired: Vec<(i64, String, i64)>) -> Result<usize> {
        if fired.is_empty() {
            return Ok(0);
        }
        let count = fired.len();
        fired.sort();
        let mut ids: Vec<String> = fired.iter().map(|(_, i, _)| i.clone()).collect();
        ids.sort();
        ids.dedup();
        unit.preload(&ids).await?;
        for (_, instance, token) in &fired {
            unit.push(instance, Command::FireTimer { token: *token as u64 }, false);
        }
        unit.run().await?;
        unit.commit().await?;
        Ok(count)
    }

    /// Claims due remote jobs, runs their handlers outside any transaction, and records the
    /// outcome (done, BPMN error, retry with backoff, or an incident when retries run out).
    pub async fn run_due_jobs(&self) -> Result<usize> {
        if !self
            .any_due("SELECT 1 FROM flow_jobs WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until < $1) LIMIT 1")
            .await?
        {
            return Ok(0);
        }
        let now = self.now();
        let lease = self.options().job_lease_ms;
        let mut tx = self.db().begin().await?;
        let skip = if self.db().backend() == Backend::Postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT instance_id, token, element_id, handler, retries_left, attempts, headers, vars FROM flow_jobs
             WHERE run_at <= $1 AND (lease_until IS NULL OR lease_until < $1) ORDER BY run_at LIMIT $2{skip}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(JOB_BATCH).fetch_all(&mut *tx).await.db()?;
        let mut claimed = Vec::new();
        for r in &rows {
            let (instance, token): (String, i64) = (r.get(0), r.get(1));
            sqlx::query("UPDATE flow_jobs SET lease_until = $3 WHERE instance_id = $1 AND token = $2")
                .bind(&instance)
                .bind(token)
                .bind(now + lease)
                .execute(&mut *tx)
                .await
                .db()?;
            let input = JobInput {
                instance_id: instance,
                element_id: r.get(2),
                handler: r.get(3),
                headers: serde_json::from_str(&r.get::<String, _>(6)).unwrap_or_default(),
                vars: obj(serde_json::from_str(&r.get::<String, _>(7)).unwrap_or_default()),
                attempt: r.get::<i64, _>(5) as u32 + 1,
            };
            claimed.push((input, token, r.get::<i64, _>(4)));
        }
        tx.commit().await.db()?;
        let n = claimed.len();
        let runs = claimed.into_iter().map(|(input, token, retries_left)| {
            let flow = self.clone();
            async move {
                let result = match flow.handler(&input.handler) {
                    Some(Handler::Remote(f)) => f(input.clone()).await,
                    Some(Handler::Inline(f)) => f(&input),
                    None => JobResult::Failed(format!("no handler is registered for task type '{}'", input.handler)),
                };
                if let Err(e) = flow.job_done(&input, token, retries_left, result).await {
                    tracing::warn!(instance = %input.instance_id, error = %e, "recording a job result failed; it runs again after its lease");
                }
            }
        });
        futures::future::join_all(runs).await;
        Ok(n)
    }

    async fn job_done(&self, input: &JobInput, token: i64, retries_left: i64, result: JobResult) -> Result<()> {
        let mut unit = Unit::begin(self, Some("system".into())).await?;
        // The job may have been cancelled meanwhile (a boundary timer, the instance cancelled).
        let still = sqlx::query("SELECT 1 FROM flow_jobs WHERE instance_id = $1 AND token = $2")
            .bind(&input.instance_id)
            .bind(token)
            .fetch_optional(&mut *unit.tx)
            .await
            .db()?;
        if still.is_none() {
            return Ok(());
        }
        let finished = !matches!(&result, JobResult::Failed(_)) || retries_left <= 1;
        if finished {
            sqlx::query("DELETE FROM flow_jobs WHERE instance_id = $1 AND token = $2")
                .bind(&input.instance_id)
                .bind(token)
                .execute(&mut *unit.tx)
                .await
                .db()?;
        }
        match result {
            JobResult::Done(vars) => {
                unit.push(&input.instance_id, Command::CompleteJob { token: token as u64, vars }, false);
            }
            JobResult::BpmnError { code, message } => {
                unit.push(&input.instance_id, Command::ThrowError { token: token as u64, code, message }, false);
            }
            JobResult::Failed(message) if retries_left <= 1 => {
                let message = format!("{message} (after {} attempt(s))", input.attempt);
                unit.push(&input.instance_id, Command::FailJob { token: token as u64, message }, false);
            }
            JobResult::Failed(message) => {
                let backoff = self
                    .options()
                    .job_backoff_ms
                    .saturating_mul(1 << input.attempt.min(16).saturating_sub(1))
                    .min(3_600_000);
                sqlx::query(
                    "UPDATE flow_jobs SET retries_left = retries_left - 1, attempts = attempts + 1, run_at = $3, lease_until = NULL, last_error = $4
                     WHERE instance_id = $1 AND token = $2",
                )
                .bind(&input.instance_id)
                .bind(token)
                .bind(unit.now + backoff)
                .bind(&message)
                .execute(&mut *unit.tx)
                .await
                .db()?;
                tracing::info!(instance = %input.instance_id, element = %input.element_id, %message, backoff_ms = backoff, "job failed; retrying");
            }
        }
        unit.run().await?;
        unit.commit().await
    }
}
