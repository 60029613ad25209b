//! The pure engine: `(process, state, command) -> actions`.
//!
//! An instance's whole runtime state is an [`InstanceState`]: its tokens (one per activity
//! instance, so a token id doubles as the activity-instance id) and its variable scopes. A
//! [`Command`] (start, complete a task, a timer fired, a message arrived, …) moves tokens until
//! every one of them waits again, and returns the [`Action`]s the runtime must carry out in the
//! same transaction: create or cancel tasks, jobs, timers and subscriptions, publish messages,
//! record history.
//!
//! Architecture invariant: the engine does no IO and reads no clock; the time comes in the
//! [`Ctx`]. Given the same state and command it returns the same actions, which is what makes
//! instances recoverable after a crash and testable step by step.

mod event;
mod gateway;
mod run;
mod task;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::expr::Vars;
use crate::model::{El, Fl, Process};

pub use run::step;

/// Variables: a JSON object.
pub type VarMap = Map<String, Value>;

/// The runtime state of one instance. Serialised as JSON into the instance row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    pub tokens: BTreeMap<u64, Token>,
    pub scopes: BTreeMap<u64, Scope>,
    pub next_id: u64,
    pub status: Status,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Active,
    Completed,
    Terminated,
}

/// A token: one activation of one element (its id is the activity-instance id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    #[serde(rename = "e")]
    pub element: El,
    #[serde(rename = "s")]
    pub scope: u64,
    #[serde(rename = "w")]
    pub wait: Wait,
    /// The token this one listens for: a boundary event's activity, or an event-based gateway.
    #[serde(rename = "o", default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<u64>,
    /// Loop iteration of a standard loop (0 for the first run).
    #[serde(rename = "l", default, skip_serializing_if = "is_zero")]
    pub loop_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// What a token waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "k")]
pub enum Wait {
    /// About to enter its element (only ever seen inside a step).
    Ready,
    /// A user task is open.
    Task,
    /// A service-task job is queued or running.
    Job,
    /// A timer is scheduled; `every_ms` or `cron`, and `left`, describe a cycle.
    Timer {
        due: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        every_ms: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cron: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        left: Option<u32>,
    },
    /// A message subscription is open.
    Message { name: String, key: Option<String> },
    /// A signal subscription is open.
    Signal { name: String },
    /// Arrived at a joining gateway through flow `via`.
    Join { via: Fl },
    /// Hosts the child scope of an embedded sub-process.
    SubProcess { child: u64 },
    /// Hosts the multi-instance body scope.
    MultiBody { child: u64 },
    /// A call activity waits for its child instance.
    Call,
    /// An event-based gateway waits for the first of its events.
    EventGateway,
    /// Stopped by an incident (expression error, failed job, unhandled error).
    Incident { message: String },
}

/// A variable scope: the instance, a sub-process, a multi-instance body or one of its instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<u64>,
    /// The token hosting this scope (`None` for the instance's root scope).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u64>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub vars: VarMap,
    /// Multi-instance bookkeeping when this scope is a multi-instance body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi: Option<MultiState>,
}

/// Counters of a multi-instance body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MultiState {
    pub total: u32,
    pub started: u32,
    pub completed: u32,
    pub items: Vec<Value>,
    pub outputs: Vec<Value>,
}

/// The root scope's id.
pub const ROOT: u64 = 0;

/// What happened from outside, for the engine to act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Start the instance at `start` (a start event; `None` = the plain start event).
    Start { start: Option<El>, vars: VarMap },
    /// A user task was completed with these variables.
    CompleteTask { token: u64, vars: VarMap },
    /// A job's handler succeeded.
    CompleteJob { token: u64, vars: VarMap },
    /// A job's handler failed for good (retries used up): raise an incident.
    FailJob { token: u64, message: String },
    /// A job's handler threw a BPMN error that boundary or event sub-process may catch.
    ThrowError { token: u64, code: String, message: String },
    /// A timer is due.
    FireTimer { token: u64 },
    /// A message or signal was delivered to a waiting token.
    Deliver { token: u64, vars: VarMap },
    /// A called child instance completed with these variables.
    ChildCompleted { token: u64, vars: VarMap },
    /// Retry the element where an incident stopped the token.
    Retry { token: u64 },
    /// Skip a failed job: the task counts as done without output.
    Skip { token: u64 },
    /// Move a waiting token to another element of its container (send back, 退回, or jump).
    Move { token: u64, to: El, vars: VarMap },
    /// Add one more instance to a running parallel multi-instance activity (加签).
    AddInstance { token: u64, item: Value },
    /// Set variables in the root scope.
    SetVars { vars: VarMap },
    /// Cancel the instance.
    Cancel { reason: String },
}

