//! The conformance suite on the pure engine: every shipped model in `conformance/`, each case
//! with the path it must take. The durable runtime runs the same models on both backends.

use flow::engine::{Command, Status};
use flow::memory::{JobOutcome, MemoryInstance};
use serde_json::{Value, json};

fn load(name: &str) -> flow::Definitions {
    let path = format!("{}/conformance/{name}.bpmn", env!("CARGO_MANIFEST_DIR"));
    let xml = std::fs::read_to_string(&path).unwrap();
    flow::compile(&xml).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn vars(v: Value) -> flow::engine::VarMap {
    v.as_object().cloned().unwrap()
}

fn noop(_: &flow::engine::JobSpec) -> JobOutcome {
    JobOutcome::Done(Default::default())
}

const T0: i64 = 1_790_000_000_000;

#[test]
fn reference_process_forks_three_service_tasks_and_joins() {
    let d = load("reference");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"amount": 10}))).unwrap();
    assert_eq!(i.jobs.len(), 3);
    i.run_jobs(noop).unwrap();
    assert_eq!(i.status(), Status::Completed);
    assert_eq!(i.completed.iter().filter(|e| *e == "join").count(), 3, "{:?}", i.completed);
    assert_eq!(i.completed.last().unwrap(), "end");
    let mut r = MemoryInstance::new(p, T0);
    r.start(vars(json!({"amount": -1}))).unwrap();
    assert_eq!(r.status(), Status::Completed);
    assert!(r.completed.contains(&"rejected".to_string()) && !r.completed.contains(&"fork".to_string()));
}

#[test]
fn approval_joins_both_reviews_and_sends_back_when_not_approved() {
    let d = load("approval");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"initiator": "zhangwei", "reviewers": ["liuyang", "chenjing"]}))).unwrap();
    let draft = &i.tasks[&i.task_at("draft").unwrap()];
    assert_eq!(draft.assignee.as_deref(), Some("zhangwei"));
    i.complete_task("draft", Default::default()).unwrap();
    let dept = &i.tasks[&i.task_at("dept").unwrap()];
    assert_eq!(dept.candidate_groups, vec!["dept_head"]);
    assert_eq!(dept.due_at, Some(T0 + 8 * 3_600_000));
    assert_eq!(dept.form_key.as_deref(), Some("approve"));
    let legal = &i.tasks[&i.task_at("legal").unwrap()];
    assert_eq!(legal.candidate_users, vec!["liuyang", "chenjing"]);
    assert_eq!(legal.priority, 80);
    i.complete_task("dept", vars(json!({"approved": false}))).unwrap();
    assert!(i.task_at("legal").is_some() && i.task_at("draft").is_none(), "join waits for the second branch");
    i.complete_task("legal", Default::default()).unwrap();
    assert!(i.task_at("draft").is_some(), "not approved: back to the draft");
    i.complete_task("draft", Default::default()).unwrap();
    i.complete_task("dept", vars(json!({"approved": true}))).unwrap();
    i.complete_task("legal", Default::default()).unwrap();
    i.complete_task("leader", Default::default()).unwrap();
    assert_eq!(i.status(), Status::Completed);
    assert_eq!(i.completed.iter().filter(|e| *e == "draft").count(), 2);
}

#[test]
fn completing_a_task_twice_or_a_stranger_token_is_refused_without_change() {
    let d = load("approval");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"initiator": "a", "reviewers": []}))).unwrap();
    let t = i.task_at("draft").unwrap();
    i.command(Command::CompleteTask { token: t, vars: Default::default() }).unwrap();
    let before = i.state.clone();
    assert!(i.command(Command::CompleteTask { token: t, vars: Default::default() }).is_err());
    assert!(i.command(Command::CompleteTask { token: 9999, vars: Default::default() }).is_err());
    assert!(i.command(Command::FireTimer { token: i.task_at("dept").unwrap() }).is_err());
    assert_eq!(i.state, before);
}

