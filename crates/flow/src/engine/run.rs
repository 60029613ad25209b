//! The step loop: apply a command, then move tokens until every one waits again.

use std::collections::VecDeque;

use serde_json::Value;

use super::*;
use crate::model::{ElementKind, Looping, Trigger};

/// Applies `cmd` to `state` and returns the actions to carry out.
///
/// The command is checked before anything changes: on `Err` the state is untouched. Problems met
/// while moving tokens (a condition that fails to evaluate, an unhandled error) do not fail the
/// step; they stop the token concerned with an incident.
pub fn step(p: &Process, state: &mut InstanceState, cmd: Command, ctx: Ctx<'_>) -> Result<Vec<Action>, CommandError> {
    check(p, state, &cmd)?;
    let mut s = Step { p, s: state, now: ctx.now, calendar: ctx.calendar, out: Vec::new(), queue: VecDeque::new() };
    s.apply(cmd);
    s.run();
    Ok(s.out)
}

fn check(p: &Process, state: &InstanceState, cmd: &Command) -> Result<(), CommandError> {
    if let Command::Start { start, .. } = cmd {
        if !state.tokens.is_empty() || state.next_id > 1 {
            return Err(CommandError::Invalid("the instance has already started".into()));
        }
        return match start {
            Some(el) if !matches!(p.elements.get(*el).map(|e| &e.kind), Some(ElementKind::StartEvent { .. })) => {
                Err(CommandError::Invalid("the start element is not a start event".into()))
            }
            None if p.none_start(None).is_none() => {
                Err(CommandError::Invalid("the process has no plain start event; start it by message or timer".into()))
            }
            _ => Ok(()),
        };
    }
    if state.status != Status::Active {
        return Err(CommandError::NotActive);
    }
    let token_wait = |token: &u64| -> Result<&Token, CommandError> {
        state.tokens.get(token).ok_or(CommandError::NoSuchToken(*token))
    };
    let wrong = |token: u64, t: &Token| CommandError::WrongWait { token, waiting: wait_name(&t.wait).into() };
    match cmd {
        Command::Start { .. } | Command::SetVars { .. } | Command::Cancel { .. } => Ok(()),
        Command::CompleteTask { token, .. } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Task) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::FailJob { token, .. } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Job | Wait::Call) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::CompleteJob { token, .. } | Command::ThrowError { token, .. } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Job) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::FireTimer { token } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Timer { .. }) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::Deliver { token, .. } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Message { .. } | Wait::Signal { .. }) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::ChildCompleted { token, .. } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Call) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::AddInstance { token, .. } => {
            let t = token_wait(token)?;
            let parallel =
                matches!(&p.elements[t.element].looping, Some(crate::model::Looping::Multi(m)) if !m.sequential);
            match (&t.wait, parallel) {
                (Wait::MultiBody { .. }, true) => Ok(()),
                (Wait::MultiBody { .. }, false) => Err(CommandError::Invalid(
                    "instances can only be added to a parallel multi-instance activity".into(),
                )),
                _ => Err(wrong(*token, t)),
            }
        }
        Command::Retry { token } => {
            let t = token_wait(token)?;
            if matches!(t.wait, Wait::Incident { .. }) { Ok(()) } else { Err(wrong(*token, t)) }
        }
        Command::Skip { token } => {
            let t = token_wait(token)?;
            let is_job = matches!(p.elements[t.element].kind, ElementKind::ServiceTask(_));
            match (&t.wait, is_job) {
                (Wait::Incident { .. }, true) => Ok(()),
                (Wait::Incident { .. }, false) => {
                    Err(CommandError::Invalid("only a failed service task can be skipped".into()))
                }
                _ => Err(wrong(*token, t)),
            }
        }
        Command::Move { token, to, .. } => {
            let t = token_wait(token)?;
            if t.owner.is_some()
                || !matches!(
                    t.wait,
                    Wait::Task
                        | Wait::Job
                        | Wait::Timer { .. }
                        | Wait::Message { .. }
                        | Wait::Signal { .. }
                        | Wait::Incident { .. }
                        | Wait::Call
                )
            {
                return Err(wrong(*token, t));
            }
            let Some(target) = p.elements.get(*to) else {
                return Err(CommandError::Invalid("the target element does not exist".into()));
            };
            if target.parent != p.elements[t.element].parent {
                return Err(CommandError::Invalid(format!(
                    "'{}' is not in the same (sub-)process as the token",
                    target.id
                )));
            }
            if matches!(target.kind, ElementKind::Boundary { .. } | ElementKind::StartEvent { .. }) {
                return Err(CommandError::Invalid(format!(
                    "a token cannot be moved to '{}' ({})",
                    target.id,
                    target.kind.bpmn_name()
                )));
            }
            if in_multi_instance(state, t) {
                return Err(CommandError::Invalid("a token inside a multi-instance activity cannot be moved".into()));
            }
            Ok(())
        }
    }
}

