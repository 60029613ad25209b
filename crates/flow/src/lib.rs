//! The workflow engine (多级流程融合, A3.3–A3.5): BPMN 2.0 models parsed and validated, a pure
//! engine that turns commands into actions, and the durable runtime around it — instances,
//! user tasks (待办), jobs for service tasks, timers, message correlation, incidents and history.
//!
//! Layers, inside out: [`expr`] (the FEEL-subset expression language), [`model`] + [`parse`] +
//! [`validate`] (what a process is), [`engine`] (state + command → actions, no IO), and the
//! runtime modules that persist and drive it.
//!
//! Architecture invariant: `engine` does no IO and reads no clock; everything it decides comes
//! back as actions that the runtime applies in one transaction together with the new state.

pub mod api;
pub mod engine;
pub mod expr;
pub mod forms;
pub mod memory;
pub mod model;
pub mod parse;
pub mod runtime;
pub mod timer;
pub mod validate;

pub use engine::{Action, Command, CommandError, Ctx, InstanceState, Status, step};
pub use model::{Definitions, Process};
pub use parse::{ModelError, parse};
pub use runtime::{Flow, FlowOptions, FlowTx, InstanceChange, MIGRATIONS, Observer};
pub use validate::validate;

/// Parses and validates a model: the deployable process, or every problem found.
pub fn compile(xml: &str) -> Result<Definitions, Vec<ModelError>> {
    let defs = parse(xml)?;
    let errors: Vec<ModelError> = defs.processes.iter().flat_map(validate).collect();
    if errors.is_empty() { Ok(defs) } else { Err(errors) }
}
