//! The executable model of a process: elements and sequence flows indexed by position, with the
//! facts the engine needs precomputed (containers, boundary events, reachability for inclusive
//! joins). Built by [`crate::parse`], checked by [`crate::validate`], never changed afterwards.

use std::collections::HashMap;

use crate::expr::Expr;

/// Index of an element in [`Process::elements`].
pub type El = usize;
/// Index of a sequence flow in [`Process::flows`].
pub type Fl = usize;

/// A parsed BPMN `definitions` document: its processes and the shared message, signal, error and
/// escalation declarations.
#[derive(Debug, Clone)]
pub struct Definitions {
    pub processes: Vec<Process>,
}

impl Definitions {
    /// The executable process (the first with `isExecutable="true"`, else the first).
    pub fn main_process(&self) -> &Process {
        self.processes.iter().find(|p| p.executable).unwrap_or(&self.processes[0])
    }
}

/// One process: a graph of elements, possibly nested in sub-processes.
#[derive(Debug, Clone)]
pub struct Process {
    pub id: String,
    pub name: Option<String>,
    pub executable: bool,
    pub elements: Vec<Element>,
    pub flows: Vec<Flow>,
    pub(crate) by_id: HashMap<String, El>,
    /// `reach[a]` holds every element reachable from `a` along sequence flows in its container.
    pub(crate) reach: Vec<Vec<u64>>,
}

impl Process {
    pub fn element(&self, id: &str) -> Option<El> {
        self.by_id.get(id).copied()
    }

    /// The none start event of a container (`None` = the process itself).
    pub fn none_start(&self, container: Option<El>) -> Option<El> {
        self.elements.iter().position(|e| {
            e.parent == container && matches!(&e.kind, ElementKind::StartEvent { trigger: Trigger::None, .. })
        })
    }

    /// Start events of a container that an event triggers (timer, message, signal).
    pub fn start_events(&self, container: Option<El>) -> impl Iterator<Item = El> + '_ {
        self.elements
            .iter()
            .enumerate()
            .filter(move |(_, e)| e.parent == container && matches!(e.kind, ElementKind::StartEvent { .. }))
            .map(|(i, _)| i)
    }

    /// Event sub-processes directly inside a container.
    pub fn event_subprocesses(&self, container: Option<El>) -> impl Iterator<Item = El> + '_ {
        self.elements
            .iter()
            .enumerate()
            .filter(move |(_, e)| {
                e.parent == container && matches!(e.kind, ElementKind::SubProcess { triggered_by_event: true })
            })
            .map(|(i, _)| i)
    }

    /// True when `to` can be reached from `from` along sequence flows.
    pub fn can_reach(&self, from: El, to: El) -> bool {
        self.reach[from].get(to / 64).is_some_and(|w| w & (1 << (to % 64)) != 0)
    }
}

/// One flow node (event, activity or gateway).
#[derive(Debug, Clone)]
pub struct Element {
    pub id: String,
    pub name: Option<String>,
    pub kind: ElementKind,
    /// The enclosing sub-process, `None` at process level.
    pub parent: Option<El>,
    pub incoming: Vec<Fl>,
    pub outgoing: Vec<Fl>,
    pub default_flow: Option<Fl>,
    /// Boundary events attached to this activity.
    pub boundaries: Vec<El>,
    /// Loop or multi-instance marker.
    pub looping: Option<Looping>,
    /// Variable mappings applied when the element completes (`zeebe:output`).
    pub outputs: Mappings,
    /// Variable mappings applied when the element starts, local to it (`zeebe:input`).
    pub inputs: Mappings,
    /// 1-based line in the source XML, for messages.
    pub line: u32,
}

impl Element {
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    pub fn is_activity(&self) -> bool {
        matches!(
            self.kind,
            ElementKind::UserTask(_)
                | ElementKind::ServiceTask(_)
                | ElementKind::ScriptTask { .. }
                | ElementKind::ReceiveTask { .. }
                | ElementKind::ManualTask
                | ElementKind::SubProcess { triggered_by_event: false }
                | ElementKind::CallActivity(_)
        )
    }
}

/// Variable mappings: target name and source expression.
pub type Mappings = Vec<(String, Expr)>;

/// A sequence flow.
#[derive(Debug, Clone)]
pub struct Flow {
    pub id: String,
    pub name: Option<String>,
    pub source: El,
    pub target: El,
    pub condition: Option<Expr>,
}

/// What kind of node an element is, with its settings.
#[derive(Debug, Clone)]
pub enum ElementKind {
    StartEvent {
        trigger: Trigger,
        interrupting: bool,
    },
    EndEvent {
        trigger: Trigger,
    },
    IntermediateCatch {
        trigger: Trigger,
    },
    IntermediateThrow {
        trigger: Trigger,
    },
    Boundary {
        attached_to: El,
        trigger: Trigger,
        cancel_activity: bool,
    },
    UserTask(Box<UserTaskSpec>),
    /// Service, send and business-rule tasks: work done by a registered handler.
    ServiceTask(ServiceSpec),
    ScriptTask {
        expression: Expr,
        result_variable: Option<String>,
    },
    ReceiveTask {
        message: MessageSpec,
    },
    /// Manual and abstract tasks: nothing to execute, the token passes.
    ManualTask,
    ExclusiveGateway,
    ParallelGateway,
    InclusiveGateway,
    EventBasedGateway,
    SubProcess {
        triggered_by_event: bool,
    },
    CallActivity(CallSpec),
}