fn in_multi_instance(state: &InstanceState, t: &Token) -> bool {
    state
        .scopes
        .get(&t.scope)
        .and_then(|s| s.parent)
        .and_then(|p| state.scopes.get(&p))
        .is_some_and(|s| s.multi.is_some())
}

pub(super) fn wait_name(w: &Wait) -> &'static str {
    match w {
        Wait::Ready => "nothing",
        Wait::Task => "a user task",
        Wait::Job => "a job",
        Wait::Timer { .. } => "a timer",
        Wait::Message { .. } => "a message",
        Wait::Signal { .. } => "a signal",
        Wait::Join { .. } => "a join",
        Wait::SubProcess { .. } => "a sub-process",
        Wait::MultiBody { .. } => "multi-instance activities",
        Wait::Call => "a called process",
        Wait::EventGateway => "the first of several events",
        Wait::Incident { .. } => "an incident to be resolved",
    }
}

/// A token queued to enter its element.
pub(super) struct Entry {
    pub token: u64,
    pub via: Option<Fl>,
    /// False on a retry after an incident: the element already recorded its start.
    pub fresh: bool,
}

pub(super) struct Step<'a> {
    pub p: &'a Process,
    pub s: &'a mut InstanceState,
    pub now: i64,
    pub calendar: &'a kernel::WorkCalendar,
    pub out: Vec<Action>,
    pub queue: VecDeque<Entry>,
}

