//! An in-memory runtime for one process: runs instances without a database, applying the
//! engine's actions to plain collections. Used by the conformance suite, the benchmarks, and the
//! "try it" run of the designer. Jobs run through an in-process handler function.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::{
    Action, Command, CommandError, Ctx, EventKind, InstanceState, JobSpec, Status, TaskSpec, VarMap, step,
};
use crate::model::{El, Process};

/// What a job handler answers.
pub enum JobOutcome {
    Done(VarMap),
    /// A BPMN error with its code.
    Error(String),
    /// A technical failure (counts against the retries).
    Fail(String),
}

/// One instance run in memory.
pub struct MemoryInstance<'p> {
    pub process: &'p Process,
    pub state: InstanceState,
    pub now: i64,
    pub tasks: BTreeMap<u64, TaskSpec>,
    pub timers: BTreeMap<u64, i64>,
    /// token → (name, key, is_signal)
    pub subscriptions: BTreeMap<u64, (String, Option<String>, bool)>,
    pub incidents: BTreeMap<u64, String>,
    pub jobs: Vec<JobSpec>,
    /// Element ids in the order they completed.
    pub completed: Vec<String>,
    pub published: Vec<(String, Option<String>)>,
    pub calls: Vec<(u64, String)>,
    history: bool,
}

impl<'p> MemoryInstance<'p> {
    pub fn new(process: &'p Process, now: i64) -> Self {
        MemoryInstance {
            process,
            state: InstanceState::new(),
            now,
            tasks: BTreeMap::new(),
            timers: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            incidents: BTreeMap::new(),
            jobs: Vec::new(),
            completed: Vec::new(),
            published: Vec::new(),
            calls: Vec::new(),
            history: true,
        }
    }

    /// Skips recording the completed-element list (benchmarks).
    pub fn without_history(mut self) -> Self {
        self.history = false;
        self
    }

    pub fn command(&mut self, cmd: Command) -> Result<(), CommandError> {
        // Completing a task or firing a timer consumes it; the engine only reports what it creates
        // and what it cancels.
        let done = match &cmd {
            Command::CompleteTask { token, .. } => Some(*token),
            _ => None,
        };
        let actions = step(self.process, &mut self.state, cmd, Ctx::at(self.now))?;
        if let Some(t) = done {
            self.tasks.remove(&t);
        }
        for a in actions {
            self.apply(a);
        }
        Ok(())
    }

    fn apply(&mut self, a: Action) {
        match a {
            Action::CreateTask(t) => {
                self.tasks.insert(t.token, t);
            }
            Action::CancelTask { token } => {
                self.tasks.remove(&token);
            }
            Action::CreateJob(j) => self.jobs.push(j),
            Action::CancelJob { token } => self.jobs.retain(|j| j.token != token),
            Action::ScheduleTimer { token, due, .. } => {
                self.timers.insert(token, due);
            }
            Action::CancelTimer { token } => {
                self.timers.remove(&token);
            }
            Action::Subscribe { token, name, key, signal, .. } => {
                self.subscriptions.insert(token, (name, key, signal));
            }
            Action::Unsubscribe { token } => {
                self.subscriptions.remove(&token);
            }
            Action::PublishMessage { name, key, .. } => self.published.push((name, key)),
            Action::BroadcastSignal { name, .. } => self.published.push((format!("signal:{name}"), None)),
            Action::StartCall { token, process_id, .. } => self.calls.push((token, process_id)),
            Action::CancelCall { token } => self.calls.retain(|c| c.0 != token),
            Action::Incident { token, message, .. } => {
                self.incidents.insert(token, message);
            }
            Action::ResolveIncident { token } => {
                self.incidents.remove(&token);
            }
            Action::History(e) => {
                if self.history
                    && e.kind == EventKind::Completed
                    && let Some(el) = self.process.elements.get(e.element)
                {
                    self.completed.push(el.id.clone());
                }
            }
            Action::Completed | Action::Terminated => {}
        }
    }

    pub fn start(&mut self, vars: VarMap) -> Result<(), CommandError> {
        self.command(Command::Start { start: None, vars })
    }

    /// Runs queued jobs through `handler` until none is left (retries are not simulated:
    /// a failure raises the incident at once).
    pub fn run_jobs(&mut self, mut handler: impl FnMut(&JobSpec) -> JobOutcome) -> Result<(), CommandError> {
        while !self.jobs.is_empty() {
            let job = self.jobs.remove(0);
            let cmd = match handler(&job) {
                JobOutcome::Done(vars) => Command::CompleteJob { token: job.token, vars },
                JobOutcome::Error(code) => Command::ThrowError { token: job.token, code, message: String::new() },
                JobOutcome::Fail(message) => Command::FailJob { token: job.token, message },
            };
            self.command(cmd)?;
        }
        Ok(())
    }

    /// The open task at element `id`.
    pub fn task_at(&self, id: &str) -> Option<u64> {
        let el = self.process.element(id)?;
        self.tasks.values().find(|t| t.element == el).map(|t| t.token)
    }

    pub fn complete_task(&mut self, id: &str, vars: VarMap) -> Result<(), CommandError> {
        let token = self.task_at(id).ok_or_else(|| CommandError::Invalid(format!("no open task at '{id}'")))?;
        self.command(Command::CompleteTask { token, vars })
    }

    /// Moves the clock and fires every timer due by then, earliest first.
    pub fn advance(&mut self, ms: i64) -> Result<(), CommandError> {
        let until = self.now + ms;
        loop {
            let next =
                self.timers.iter().filter(|(_, d)| **d <= until).min_by_key(|(t, d)| (**d, **t)).map(|(t, d)| (*t, *d));
            let Some((token, due)) = next else { break };
            self.timers.remove(&token);
            self.now = self.now.max(due);
            self.command(Command::FireTimer { token })?;
        }
        self.now = until;
        Ok(())
    }

    /// Delivers a message (or signal) to every matching subscription; returns how many.
    pub fn deliver(&mut self, name: &str, key: Option<&str>, vars: VarMap) -> Result<usize, CommandError> {
        let targets: Vec<u64> = self
            .subscriptions
            .iter()
            .filter(|(_, (n, k, _))| n == name && (k.is_none() || k.as_deref() == key))
            .map(|(t, _)| *t)
            .collect();
        let mut n = 0;
        for token in targets {
            if !self.state.tokens.contains_key(&token) {
                continue;
            }
            let is_signal = self.subscriptions.remove(&token).is_some_and(|s| s.2);
            self.command(Command::Deliver { token, vars: vars.clone() })?;
            n += 1;
            if !is_signal {
                break; // a message is consumed by one subscription
            }
        }
        Ok(n)
    }

    pub fn status(&self) -> Status {
        self.state.status
    }

    pub fn var(&self, name: &str) -> Option<&Value> {
        self.state.vars().get(name)
    }

    pub fn element(&self, id: &str) -> Option<El> {
        self.process.element(id)
    }
}
