//! The durable runtime: deployed definitions, instances, tasks, timers, jobs, subscriptions,
//! incidents and history in the database, driven by the pure engine.
//!
//! Every change to instances happens in a [`unit::Unit`]: one transaction that loads the
//! instances concerned, steps the engine, applies its actions (rows for tasks, timers, jobs,
//! subscriptions and incidents; in-process jobs run on the spot; messages and called processes
//! cascade to other instances in the same transaction), writes the new states and one history row
//! per instance, and the audit record. A crash before the commit loses nothing that was
//! acknowledged; after it, nothing is done twice.

mod batch;
mod defs;
mod embed;
mod handlers;
mod instances;
mod tasks;
mod unit;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use kernel::{Clock, Error, Result};
use serde_json::Value;
use store::Db;

use identity::Identity;

pub use defs::{Definition, DefinitionSummary, Deployed};
pub use embed::{FlowTx, InstanceChange, Observer};
pub use handlers::{Handler, JobInput, JobResult};
pub use instances::{
    BufferedMessage, BulkMigration, Correlation, DelayRow, HistoryEntry, Incident, IncidentFilter, Instance,
    InstanceDetail, InstanceFilter, MAX_MESSAGE_TTL_SECONDS, MessageRequest, MigrateRequest, MigrationFailure,
    Resolution, StartRequest, TimelineItem,
};
pub use tasks::{StepRef, Task, TaskAction, TaskFilter, TaskView};
pub use worker::spawn_workers;

pub static MIGRATIONS: store::MigrationSet = store::migrations!("flow": 1 => portable "0001_flow", 2 => portable "0002_start_timers", 3 => portable "0003_task_instance_index", 4 => portable "0004_message_buffer", 5 => portable "0005_start_timer_cron", 6 => portable "0006_task_business_key_index", 7 => portable "0007_drop_history_at_index", 8 => portable "0008_task_warning_index", 9 => portable "0009_instance_end_index");

/// Settings of the workflow runtime (`[flow]` in the config file).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowOptions {
    /// Run the timer and job workers on this node (turn off on nodes that only serve the API).
    pub workers: bool,
    /// How often the timer and job workers look for due work when idle, in milliseconds.
    pub poll_ms: u64,
    /// How long a claimed job is reserved for the node running it, in milliseconds.
    pub job_lease_ms: i64,
    /// First retry delay of a failed job, doubled on each further failure, in milliseconds.
    pub job_backoff_ms: i64,
    /// Completed and terminated instances older than this many days are removed with their
    /// history by the cleanup job (0 keeps them for ever).
    pub history_retention_days: i64,
    /// Largest number of instance steps one transaction may cascade into (messages, calls).
    pub max_cascade: usize,
    /// The working-day calendar for task deadlines given in days (`[flow.calendar]`).
    pub calendar: kernel::WorkCalendar,
    /// Hosts the HTTP connector may call (`gov.cn` also allows `*.gov.cn`); empty = any host.
    /// Set it in production so a process model cannot reach arbitrary internal addresses.
    pub http_allowed_hosts: Vec<String>,
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            workers: true,
            poll_ms: 200,
            job_lease_ms: 60_000,
            job_backoff_ms: 1_000,
            history_retention_days: 365,
            max_cascade: 10_000,
            calendar: Default::default(),
            http_allowed_hosts: Vec::new(),
        }
    }
}

/// The workflow service. Cheap to clone.
#[derive(Clone)]
pub struct Flow {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: Db,
    pub identity: Identity,
    pub clock: Arc<dyn Clock>,
    pub opts: FlowOptions,
    pub deployed: RwLock<HashMap<String, Arc<Deployed>>>,
    /// The latest version's definition id per process key: starts by key skip a query for
    /// `LATEST_TTL_MS` (a deployment here clears it at once; one on another node shows within
    /// that time; one caller reloads while the others keep the old id).
    pub latest: RwLock<HashMap<String, Arc<kernel::cache::TtlCell<String>>>>,
    pub handlers: RwLock<HashMap<String, Handler>>,
    pub wake: tokio::sync::Notify,
    pub notify: std::sync::OnceLock<notify::Notify>,
    pub observers: RwLock<HashMap<String, Arc<dyn embed::Observer>>>,
    /// Starts and task completions filed in batches (group commit).
    pub writer: batch::Writer,
}

impl Flow {
    pub fn new(db: Db, identity: Identity, clock: Arc<dyn Clock>, opts: FlowOptions) -> Flow {
        let flow = Flow {
            inner: Arc::new(Inner {
                db,
                identity,
                clock,
                opts,
                deployed: RwLock::new(HashMap::new()),
                latest: RwLock::new(HashMap::new()),
                handlers: RwLock::new(HashMap::new()),
                wake: tokio::sync::Notify::new(),
                notify: std::sync::OnceLock::new(),
                observers: RwLock::new(HashMap::new()),
                writer: store::group::GroupCommit::new(batch::BATCH),
            }),
        };
        handlers::register_builtins(&flow);
        flow
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn options(&self) -> &FlowOptions {
        &self.inner.opts
    }

    /// Registers a service-task handler under a type name (`zeebe:taskDefinition type`).
    pub fn register(&self, name: &str, handler: Handler) {
        self.inner.handlers.write().expect("handlers lock").insert(name.to_string(), handler);
    }

    pub(crate) fn handler(&self, name: &str) -> Option<Handler> {
        self.inner.handlers.read().expect("handlers lock").get(name).cloned()
    }

    /// Names of the registered handlers (for the designer's palette and validation).
    pub fn handler_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.inner.handlers.read().expect("handlers lock").keys().cloned().collect();
        v.sort();
        v
    }

    /// Connects the message service: task assignments, urging and deadline warnings are sent
    /// through it. Without it the engine works the same, silently.
    pub fn set_notify(&self, n: notify::Notify) {
        let _ = self.inner.notify.set(n);
    }

    pub(crate) fn notifier(&self) -> Option<&notify::Notify> {
        self.inner.notify.get()
    }

    /// Wakes the workers (after a change that created due work).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_waiters();
    }
}

pub(crate) fn json_err(e: serde_json::Error) -> Error {
    Error::internal(e)
}

pub(crate) fn to_json(v: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(v).map_err(json_err)
}

pub(crate) fn obj(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    }
}