impl Step<'_> {
    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Start { start, vars } => {
                self.s.scopes.entry(ROOT).or_default().vars = vars;
                self.arm_event_subprocesses(None, ROOT);
                let start = start.or_else(|| self.p.none_start(None)).expect("checked");
                let t = self.new_token(start, ROOT, None);
                self.history(t, start, EventKind::Started);
                self.take_outgoing(t);
            }
            Command::CompleteTask { token, vars } | Command::CompleteJob { token, vars } => {
                self.complete_activity(token, vars);
            }
            Command::ChildCompleted { token, vars } => self.complete_activity(token, vars),
            Command::FailJob { token, message } => self.incident(token, message),
            Command::ThrowError { token, code, message } => self.throw_error(token, &code, &message),
            Command::FireTimer { token } => self.fire_timer(token),
            Command::Deliver { token, vars } => self.deliver(token, vars),
            Command::Retry { token } => {
                let el = self.s.tokens[&token].element;
                self.out.push(Action::ResolveIncident { token });
                self.s.tokens.get_mut(&token).expect("checked").wait = Wait::Ready;
                if matches!(self.p.elements[el].kind, ElementKind::ServiceTask(_)) {
                    self.create_job(token);
                } else {
                    self.queue.push_back(Entry { token, via: None, fresh: false });
                }
            }
            Command::Skip { token } => {
                self.out.push(Action::ResolveIncident { token });
                self.s.tokens.get_mut(&token).expect("checked").wait = Wait::Ready;
                self.complete_activity(token, VarMap::new());
            }
            Command::Move { token, to, vars } => {
                let scope = self.s.tokens[&token].scope;
                self.set_vars(scope, vars);
                self.cancel_token(token);
                let t = self.new_token(to, scope, None);
                self.queue.push_back(Entry { token: t, via: None, fresh: true });
            }
            Command::SetVars { vars } => self.set_vars(ROOT, vars),
            Command::AddInstance { token, item } => self.add_instance(token, item),
            Command::Cancel { .. } => {
                let ids: Vec<u64> = self.s.tokens.iter().filter(|(_, t)| t.scope == ROOT).map(|(id, _)| *id).collect();
                for id in ids {
                    self.cancel_token(id);
                }
                self.s.status = Status::Terminated;
                self.out.push(Action::Terminated);
            }
        }
    }

    /// Moves queued tokens until all wait; then settles inclusive joins that may now fire.
    fn run(&mut self) {
        loop {
            while let Some(e) = self.queue.pop_front() {
                if self.s.tokens.contains_key(&e.token) {
                    self.enter(e);
                }
            }
            if !self.settle_inclusive_joins() {
                break;
            }
        }
    }

    pub(super) fn new_token(&mut self, element: El, scope: u64, owner: Option<u64>) -> u64 {
        let id = self.s.next_id;
        self.s.next_id += 1;
        self.s.tokens.insert(id, Token { element, scope, wait: Wait::Ready, owner, loop_count: 0 });
        id
    }

    pub(super) fn history(&mut self, token: u64, element: El, kind: EventKind) {
        self.out.push(Action::History(Event { at: self.now, token, element, kind }));
    }

    pub(super) fn vars_for(&self, scope: u64) -> ScopeVars<'_> {
        ScopeVars { state: self.s, scope, extra: None }
    }

    /// Sets variables: where a scope in the chain already has the name, there; else in the root.
    pub(super) fn set_vars(&mut self, scope: u64, vars: VarMap) {
        if vars.is_empty() {
            return;
        }
        let names: Vec<String> = vars.keys().cloned().collect();
        for (k, v) in vars {
            self.set_var(scope, k, v);
        }
        let el = self.s.scopes.get(&scope).and_then(|s| s.host).and_then(|h| self.s.tokens.get(&h)).map(|t| t.element);
        self.out.push(Action::History(Event {
            at: self.now,
            token: 0,
            element: el.unwrap_or(usize::MAX),
            kind: EventKind::Variables { names },
        }));
    }

    pub(super) fn set_var(&mut self, scope: u64, name: String, value: Value) {
        let mut s = Some(scope);
        while let Some(id) = s {
            let Some(sc) = self.s.scopes.get_mut(&id) else { break };
            if let Some(slot) = sc.vars.get_mut(&name) {
                *slot = value;
                return;
            }
            s = sc.parent;
        }
        self.s.scopes.entry(ROOT).or_default().vars.insert(name, value);
    }

    fn enter(&mut self, e: Entry) {
        let t = e.token;
        let tok = &self.s.tokens[&t];
        let (el, scope) = (tok.element, tok.scope);
        if e.fresh && !matches!(self.p.elements[el].kind, ElementKind::ParallelGateway | ElementKind::InclusiveGateway)
        {
            self.history(t, el, EventKind::Started);
        }
        // A multi-instance activity entered from outside creates its body first.
        if let Some(Looping::Multi(_)) = &self.p.elements[el].looping
            && !self.is_inner_activation(t)
        {
            self.start_multi(t);
            return;
        }
        if let Some(Looping::Standard { test_before: true, .. }) = &self.p.elements[el].looping
            && !self.loop_again(t)
        {
            self.take_outgoing(t);
            return;
        }
        let element = &self.p.elements[el];
        match &element.kind {
            ElementKind::StartEvent { .. } => self.take_outgoing(t),
            ElementKind::EndEvent { trigger } => self.end_event(t, trigger.clone()),
            ElementKind::IntermediateThrow { trigger } => self.throw_event(t, trigger.clone()),
            ElementKind::IntermediateCatch { trigger } => self.catch_event(t, trigger.clone()),
            ElementKind::Boundary { .. } => self.take_outgoing(t),
            ElementKind::UserTask(_) => self.user_task(t),
            ElementKind::ServiceTask(_) => self.create_job(t),
            ElementKind::ScriptTask { expression, result_variable } => {
                let value = expression.eval(&self.vars_for(scope));
                match value {
                    Ok(v) => {
                        if let Some(name) = result_variable.clone() {
                            let mut m = VarMap::new();
                            m.insert(name, v);
                            self.set_vars(scope, m);
                        }
                        self.complete_activity(t, VarMap::new());
                    }
                    Err(err) => self.incident(t, format!("script of '{}' failed: {err}", element.id)),
                }
            }
            ElementKind::ReceiveTask { message } => {
                let message = message.clone();
                self.subscribe_message(t, &message);
                self.arm_boundaries(t);
            }
            ElementKind::ManualTask => self.complete_activity(t, VarMap::new()),
            ElementKind::ExclusiveGateway => self.exclusive(t),
            ElementKind::ParallelGateway => self.parallel(t, e.via),
            ElementKind::InclusiveGateway => self.inclusive_arrive(t, e.via),
            ElementKind::EventBasedGateway => self.event_gateway(t),
            ElementKind::SubProcess { .. } => self.start_subprocess(t),
            ElementKind::CallActivity(spec) => {
                let spec = spec.clone();
                self.start_call(t, &spec);
            }
        }
    }

    /// Completes an activity: output mappings, boundary listeners removed, loops, then onwards.
    pub(super) fn complete_activity(&mut self, t: u64, vars: VarMap) {
        let (el, scope) = {
            let tok = &self.s.tokens[&t];
            (tok.element, tok.scope)
        };
        let element = &self.p.elements[el];
        if element.outputs.is_empty() {
            self.set_vars(scope, vars.clone());
        } else {
            let mut mapped = VarMap::new();
            let mut failed = None;
            for (name, expr) in &element.outputs {
                let view = ScopeVars { state: self.s, scope, extra: Some(&vars) };
                match expr.eval(&view) {
                    Ok(v) => {
                        mapped.insert(name.clone(), v);
                    }
                    Err(e) => failed = Some(format!("output mapping '{name}' of '{}' failed: {e}", element.id)),
                }
            }
            if let Some(msg) = failed {
                self.incident(t, msg);
                return;
            }
            self.set_vars(scope, mapped);
        }
        self.disarm_owned(t);
        if let Some(Looping::Standard { test_before: false, .. }) = &element.looping
            && self.loop_again(t)
        {
            return;
        }
        if self.is_inner_activation(t) {
            self.history(t, el, EventKind::Completed);
            self.multi_inner_done(t, vars);
            return;
        }
        self.take_outgoing(t);
    }

    /// Standard loop: re-enters the element while the condition holds. True when it looped.
    fn loop_again(&mut self, t: u64) -> bool {
        let tok = &self.s.tokens[&t];
        let (el, scope, count) = (tok.element, tok.scope, tok.loop_count);
        let Some(Looping::Standard { condition, max, .. }) = &self.p.elements[el].looping else { return false };
        if max.is_some_and(|m| count + 1 >= m) {
            return false;
        }
        let again = match condition {
            None => false,
            Some(c) => match c.eval_bool(&self.vars_for(scope)) {
                Ok(b) => b,
                Err(e) => {
                    self.incident(t, format!("loop condition of '{}' failed: {e}", self.p.elements[el].id));
                    return true;
                }
            },
        };
        if again {
            self.history(t, el, EventKind::Completed);
            self.s.tokens.remove(&t);
            let n = self.new_token(el, scope, None);
            self.s.tokens.get_mut(&n).expect("new").loop_count = count + 1;
            self.queue.push_back(Entry { token: n, via: None, fresh: true });
        }
        again
    }

    /// Takes the outgoing flows of the token's element (conditions evaluated where present).
    pub(super) fn take_outgoing(&mut self, t: u64) {
        let el = self.s.tokens[&t].element;
        let element = &self.p.elements[el];
        let conditional = element.outgoing.iter().any(|f| self.p.flows[*f].condition.is_some());
        if !conditional || matches!(element.kind, ElementKind::ParallelGateway) {
            let flows = element.outgoing.clone();
            self.take_flows(t, &flows);
            return;
        }
        // Conditional flows out of an activity or event behave like an inclusive split.
        if let Some(flows) = self.select_flows(t, false) {
            self.take_flows(t, &flows)
        }
    }

    /// Completes the token and moves it along `flows` (none: the token ends here).
    pub(super) fn take_flows(&mut self, t: u64, flows: &[Fl]) {
        let tok = self.s.tokens.remove(&t).expect("token exists");
        self.history(t, tok.element, EventKind::Completed);
        for f in flows {
            self.history(t, tok.element, EventKind::Taken { flow: *f });
            let n = self.new_token(self.p.flows[*f].target, tok.scope, None);
            self.queue.push_back(Entry { token: n, via: Some(*f), fresh: true });
        }
        if flows.is_empty() {
            self.scope_maybe_done(tok.scope);
        }
    }

    /// Ends a token without moving on (an end event).
    pub(super) fn end_token(&mut self, t: u64) {
        if let Some(tok) = self.s.tokens.remove(&t) {
            self.history(t, tok.element, EventKind::Completed);
            self.scope_maybe_done(tok.scope);
        }
    }

    /// Completes a scope when nothing but event sub-process listeners is left in it.
    pub(super) fn scope_maybe_done(&mut self, scope: u64) {
        if !self.s.scopes.contains_key(&scope) {
            return;
        }
        let busy = self.s.tokens.values().any(|t| t.scope == scope && !self.is_event_sub_listener(t));
        if busy {
            return;
        }
        let listeners: Vec<u64> = self.s.tokens.iter().filter(|(_, t)| t.scope == scope).map(|(id, _)| *id).collect();
        for l in listeners {
            self.cancel_token_quiet(l);
        }
        if scope == ROOT {
            if self.s.status == Status::Active {
                self.s.status = Status::Completed;
                self.out.push(Action::Completed);
            }
            return;
        }
        let sc = self.s.scopes.remove(&scope).expect("exists");
        self.s.scopes.retain(|_, s| s.parent != Some(scope));
        let Some(host) = sc.host else { return };
        if !self.s.tokens.contains_key(&host) {
            return;
        }
        if let Wait::SubProcess { .. } = self.s.tokens[&host].wait {
            // Local variables of the sub-process vanish with it; outputs map them out.
            let vars = sc.vars;
            let el = self.s.tokens[&host].element;
            if self.p.elements[el].outputs.is_empty() {
                self.complete_activity(host, VarMap::new());
            } else {
                self.complete_activity(host, vars);
            }
        }
    }

    fn is_event_sub_listener(&self, t: &Token) -> bool {
        let e = &self.p.elements[t.element];
        matches!(e.kind, ElementKind::StartEvent { .. })
            && e.parent.is_some_and(|sp| {
                matches!(self.p.elements[sp].kind, ElementKind::SubProcess { triggered_by_event: true })
            })
            && !matches!(t.wait, Wait::Ready)
    }

    /// Stops a token with an incident; it waits until resolved.
    pub(super) fn incident(&mut self, t: u64, message: String) {
        let Some(tok) = self.s.tokens.get_mut(&t) else { return };
        tok.wait = Wait::Incident { message: message.clone() };
        let el = tok.element;
        self.history(t, el, EventKind::Incident { message: message.clone() });
        self.out.push(Action::Incident { token: t, element: el, message });
    }

    /// Cancels a token and everything hanging off it (tasks, timers, child scopes, listeners).
    pub(super) fn cancel_token(&mut self, t: u64) {
        if let Some(tok) = self.s.tokens.get(&t) {
            let el = tok.element;
            self.cancel_token_quiet(t);
            self.history(t, el, EventKind::Cancelled);
        }
    }

    pub(super) fn cancel_token_quiet(&mut self, t: u64) {
        let Some(tok) = self.s.tokens.remove(&t) else { return };
        match tok.wait {
            Wait::Task => self.out.push(Action::CancelTask { token: t }),
            Wait::Job => self.out.push(Action::CancelJob { token: t }),
            Wait::Timer { .. } => self.out.push(Action::CancelTimer { token: t }),
            Wait::Message { .. } | Wait::Signal { .. } => self.out.push(Action::Unsubscribe { token: t }),
            Wait::SubProcess { child } | Wait::MultiBody { child } => self.cancel_scope(child),
            Wait::Call => self.out.push(Action::CancelCall { token: t }),
            Wait::Incident { .. } => self.out.push(Action::ResolveIncident { token: t }),
            Wait::Ready | Wait::Join { .. } | Wait::EventGateway => {}
        }
        self.disarm_owned(t);
    }

    /// Cancels every token of a scope and its child scopes, and drops the scope.
    pub(super) fn cancel_scope(&mut self, scope: u64) {
        let ids: Vec<u64> = self.s.tokens.iter().filter(|(_, t)| t.scope == scope).map(|(id, _)| *id).collect();
        for id in ids {
            self.cancel_token(id);
        }
        let children: Vec<u64> =
            self.s.scopes.iter().filter(|(_, s)| s.parent == Some(scope)).map(|(id, _)| *id).collect();
        for c in children {
            self.cancel_scope(c);
        }
        self.s.scopes.remove(&scope);
    }

    /// Removes the listener tokens (boundary events, gateway events) owned by `t`.
    pub(super) fn disarm_owned(&mut self, t: u64) {
        let owned: Vec<u64> = self.s.tokens.iter().filter(|(_, x)| x.owner == Some(t)).map(|(id, _)| *id).collect();
        for o in owned {
            self.cancel_token_quiet(o);
        }
    }

    /// The end event of a path.
    fn end_event(&mut self, t: u64, trigger: Trigger) {
        let scope = self.s.tokens[&t].scope;
        match trigger {
            Trigger::Terminate => {
                let others: Vec<u64> =
                    self.s.tokens.iter().filter(|(id, x)| x.scope == scope && **id != t).map(|(id, _)| *id).collect();
                for o in others {
                    self.cancel_token(o);
                }
                self.end_token(t);
            }
            Trigger::Error { code } => {
                let code = code.unwrap_or_default();
                self.throw_error(t, &code, "error end event");
            }
            Trigger::Escalation { code } => {
                self.throw_escalation(t, code.as_deref().unwrap_or(""));
                self.end_token(t);
            }
            Trigger::Message(m) => {
                self.publish(t, &m);
                self.end_token(t);
            }
            Trigger::Signal { name } => {
                let vars = self.s.visible_vars(scope);
                self.out.push(Action::BroadcastSignal { name, vars });
                self.end_token(t);
            }
            Trigger::None | Trigger::Timer(_) => self.end_token(t),
        }
    }
}
