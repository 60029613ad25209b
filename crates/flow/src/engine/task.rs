//! Activities: user tasks, service-task jobs, call activities and multi-instance bodies.

use serde_json::Value;

use super::run::{Entry, Step};
use super::*;
use crate::model::{CallSpec, ElementKind, Looping, Text};
use crate::timer;

impl Step<'_> {
    fn eval_text(&self, scope: u64, text: &Option<Text>) -> Result<Option<Value>, String> {
        match text {
            None => Ok(None),
            Some(Text::Literal(l)) => Ok(Some(Value::String(l.clone()))),
            Some(Text::Expr(e)) => {
                e.eval(&self.vars_for(scope)).map(|v| if v.is_null() { None } else { Some(v) }).map_err(|e| e.0)
            }
        }
    }

    /// Evaluates the local input mappings of the token's element.
    fn local_inputs(&self, t: u64) -> Result<VarMap, String> {
        let tok = &self.s.tokens[&t];
        let element = &self.p.elements[tok.element];
        let mut out = VarMap::new();
        for (name, expr) in &element.inputs {
            let view = ScopeVars { state: self.s, scope: tok.scope, extra: Some(&out) };
            let v = expr.eval(&view).map_err(|e| format!("input mapping '{name}' failed: {e}"))?;
            out.insert(name.clone(), v);
        }
        Ok(out)
    }

    /// A user task: evaluate who and when, create the task, arm boundary events.
    pub(super) fn user_task(&mut self, t: u64) {
        match self.task_spec(t) {
            Ok(spec) => {
                self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Task;
                self.out.push(Action::CreateTask(spec));
                self.arm_boundaries(t);
            }
            Err(e) => {
                let id = &self.p.elements[self.s.tokens[&t].element].id;
                let msg = format!("user task '{id}': {e}");
                self.incident(t, msg);
            }
        }
    }

    fn task_spec(&self, t: u64) -> Result<TaskSpec, String> {
        let tok = &self.s.tokens[&t];
        let element = &self.p.elements[tok.element];
        let ElementKind::UserTask(spec) = &element.kind else { return Err("not a user task".into()) };
        let inputs = self.local_inputs(t)?;
        let view_scope = tok.scope;
        let as_string = |v: Option<Value>, what: &str| -> Result<Option<String>, String> {
            match v {
                None => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                Some(Value::Number(n)) => Ok(Some(n.to_string())),
                Some(other) => Err(format!("{what} must be text, got {other}")),
            }
        };
        let as_list = |v: Option<Value>, what: &str| -> Result<Vec<String>, String> {
            match v {
                None => Ok(vec![]),
                Some(Value::String(s)) => {
                    Ok(s.split([',', '，']).map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect())
                }
                Some(Value::Array(items)) => items
                    .into_iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s),
                        Value::Number(n) => Ok(n.to_string()),
                        other => Err(format!("{what} must be a list of text, got {other}")),
                    })
                    .collect(),
                Some(other) => Err(format!("{what} must be text or a list, got {other}")),
            }
        };
        let due = |v: Option<Value>, what: &str| -> Result<Option<i64>, String> {
            match as_string(v, what)? {
                None => Ok(None),
                Some(s) => timer::deadline(&s, self.now, self.calendar).map(Some).map_err(|e| format!("{what}: {e}")),
            }
        };
        let priority = match self.eval_text(view_scope, &spec.priority)? {
            None => 50,
            Some(v) => {
                let n = match &v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse().ok(),
                    _ => None,
                };
                match n {
                    Some(n) if (0.0..=100.0).contains(&n) => n as i64,
                    _ => return Err(format!("priority must be a number 0-100, got {v}")),
                }
            }
        };
        Ok(TaskSpec {
            token: t,
            element: tok.element,
            name: element.label().to_string(),
            assignee: as_string(self.eval_text(view_scope, &spec.assignee)?, "the assignee")?,
            candidate_users: as_list(self.eval_text(view_scope, &spec.candidate_users)?, "candidate users")?,
            candidate_groups: as_list(self.eval_text(view_scope, &spec.candidate_groups)?, "candidate groups")?,
            candidate_orgs: as_list(self.eval_text(view_scope, &spec.candidate_orgs)?, "candidate orgs")?,
            due_at: due(self.eval_text(view_scope, &spec.due_date)?, "the due date")?,
            follow_up_at: due(self.eval_text(view_scope, &spec.follow_up_date)?, "the follow-up date")?,
            priority,
            form_key: spec.form_key.clone(),
            inputs,
        })
    }

    /// A service task: queue a job for its handler, with the visible variables and inputs.
    pub(super) fn create_job(&mut self, t: u64) {
        let first =
            matches!(self.s.tokens[&t].wait, Wait::Ready) && !self.s.tokens.values().any(|x| x.owner == Some(t));
        let tok = &self.s.tokens[&t];
        let element = &self.p.elements[tok.element];
        let ElementKind::ServiceTask(spec) = &element.kind else { return };
        let mut vars = self.s.visible_vars(tok.scope);
        match self.local_inputs(t) {
            Ok(inputs) => vars.extend(inputs),
            Err(e) => {
                let msg = format!("service task '{}': {e}", element.id);
                self.incident(t, msg);
                return;
            }
        }
        let job = JobSpec {
            token: t,
            element: tok.element,
            handler: spec.handler.clone(),
            retries: spec.retries,
            headers: spec.headers.clone(),
            vars,
        };
        self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Job;
        self.out.push(Action::CreateJob(job));
        if first {
            self.arm_boundaries(t);
        }
    }

    /// A call activity: ask the runtime to start the called process.
    pub(super) fn start_call(&mut self, t: u64, spec: &CallSpec) {
        let scope = self.s.tokens[&t].scope;
        let el = self.s.tokens[&t].element;
        let pid = match self.eval_text(scope, &Some(spec.process_id.clone())) {
            Ok(Some(Value::String(s))) if !s.trim().is_empty() => s,
            Ok(other) => {
                self.incident(
                    t,
                    format!("call activity '{}': the process id evaluated to {other:?}", self.p.elements[el].id),
                );
                return;
            }
            Err(e) => {
                self.incident(t, format!("call activity '{}': {e}", self.p.elements[el].id));
                return;
            }
        };
        let mut vars = if spec.propagate_all { self.s.visible_vars(scope) } else { VarMap::new() };
        match self.local_inputs(t) {
            Ok(inputs) => vars.extend(inputs),
            Err(e) => {
                self.incident(t, format!("call activity '{}': {e}", self.p.elements[el].id));
                return;
            }
        }
        self.s.tokens.get_mut(&t).expect("exists").wait = Wait::Call;
        self.out.push(Action::StartCall { token: t, element: el, process_id: pid, version: spec.version, vars });
        self.arm_boundaries(t);
    }

    /// True when token `t` is one instance inside a multi-instance body of its own element.
    pub(super) fn is_inner_activation(&self, t: u64) -> bool {
        let tok = &self.s.tokens[&t];
        let Some(body) = self.s.scopes.get(&tok.scope).and_then(|s| s.parent) else { return false };
        let Some(body_scope) = self.s.scopes.get(&body) else { return false };
        body_scope.multi.is_some()
            && body_scope.host.and_then(|h| self.s.tokens.get(&h)).is_some_and(|h| h.element == tok.element)
    }

    /// Enters a multi-instance activity: the body scope, then one instance (sequential) or all.
    pub(super) fn start_multi(&mut self, t: u64) {
        let (el, scope) = {
            let tok = &self.s.tokens[&t];
            (tok.element, tok.scope)
        };
        let Some(Looping::Multi(mi)) = &self.p.elements[el].looping else { return };
        let items: Result<Vec<Value>, String> = if let Some(coll) = &mi.input_collection {
            match coll.eval(&self.vars_for(scope)) {
                Ok(Value::Array(a)) => Ok(a),
                Ok(other) => Err(format!("the input collection evaluated to {other} instead of a list")),
                Err(e) => Err(e.0),
            }
        } else {
            match mi.cardinality.as_ref().map(|c| c.eval(&self.vars_for(scope))) {
                Some(Ok(v)) => match v.as_u64() {
                    Some(n) if n <= 10_000 => Ok(vec![Value::Null; n as usize]),
                    _ => Err(format!("the loop cardinality evaluated to {v} instead of a count 0-10000")),
                },
                Some(Err(e)) => Err(e.0),
                None => Err("no input collection or cardinality".into()),
            }
        };
        let items = match items {
            Ok(i) => i,
            Err(e) => {
                self.incident(t, format!("multi-instance '{}': {e}", self.p.elements[el].id));
                return;
            }
        };
        let total = items.len() as u32;
        let body = self.new_scope(scope, t);
        self.s.scopes.get_mut(&body).expect("new").multi =
            Some(MultiState { total, started: 0, completed: 0, outputs: vec![Value::Null; items.len()], items });
        self.s.tokens.get_mut(&t).expect("exists").wait = Wait::MultiBody { child: body };
        self.arm_boundaries(t);
        if total == 0 {
            self.finish_multi(t, body);
            return;
        }
        let n = if mi.sequential { 1 } else { total };
        for _ in 0..n {
            self.spawn_inner(t, body);
        }
    }

    fn spawn_inner(&mut self, host: u64, body: u64) {
        let el = self.s.tokens[&host].element;
        let Some(Looping::Multi(mi)) = &self.p.elements[el].looping else { return };
        let state = self.s.scopes.get_mut(&body).expect("body").multi.as_mut().expect("multi");
        let index = state.started as usize;
        state.started += 1;
        let item = state.items[index].clone();
        let inner = self.new_scope(body, host);
        let vars = &mut self.s.scopes.get_mut(&inner).expect("new").vars;
        vars.insert("loopCounter".into(), Value::from(index + 1));
        if let Some(name) = &mi.input_element {
            vars.insert(name.clone(), item);
        }
        let tok = self.new_token(el, inner, None);
        self.queue.push_back(Entry { token: tok, via: None, fresh: true });
    }

    /// Adds one instance to a running parallel multi-instance body (加签, add a countersigner).
    pub(super) fn add_instance(&mut self, host: u64, item: Value) {
        let Some(Wait::MultiBody { child }) = self.s.tokens.get(&host).map(|t| t.wait.clone()) else { return };
        let Some(state) = self.s.scopes.get_mut(&child).and_then(|s| s.multi.as_mut()) else { return };
        state.items.push(item);
        state.outputs.push(Value::Null);
        state.total += 1;
        self.spawn_inner(host, child);
    }

    /// One instance of a multi-instance body completed.
    pub(super) fn multi_inner_done(&mut self, t: u64, vars: VarMap) {
        let tok = self.s.tokens.remove(&t).expect("exists");
        let inner = tok.scope;
        let body = self.s.scopes[&inner].parent.expect("body");
        let host = self.s.scopes[&body].host.expect("host");
        let Some(Looping::Multi(mi)) = &self.p.elements[tok.element].looping else { return };
        let index = self.s.scopes[&inner].vars.get("loopCounter").and_then(Value::as_u64).unwrap_or(1) as usize - 1;
        if let Some(out) = &mi.output_element {
            let view = ScopeVars { state: self.s, scope: inner, extra: Some(&vars) };
            let v = out.eval(&view).unwrap_or(Value::Null);
            if let Some(slot) =
                self.s.scopes.get_mut(&body).and_then(|b| b.multi.as_mut()).and_then(|m| m.outputs.get_mut(index))
            {
                *slot = v;
            }
        }
        self.disarm_owned(t);
        self.s.scopes.remove(&inner);
        let m = self.s.scopes.get_mut(&body).and_then(|b| b.multi.as_mut()).expect("multi");
        m.completed += 1;
        let (total, completed, started) = (m.total, m.completed, m.started);
        let active = started - completed;
        let done = completed >= total
            || match &mi.completion_condition {
                None => false,
                Some(c) => {
                    let mut extra = VarMap::new();
                    extra.insert("nrOfInstances".into(), total.into());
                    extra.insert("nrOfCompletedInstances".into(), completed.into());
                    extra.insert("nrOfActiveInstances".into(), active.into());
                    extra.extend(vars.clone());
                    let view = ScopeVars { state: self.s, scope: body, extra: Some(&extra) };
                    match c.eval_bool(&view) {
                        Ok(b) => b,
                        Err(e) => {
                            let msg =
                                format!("completion condition of '{}' failed: {e}", self.p.elements[tok.element].id);
                            self.incident(host, msg);
                            return;
                        }
                    }
                }
            };
        if done {
            self.finish_multi(host, body);
        } else if mi.sequential && started < total {
            self.spawn_inner(host, body);
        }
    }

    fn finish_multi(&mut self, host: u64, body: u64) {
        let el = self.s.tokens[&host].element;
        let inners: Vec<u64> =
            self.s.scopes.iter().filter(|(_, s)| s.parent == Some(body)).map(|(id, _)| *id).collect();
        for i in inners {
            self.cancel_scope(i);
        }
        let Some(sc) = self.s.scopes.remove(&body) else { return };
        let mut vars = VarMap::new();
        if let (Some(Looping::Multi(mi)), Some(m)) = (&self.p.elements[el].looping, sc.multi)
            && let Some(name) = &mi.output_collection
        {
            vars.insert(name.clone(), Value::Array(m.outputs));
        }
        self.s.tokens.get_mut(&host).expect("exists").wait = Wait::Ready;
        let scope = self.s.tokens[&host].scope;
        self.set_vars(scope, vars);
        self.disarm_owned(host);
        self.take_outgoing(host);
    }
}