#[test]
fn inclusive_gateway_runs_every_true_branch_and_joins_only_those() {
    let d = load("inclusive");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"kinds": "城管,环保"}))).unwrap();
    assert!(i.task_at("a").is_some() && i.task_at("b").is_some());
    i.complete_task("a", Default::default()).unwrap();
    assert_eq!(i.status(), Status::Active, "the join waits for b");
    i.complete_task("b", Default::default()).unwrap();
    assert_eq!(i.status(), Status::Completed);
    assert_eq!(i.completed.iter().filter(|e| *e == "end").count(), 1);

    let mut j = MemoryInstance::new(p, T0);
    j.start(vars(json!({"kinds": "其他"}))).unwrap();
    assert_eq!(j.status(), Status::Completed, "default branch only: {:?}", j.completed);
    assert_eq!(j.var("archived"), Some(&json!("归档")));

    let mut k = MemoryInstance::new(p, T0);
    k.start(vars(json!({"kinds": "环保"}))).unwrap();
    assert!(k.task_at("a").is_none());
    k.complete_task("b", Default::default()).unwrap();
    assert_eq!(k.status(), Status::Completed);
}

#[test]
fn a_condition_that_cannot_evaluate_raises_an_incident_that_can_be_retried() {
    let d = load("inclusive");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(Default::default()).unwrap(); // `kinds` missing: contains(null, ..) is null
    assert_eq!(i.incidents.len(), 1, "{:?}", i.incidents);
    let (token, msg) = i.incidents.iter().next().map(|(t, m)| (*t, m.clone())).unwrap();
    assert!(msg.contains("f_a"), "{msg}");
    i.command(Command::SetVars { vars: vars(json!({"kinds": "城管"})) }).unwrap();
    i.command(Command::Retry { token }).unwrap();
    assert!(i.incidents.is_empty());
    assert!(i.task_at("a").is_some());
}

#[test]
fn event_gateway_takes_the_first_event_and_messages_correlate_by_key() {
    let d = load("events");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"orderId": "A-1"}))).unwrap();
    assert_eq!(i.timers.len(), 1);
    assert_eq!(i.deliver("paid", Some("B-2"), Default::default()).unwrap(), 0, "wrong key");
    assert_eq!(i.deliver("paid", Some("A-1"), vars(json!({"amount": 5}))).unwrap(), 1);
    assert!(i.timers.is_empty(), "the timeout was cancelled");
    assert_eq!(i.var("amount"), Some(&json!(5)));
    assert_eq!(i.deliver("done", Some("A-1"), Default::default()).unwrap(), 1, "receive task");
    assert_eq!(i.deliver("alarm", None, Default::default()).unwrap(), 1, "signal");
    assert_eq!(i.status(), Status::Completed);
    assert_eq!(i.published, vec![("done".to_string(), Some("A-1".to_string()))]);

    let mut t = MemoryInstance::new(p, T0);
    t.start(vars(json!({"orderId": "A-2"}))).unwrap();
    t.advance(3_599_000).unwrap();
    assert_eq!(t.status(), Status::Active);
    t.advance(1_000).unwrap();
    assert_eq!(t.status(), Status::Completed);
    assert!(t.completed.contains(&"expired".to_string()));
    assert!(t.subscriptions.is_empty(), "the message subscription was closed");
}

