//! Gateways: exclusive, parallel, inclusive and event-based.

use super::run::Step;
use super::*;
use crate::model::{ElementKind, Trigger};

impl Step<'_> {
    /// Exclusive gateway: the first flow whose condition holds, else the default flow.
    pub(super) fn exclusive(&mut self, t: u64) {
        let el = self.s.tokens[&t].element;
        let element = &self.p.elements[el];
        if element.outgoing.len() == 1 && self.p.flows[element.outgoing[0]].condition.is_none() {
            let f = element.outgoing[0];
            self.take_flows(t, &[f]);
            return;
        }
        if let Some(flows) = self.select_flows(t, true) {
            self.take_flows(t, &flows);
        }
    }

    /// Evaluates the conditional flows of the token's element: the first true one (`first_only`)
    /// or all true ones, falling back to the default flow. `None` when an incident was raised.
    pub(super) fn select_flows(&mut self, t: u64, first_only: bool) -> Option<Vec<Fl>> {
        let tok = &self.s.tokens[&t];
        let (el, scope) = (tok.element, tok.scope);
        let element = &self.p.elements[el];
        let mut chosen = Vec::new();
        for &f in &element.outgoing {
            if element.default_flow == Some(f) {
                continue;
            }
            let flow = &self.p.flows[f];
            let ok = match &flow.condition {
                None => true,
                Some(c) => match c.eval_bool(&self.vars_for(scope)) {
                    Ok(b) => b,
                    Err(e) => {
                        let msg = format!("condition of flow '{}' failed: {e}", flow.id);
                        self.incident(t, msg);
                        return None;
                    }
                },
            };
            if ok {
                chosen.push(f);
                if first_only {
                    break;
                }
            }
        }
        if chosen.is_empty() {
            match element.default_flow {
                Some(d) => chosen.push(d),
                None => {
                    let msg = format!("no condition leaving '{}' is true and there is no default flow", element.id);
                    self.incident(t, msg);
                    return None;
                }
            }
        }
        Some(chosen)
    }

    /// Parallel gateway: joins one token per incoming flow, then forks on every outgoing flow.
    pub(super) fn parallel(&mut self, t: u64, via: Option<Fl>) {
        let tok = &self.s.tokens[&t];
        let (el, scope) = (tok.element, tok.scope);
        let incoming = self.p.elements[el].incoming.clone();
        if incoming.len() > 1 {
            let Some(via) = via else {
                self.incident(t, "a token reached a joining gateway without an incoming flow".into());
                return;
            };
            self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Join { via };
            self.history(t, el, EventKind::Started);
            let mut picked = Vec::with_capacity(incoming.len());
            for f in &incoming {
                let found = self
                    .s
                    .tokens
                    .iter()
                    .find(|(id, x)| {
                        x.scope == scope && x.element == el && x.wait == Wait::Join { via: *f } && !picked.contains(*id)
                    })
                    .map(|(id, _)| *id);
                match found {
                    Some(id) => picked.push(id),
                    None => return, // still waiting for another branch
                }
            }
            for id in picked.iter().filter(|id| **id != t) {
                self.s.tokens.remove(id);
                self.history(*id, el, EventKind::Completed);
            }
        } else {
            self.history(t, el, EventKind::Started);
        }
        let out = self.p.elements[el].outgoing.clone();
        self.take_flows(t, &out);
    }

    /// Inclusive gateway arrival: splits at once, or waits at the join until no other token can
    /// still arrive (settled after the queue drains, see [`Self::settle_inclusive_joins`]).
    pub(super) fn inclusive_arrive(&mut self, t: u64, via: Option<Fl>) {
        let el = self.s.tokens[&t].element;
        self.history(t, el, EventKind::Started);
        if self.p.elements[el].incoming.len() > 1 {
            self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Join { via: via.unwrap_or(usize::MAX) };
            return;
        }
        self.inclusive_split(t);
    }

    fn inclusive_split(&mut self, t: u64) {
        if let Some(flows) = self.select_flows(t, false) {
            self.take_flows(t, &flows);
        }
    }

    /// Fires every inclusive join that no other token of its scope can still reach. Returns
    /// true when one fired (so the step loop runs again).
    pub(super) fn settle_inclusive_joins(&mut self) -> bool {
        let waiting: Vec<(u64, El, u64)> = self
            .s
            .tokens
            .iter()
            .filter(|(_, x)| {
                matches!(x.wait, Wait::Join { .. })
                    && matches!(self.p.elements[x.element].kind, ElementKind::InclusiveGateway)
            })
            .map(|(id, x)| (*id, x.element, x.scope))
            .collect();
        let mut fired = false;
        let mut done: Vec<(El, u64)> = Vec::new();
        for (_, gw, scope) in &waiting {
            if done.contains(&(*gw, *scope)) {
                continue;
            }
            done.push((*gw, *scope));
            let blocked = self
                .s
                .tokens
                .values()
                .any(|x| x.scope == *scope && x.element != *gw && self.p.can_reach(x.element, *gw));
            if blocked {
                continue;
            }
            let mut at_gw: Vec<u64> =
                waiting.iter().filter(|(_, g, s)| g == gw && s == scope).map(|(id, _, _)| *id).collect();
            at_gw.sort();
            let keep = at_gw[0];
            for id in &at_gw[1..] {
                self.s.tokens.remove(id);
                self.history(*id, *gw, EventKind::Completed);
            }
            self.s.tokens.get_mut(&keep).expect("exists").wait = Wait::Ready;
            self.inclusive_split(keep);
            fired = true;
        }
        fired
    }

    /// Event-based gateway: listen on every following event; the first to occur wins.
    pub(super) fn event_gateway(&mut self, t: u64) {
        let tok = &self.s.tokens[&t];
        let (el, scope) = (tok.element, tok.scope);
        self.s.tokens.get_mut(&t).expect("exists").wait = Wait::EventGateway;
        let targets: Vec<El> = self.p.elements[el].outgoing.iter().map(|f| self.p.flows[*f].target).collect();
        for target in targets {
            let l = self.new_token(target, scope, Some(t));
            match &self.p.elements[target].kind {
                ElementKind::IntermediateCatch { trigger } => {
                    let trigger = trigger.clone();
                    self.listen(l, &trigger);
                }
                ElementKind::ReceiveTask { message } => {
                    let message = message.clone();
                    self.subscribe_message(l, &message);
                }
                _ => self.incident(l, "an event-based gateway may only lead to catch events".into()),
            }
        }
    }

    /// An event after an event-based gateway occurred: the gateway completes, the other events
    /// stop listening, and this one continues.
    pub(super) fn gateway_event_won(&mut self, listener: u64, gateway: u64, vars: VarMap) {
        let scope = self.s.tokens[&listener].scope;
        self.s.tokens.get_mut(&listener).expect("exists").owner = None;
        if let Some(g) = self.s.tokens.remove(&gateway) {
            self.history(gateway, g.element, EventKind::Completed);
        }
        self.disarm_owned(gateway);
        let el = self.s.tokens[&listener].element;
        self.history(listener, el, EventKind::Started);
        self.s.tokens.get_mut(&listener).expect("exists").wait = Wait::Ready;
        if matches!(self.p.elements[el].kind, ElementKind::ReceiveTask { .. }) {
            self.complete_activity(listener, vars);
        } else {
            self.set_vars(scope, vars);
            self.take_outgoing(listener);
        }
    }

    /// Starts listening for `trigger` with token `l` (timer, message or signal).
    pub(super) fn listen(&mut self, l: u64, trigger: &Trigger) {
        match trigger {
            Trigger::Timer(spec) => {
                let spec = spec.clone();
                self.schedule(l, &spec);
            }
            Trigger::Message(m) => {
                let m = m.clone();
                self.subscribe_message(l, &m);
            }
            Trigger::Signal { name } => {
                let el = self.s.tokens[&l].element;
                self.s.tokens.get_mut(&l).expect("exists").wait = Wait::Signal { name: name.clone() };
                self.out.push(Action::Subscribe { token: l, element: el, name: name.clone(), key: None, signal: true });
            }
            _ => {}
        }
    }
}
