//! Events: timers, messages, signals, errors, escalations, boundary events, event sub-processes
//! and embedded sub-processes (which own scopes the event machinery walks).

use super::run::{Entry, Step};
use super::*;
use crate::model::{ElementKind, MessageSpec, Text, TimerSpec, Trigger};
use crate::timer;

impl Step<'_> {
    /// Evaluates a timer and schedules it for token `t`.
    pub(super) fn schedule(&mut self, t: u64, spec: &TimerSpec) {
        let (el, scope) = {
            let tok = &self.s.tokens[&t];
            (tok.element, tok.scope)
        };
        let text = |s: &Self, x: &Text| -> Result<String, String> {
            match x {
                Text::Literal(l) => Ok(l.clone()),
                Text::Expr(e) => e.eval_string(&s.vars_for(scope)).map_err(|e| e.0),
            }
        };
        let wait = match spec {
            TimerSpec::Duration(x) => text(self, x)
                .and_then(|s| timer::parse_duration(&s))
                .and_then(|d| d.after(self.now).ok_or_else(|| "the duration is out of range".to_string()))
                .map(|due| Wait::Timer { due, every_ms: None, cron: None, left: None }),
            TimerSpec::Date(x) => text(self, x).and_then(|s| timer::parse_date(&s)).map(|due| Wait::Timer {
                due,
                every_ms: None,
                cron: None,
                left: None,
            }),
            TimerSpec::Cycle(x) => text(self, x).and_then(|s| timer::parse_cycle(&s, self.now)).map(|c| Wait::Timer {
                due: c.first_due,
                every_ms: c.cron.is_none().then_some(c.every_ms),
                cron: c.cron,
                left: c.repetitions,
            }),
        };
        match wait {
            Ok(w) => {
                let Wait::Timer { due, .. } = w else { unreachable!() };
                self.s.tokens.get_mut(&t).expect("exists").wait = w;
                self.out.push(Action::ScheduleTimer { token: t, element: el, due });
            }
            Err(e) => self.incident(t, format!("timer of '{}' is invalid: {e}", self.p.elements[el].id)),
        }
    }

    /// Opens a message subscription for token `t`, evaluating the correlation key now.
    pub(super) fn subscribe_message(&mut self, t: u64, m: &MessageSpec) {
        let (el, scope) = {
            let tok = &self.s.tokens[&t];
            (tok.element, tok.scope)
        };
        let key = match &m.correlation_key {
            None => None,
            Some(e) => match e.eval_string(&self.vars_for(scope)) {
                Ok(k) => Some(k),
                Err(err) => {
                    self.incident(t, format!("correlation key of '{}' failed: {err}", self.p.elements[el].id));
                    return;
                }
            },
        };
        self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Message { name: m.name.clone(), key: key.clone() };
        self.out.push(Action::Subscribe { token: t, element: el, name: m.name.clone(), key, signal: false });
    }

    /// Publishes a message from a throw event or end event.
    pub(super) fn publish(&mut self, t: u64, m: &MessageSpec) {
        let scope = self.s.tokens[&t].scope;
        let key = m.correlation_key.as_ref().and_then(|e| e.eval_string(&self.vars_for(scope)).ok());
        let vars = self.s.visible_vars(scope);
        self.out.push(Action::PublishMessage { name: m.name.clone(), key, vars });
    }

    /// An intermediate catch event: start waiting.
    pub(super) fn catch_event(&mut self, t: u64, trigger: Trigger) {
        self.listen(t, &trigger);
    }

    /// An intermediate throw event: throw, then continue.
    pub(super) fn throw_event(&mut self, t: u64, trigger: Trigger) {
        let scope = self.s.tokens[&t].scope;
        match trigger {
            Trigger::Message(m) => self.publish(t, &m),
            Trigger::Signal { name } => {
                let vars = self.s.visible_vars(scope);
                self.out.push(Action::BroadcastSignal { name, vars });
            }
            Trigger::Escalation { code } => self.throw_escalation(t, code.as_deref().unwrap_or("")),
            _ => {}
        }
        if self.s.tokens.contains_key(&t) {
            self.take_outgoing(t);
        }
    }

    /// Listener tokens for the timer, message and signal boundary events of activity `t`.
    pub(super) fn arm_boundaries(&mut self, t: u64) {
        let tok = &self.s.tokens[&t];
        let (el, scope) = (tok.element, tok.scope);
        for &b in &self.p.elements[el].boundaries.clone() {
            let ElementKind::Boundary { trigger, .. } = &self.p.elements[b].kind else { continue };
            if matches!(trigger, Trigger::Timer(_) | Trigger::Message(_) | Trigger::Signal { .. }) {
                let trigger = trigger.clone();
                let l = self.new_token(b, scope, Some(t));
                self.listen(l, &trigger);
            }
        }
    }

    /// Listener tokens for the start events of the event sub-processes in a container.
    pub(super) fn arm_event_subprocesses(&mut self, container: Option<El>, scope: u64) {
        let subs: Vec<El> = self.p.event_subprocesses(container).collect();
        for sp in subs {
            let Some(start) = self.p.start_events(Some(sp)).next() else { continue };
            let ElementKind::StartEvent { trigger, .. } = &self.p.elements[start].kind else { continue };
            if matches!(trigger, Trigger::Timer(_) | Trigger::Message(_) | Trigger::Signal { .. }) {
                let trigger = trigger.clone();
                let l = self.new_token(start, scope, None);
                self.listen(l, &trigger);
            }
        }
    }

    /// A timer is due.
    pub(super) fn fire_timer(&mut self, t: u64) {
        let Wait::Timer { every_ms, cron, left, .. } = self.s.tokens[&t].wait.clone() else { return };
        // A cycle with repetitions left fires a copy and stays armed.
        let repeat = (every_ms.is_some() || cron.is_some()) && left != Some(0);
        self.triggered(t, VarMap::new(), repeat.then(|| (every_ms.unwrap_or(0), cron, left.map(|l| l - 1))));
    }

    /// A message or signal arrived for token `t`.
    pub(super) fn deliver(&mut self, t: u64, vars: VarMap) {
        self.triggered(t, vars, None);
    }

    /// A waiting event occurred. `rearm`: a timer cycle continues.
    fn triggered(&mut self, t: u64, vars: VarMap, rearm: Option<Rearm>) {
        let tok = self.s.tokens[&t].clone();
        let element = &self.p.elements[tok.element];
        match &element.kind {
            ElementKind::Boundary { cancel_activity, .. } => {
                let host = tok.owner.unwrap_or(0);
                if *cancel_activity {
                    self.s.tokens.get_mut(&t).expect("exists").owner = None;
                    self.cancel_token(host);
                    self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Ready;
                    self.history(t, tok.element, EventKind::Started);
                    self.set_vars(tok.scope, vars);
                    self.take_outgoing(t);
                } else {
                    let n = self.new_token(tok.element, tok.scope, None);
                    self.history(n, tok.element, EventKind::Started);
                    self.set_vars(tok.scope, vars);
                    self.rearm_or_drop(t, rearm);
                    self.take_outgoing(n);
                }
            }
            ElementKind::StartEvent { interrupting, .. } => {
                // The start event of an event sub-process.
                let sp = element.parent.expect("event sub-process start");
                if *interrupting {
                    let others: Vec<u64> = self
                        .s
                        .tokens
                        .iter()
                        .filter(|(id, x)| x.scope == tok.scope && **id != t)
                        .map(|(id, _)| *id)
                        .collect();
                    for o in others {
                        self.cancel_token(o);
                    }
                    self.s.tokens.remove(&t);
                } else {
                    self.rearm_or_drop(t, rearm);
                }
                self.start_event_subprocess(sp, tok.element, tok.scope, vars);
            }
            _ => {
                if let Some(gw) = tok.owner {
                    self.gateway_event_won(t, gw, vars);
                    return;
                }
                self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Ready;
                if matches!(element.kind, ElementKind::ReceiveTask { .. }) {
                    self.complete_activity(t, vars);
                } else {
                    self.set_vars(tok.scope, vars);
                    self.take_outgoing(t);
                }
            }
        }
    }

    fn rearm_or_drop(&mut self, t: u64, rearm: Option<Rearm>) {
        // A cron cycle that never fires again ends like a spent timer.
        let rearm = rearm.and_then(|(every, cron, left)| match cron {
            Some(c) => timer::cron_next(&c, self.now).ok().map(|due| (due, None, Some(c), left)),
            None => Some((self.now + every, Some(every), None, left)),
        });
        match rearm {
            Some((due, every_ms, cron, left)) => {
                let el = self.s.tokens[&t].element;
                self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Timer { due, every_ms, cron, left };
                self.out.push(Action::ScheduleTimer { token: t, element: el, due });
            }
            None => {
                // Delivery consumes a subscription: a non-interrupting message or signal event
                // subscribes again; a one-shot timer is spent.
                let tok = &self.s.tokens[&t];
                let el = tok.element;
                match tok.wait.clone() {
                    Wait::Message { name, key } => {
                        self.out.push(Action::Subscribe { token: t, element: el, name, key, signal: false })
                    }
                    Wait::Signal { name } => {
                        self.out.push(Action::Subscribe { token: t, element: el, name, key: None, signal: true })
                    }
                    _ => {
                        self.s.tokens.remove(&t);
                    }
                }
            }
        }
    }

    /// Embedded sub-process: a child scope with a token at its plain start event.
    pub(super) fn start_subprocess(&mut self, t: u64) {
        let tok = &self.s.tokens[&t];
        let (el, scope) = (tok.element, tok.scope);
        let child = self.new_scope(scope, t);
        if !self.apply_inputs(t, child) {
            return;
        }
        self.s.tokens.get_mut(&t).expect("exists").wait = Wait::SubProcess { child };
        self.arm_boundaries(t);
        self.arm_event_subprocesses(Some(el), child);
        let Some(start) = self.p.none_start(Some(el)) else {
            self.incident(t, "the sub-process has no plain start event".into());
            return;
        };
        let st = self.new_token(start, child, None);
        self.queue.push_back(Entry { token: st, via: None, fresh: true });
    }

    fn start_event_subprocess(&mut self, sp: El, start: El, scope: u64, vars: VarMap) {
        let host = self.new_token(sp, scope, None);
        self.history(host, sp, EventKind::Started);
        let child = self.new_scope(scope, host);
        self.s.tokens.get_mut(&host).expect("exists").wait = Wait::SubProcess { child };
        self.set_vars(scope, vars);
        self.arm_event_subprocesses(Some(sp), child);
        let st = self.new_token(start, child, None);
        self.history(st, start, EventKind::Started);
        self.take_outgoing(st);
    }

    pub(super) fn new_scope(&mut self, parent: u64, host: u64) -> u64 {
        let id = self.s.next_id;
        self.s.next_id += 1;
        self.s.scopes.insert(id, Scope { parent: Some(parent), host: Some(host), ..Default::default() });
        id
    }

    /// Evaluates the element's input mappings into scope `into`. False when an incident was raised.
    pub(super) fn apply_inputs(&mut self, t: u64, into: u64) -> bool {
        let el = self.s.tokens[&t].element;
        let scope = self.s.tokens[&t].scope;
        for (name, expr) in &self.p.elements[el].inputs {
            match expr.eval(&self.vars_for(scope)) {
                Ok(v) => {
                    self.s.scopes.get_mut(&into).expect("exists").vars.insert(name.clone(), v);
                }
                Err(e) => {
                    self.incident(t, format!("input mapping '{name}' of '{}' failed: {e}", self.p.elements[el].id));
                    return false;
                }
            }
        }
        true
    }

    /// Throws a BPMN error from token `t`: the nearest matching error boundary event or error
    /// event sub-process catches it; uncaught, the token stops with an incident.
    pub(super) fn throw_error(&mut self, t: u64, code: &str, message: &str) {
        let Some(catcher) = self.find_catcher(t, code, true) else {
            let el = self.s.tokens[&t].element;
            self.incident(t, format!("unhandled error '{code}' at '{}': {message}", self.p.elements[el].id));
            return;
        };
        let mut vars = VarMap::new();
        vars.insert("errorCode".into(), code.into());
        if !message.is_empty() {
            vars.insert("errorMessage".into(), message.into());
        }
        self.catch(catcher, vars);
    }

    /// Throws an escalation; uncaught escalations are not an error.
    pub(super) fn throw_escalation(&mut self, t: u64, code: &str) {
        if let Some(catcher) = self.find_catcher(t, code, false) {
            let mut vars = VarMap::new();
            vars.insert("escalationCode".into(), code.into());
            self.catch(catcher, vars);
        }
    }

    /// Looks for a catcher of an error (or escalation) thrown by token `t`, walking outwards.
    fn find_catcher(&self, t: u64, code: &str, error: bool) -> Option<Catcher> {
        let matches = |trigger: &Trigger| match (trigger, error) {
            (Trigger::Error { code: c }, true) | (Trigger::Escalation { code: c }, false) => {
                c.as_deref().is_none_or(|c| c.is_empty() || c == code)
            }
            _ => false,
        };
        // Boundary events of the thrower itself (a service task throwing from its job).
        let tok = &self.s.tokens[&t];
        let own = &self.p.elements[tok.element];
        if own.is_activity() {
            for &b in &own.boundaries {
                if let ElementKind::Boundary { trigger, cancel_activity, .. } = &self.p.elements[b].kind
                    && matches(trigger)
                {
                    return Some(Catcher::Boundary { host: t, boundary: b, interrupting: *cancel_activity });
                }
            }
        }
        let mut scope = tok.scope;
        loop {
            let sc = self.s.scopes.get(&scope)?;
            let host = sc.host;
            let container = host.and_then(|h| self.s.tokens.get(&h)).map(|h| h.element);
            for sp in self.p.event_subprocesses(container) {
                if let Some(start) = self.p.start_events(Some(sp)).next()
                    && let ElementKind::StartEvent { trigger, interrupting } = &self.p.elements[start].kind
                    && matches(trigger)
                {
                    return Some(Catcher::EventSub { sp, start, scope, interrupting: *interrupting || error });
                }
            }
            let h = host?;
            let host_tok = self.s.tokens.get(&h)?;
            for &b in &self.p.elements[host_tok.element].boundaries {
                if let ElementKind::Boundary { trigger, cancel_activity, .. } = &self.p.elements[b].kind
                    && matches(trigger)
                {
                    return Some(Catcher::Boundary { host: h, boundary: b, interrupting: *cancel_activity });
                }
            }
            scope = host_tok.scope;
        }
    }

    fn catch(&mut self, c: Catcher, vars: VarMap) {
        match c {
            Catcher::Boundary { host, boundary, interrupting } => {
                let scope = self.s.tokens[&host].scope;
                if interrupting {
                    self.cancel_token(host);
                }
                let n = self.new_token(boundary, scope, None);
                self.history(n, boundary, EventKind::Started);
                self.set_vars(scope, vars);
                self.take_outgoing(n);
            }
            Catcher::EventSub { sp, start, scope, interrupting } => {
                if interrupting {
                    let others: Vec<u64> =
                        self.s.tokens.iter().filter(|(_, x)| x.scope == scope).map(|(id, _)| *id).collect();
                    for o in others {
                        self.cancel_token(o);
                    }
                }
                self.start_event_subprocess(sp, start, scope, vars);
            }
        }
    }
}

enum Catcher {
    Boundary { host: u64, boundary: El, interrupting: bool },
    EventSub { sp: El, start: El, scope: u64, interrupting: bool },
}

/// How a timer cycle continues: its interval (ISO 8601 cycles), its cron expression (cron
/// cycles), and the repetitions left.
type Rearm = (i64, Option<String>, Option<u32>);