#[test]
fn boundary_timers_remind_then_interrupt_and_messages_withdraw() {
    let d = load("boundaries");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(Default::default()).unwrap();
    assert_eq!(i.timers.len(), 2);
    i.advance(3_600_000).unwrap();
    i.run_jobs(noop).unwrap();
    i.advance(3_600_000).unwrap();
    i.run_jobs(noop).unwrap();
    i.advance(3_600_000).unwrap();
    assert_eq!(i.completed.iter().filter(|e| *e == "urge").count(), 2, "R2 cycle fires twice: {:?}", i.completed);
    assert!(i.task_at("handle").is_some(), "reminders do not interrupt");
    i.advance(86_400_000).unwrap();
    assert!(i.task_at("handle").is_none());
    assert!(i.completed.contains(&"overdue".to_string()));
    assert_eq!(i.status(), Status::Completed);
    assert!(i.timers.is_empty() && i.subscriptions.is_empty());

    let mut w = MemoryInstance::new(p, T0);
    w.start(Default::default()).unwrap();
    assert_eq!(w.deliver("cancel", None, Default::default()).unwrap(), 1);
    assert_eq!(w.status(), Status::Completed);
    assert!(w.completed.contains(&"withdrawn".to_string()) && w.timers.is_empty());
}

#[test]
fn escalation_in_a_subprocess_is_caught_without_interrupting_it() {
    let d = load("boundaries");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(Default::default()).unwrap();
    i.complete_task("handle", Default::default()).unwrap();
    assert!(i.completed.contains(&"late_noted".to_string()));
    assert!(i.task_at("r_task").is_some(), "the sub-process goes on");
    i.complete_task("r_task", Default::default()).unwrap();
    assert_eq!(i.status(), Status::Completed);
}

#[test]
fn errors_are_caught_by_boundaries_and_event_subprocesses_run_alongside() {
    let d = load("errors");
    let p = d.main_process();
    // The service task throws: its error boundary catches.
    let mut a = MemoryInstance::new(p, T0);
    a.start(Default::default()).unwrap();
    a.run_jobs(|_| JobOutcome::Error("INVALID".into())).unwrap();
    assert_eq!(a.status(), Status::Completed);
    assert!(a.completed.contains(&"rejected".to_string()));
    assert_eq!(a.var("errorCode"), Some(&json!("INVALID")));
    // An error code nobody catches: incident.
    let mut u = MemoryInstance::new(p, T0);
    u.start(Default::default()).unwrap();
    u.run_jobs(|_| JobOutcome::Error("OTHER".into())).unwrap();
    assert_eq!(u.incidents.len(), 1);
    // Sub-process error end caught by the catch-all boundary; event sub-process counts messages.
    let mut b = MemoryInstance::new(p, T0);
    b.start(vars(json!({"broken": true}))).unwrap();
    assert_eq!(b.deliver("info", None, Default::default()).unwrap(), 1);
    b.run_jobs(noop).unwrap();
    assert!(b.completed.contains(&"repaired".to_string()), "{:?}", b.completed);
    assert_eq!(b.var("infos"), Some(&json!(1)));
    assert_eq!(b.status(), Status::Completed);
    // Happy path: the event sub-process listener does not keep the instance alive.
    let mut c = MemoryInstance::new(p, T0);
    c.start(vars(json!({"broken": false}))).unwrap();
    c.run_jobs(noop).unwrap();
    assert_eq!(c.deliver("info", None, Default::default()).unwrap(), 1);
    assert_eq!(c.deliver("info", None, Default::default()).unwrap(), 1, "non-interrupting: stays subscribed");
    assert_eq!(c.var("infos"), Some(&json!(2)));
    c.complete_task("wait", Default::default()).unwrap();
    assert_eq!(c.status(), Status::Completed);
    assert!(c.subscriptions.is_empty());
}

#[test]
fn failed_jobs_raise_incidents_that_skip_or_retry_resolves() {
    let d = load("reference");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"amount": 1}))).unwrap();
    i.run_jobs(|j| {
        if p.elements[j.element].id == "b" {
            JobOutcome::Fail("connection refused".into())
        } else {
            JobOutcome::Done(Default::default())
        }
    })
    .unwrap();
    assert_eq!(i.incidents.len(), 1);
    let token = *i.incidents.keys().next().unwrap();
    i.command(Command::Retry { token }).unwrap();
    assert_eq!(i.jobs.len(), 1, "retry queues the job again");
    i.run_jobs(|_| JobOutcome::Fail("still down".into())).unwrap();
    let token = *i.incidents.keys().next().unwrap();
    i.command(Command::Skip { token }).unwrap();
    assert_eq!(i.status(), Status::Completed);
}

