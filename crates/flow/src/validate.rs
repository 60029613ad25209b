//! Checks a parsed process before it may be deployed: every problem names its element.

use crate::model::*;
use crate::parse::ModelError;

/// Returns every problem found in the process; empty means deployable.
pub fn validate(p: &Process) -> Vec<ModelError> {
    let mut errs = Vec::new();

    // One container at a time: the process itself and every sub-process.
    let containers: Vec<Option<El>> = std::iter::once(None)
        .chain(
            p.elements
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.kind, ElementKind::SubProcess { .. }))
                .map(|(i, _)| Some(i)),
        )
        .collect();
    for c in &containers {
        let starts: Vec<El> = p.start_events(*c).collect();
        let none_starts = starts
            .iter()
            .filter(|s| matches!(p.elements[**s].kind, ElementKind::StartEvent { trigger: Trigger::None, .. }))
            .count();
        match c {
            None => {
                if starts.is_empty() {
                    errs.push(ModelError {
                        line: 0,
                        element: Some(p.id.clone()),
                        message: "the process has no start event".into(),
                    });
                }
                if none_starts > 1 {
                    errs.push(ModelError {
                        line: 0,
                        element: Some(p.id.clone()),
                        message: "the process has more than one plain start event".into(),
                    });
                }
            }
            Some(sp) => {
                let el = &p.elements[*sp];
                let event_sub = matches!(el.kind, ElementKind::SubProcess { triggered_by_event: true });
                if event_sub {
                    if starts.len() != 1 || none_starts != 0 {
                        bad(&mut errs, el, "an event sub-process needs exactly one start event with a timer, message, signal, error or escalation definition".into());
                    }
                    if !el.incoming.is_empty() || !el.outgoing.is_empty() {
                        bad(&mut errs, el, "an event sub-process may not have sequence flows".into());
                    }
                } else if starts.len() != 1 || none_starts != 1 {
                    bad(&mut errs, el, "a sub-process needs exactly one plain start event".into());
                }
            }
        }
        // Reachability from the container's start events (and boundary events, which start paths of their own).
        let mut seen = vec![false; p.elements.len()];
        let mut stack: Vec<El> = starts.clone();
        stack.extend(
            p.elements
                .iter()
                .enumerate()
                .filter(|(_, e)| e.parent == *c && matches!(e.kind, ElementKind::Boundary { .. }))
                .map(|(i, _)| i),
        );
        stack.extend(p.event_subprocesses(*c));
        while let Some(e) = stack.pop() {
            if std::mem::replace(&mut seen[e], true) {
                continue;
            }
            stack.extend(p.elements[e].outgoing.iter().map(|f| p.flows[*f].target));
        }
        for (i, el) in p.elements.iter().enumerate() {
            if el.parent == *c && !seen[i] {
                bad(&mut errs, el, "the element cannot be reached from a start event".into());
            }
        }
    }

    for el in &p.elements {
        let outs = el.outgoing.len();
        let conditional = el.outgoing.iter().filter(|f| p.flows[**f].condition.is_some()).count();
        match &el.kind {
            ElementKind::StartEvent { trigger, .. } => {
                if !el.incoming.is_empty() {
                    bad(&mut errs, el, "a start event may not have incoming flows".into());
                }
                if outs == 0 {
                    bad(&mut errs, el, "the start event has no outgoing flow".into());
                }
                if el.parent.is_none()
                    && matches!(trigger, Trigger::Error { .. } | Trigger::Escalation { .. } | Trigger::Terminate)
                {
                    bad(
                        &mut errs,
                        el,
                        "a process-level start event cannot be an error, escalation or terminate event".into(),
                    );
                }
            }
            ElementKind::EndEvent { trigger } => {
                if outs > 0 {
                    bad(&mut errs, el, "an end event may not have outgoing flows".into());
                }
                if matches!(trigger, Trigger::Timer(_)) {
                    bad(&mut errs, el, "an end event cannot be a timer".into());
                }
            }
            ElementKind::IntermediateCatch { .. } | ElementKind::IntermediateThrow { .. } if outs == 0 => {
                bad(&mut errs, el, "the intermediate event has no outgoing flow".into());
            }
            ElementKind::IntermediateThrow { trigger: Trigger::Timer(_) } => {
                bad(&mut errs, el, "a throw event cannot be a timer".into());
            }
            ElementKind::Boundary { trigger, cancel_activity, .. } => {
                if !el.incoming.is_empty() {
                    bad(&mut errs, el, "a boundary event may not have incoming flows".into());
                }
                if outs == 0 {
                    bad(&mut errs, el, "the boundary event has no outgoing flow".into());
                }
                if matches!(trigger, Trigger::Error { .. }) && !cancel_activity {
                    bad(&mut errs, el, "an error boundary event always interrupts its activity".into());
                }
            }
            ElementKind::ExclusiveGateway | ElementKind::InclusiveGateway => {
                if outs == 0 {
                    bad(&mut errs, el, format!("the {} has no outgoing flow", el.kind.bpmn_name()));
                }
                if outs > 1 {
                    for f in &el.outgoing {
                        let flow = &p.flows[*f];
                        if flow.condition.is_none() && el.default_flow != Some(*f) {
                            errs.push(ModelError {
                                line: el.line,
                                element: Some(flow.id.clone()),
                                message: format!(
                                    "the flow leaving gateway '{}' has no condition and is not the default flow",
                                    el.id
                                ),
                            });
                        }
                    }
                }
            }
            ElementKind::ParallelGateway => {
                if outs == 0 {
                    bad(&mut errs, el, "the parallel gateway has no outgoing flow".into());
                }
                if conditional > 0 {
                    bad(&mut errs, el, "flows leaving a parallel gateway may not have conditions".into());
                }
            }
            ElementKind::EventBasedGateway => {
                if outs < 2 {
                    bad(&mut errs, el, "an event-based gateway needs at least two outgoing flows".into());
                }
                for f in &el.outgoing {
                    let t = &p.elements[p.flows[*f].target];
                    let ok = matches!(
                        t.kind,
                        ElementKind::IntermediateCatch {
                            trigger: Trigger::Timer(_) | Trigger::Message(_) | Trigger::Signal { .. }
                        } | ElementKind::ReceiveTask { .. }
                    );
                    if !ok {
                        bad(
                            &mut errs,
                            el,
                            format!(
                                "'{}' follows the event-based gateway but is not a timer, message or signal catch event",
                                t.id
                            ),
                        );
                    }
                    if t.incoming.len() > 1 {
                        bad(
                            &mut errs,
                            t,
                            "an event after an event-based gateway may have only that one incoming flow".into(),
                        );
                    }
                }
            }
            _ => {}
        }
        if el.default_flow.is_some()
            && !matches!(el.kind, ElementKind::ExclusiveGateway | ElementKind::InclusiveGateway)
            && !el.is_activity()
        {
            bad(&mut errs, el, "only gateways and activities may have a default flow".into());
        }
        if conditional > 0 && el.is_activity() && el.default_flow.is_none() && outs > 1 {
            // Conditional flows out of an activity need a default so the token cannot get stuck.
            bad(&mut errs, el, "an activity with conditional outgoing flows needs a default flow".into());
        }
        if el.looping.is_some() && !el.is_activity() {
            bad(&mut errs, el, "only activities may have loop or multi-instance markers".into());
        }
    }
    errs
}

fn bad(errs: &mut Vec<ModelError>, el: &Element, msg: String) {
    errs.push(ModelError { line: el.line, element: Some(el.id.clone()), message: msg });
}
