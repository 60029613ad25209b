//! The engine inside another capability's transaction. A capability that runs its business on
//! a process (the grid platform's case loop) writes its own rows and starts or advances
//! instances in one transaction (`Flow::begin` → [`FlowTx`]), and keeps its own view of each
//! instance in step through an [`Observer`], which the runtime calls inside every unit that
//! changes an instance of the observed process — whoever caused the change: the capability's
//! own screens, the generic inbox, a timer or a job.

use std::sync::Arc;

use futures::future::BoxFuture;
use identity::perms::FLOW_TASK;
use identity::{Actor, Caller};
use kernel::Result;
use serde_json::Value;
use store::Tx;

use super::Flow;
use super::defs::Deployed;
use super::tasks::Task;
use super::unit::Unit;
use crate::engine::{Status, VarMap};

/// An observed instance as it stands at the end of a unit.
#[derive(Debug, Clone)]
pub struct InstanceChange {
    pub instance_id: String,
    pub process_key: String,
    pub business_key: Option<String>,
    pub status: Status,
    /// Element ids of the user tasks open now.
    pub open_tasks: Vec<String>,
    /// Element ids completed in this unit, in order.
    pub completed: Vec<String>,
    /// The instance's root variables now.
    pub variables: VarMap,
    /// Who caused the change (`None` for the engine's own workers).
    pub actor: Option<String>,
    pub now: i64,
}

/// Told about every change to instances of one process, inside the transaction making it.
/// An error rolls the whole change back.
pub trait Observer: Send + Sync + 'static {
    fn changed<'a>(&'a self, tx: &'a mut Tx, changes: &'a [InstanceChange]) -> BoxFuture<'a, Result<()>>;
}

/// A transaction that holds both the caller's rows and engine work.
pub struct FlowTx<'f> {
    unit: Unit<'f>,
}

impl Flow {
    /// Keeps `observer` told of every change to instances of `process_key`.
    pub fn observe(&self, process_key: &str, observer: Arc<dyn Observer>) {
        self.inner.observers.write().expect("observers lock").insert(process_key.to_string(), observer);
    }

    pub(crate) fn observer(&self, process_key: &str) -> Option<Arc<dyn Observer>> {
        let map = self.inner.observers.read().expect("observers lock");
        if map.is_empty() { None } else { map.get(process_key).cloned() }
    }

    /// Opens a transaction for the caller's own rows and engine work together.
    pub async fn begin(&self, actor: Option<&str>) -> Result<FlowTx<'_>> {
        Ok(FlowTx { unit: Unit::begin(self, actor.map(String::from)).await? })
    }
}

impl<'f> FlowTx<'f> {
    /// The time of this transaction (the same for every row it writes).
    pub fn now(&self) -> i64 {
        self.unit.now
    }

    /// The transaction, for the caller's own statements.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.unit.tx
    }

    /// Starts an instance of a deployed definition (runs when [`FlowTx::run`] or
    /// [`FlowTx::commit`] is called). Returns the instance id.
    pub fn start(
        &mut self,
        def: Arc<Deployed>,
        business_key: Option<String>,
        org_id: Option<String>,
        started_by: Option<String>,
        vars: VarMap,
    ) -> String {
        self.unit.new_instance(def, business_key, org_id, started_by, None, vars, None, true)
    }

    /// The open task of an instance at a user task element, if there is one.
    pub async fn open_task(&mut self, instance_id: &str, element_id: &str) -> Result<Option<Task>> {
        let flow = self.unit.flow();
        flow.open_task_in(&mut self.unit, instance_id, element_id).await
    }

    /// Completes a task for `caller` with `vars`: the caller must be its assignee, or one of its
    /// candidates when it is unclaimed (it is then claimed and completed at once). Form data is
    /// validated as in the inbox.
    pub async fn complete_task(
        &mut self,
        caller: &Caller,
        actor: &Actor,
        task_id: &str,
        vars: serde_json::Map<String, Value>,
    ) -> Result<()> {
        caller.require(FLOW_TASK)?;
        let flow = self.unit.flow();
        flow.complete_in(&mut self.unit, caller, actor, task_id, vars, true).await.map(|_| ())
    }

    /// Runs the queued engine work now (so the caller can read the outcome before committing).
    pub async fn run(&mut self) -> Result<()> {
        self.unit.run().await?;
        self.unit.flush().await
    }

    /// Runs what is queued and commits everything.
    pub async fn commit(mut self) -> Result<()> {
        self.unit.run().await?;
        self.unit.commit().await
    }

    /// The status of an instance touched in this transaction.
    pub fn status(&self, instance_id: &str) -> Option<Status> {
        self.unit.summary(instance_id).map(|(s, _)| s)
    }
}