#[test]
fn countersign_completes_when_two_of_three_sign_then_loops_and_terminates() {
    let d = load("countersign");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"approvers": ["王芳", "李强", "赵敏"]}))).unwrap();
    let assignees: Vec<_> = i.tasks.values().map(|t| t.assignee.clone().unwrap()).collect();
    assert_eq!(assignees, vec!["王芳", "李强", "赵敏"]);
    let tokens: Vec<u64> = i.tasks.keys().copied().collect();
    i.command(Command::CompleteTask { token: tokens[0], vars: vars(json!({"opinion": "同意"})) }).unwrap();
    assert_eq!(i.tasks.len(), 2);
    i.command(Command::CompleteTask { token: tokens[2], vars: vars(json!({"opinion": "同意"})) }).unwrap();
    assert!(i.tasks.is_empty(), "the third task is cancelled once two signed");
    assert_eq!(i.var("opinions"), Some(&json!(["同意", null, "同意"])));
    assert_eq!(i.jobs.len(), 1, "sequential: one at a time");
    i.run_jobs(noop).unwrap();
    assert_eq!(i.completed.iter().filter(|e| *e == "notify").count(), 4, "3 instances + the body: {:?}", i.completed);
    assert_eq!(i.var("ticks"), Some(&json!(4)));
    assert_eq!(i.status(), Status::Completed);
}

#[test]
fn a_countersigner_can_be_added_to_a_running_countersign() {
    let d = load("countersign");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"approvers": ["王芳"]}))).unwrap();
    let body = i
        .state
        .tokens
        .iter()
        .find(|(_, t)| matches!(t.wait, flow::engine::Wait::MultiBody { .. }))
        .map(|(id, _)| *id)
        .unwrap();
    i.command(Command::AddInstance { token: body, item: json!("孙丽") }).unwrap();
    let assignees: Vec<_> = i.tasks.values().map(|t| t.assignee.clone().unwrap()).collect();
    assert_eq!(assignees, vec!["王芳", "孙丽"]);
}

#[test]
fn call_activity_waits_for_the_child_and_takes_its_variables() {
    let d = load("call");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"x": 1}))).unwrap();
    assert_eq!(i.calls.len(), 1);
    let (token, pid) = i.calls[0].clone();
    assert_eq!(pid, "approval");
    i.command(Command::ChildCompleted { token, vars: vars(json!({"result": "ok"})) }).unwrap();
    assert_eq!(i.status(), Status::Completed);
    assert_eq!(i.var("result"), Some(&json!("ok")));
}

#[test]
fn a_waiting_token_can_be_sent_back_to_an_earlier_step() {
    let d = load("approval");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(vars(json!({"initiator": "a", "reviewers": ["b"]}))).unwrap();
    i.complete_task("draft", Default::default()).unwrap();
    i.complete_task("legal", Default::default()).unwrap();
    let dept = i.task_at("dept").unwrap();
    let draft = p.element("draft").unwrap();
    i.command(Command::Move { token: dept, to: draft, vars: vars(json!({"backReason": "材料不全"})) }).unwrap();
    assert!(i.task_at("dept").is_none() && i.task_at("draft").is_some());
    // The join still holds legal's arrival; completing the draft again forks a second time.
    assert_eq!(i.var("backReason"), Some(&json!("材料不全")));
}

#[test]
fn cancelling_an_instance_cancels_every_task_timer_and_subscription() {
    let d = load("boundaries");
    let p = d.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(Default::default()).unwrap();
    i.command(Command::Cancel { reason: "撤销".into() }).unwrap();
    assert_eq!(i.status(), Status::Terminated);
    assert!(i.tasks.is_empty() && i.timers.is_empty() && i.subscriptions.is_empty());
    assert!(i.command(Command::SetVars { vars: Default::default() }).is_err());
}
