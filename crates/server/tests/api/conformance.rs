//! The shipped conformance models (`crates/flow/conformance/`) run durably on every backend and
//! compared with the in-memory engine: the same driver (complete every open task, deliver every
//! awaited message and signal, let a day pass, run jobs) must take the same path to the end.

use std::collections::BTreeSet;

use flow::engine::{Command, Status};
use flow::memory::{JobOutcome, MemoryInstance};
use flow::runtime::{JobResult, MessageRequest, StartRequest, TaskAction, TaskFilter};
use identity::{Actor, Caller};
use serde_json::{Value, json};
use store::testing::test_backends;

use crate::helpers::TestApp;

fn model(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../flow/conformance/{name}.bpmn", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().cloned().unwrap()
}

/// (model, start variables, variables for every completed task)
fn scripts() -> Vec<(&'static str, Value, Value)> {
    vec![
        ("reference", json!({"amount": 5}), json!({})),
        ("approval", json!({"initiator": "flowadmin", "reviewers": ["flowadmin"]}), json!({"approved": true})),
        ("inclusive", json!({"kinds": "城管,环保"}), json!({})),
        ("events", json!({"orderId": "A-1"}), json!({})),
        ("boundaries", json!({}), json!({})),
        ("errors", json!({"broken": true}), json!({})),
        ("countersign", json!({"approvers": ["flowadmin", "dispatcher", "cgj_handler"]}), json!({"opinion": "同意"})),
        ("call", json!({"initiator": "flowadmin", "reviewers": ["flowadmin"]}), json!({"approved": true})),
    ]
}

const T0: i64 = 1_795_000_000_000;

/// The path in memory: element ids that completed.
fn in_memory(name: &str, vars: &Value, task_vars: &Value) -> (BTreeSet<String>, Status) {
    let defs = flow::compile(&model(name)).unwrap();
    let p = defs.main_process();
    let mut i = MemoryInstance::new(p, T0);
    i.start(obj(vars.clone())).unwrap();
    let mut delivered = BTreeSet::new();
    for _ in 0..30 {
        if i.status() != Status::Active {
            break;
        }
        i.run_jobs(|_| JobOutcome::Done(Default::default())).unwrap();
        for (token, _) in i.tasks.clone() {
            if i.tasks.contains_key(&token) {
                i.command(Command::CompleteTask { token, vars: obj(task_vars.clone()) }).unwrap();
            }
        }
        for (token, _) in std::mem::take(&mut i.calls) {
            i.command(Command::ChildCompleted { token, vars: obj(task_vars.clone()) }).unwrap();
        }
        i.run_jobs(|_| JobOutcome::Done(Default::default())).unwrap();
        let subs: Vec<(String, Option<String>)> =
            i.subscriptions.values().map(|(n, k, _)| (n.clone(), k.clone())).collect();
        for (name, key) in subs {
            if delivered.insert(name.clone()) {
                i.deliver(&name, key.as_deref(), Default::default()).unwrap();
            }
        }
        i.run_jobs(|_| JobOutcome::Done(Default::default())).unwrap();
        i.advance(86_400_000).unwrap();
    }
    let status = i.status();
    (i.completed.into_iter().collect(), status)
}

async fn caller(app: &TestApp, username: &str) -> Caller {
    let id = app.state.identity.user_id_by_username(username).await.unwrap().unwrap();
    app.state.identity.load_caller(&id, None).await.unwrap()
}

#[tokio::test]
async fn every_conformance_model_takes_the_same_path_durably_as_in_memory() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        flow.register("check", flow::runtime::Handler::inline(|_| JobResult::Done(Default::default())));
        let admin = caller(&app, "flowadmin").await;
        let actor = Actor::system();
        // `approval` first: `call` calls it.
        for (name, _, _) in scripts() {
            flow.deploy(&admin, &actor, &model(name), Default::default())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for (name, vars, task_vars) in scripts() {
            let (want, want_status) = in_memory(name, &vars, &task_vars);
            let inst = flow
                .start(
                    &admin,
                    &actor,
                    StartRequest {
                        process_key: name.into(),
                        version: None,
                        business_key: Some(format!("CF-{name}")),
                        variables: obj(vars.clone()),
                    },
                )
                .await
                .unwrap();
            let mut delivered = BTreeSet::new();
            for _ in 0..30 {
                let admin = caller(&app, "flowadmin").await;
                if flow.instance(&admin, &inst.id).await.unwrap().instance.status != "active" {
                    break;
                }
                while flow.run_due_jobs().await.unwrap() > 0 {}
                let tasks = flow
                    .tasks(&admin, &TaskFilter { view: Some("all".into()), page_size: Some(200), ..Default::default() })
                    .await
                    .unwrap();
                for t in tasks.items {
                    // A countersign may have finished meanwhile, cancelling the rest: conflicts are fine.
                    if t.assignee.as_deref() != Some("flowadmin") {
                        let r = flow
                            .task_action(
                                &admin,
                                &actor,
                                &t.id,
                                TaskAction::Transfer { to: "flowadmin".into(), comment: None },
                            )
                            .await;
                        if let Err(e) = r {
                            assert_eq!(e.code, kernel::ErrorCode::Conflict, "{e:?}");
                            continue;
                        }
                    }
                    let r = flow
                        .task_action(&admin, &actor, &t.id, TaskAction::Complete { variables: obj(task_vars.clone()) })
                        .await;
                    if let Err(e) = r {
                        assert_eq!(e.code, kernel::ErrorCode::Conflict, "{e:?}");
                    }
                }
                while flow.run_due_jobs().await.unwrap() > 0 {}
                let subs: Vec<(String, Option<String>, i64)> = sqlx::query_as(
                    "SELECT name, correlation_key, signal FROM flow_subscriptions WHERE instance_id = $1",
                )
                .bind(&inst.id)
                .fetch_all(app.state.db.reader())
                .await
                .unwrap();
                for (sub, key, signal) in subs {
                    if !delivered.insert(sub.clone()) {
                        continue;
                    }
                    if signal == 1 {
                        flow.broadcast(&admin, &actor, &sub, Default::default()).await.unwrap();
                    } else {
                        flow.correlate(
                            &admin,
                            &actor,
                            MessageRequest {
                                name: sub,
                                correlation_key: key,
                                variables: Default::default(),
                                ttl_seconds: None,
                                message_id: None,
                            },
                        )
                        .await
                        .unwrap();
                    }
                }
                while flow.run_due_jobs().await.unwrap() > 0 {}
                app.clock.advance_secs(86_400);
                while flow.fire_due_timers().await.unwrap() > 0 {}
            }
            let admin = caller(&app, "flowadmin").await;
            let d = flow.instance(&admin, &inst.id).await.unwrap();
            let got: BTreeSet<String> = d.completed_elements.iter().cloned().collect();
            let status = match d.instance.status.as_str() {
                "completed" => Status::Completed,
                "terminated" => Status::Terminated,
                _ => Status::Active,
            };
            assert_eq!(
                (status, &got),
                (want_status, &want),
                "{b:?} {name}: durable path differs from the in-memory one"
            );
            assert_eq!(status, Status::Completed, "{b:?} {name} ran to its end");
        }
    }
}