impl ElementKind {
    /// The BPMN element name, for messages and history.
    pub fn bpmn_name(&self) -> &'static str {
        match self {
            ElementKind::StartEvent { .. } => "startEvent",
            ElementKind::EndEvent { .. } => "endEvent",
            ElementKind::IntermediateCatch { .. } => "intermediateCatchEvent",
            ElementKind::IntermediateThrow { .. } => "intermediateThrowEvent",
            ElementKind::Boundary { .. } => "boundaryEvent",
            ElementKind::UserTask(_) => "userTask",
            ElementKind::ServiceTask(_) => "serviceTask",
            ElementKind::ScriptTask { .. } => "scriptTask",
            ElementKind::ReceiveTask { .. } => "receiveTask",
            ElementKind::ManualTask => "task",
            ElementKind::ExclusiveGateway => "exclusiveGateway",
            ElementKind::ParallelGateway => "parallelGateway",
            ElementKind::InclusiveGateway => "inclusiveGateway",
            ElementKind::EventBasedGateway => "eventBasedGateway",
            ElementKind::SubProcess { .. } => "subProcess",
            ElementKind::CallActivity(_) => "callActivity",
        }
    }
}

/// The event definition of an event.
#[derive(Debug, Clone)]
pub enum Trigger {
    None,
    Timer(TimerSpec),
    Message(MessageSpec),
    Signal {
        name: String,
    },
    /// Error: the code thrown, or caught (`None` catches every error).
    Error {
        code: Option<String>,
    },
    Escalation {
        code: Option<String>,
    },
    Terminate,
}

/// A timer: ISO 8601 duration, date-time or cycle; literal or `=expression`.
#[derive(Debug, Clone)]
pub enum TimerSpec {
    Duration(Text),
    Date(Text),
    Cycle(Text),
}

/// A message to wait for or send, with its correlation key expression.
#[derive(Debug, Clone)]
pub struct MessageSpec {
    pub name: String,
    pub correlation_key: Option<Expr>,
}

/// A setting that is either literal text or an expression.
#[derive(Debug, Clone)]
pub enum Text {
    Literal(String),
    Expr(Expr),
}

impl Text {
    pub fn parse(raw: &str) -> Result<Text, crate::expr::ExprError> {
        if Expr::is_expression(raw) {
            Ok(Text::Expr(Expr::parse(raw)?))
        } else {
            Ok(Text::Literal(raw.trim().to_string()))
        }
    }
}

/// Who may work on a user task and when it is due.
#[derive(Debug, Clone, Default)]
pub struct UserTaskSpec {
    pub assignee: Option<Text>,
    pub candidate_users: Option<Text>,
    pub candidate_groups: Option<Text>,
    pub candidate_orgs: Option<Text>,
    pub due_date: Option<Text>,
    pub follow_up_date: Option<Text>,
    pub priority: Option<Text>,
    pub form_key: Option<String>,
}

/// A service task: the handler type and how often to retry it.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub handler: String,
    pub retries: u32,
    /// Static settings for the handler (`zeebe:taskHeaders`), e.g. the HTTP connector's URL.
    pub headers: Vec<(String, String)>,
}

/// A call activity: which process, which version.
#[derive(Debug, Clone)]
pub struct CallSpec {
    pub process_id: Text,
    /// `None`: the latest version at the time of the call.
    pub version: Option<i64>,
    pub propagate_all: bool,
}

/// Loop characteristics of an activity.
#[derive(Debug, Clone)]
pub enum Looping {
    Standard { condition: Option<Expr>, max: Option<u32>, test_before: bool },
    Multi(Box<MultiInstance>),
}

/// Multi-instance settings (countersign / 会签).
#[derive(Debug, Clone)]
pub struct MultiInstance {
    pub sequential: bool,
    pub cardinality: Option<Expr>,
    pub input_collection: Option<Expr>,
    pub input_element: Option<String>,
    pub output_collection: Option<String>,
    pub output_element: Option<Expr>,
    pub completion_condition: Option<Expr>,
}

pub(crate) fn compute_reach(elements: &[Element], flows: &[Flow]) -> Vec<Vec<u64>> {
    let words = elements.len().div_ceil(64);
    let mut reach = vec![vec![0u64; words]; elements.len()];
    for (start, row) in reach.iter_mut().enumerate() {
        let mut stack = vec![start];
        let mut seen = vec![false; elements.len()];
        while let Some(e) = stack.pop() {
            for &f in &elements[e].outgoing {
                let t = flows[f].target;
                if !seen[t] {
                    seen[t] = true;
                    row[t / 64] |= 1 << (t % 64);
                    stack.push(t);
                }
            }
            // Through boundary events: leaving an activity early still reaches what follows them.
            for &b in &elements[e].boundaries {
                if !seen[b] {
                    seen[b] = true;
                    stack.push(b);
                }
            }
        }
    }
    reach
}
