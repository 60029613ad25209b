//! BPMN 2.0 XML → [`Definitions`], as drawn by bpmn-js / Camunda Modeler (Camunda 8 `zeebe:` and
//! Camunda 7 `camunda:` extensions both understood, plus `zhongshu:` for our own settings).
//!
//! Hostile input is refused before it costs much: size and node limits, no DTD (so no entity
//! expansion), a nesting limit. Every problem names its line and, where there is one, the
//! element id. Unsupported BPMN elements are rejected by name, never ignored.

use std::collections::HashMap;

use roxmltree::{Document, Node, ParsingOptions};

use crate::expr::Expr;
use crate::model::*;

pub const BPMN_NS: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
pub const ZEEBE_NS: &str = "http://camunda.org/schema/zeebe/1.0";
pub const CAMUNDA_NS: &str = "http://camunda.org/schema/1.0/bpmn";
pub const ZHONGSHU_NS: &str = "https://zhongshu.dev/schema/bpmn";

/// Largest model accepted, in bytes.
pub const MAX_XML_BYTES: usize = 4 * 1024 * 1024;
const MAX_NODES: u32 = 200_000;
const MAX_DEPTH: usize = 64;

/// One problem found in a model.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ModelError {
    /// 1-based line in the XML (0 when not tied to a place).
    pub line: u32,
    /// The id of the element concerned, if any.
    pub element: Option<String>,
    pub message: String,
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.element {
            Some(id) => write!(f, "line {}: element '{}': {}", self.line, id, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Parses a BPMN document. Does not validate the graph; see [`crate::validate`].
pub fn parse(xml: &str) -> Result<Definitions, Vec<ModelError>> {
    let at = |line: u32, msg: String| vec![ModelError { line, element: None, message: msg }];
    if xml.len() > MAX_XML_BYTES {
        return Err(at(0, format!("the model is {} bytes; at most {} are accepted", xml.len(), MAX_XML_BYTES)));
    }
    let opts = ParsingOptions { allow_dtd: false, nodes_limit: MAX_NODES, ..ParsingOptions::default() };
    let doc = Document::parse_with_options(xml, opts).map_err(|e| {
        let pos = e.pos();
        let msg = match e {
            roxmltree::Error::DtdDetected => "DOCTYPE declarations are not allowed in BPMN models".to_string(),
            roxmltree::Error::NodesLimitReached => format!("the model has more than {MAX_NODES} XML nodes"),
            other => format!("the XML is not well-formed: {other}"),
        };
        at(pos.row, msg)
    })?;
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(BPMN_NS) || root.tag_name().name() != "definitions" {
        return Err(at(1, "the root element must be BPMN 2.0 <definitions>".into()));
    }
    if let Some(n) = doc.descendants().find(|n| depth(*n) > MAX_DEPTH) {
        return Err(at(line(&doc, n), format!("elements are nested more than {MAX_DEPTH} levels deep")));
    }
    let mut p = DefParser { doc: &doc, errors: Vec::new(), messages: HashMap::new(), names: HashMap::new() };
    p.collect_declarations(root);
    let mut processes = Vec::new();
    for node in root.children().filter(|n| n.is_element()) {
        if is_bpmn(node, "process")
            && let Some(proc) = p.process(node)
        {
            processes.push(proc);
        }
    }
    if processes.is_empty() && p.errors.is_empty() {
        p.errors.push(ModelError { line: 1, element: None, message: "the model contains no <process>".into() });
    }
    if p.errors.is_empty() { Ok(Definitions { processes }) } else { Err(p.errors) }
}

fn depth(n: Node) -> usize {
    n.ancestors().count()
}

fn line(doc: &Document, n: Node) -> u32 {
    doc.text_pos_at(n.range().start).row
}

fn is_bpmn(n: Node, name: &str) -> bool {
    n.tag_name().namespace() == Some(BPMN_NS) && n.tag_name().name() == name
}

fn is_ext_ns(ns: Option<&str>) -> bool {
    matches!(ns, Some(ZEEBE_NS | CAMUNDA_NS | ZHONGSHU_NS))
}

/// Elements of the BPMN namespace that carry no execution semantics and are skipped.
const INERT: &[&str] = &[
    "documentation",
    "extensionElements",
    "incoming",
    "outgoing",
    "laneSet",
    "textAnnotation",
    "association",
    "group",
    "dataObject",
    "dataObjectReference",
    "dataStoreReference",
    "dataInputAssociation",
    "dataOutputAssociation",
    "ioSpecification",
    "property",
    "category",
];

struct DefParser<'a, 'i> {
    doc: &'a Document<'i>,
    errors: Vec<ModelError>,
    /// message id → (name, correlation key from the message's `zeebe:subscription`).
    messages: HashMap<String, (String, Option<String>)>,
    /// signal / error / escalation id → name or code.
    names: HashMap<String, String>,
}

/// A half-built element: the model element plus what is resolved once all ids are known.
struct Pending {
    el: Element,
    attached_to: Option<String>,
    default_flow: Option<String>,
}

impl<'a, 'i> DefParser<'a, 'i> {
    fn err(&mut self, n: Node, msg: impl Into<String>) {
        let element = n.attribute("id").map(str::to_string);
        self.errors.push(ModelError { line: line(self.doc, n), element, message: msg.into() });
    }

    fn collect_declarations(&mut self, root: Node) {
        for n in root.children().filter(|n| n.is_element()) {
            let Some(id) = n.attribute("id") else { continue };
            match n.tag_name().name() {
                "message" if is_bpmn(n, "message") => {
                    let name = n.attribute("name").unwrap_or(id).to_string();
                    let key = ext(n, "subscription").and_then(|s| s.attribute("correlationKey")).map(str::to_string);
                    self.messages.insert(id.to_string(), (name, key));
                }
                "signal" if is_bpmn(n, "signal") => {
                    self.names.insert(id.to_string(), n.attribute("name").unwrap_or(id).to_string());
                }
                "error" if is_bpmn(n, "error") => {
                    self.names.insert(id.to_string(), n.attribute("errorCode").unwrap_or(id).to_string());
                }
                "escalation" if is_bpmn(n, "escalation") => {
                    self.names.insert(id.to_string(), n.attribute("escalationCode").unwrap_or(id).to_string());
                }
                _ => {}
            }
        }
    }

    fn process(&mut self, node: Node<'a, 'i>) -> Option<Process> {
        let Some(id) = node.attribute("id") else {
            self.err(node, "a <process> needs an id");
            return None;
        };
        let mut pending: Vec<Pending> = Vec::new();
        let mut raw_flows: Vec<(Node<'a, 'i>, Option<El>)> = Vec::new();
        self.container(node, None, &mut pending, &mut raw_flows);

        let mut by_id = HashMap::new();
        for (i, p) in pending.iter().enumerate() {
            if by_id.insert(p.el.id.clone(), i).is_some() {
                self.errors.push(ModelError {
                    line: p.el.line,
                    element: Some(p.el.id.clone()),
                    message: "the id is used twice".into(),
                });
            }
        }
        let mut flows = Vec::new();
        let mut flow_ids = HashMap::new();
        for (n, container) in raw_flows {
            let fid = n.attribute("id").unwrap_or("").to_string();
            let src = n.attribute("sourceRef").and_then(|s| by_id.get(s).copied());
            let tgt = n.attribute("targetRef").and_then(|s| by_id.get(s).copied());
            let (Some(source), Some(target)) = (src, tgt) else {
                self.err(n, "the sequence flow's sourceRef or targetRef names no element of this process");
                continue;
            };
            if pending[source].el.parent != container || pending[target].el.parent != container {
                self.err(n, "a sequence flow may not cross a sub-process boundary");
                continue;
            }
            let condition = match n.children().find(|c| is_bpmn(*c, "conditionExpression")) {
                Some(c) => match Expr::parse(c.text().unwrap_or("")) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        self.err(n, format!("the condition does not parse: {e}"));
                        None
                    }
                },
                None => None,
            };
            flow_ids.insert(fid.clone(), flows.len());
            pending[source].el.outgoing.push(flows.len());
            pending[target].el.incoming.push(flows.len());
            flows.push(Flow { id: fid, name: n.attribute("name").map(str::to_string), source, target, condition });
        }
        // Resolve boundary attachments and default flows now that every id is known.
        for i in 0..pending.len() {
            if let Some(host) = pending[i].attached_to.clone() {
                match by_id.get(&host).copied() {
                    Some(h) if pending[h].el.is_activity() => {
                        pending[h].el.boundaries.push(i);
                        if let ElementKind::Boundary { attached_to, .. } = &mut pending[i].el.kind {
                            *attached_to = h;
                        }
                    }
                    _ => self.errors.push(ModelError {
                        line: pending[i].el.line,
                        element: Some(pending[i].el.id.clone()),
                        message: format!("the boundary event is attached to '{host}', which is not an activity here"),
                    }),
                }
            }
            if let Some(d) = pending[i].default_flow.clone() {
                match flow_ids.get(&d).copied() {
                    Some(f) if flows[f].source == i => pending[i].el.default_flow = Some(f),
                    _ => self.errors.push(ModelError {
                        line: pending[i].el.line,
                        element: Some(pending[i].el.id.clone()),
                        message: format!("the default flow '{d}' is not an outgoing flow of this element"),
                    }),
                }
            }
        }
        let elements: Vec<Element> = pending.into_iter().map(|p| p.el).collect();
        let reach = compute_reach(&elements, &flows);
        Some(Process {
            id: id.to_string(),
            name: node.attribute("name").map(str::to_string),
            executable: node.attribute("isExecutable") == Some("true"),
            elements,
            flows,
            by_id,
            reach,
        })
    }

    fn container<'n>(
        &mut self,
        node: Node<'n, 'i>,
        parent: Option<El>,
        pending: &mut Vec<Pending>,
        flows: &mut Vec<(Node<'n, 'i>, Option<El>)>,
    ) {
        for n in node.children().filter(|n| n.is_element()) {
            if n.tag_name().namespace() != Some(BPMN_NS) {
                continue; // other namespaces are extensions by definition
            }
            let name = n.tag_name().name();
            if name == "sequenceFlow" {
                flows.push((n, parent));
                continue;
            }
            if INERT.contains(&name) {
                continue;
            }
            let Some(id) = n.attribute("id") else {
                self.err(n, format!("<{name}> needs an id"));
                continue;
            };
            let Some(kind) = self.kind(n, name) else { continue };
            let mut el = Element {
                id: id.to_string(),
                name: n.attribute("name").map(str::to_string),
                kind,
                parent,
                incoming: vec![],
                outgoing: vec![],
                default_flow: None,
                boundaries: vec![],
                looping: None,
                outputs: vec![],
                inputs: vec![],
                line: line(self.doc, n),
            };
            for listeners in ["executionListeners", "taskListeners"] {
                if ext(n, listeners).is_some() {
                    self.err(n, format!("{listeners} are not supported by this engine; use a service task instead"));
                }
            }
            el.looping = self.looping(n);
            (el.inputs, el.outputs) = self.io_mapping(n);
            let attached_to = n.attribute("attachedToRef").map(str::to_string);
            let default_flow = n.attribute("default").map(str::to_string);
            let is_sub = matches!(el.kind, ElementKind::SubProcess { .. });
            let index = pending.len();
            pending.push(Pending { el, attached_to, default_flow });
            if is_sub {
                self.container(n, Some(index), pending, flows);
            }
        }
    }

    fn kind(&mut self, n: Node, name: &str) -> Option<ElementKind> {
        Some(match name {
            "startEvent" => {
                let trigger = self.trigger(n)?;
                ElementKind::StartEvent { trigger, interrupting: n.attribute("isInterrupting") != Some("false") }
            }
            "endEvent" => ElementKind::EndEvent { trigger: self.trigger(n)? },
            "intermediateCatchEvent" => {
                let trigger = self.trigger(n)?;
                if matches!(
                    trigger,
                    Trigger::None | Trigger::Error { .. } | Trigger::Terminate | Trigger::Escalation { .. }
                ) {
                    self.err(n, "an intermediate catch event needs a timer, message or signal definition");
                    return None;
                }
                ElementKind::IntermediateCatch { trigger }
            }
            "intermediateThrowEvent" => ElementKind::IntermediateThrow { trigger: self.trigger(n)? },
            "boundaryEvent" => {
                let trigger = self.trigger(n)?;
                if matches!(trigger, Trigger::None | Trigger::Terminate) {
                    self.err(n, "a boundary event needs a timer, message, signal, error or escalation definition");
                    return None;
                }
                ElementKind::Boundary {
                    attached_to: usize::MAX,
                    trigger,
                    cancel_activity: n.attribute("cancelActivity") != Some("false"),
                }
            }
            "userTask" => ElementKind::UserTask(Box::new(self.user_task(n)?)),
            "serviceTask" | "sendTask" | "businessRuleTask" => ElementKind::ServiceTask(self.service(n)?),
            "scriptTask" => self.script(n)?,
            "receiveTask" => {
                let message = self.message_ref(n, n.attribute("messageRef"))?;
                ElementKind::ReceiveTask { message }
            }
            "task" | "manualTask" => ElementKind::ManualTask,
            "exclusiveGateway" => ElementKind::ExclusiveGateway,
            "parallelGateway" => ElementKind::ParallelGateway,
            "inclusiveGateway" => ElementKind::InclusiveGateway,
            "eventBasedGateway" => ElementKind::EventBasedGateway,
            "subProcess" => {
                ElementKind::SubProcess { triggered_by_event: n.attribute("triggeredByEvent") == Some("true") }
            }
            "callActivity" => ElementKind::CallActivity(self.call(n)?),
            other => {
                self.err(n, format!("<{other}> is not supported by this engine"));
                return None;
            }
        })
    }

    fn trigger(&mut self, n: Node) -> Option<Trigger> {
        let defs: Vec<Node> =
            n.children().filter(|c| c.is_element() && c.tag_name().name().ends_with("EventDefinition")).collect();
        if defs.len() > 1 {
            self.err(n, "events with more than one event definition are not supported");
            return None;
        }
        let Some(d) = defs.first().copied() else { return Some(Trigger::None) };
        Some(match d.tag_name().name() {
            "timerEventDefinition" => {
                let pick = |tag: &str| {
                    d.children().find(|c| is_bpmn(*c, tag)).map(|c| c.text().unwrap_or("").trim().to_string())
                };
                let spec = if let Some(t) = pick("timeDuration") {
                    Text::parse(&t).map(TimerSpec::Duration)
                } else if let Some(t) = pick("timeDate") {
                    Text::parse(&t).map(TimerSpec::Date)
                } else if let Some(t) = pick("timeCycle") {
                    Text::parse(&t).map(TimerSpec::Cycle)
                } else {
                    self.err(n, "the timer has no timeDuration, timeDate or timeCycle");
                    return None;
                };
                match spec {
                    Ok(s) => Trigger::Timer(s),
                    Err(e) => {
                        self.err(n, format!("the timer expression does not parse: {e}"));
                        return None;
                    }
                }
            }
            "messageEventDefinition" => {
                let message = self.message_ref(n, d.attribute("messageRef"))?;
                Trigger::Message(message)
            }
            "signalEventDefinition" => {
                let Some(name) = d.attribute("signalRef").map(|r| self.names.get(r).cloned().unwrap_or(r.to_string()))
                else {
                    self.err(n, "the signal event has no signalRef");
                    return None;
                };
                Trigger::Signal { name }
            }
            "errorEventDefinition" => Trigger::Error {
                code: d.attribute("errorRef").map(|r| self.names.get(r).cloned().unwrap_or(r.to_string())),
            },
            "escalationEventDefinition" => Trigger::Escalation {
                code: d.attribute("escalationRef").map(|r| self.names.get(r).cloned().unwrap_or(r.to_string())),
            },
            "terminateEventDefinition" => Trigger::Terminate,
            other => {
                self.err(n, format!("<{other}> is not supported by this engine"));
                return None;
            }
        })
    }

    fn message_ref(&mut self, n: Node, r: Option<&str>) -> Option<MessageSpec> {
        let Some(r) = r else {
            self.err(n, "the message event or receive task has no messageRef");
            return None;
        };
        let Some((name, decl_key)) = self.messages.get(r).cloned() else {
            self.err(n, format!("messageRef '{r}' names no <message>"));
            return None;
        };
        let key = n.attribute((ZHONGSHU_NS, "correlationKey")).map(str::to_string).or(decl_key);
        let correlation_key = match key {
            Some(k) => match Expr::parse(&k) {
                Ok(e) => Some(e),
                Err(e) => {
                    self.err(n, format!("the correlation key does not parse: {e}"));
                    return None;
                }
            },
            None => None,
        };
        Some(MessageSpec { name, correlation_key })
    }

    fn text_attr(&mut self, n: Node, value: Option<&str>, what: &str) -> Option<Text> {
        let v = value?.trim();
        if v.is_empty() {
            return None;
        }
        match Text::parse(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(n, format!("{what} does not parse: {e}"));
                None
            }
        }
    }

    fn user_task(&mut self, n: Node) -> Option<UserTaskSpec> {
        let assign = ext(n, "assignmentDefinition");
        let sched = ext(n, "taskSchedule");
        let attr = |z: Option<Node>, zname: &str, cname: &str| -> Option<String> {
            z.and_then(|z| z.attribute(zname))
                .or(n.attribute((CAMUNDA_NS, cname)))
                .or(n.attribute((ZHONGSHU_NS, cname)))
                .map(str::to_string)
        };
        let assignee = attr(assign, "assignee", "assignee");
        let users = attr(assign, "candidateUsers", "candidateUsers");
        let groups = attr(assign, "candidateGroups", "candidateGroups");
        let orgs = attr(assign, "candidateOrgs", "candidateOrgs");
        let due = attr(sched, "dueDate", "dueDate");
        let follow = attr(sched, "followUpDate", "followUpDate");
        let priority = ext(n, "priorityDefinition")
            .and_then(|p| p.attribute("priority"))
            .or(n.attribute((CAMUNDA_NS, "priority")))
            .map(str::to_string);
        let form_key = ext(n, "formDefinition")
            .and_then(|f| f.attribute("formKey").or(f.attribute("formId")))
            .or(n.attribute((CAMUNDA_NS, "formKey")))
            .map(str::to_string);
        Some(UserTaskSpec {
            assignee: self.text_attr(n, assignee.as_deref(), "the assignee"),
            candidate_users: self.text_attr(n, users.as_deref(), "candidate users"),
            candidate_groups: self.text_attr(n, groups.as_deref(), "candidate groups"),
            candidate_orgs: self.text_attr(n, orgs.as_deref(), "candidate orgs"),
            due_date: self.text_attr(n, due.as_deref(), "the due date"),
            follow_up_date: self.text_attr(n, follow.as_deref(), "the follow-up date"),
            priority: self.text_attr(n, priority.as_deref(), "the priority"),
            form_key,
        })
    }

    fn service(&mut self, n: Node) -> Option<ServiceSpec> {
        let def = ext(n, "taskDefinition");
        let handler = def
            .and_then(|d| d.attribute("type"))
            .or(n.attribute((CAMUNDA_NS, "topic")))
            .or(n.attribute((ZHONGSHU_NS, "handler")))
            .map(str::to_string);
        let Some(handler) = handler.filter(|h| !h.trim().is_empty()) else {
            self.err(n, "the task names no handler (zeebe:taskDefinition type, camunda:topic or zhongshu:handler)");
            return None;
        };
        let retries = match def.and_then(|d| d.attribute("retries")) {
            None => 3,
            Some(r) => match r.trim().parse::<u32>() {
                Ok(v) if v <= 100 => v,
                _ => {
                    self.err(n, format!("retries must be a whole number 0-100, not '{r}'"));
                    return None;
                }
            },
        };
        let headers = ext(n, "taskHeaders")
            .map(|h| {
                h.children()
                    .filter(|c| c.tag_name().name() == "header")
                    .filter_map(|c| {
                        Some((c.attribute("key")?.to_string(), c.attribute("value").unwrap_or("").to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(ServiceSpec { handler: handler.trim().to_string(), retries, headers })
    }

    fn script(&mut self, n: Node) -> Option<ElementKind> {
        let (source, result) = if let Some(z) = ext(n, "script") {
            (z.attribute("expression").unwrap_or("").to_string(), z.attribute("resultVariable").map(str::to_string))
        } else {
            let format = n.attribute("scriptFormat").unwrap_or("feel");
            if !format.eq_ignore_ascii_case("feel") {
                self.err(n, format!("script format '{format}' is not supported; scripts are FEEL expressions"));
                return None;
            }
            let body = n.children().find(|c| is_bpmn(*c, "script")).and_then(|c| c.text()).unwrap_or("").to_string();
            (body, n.attribute((CAMUNDA_NS, "resultVariable")).map(str::to_string))
        };
        match Expr::parse(&source) {
            Ok(expression) => Some(ElementKind::ScriptTask { expression, result_variable: result }),
            Err(e) => {
                self.err(n, format!("the script does not parse: {e}"));
                None
            }
        }
    }

    fn call(&mut self, n: Node) -> Option<CallSpec> {
        let z = ext(n, "calledElement");
        let pid = z.and_then(|z| z.attribute("processId")).or(n.attribute("calledElement"));
        let Some(pid) = pid.filter(|p| !p.trim().is_empty()) else {
            self.err(n, "the call activity names no process (zeebe:calledElement processId or calledElement)");
            return None;
        };
        let process_id = self.text_attr(n, Some(pid), "the called process id")?;
        let version = match n.attribute((CAMUNDA_NS, "calledElementVersion")).or(n.attribute((ZHONGSHU_NS, "version")))
        {
            None => None,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(v) if v > 0 => Some(v),
                _ => {
                    self.err(n, format!("the called version must be a positive number, not '{v}'"));
                    return None;
                }
            },
        };
        let propagate_all = z.and_then(|z| z.attribute("propagateAllChildVariables")) != Some("false");
        Some(CallSpec { process_id, version, propagate_all })
    }

    fn looping(&mut self, n: Node) -> Option<Looping> {
        if let Some(l) = n.children().find(|c| is_bpmn(*c, "standardLoopCharacteristics")) {
            let condition =
                l.children().find(|c| is_bpmn(*c, "loopCondition")).and_then(|c| c.text()).map(Expr::parse).transpose();
            let condition = match condition {
                Ok(c) => c,
                Err(e) => {
                    self.err(n, format!("the loop condition does not parse: {e}"));
                    return None;
                }
            };
            let max = l.attribute("loopMaximum").and_then(|m| m.parse().ok());
            return Some(Looping::Standard { condition, max, test_before: l.attribute("testBefore") == Some("true") });
        }
        let m = n.children().find(|c| is_bpmn(*c, "multiInstanceLoopCharacteristics"))?;
        let z = ext(m, "loopCharacteristics");
        let parse_opt = |text: Option<&str>, what: &str, this: &mut Self| -> Result<Option<Expr>, ()> {
            match text.map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) => Expr::parse(t).map(Some).map_err(|e| this.err(n, format!("{what} does not parse: {e}"))),
            }
        };
        let cardinality_text = m.children().find(|c| is_bpmn(*c, "loopCardinality")).and_then(|c| c.text());
        let completion_text = m.children().find(|c| is_bpmn(*c, "completionCondition")).and_then(|c| c.text());
        let collection = z.and_then(|z| z.attribute("inputCollection")).or(m.attribute((CAMUNDA_NS, "collection")));
        let out_el = z.and_then(|z| z.attribute("outputElement"));
        let cardinality = parse_opt(cardinality_text, "the loop cardinality", self).ok()?;
        let completion_condition = parse_opt(completion_text, "the completion condition", self).ok()?;
        let input_collection = parse_opt(collection, "the input collection", self).ok()?;
        let output_element = parse_opt(out_el, "the output element", self).ok()?;
        if cardinality.is_none() && input_collection.is_none() {
            self.err(n, "the multi-instance marker needs an input collection or a loop cardinality");
            return None;
        }
        Some(Looping::Multi(Box::new(MultiInstance {
            sequential: m.attribute("isSequential") == Some("true"),
            cardinality,
            input_collection,
            input_element: z
                .and_then(|z| z.attribute("inputElement"))
                .or(m.attribute((CAMUNDA_NS, "elementVariable")))
                .map(str::to_string),
            output_collection: z.and_then(|z| z.attribute("outputCollection")).map(str::to_string),
            output_element,
            completion_condition,
        })))
    }

    fn io_mapping(&mut self, n: Node) -> (Mappings, Mappings) {
        let mut inputs = Vec::new();
        let mut outputs = Vec::new();
        let Some(io) = ext(n, "ioMapping") else { return (inputs, outputs) };
        for c in io.children().filter(|c| c.is_element()) {
            let (Some(source), Some(target)) = (c.attribute("source"), c.attribute("target")) else {
                self.err(n, "an input/output mapping needs source and target");
                continue;
            };
            match Expr::parse(source) {
                Ok(e) if c.tag_name().name() == "input" => inputs.push((target.to_string(), e)),
                Ok(e) => outputs.push((target.to_string(), e)),
                Err(e) => self.err(n, format!("the mapping to '{target}' does not parse: {e}")),
            }
        }
        (inputs, outputs)
    }
}

/// An extension child of `n` (inside `extensionElements`) with the given local name in one of
/// the understood namespaces.
fn ext<'a, 'i>(n: Node<'a, 'i>, local: &str) -> Option<Node<'a, 'i>> {
    let ee = n.children().find(|c| is_bpmn(*c, "extensionElements"))?;
    ee.children().find(|c| c.is_element() && c.tag_name().name() == local && is_ext_ns(c.tag_name().namespace()))
}