/// What the runtime must do, in the same transaction as the new state.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateTask(TaskSpec),
    CancelTask {
        token: u64,
    },
    CreateJob(JobSpec),
    CancelJob {
        token: u64,
    },
    ScheduleTimer {
        token: u64,
        element: El,
        due: i64,
    },
    CancelTimer {
        token: u64,
    },
    Subscribe {
        token: u64,
        element: El,
        name: String,
        key: Option<String>,
        signal: bool,
    },
    Unsubscribe {
        token: u64,
    },
    PublishMessage {
        name: String,
        key: Option<String>,
        vars: VarMap,
    },
    BroadcastSignal {
        name: String,
        vars: VarMap,
    },
    StartCall {
        token: u64,
        element: El,
        process_id: String,
        version: Option<i64>,
        vars: VarMap,
    },
    CancelCall {
        token: u64,
    },
    Incident {
        token: u64,
        element: El,
        message: String,
    },
    ResolveIncident {
        token: u64,
    },
    History(Event),
    /// The instance completed (root scope empty).
    Completed,
    /// The instance was terminated (terminate end event or cancel).
    Terminated,
}

/// A user task to create, with every expression already evaluated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TaskSpec {
    pub token: u64,
    pub element: El,
    pub name: String,
    pub assignee: Option<String>,
    pub candidate_users: Vec<String>,
    pub candidate_groups: Vec<String>,
    pub candidate_orgs: Vec<String>,
    pub due_at: Option<i64>,
    pub follow_up_at: Option<i64>,
    pub priority: i64,
    pub form_key: Option<String>,
    /// Input variables for the form (local inputs + visible variables are resolved by the runtime).
    pub inputs: VarMap,
}

/// A job for a service-task handler.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    pub token: u64,
    pub element: El,
    pub handler: String,
    pub retries: u32,
    pub headers: Vec<(String, String)>,
    /// The variables visible to the task, with its input mappings applied.
    pub vars: VarMap,
}

/// One history record: an element started, completed, was cancelled, or variables changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: i64,
    pub token: u64,
    pub element: El,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum EventKind {
    Started,
    Completed,
    Cancelled,
    /// A sequence flow was taken.
    Taken {
        flow: Fl,
    },
    /// Variables were set (names only; values live in the state).
    Variables {
        names: Vec<String>,
    },
    Incident {
        message: String,
    },
}

/// Context for one step: the time, and the working-day calendar for task deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    pub now: i64,
    pub calendar: &'a kernel::WorkCalendar,
}

impl Ctx<'static> {
    /// A context with the plain Monday-to-Friday calendar.
    pub fn at(now: i64) -> Ctx<'static> {
        static PLAIN: std::sync::OnceLock<kernel::WorkCalendar> = std::sync::OnceLock::new();
        Ctx { now, calendar: PLAIN.get_or_init(kernel::WorkCalendar::default) }
    }
}

/// Why a command was refused. Nothing changed when this is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("no active token {0} in this instance")]
    NoSuchToken(u64),
    #[error("token {token} is not waiting for this ({waiting})")]
    WrongWait { token: u64, waiting: String },
    #[error("the instance is no longer active")]
    NotActive,
    #[error("{0}")]
    Invalid(String),
}

impl InstanceState {
    pub fn new() -> Self {
        let mut s = InstanceState { next_id: 1, ..Default::default() };
        s.scopes.insert(ROOT, Scope::default());
        s
    }

    /// Every variable visible in `scope`, inner scopes shadowing outer ones.
    pub fn visible_vars(&self, scope: u64) -> VarMap {
        let mut chain = Vec::new();
        let mut s = Some(scope);
        while let Some(id) = s {
            let Some(sc) = self.scopes.get(&id) else { break };
            chain.push(id);
            s = sc.parent;
        }
        let mut out = Map::new();
        for id in chain.into_iter().rev() {
            for (k, v) in &self.scopes[&id].vars {
                out.insert(k.clone(), v.clone());
            }
        }
        out
    }

    /// The root scope's variables.
    pub fn vars(&self) -> &VarMap {
        &self.scopes[&ROOT].vars
    }
}

/// Variable lookup through a scope chain without copying.
pub(crate) struct ScopeVars<'a> {
    pub state: &'a InstanceState,
    pub scope: u64,
    pub extra: Option<&'a VarMap>,
}

impl Vars for ScopeVars<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        if let Some(v) = self.extra.and_then(|e| e.get(name)) {
            return Some(v);
        }
        let mut s = Some(self.scope);
        while let Some(id) = s {
            let sc = self.state.scopes.get(&id)?;
            if let Some(v) = sc.vars.get(name) {
                return Some(v);
            }
            s = sc.parent;
        }
        None
    }
}
