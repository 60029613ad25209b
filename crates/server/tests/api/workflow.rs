//! The workflow engine through the HTTP API and the durable runtime, on every backend.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::testing::test_backends;

use crate::helpers::{Session, TestApp, assert_error};

const APPROVAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d1">
  <bpmn:process id="leave" name="请假审批" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:parallelGateway id="fork"/>
    <bpmn:userTask id="dept" name="科室审核">
      <bpmn:extensionElements><zeebe:assignmentDefinition candidateGroups="staff"/><zeebe:formDefinition formKey="opinion"/><zeebe:taskSchedule dueDate="PT8H"/></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:userTask id="hr" name="人事备案">
      <bpmn:extensionElements><zeebe:assignmentDefinition assignee="=hr"/></bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:parallelGateway id="join"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fork"/>
    <bpmn:sequenceFlow id="f2" sourceRef="fork" targetRef="dept"/>
    <bpmn:sequenceFlow id="f3" sourceRef="fork" targetRef="hr"/>
    <bpmn:sequenceFlow id="f4" sourceRef="dept" targetRef="join"/>
    <bpmn:sequenceFlow id="f5" sourceRef="hr" targetRef="join"/>
    <bpmn:sequenceFlow id="f6" sourceRef="join" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>"#;

fn opinion_form() -> Value {
    json!({"opinion": {"type": "default", "components": [
        {"type": "radio", "key": "decision", "label": "审核意见", "validate": {"required": true},
         "values": [{"label": "同意", "value": "agree"}, {"label": "不同意", "value": "reject"}]},
        {"type": "textarea", "key": "comment", "label": "说明", "validate": {"maxLength": 200}}
    ]}})
}

/// Deployed definitions other than the ones the platform ships (the grid case loop).
fn own_definitions(list: &Value) -> usize {
    list.as_array().unwrap().iter().filter(|d| d["key"] != "grid_case").count()
}

fn conformance(name: &str) -> String {
    std::fs::read_to_string(format!("{}/../flow/conformance/{name}.bpmn", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Starts an instance (`body` as `POST /flow/instances` takes it); answers its id.
async fn start_process(admin: &Session, body: Value) -> String {
    let (s, i) = admin.json(Method::POST, "/api/v1/flow/instances", Some(body)).await;
    assert_eq!(s, StatusCode::CREATED, "{i}");
    i["id"].as_str().unwrap().to_string()
}

async fn deploy(admin: &Session, xml: &str, forms: Value) -> Value {
    let (s, body) =
        admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": xml, "forms": forms}))).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    body
}

/// Acts on a task (`{"action": …}`).
async fn task_act(s: &Session, id: &str, body: Value) -> (StatusCode, Value) {
    s.json(Method::POST, &format!("/api/v1/flow/tasks/{id}"), Some(body)).await
}

async fn inbox(s: &Session) -> Vec<Value> {
    let (st, body) = s.json(Method::GET, "/api/v1/flow/tasks", None).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_two_step_approval_with_a_parallel_branch_runs_through_the_api() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        let d = deploy(&admin, APPROVAL, opinion_form()).await;
        assert_eq!((d["key"].as_str(), d["version"].as_i64()), (Some("leave"), Some(1)));
        // Deploying the same model again is not a new version.
        assert_eq!(deploy(&admin, APPROVAL, opinion_form()).await["version"], 1);

        let starter = app.login("dispatcher").await;
        let (s, inst) = starter
            .json(Method::POST, "/api/v1/flow/instances", Some(json!({"process_key": "leave", "business_key": "QJ-2026-001", "variables": {"hr": "flowadmin", "days": 3}})))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{inst}");
        let id = inst["id"].as_str().unwrap().to_string();

        // The department task is a candidate task for staff; the HR task is assigned.
        let handler = app.login("cgj_handler").await;
        let tasks = inbox(&handler).await;
        let dept = tasks.iter().find(|t| t["element_id"] == "dept").expect("dept task in the staff inbox").clone();
        assert_eq!(dept["due_at"].as_i64(), Some(1_795_000_000_000 + 8 * 3_600_000));
        assert!(inbox(&handler).await.iter().all(|t| t["element_id"] != "hr"));
        let dept_id = dept["id"].as_str().unwrap();

        // Completing before claiming is refused; claiming takes it out of other inboxes.
        let (s, body) =
            task_act(&handler, dept_id, json!({"action": "complete", "variables": {"decision": "agree"}})).await;
        assert_error(s, &body, 403, "forbidden");
        let (s, _) = task_act(&handler, dept_id, json!({"action": "claim"})).await;
        assert_eq!(s, StatusCode::OK);
        let gw = app.login("gridworker").await;
        assert!(
            inbox(&gw).await.iter().all(|t| t["id"] != dept["id"]),
            "claimed tasks leave other candidates' inboxes"
        );
        let (s, body) = task_act(&gw, dept_id, json!({"action": "complete", "variables": {"decision": "agree"}})).await;
        assert_error(s, &body, 404, "not_found");

        // The form is enforced on the server.
        let (s, view) = handler.json(Method::GET, &format!("/api/v1/flow/tasks/{dept_id}"), None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(view["form"]["components"][0]["key"], "decision");
        assert_eq!(view["variables"]["days"], 3);
        let (s, body) =
            task_act(&handler, dept_id, json!({"action": "complete", "variables": {"decision": "maybe", "x": 1}}))
                .await;
        assert_error(s, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("'x' is not a field"), "{body}");
        let (s, body) = task_act(
            &handler,
            dept_id,
            json!({"action": "complete", "variables": {"decision": "agree", "comment": "同意"}}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) =
            task_act(&handler, dept_id, json!({"action": "complete", "variables": {"decision": "agree"}})).await;
        assert_error(s, &body, 409, "conflict");

        // Still waiting for HR at the join.
        let (_, detail) = starter.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(detail["status"], "active");
        assert_eq!(detail["active_elements"], json!(["hr", "join"]));

        app.clock.advance_secs(90);
        let hr =
            inbox(&admin).await.into_iter().find(|t| t["element_id"] == "hr").expect("hr task assigned by expression");
        let (s, _) = task_act(&admin, hr["id"].as_str().unwrap(), json!({"action": "complete"})).await;
        assert_eq!(s, StatusCode::OK);

        let (_, detail) = starter.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(detail["status"], "completed", "{detail}");
        assert_eq!(detail["variables"]["decision"], "agree");
        for el in ["start", "fork", "dept", "hr", "join", "end"] {
            assert!(detail["completed_elements"].as_array().unwrap().iter().any(|e| e == el), "{el} in the path");
        }
        for f in ["f1", "f2", "f3", "f4", "f5", "f6"] {
            assert!(detail["taken_flows"].as_array().unwrap().iter().any(|e| e == f), "{f} taken");
        }
        let hr_item = detail["timeline"].as_array().unwrap().iter().find(|t| t["element_id"] == "hr").unwrap();
        assert_eq!(hr_item["duration_ms"], 90_000);
        assert_eq!(hr_item["ended_by"], "flowadmin");
        // The done list and the search by actor.
        let (_, done) = handler.json(Method::GET, "/api/v1/flow/tasks?view=done", None).await;
        assert_eq!(done["total"], 1);
        let (_, found) =
            admin.json(Method::GET, "/api/v1/flow/instances?actor=cgj_handler&status=completed", None).await;
        assert_eq!(found["total"], 1);
        // Every step is in the audit log.
        for action in ["flow.deploy", "flow.instance.start", "flow.task.claim", "flow.task.complete"] {
            let n = audit::search(
                &app.state.db,
                &audit::AuditFilter { action: Some(action.into()), ..Default::default() },
                Default::default(),
            )
            .await
            .unwrap()
            .total;
            assert!(n >= 1, "{action} audited");
        }
    }
}

#[tokio::test]
async fn broken_and_hostile_models_are_refused_with_the_element_named() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        let bad = APPROVAL.replace(r#"<bpmn:sequenceFlow id="f6" sourceRef="join" targetRef="end"/>"#, "");
        let (s, body) = admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": bad}))).await;
        assert_error(s, &body, 422, "validation_failed");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.contains("'end'") && msg.contains("cannot be reached"), "{msg}");
        assert!(msg.contains("'join'") && msg.contains("no outgoing flow"), "{msg}");
        let (s, check) = admin.json(Method::POST, "/api/v1/flow/definitions/check", Some(json!({"xml": bad}))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(check["ok"], false);
        assert!(
            check["problems"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["element"] == "end" && p["line"].as_u64().unwrap() > 1)
        );
        let bomb = r#"<!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>"#;
        let (s, body) = admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": bomb}))).await;
        assert_error(s, &body, 422, "validation_failed");
        // Staff may not deploy.
        let staff = app.login("dispatcher").await;
        let (s, body) = staff.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": APPROVAL}))).await;
        assert_error(s, &body, 403, "forbidden");
        // Nothing was deployed.
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/definitions", None).await;
        assert_eq!(own_definitions(&list), 0);
    }
}

#[tokio::test]
async fn the_reference_process_completes_in_one_transaction_with_full_history() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        deploy(&admin, &conformance("reference"), json!({})).await;
        let (s, inst) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "reference", "variables": {"amount": 5}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(inst["status"], "completed", "in-process service tasks run in the same transaction");
        let (_, hist) = admin
            .json(Method::GET, &format!("/api/v1/flow/instances/{}/history", inst["id"].as_str().unwrap()), None)
            .await;
        let events = hist[0]["events"].as_array().unwrap();
        let completed = events.iter().filter(|e| e["k"] == "completed").count();
        assert_eq!(completed, 10, "start, route, fork, a, b, c, join x3, end: {events:?}");
    }
}

#[tokio::test]
async fn timers_and_messages_survive_in_the_database_and_fire_on_time() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        deploy(&admin, &conformance("events"), json!({})).await;
        let start =
            |key: &'static str| start_process(&admin, json!({"process_key": "events", "variables": {"orderId": key}}));
        let paid = start("A-1").await;
        let expired = start("A-2").await;
        // A message for an unknown key is a clear 404, and changes nothing.
        let (s, body) = admin
            .json(Method::POST, "/api/v1/flow/messages", Some(json!({"name": "paid", "correlation_key": "ZZZ"})))
            .await;
        assert_error(s, &body, 404, "not_found");
        let (s, body) = admin
            .json(
                Method::POST,
                "/api/v1/flow/messages",
                Some(json!({"name": "paid", "correlation_key": "A-1", "variables": {"amount": 9}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["id"], paid.as_str());
        // Timers fire only when due.
        app.clock.advance_secs(3599);
        assert_eq!(flow.fire_due_timers().await.unwrap(), 0);
        app.clock.advance_secs(2);
        assert_eq!(flow.fire_due_timers().await.unwrap(), 1, "A-2's timeout; A-1's was cancelled with the gateway");
        let admin = app.login("flowadmin").await; // the hour passed the session's idle limit
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{expired}"), None).await;
        assert_eq!(d["status"], "completed");
        assert!(d["completed_elements"].as_array().unwrap().iter().any(|e| e == "expired"));
        // A-1 goes on: receive task, signal, then it throws the 'done' message.
        let (s, _) = admin
            .json(Method::POST, "/api/v1/flow/messages", Some(json!({"name": "done", "correlation_key": "A-1"})))
            .await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = admin.json(Method::POST, "/api/v1/flow/signals", Some(json!({"name": "alarm"}))).await;
        assert_eq!((s, body["reached"].as_i64()), (StatusCode::OK, Some(1)));
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{paid}"), None).await;
        assert_eq!(d["status"], "completed", "{d}");
        assert_eq!(d["variables"]["amount"], 9);
    }
}

#[tokio::test]
async fn a_message_sent_before_anyone_waits_is_buffered_until_an_instance_subscribes_or_it_expires() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        deploy(&admin, &conformance("events"), json!({})).await;
        let publish = |body: Value| {
            let admin = &admin;
            async move { admin.json(Method::POST, "/api/v1/flow/messages", Some(body)).await }
        };
        // Nobody waits for B-1 yet: with a time to live both messages are kept (202).
        let (s, paid) = publish(
            json!({"name": "paid", "correlation_key": "B-1", "variables": {"amount": 5}, "ttl_seconds": 600, "message_id": "pay-B-1"}),
        )
        .await;
        assert_eq!(s, StatusCode::ACCEPTED, "{paid}");
        assert_eq!(paid["expires_at"].as_i64().unwrap() - paid["published_at"].as_i64().unwrap(), 600_000);
        let (s, _) = publish(json!({"name": "done", "correlation_key": "B-1", "ttl_seconds": 600})).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        // The same message id again while buffered: refused, nothing doubled.
        let (s, body) =
            publish(json!({"name": "paid", "correlation_key": "B-1", "ttl_seconds": 600, "message_id": "pay-B-1"}))
                .await;
        assert_error(s, &body, 409, "already_exists");
        let (s, body) = publish(json!({"name": "paid", "correlation_key": "B-1", "ttl_seconds": 40 * 86_400})).await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, body) = publish(json!({"name": "paid", "correlation_key": "B-1", "ttl_seconds": -1})).await;
        assert_error(s, &body, 422, "validation_failed");
        // Without a time to live an unheard message is still a clear 404.
        let (s, body) = publish(json!({"name": "paid", "correlation_key": "B-2"})).await;
        assert_error(s, &body, 404, "not_found");
        let (s, short) = publish(json!({"name": "paid", "correlation_key": "B-9", "ttl_seconds": 60})).await;
        assert_eq!(s, StatusCode::ACCEPTED);
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/messages", None).await;
        assert_eq!(list.as_array().unwrap().len(), 3, "{list}");

        // The instance for B-1 takes 'paid' at its gateway and 'done' at its receive task at once.
        let start =
            |key: &'static str| start_process(&admin, json!({"process_key": "events", "variables": {"orderId": key}}));
        let b1 = start("B-1").await;
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{b1}"), None).await;
        let done: Vec<&str> = d["completed_elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert!(done.contains(&"paid") && done.contains(&"confirm"), "{d}");
        assert!(!done.contains(&"timeout"), "{d}");
        assert_eq!(d["variables"]["amount"], 5);
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/messages", None).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "only B-9's is left: {list}");
        assert_eq!(list[0]["id"], short["id"]);
        // The gateway's timer was cancelled with the delivery: nothing fires after an hour.
        app.clock.advance_secs(3_700);
        assert_eq!(flow.fire_due_timers().await.unwrap(), 0);

        // B-9's message expired before its instance came: the instance waits, and the cleanup
        // removes the message.
        let admin = app.login("flowadmin").await;
        let b9 = start_process(&admin, json!({"process_key": "events", "variables": {"orderId": "B-9"}})).await;
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{b9}"), None).await;
        assert!(!d["completed_elements"].as_array().unwrap().iter().any(|e| e == "paid"), "{d}");
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/messages", None).await;
        assert_eq!(list, json!([]));
        flow.cleanup_history().await.unwrap();
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM flow_messages").fetch_one(app.state.db.reader()).await.unwrap();
        assert_eq!(left, 0);

        // At an event-based gateway waiting for either of two buffered messages, the older one
        // wins and the other stays in the buffer for someone else.
        let race = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="t">
  <bpmn:message id="m_a" name="approved"><bpmn:extensionElements><zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements></bpmn:message>
  <bpmn:message id="m_b" name="withdrawn"><bpmn:extensionElements><zeebe:subscription correlationKey="=orderId"/></bpmn:extensionElements></bpmn:message>
  <bpmn:process id="race" isExecutable="true">
    <bpmn:startEvent id="s"/>
    <bpmn:eventBasedGateway id="g"/>
    <bpmn:intermediateCatchEvent id="a"><bpmn:messageEventDefinition messageRef="m_a"/></bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="b"><bpmn:messageEventDefinition messageRef="m_b"/></bpmn:intermediateCatchEvent>
    <bpmn:endEvent id="ea"/>
    <bpmn:endEvent id="eb"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="g"/>
    <bpmn:sequenceFlow id="f2" sourceRef="g" targetRef="a"/>
    <bpmn:sequenceFlow id="f3" sourceRef="g" targetRef="b"/>
    <bpmn:sequenceFlow id="f4" sourceRef="a" targetRef="ea"/>
    <bpmn:sequenceFlow id="f5" sourceRef="b" targetRef="eb"/>
  </bpmn:process>
</bpmn:definitions>"#;
        deploy(&admin, race, json!({})).await;
        for name in ["approved", "withdrawn"] {
            let (s, _) = admin
                .json(
                    Method::POST,
                    "/api/v1/flow/messages",
                    Some(json!({"name": name, "correlation_key": "R-1", "ttl_seconds": 600})),
                )
                .await;
            assert_eq!(s, StatusCode::ACCEPTED);
            app.clock.advance_secs(1);
        }
        let (s, i) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "race", "variables": {"orderId": "R-1"}})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
        assert_eq!(i["status"], "completed", "{i}");
        let (_, d) =
            admin.json(Method::GET, &format!("/api/v1/flow/instances/{}", i["id"].as_str().unwrap()), None).await;
        let done: Vec<&str> = d["completed_elements"].as_array().unwrap().iter().map(|e| e.as_str().unwrap()).collect();
        assert!(done.contains(&"ea") && !done.contains(&"eb"), "{d}");
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/messages", None).await;
        assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
        assert_eq!(list[0]["name"], "withdrawn");

        // A buffered message can be withdrawn before anyone takes it; publishing and withdrawing
        // are audited.
        let (_, m) = admin
            .json(
                Method::POST,
                "/api/v1/flow/messages",
                Some(json!({"name": "paid", "correlation_key": "C-1", "ttl_seconds": 600})),
            )
            .await;
        let id = m["id"].as_str().unwrap();
        let (s, _) = admin.json(Method::DELETE, &format!("/api/v1/flow/messages/{id}"), None).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, body) = admin.json(Method::DELETE, &format!("/api/v1/flow/messages/{id}"), None).await;
        assert_error(s, &body, 404, "not_found");
        let auditor = app.login("auditor").await;
        let (_, page) = auditor.json(Method::GET, &format!("/api/v1/audit/records?object_id={id}"), None).await;
        let actions: Vec<&str> =
            page["items"].as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
        assert!(actions.contains(&"flow.message.buffer") && actions.contains(&"flow.message.withdraw"), "{page}");
    }
}

#[tokio::test]
async fn failed_jobs_retry_with_backoff_then_raise_an_incident_that_an_operator_resolves() {
    use axum::{Router, routing::post};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    for b in test_backends() {
        // A government system that fails twice, then answers.
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        let peer = Router::new().route(
            "/notify",
            post(move |body: String| {
                let c = c2.clone();
                async move {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    if n < 2 {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, String::new())
                    } else {
                        (axum::http::StatusCode::OK, format!("{{\"echo\":{body}}}"))
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, peer).await.unwrap() });

        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        let xml = format!(
            r#"<?xml version="1.0"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
            <bpmn:process id="notify" isExecutable="true"><bpmn:startEvent id="s"/>
            <bpmn:serviceTask id="call"><bpmn:extensionElements><zeebe:taskDefinition type="http" retries="3"/>
              <zeebe:taskHeaders><zeebe:header key="url" value="{url}"/><zeebe:header key="method" value="POST"/><zeebe:header key="body" value="{{&quot;case&quot;:&quot;${{caseNo}}&quot;}}"/></zeebe:taskHeaders>
            </bpmn:extensionElements></bpmn:serviceTask>
            <bpmn:serviceTask id="broken"><bpmn:extensionElements><zeebe:taskDefinition type="fail" retries="1"/></bpmn:extensionElements></bpmn:serviceTask>
            <bpmn:endEvent id="e"/>
            <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="call"/><bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="broken"/><bpmn:sequenceFlow id="f3" sourceRef="broken" targetRef="e"/>
            </bpmn:process></bpmn:definitions>"#
        );
        deploy(&admin, &xml, json!({})).await;
        let (_, inst) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "notify", "variables": {"caseNo": "JN-7"}})),
            )
            .await;
        let id = inst["id"].as_str().unwrap().to_string();
        assert_eq!(flow.run_due_jobs().await.unwrap(), 1);
        assert_eq!(flow.run_due_jobs().await.unwrap(), 0, "backing off");
        app.clock.advance_secs(1);
        assert_eq!(flow.run_due_jobs().await.unwrap(), 1);
        app.clock.advance_secs(1);
        assert_eq!(flow.run_due_jobs().await.unwrap(), 0, "second backoff is 2 s");
        app.clock.advance_secs(1);
        assert_eq!(flow.run_due_jobs().await.unwrap(), 1);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(d["variables"]["response"]["echo"]["case"], "JN-7", "{d}");
        // The 'fail' handler with one retry: an incident, listed and resolvable.
        let (_, incidents) = admin.json(Method::GET, "/api/v1/flow/incidents", None).await;
        assert_eq!(incidents["total"], 1, "{incidents}");
        let inc = incidents["items"][0].clone();
        assert_eq!(inc["element_id"], "broken");
        let (_, found) = admin.json(Method::GET, "/api/v1/flow/instances?status=incident", None).await;
        assert_eq!(found["total"], 1);
        let (s, body) = admin
            .json(
                Method::POST,
                &format!("/api/v1/flow/incidents/{}/resolve", inc["id"].as_str().unwrap()),
                Some(json!({"resolution": "skip"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (s, body) = admin
            .json(
                Method::POST,
                &format!("/api/v1/flow/incidents/{}/resolve", inc["id"].as_str().unwrap()),
                Some(json!({"resolution": "skip"})),
            )
            .await;
        assert_error(s, &body, 409, "conflict");
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(d["status"], "completed");
        // Staff cannot see incidents.
        let staff = app.login("dispatcher").await;
        let (s, body) = staff.json(Method::GET, "/api/v1/flow/incidents", None).await;
        assert_error(s, &body, 403, "forbidden");
    }
}

#[tokio::test]
async fn send_back_transfer_and_countersign_work_on_real_users() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        deploy(&admin, &conformance("approval"), json!({})).await;
        let starter = app.login("dispatcher").await;
        let (_, inst) = starter
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "approval", "variables": {"reviewers": ["cgj_handler"]}})),
            )
            .await;
        let id = inst["id"].as_str().unwrap().to_string();
        // The draft goes to the initiator.
        let draft = inbox(&starter).await.into_iter().find(|t| t["element_id"] == "draft").unwrap();
        let (s, _) = task_act(&starter, draft["id"].as_str().unwrap(), json!({"action": "complete"})).await;
        assert_eq!(s, StatusCode::OK);
        // Legal review: transferred from cgj_handler to gridworker.
        let h = app.login("cgj_handler").await;
        let legal = inbox(&h).await.into_iter().find(|t| t["element_id"] == "legal").unwrap();
        let legal_id = legal["id"].as_str().unwrap().to_string();
        let (s, _) = task_act(&h, &legal_id, json!({"action": "claim"})).await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = task_act(&h, &legal_id, json!({"action": "transfer", "to": "nobody"})).await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, t) =
            task_act(&h, &legal_id, json!({"action": "transfer", "to": "gridworker", "comment": "请协助"})).await;
        assert_eq!((s, t["assignee"].as_str()), (StatusCode::OK, Some("gridworker")));
        // The gridworker sends it back to the draft with a reason.
        let gw = app.login("gridworker").await;
        let (_, view) = gw.json(Method::GET, &format!("/api/v1/flow/tasks/{legal_id}"), None).await;
        assert!(view["send_back_targets"].as_array().unwrap().iter().any(|t| t["element_id"] == "draft"), "{view}");
        let (s, body) =
            task_act(&gw, &legal_id, json!({"action": "send_back", "to_element": "draft", "reason": ""})).await;
        assert_error(s, &body, 422, "validation_failed");
        let (s, _) =
            task_act(&gw, &legal_id, json!({"action": "send_back", "to_element": "draft", "reason": "材料不全"})).await;
        assert_eq!(s, StatusCode::OK);
        let back = inbox(&starter).await.into_iter().find(|t| t["element_id"] == "draft").expect("back at the draft");
        let (_, view) =
            starter.json(Method::GET, &format!("/api/v1/flow/tasks/{}", back["id"].as_str().unwrap()), None).await;
        assert_eq!(view["variables"]["sendBackReason"], "材料不全");
        // Urging is recorded on the task.
        let (s, t) =
            task_act(&admin, back["id"].as_str().unwrap(), json!({"action": "urge", "comment": "请尽快"})).await;
        assert_eq!((s, t["urge_count"].as_i64()), (StatusCode::OK, Some(1)));
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(d["status"], "active");
    }
}

#[tokio::test]
async fn timer_and_signal_start_events_start_instances_and_a_new_version_takes_over() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        let model = |cycle: &str| {
            format!(
                r#"<?xml version="1.0"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
                <bpmn:signal id="sg" name="flood"/>
                <bpmn:process id="daily" name="每日巡查" isExecutable="true">
                <bpmn:startEvent id="tick"><bpmn:timerEventDefinition><bpmn:timeCycle>{cycle}</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>
                <bpmn:startEvent id="alarm"><bpmn:signalEventDefinition signalRef="sg"/></bpmn:startEvent>
                <bpmn:userTask id="patrol" name="巡查"/><bpmn:endEvent id="e"/>
                <bpmn:sequenceFlow id="f1" sourceRef="tick" targetRef="patrol"/><bpmn:sequenceFlow id="f3" sourceRef="alarm" targetRef="patrol"/>
                <bpmn:sequenceFlow id="f2" sourceRef="patrol" targetRef="e"/></bpmn:process></bpmn:definitions>"#
            )
        };
        let (s, _) = admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": model("R2/PT1H")}))).await;
        assert_eq!(s, StatusCode::CREATED);
        assert_eq!(flow.fire_start_timers().await.unwrap(), 0);
        app.clock.advance_secs(3600);
        assert_eq!(flow.fire_start_timers().await.unwrap(), 1);
        app.clock.advance_secs(3600);
        assert_eq!(flow.fire_start_timers().await.unwrap(), 1);
        app.clock.advance_secs(3600);
        assert_eq!(flow.fire_start_timers().await.unwrap(), 0, "R2: two instances, then done");
        // A new version replaces the old one's start timers.
        let admin = app.login("flowadmin").await;
        let (s, d) = admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": model("R/PT30M")}))).await;
        assert_eq!((s, d["version"].as_i64()), (StatusCode::CREATED, Some(2)));
        app.clock.advance_secs(1800);
        assert_eq!(flow.fire_start_timers().await.unwrap(), 1);
        let admin = app.login("flowadmin").await; // half an hour idle ends a session
        // A signal starts one more.
        let (s, body) = admin.json(Method::POST, "/api/v1/flow/signals", Some(json!({"name": "flood"}))).await;
        assert_eq!((s, body["reached"].as_i64()), (StatusCode::OK, Some(1)));
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/instances?process_key=daily", None).await;
        assert_eq!(list["total"], 4);
        let versions: Vec<i64> =
            list["items"].as_array().unwrap().iter().map(|i| i["version"].as_i64().unwrap()).collect();
        assert_eq!(versions.iter().filter(|v| **v == 2).count(), 2);
        // Expressions are refused for timer start events (there is no instance to evaluate them in).
        let (s, body) =
            admin.json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": model("=cycle")}))).await;
        assert_error(s, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("tick"));
    }
}

#[tokio::test]
async fn cron_cycles_start_processes_on_working_mornings_and_repeat_a_reminder_every_hour() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        // The test clock starts on Wednesday 2026-11-18 at 19:06:40 Beijing time.
        let start_model = |cycle: &str| {
            format!(
                r#"<?xml version="1.0"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">
                <bpmn:process id="morning" name="早班交接" isExecutable="true">
                <bpmn:startEvent id="tick"><bpmn:timerEventDefinition><bpmn:timeCycle>{cycle}</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:startEvent>
                <bpmn:userTask id="handover" name="交接"/><bpmn:endEvent id="e"/>
                <bpmn:sequenceFlow id="f1" sourceRef="tick" targetRef="handover"/><bpmn:sequenceFlow id="f2" sourceRef="handover" targetRef="e"/>
                </bpmn:process></bpmn:definitions>"#
            )
        };
        // A cron expression that never matches is refused at deployment, naming the event.
        let (s, body) = admin
            .json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": start_model("0 0 25 * * *")})))
            .await;
        assert_error(s, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("tick"), "{body}");
        let (s, _) = admin
            .json(Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": start_model("0 0 9 * * MON-FRI")})))
            .await;
        assert_eq!(s, StatusCode::CREATED);
        // A task whose non-interrupting boundary timer reminds on the hour, every hour.
        let reminder = r#"<?xml version="1.0"?><bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d2">
            <bpmn:process id="hourly" name="整点提醒" isExecutable="true">
            <bpmn:startEvent id="s"/><bpmn:userTask id="work" name="办理"/><bpmn:endEvent id="e"/>
            <bpmn:boundaryEvent id="remind" attachedToRef="work" cancelActivity="false"><bpmn:timerEventDefinition><bpmn:timeCycle>0 0 * * * *</bpmn:timeCycle></bpmn:timerEventDefinition></bpmn:boundaryEvent>
            <bpmn:serviceTask id="nudge" name="催办"><bpmn:extensionElements><zeebe:taskDefinition type="noop"/></bpmn:extensionElements></bpmn:serviceTask>
            <bpmn:endEvent id="nudged"/>
            <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="work"/><bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="e"/>
            <bpmn:sequenceFlow id="f3" sourceRef="remind" targetRef="nudge"/><bpmn:sequenceFlow id="f4" sourceRef="nudge" targetRef="nudged"/>
            </bpmn:process></bpmn:definitions>"#;
        deploy(&admin, reminder, json!({})).await;
        let (s, inst) =
            admin.json(Method::POST, "/api/v1/flow/instances", Some(json!({"process_key": "hourly"}))).await;
        assert_eq!(s, StatusCode::CREATED, "{inst}");
        let id = inst["id"].as_str().unwrap().to_string();
        let due: i64 = sqlx::query_scalar("SELECT due_at FROM flow_timers WHERE instance_id = $1")
            .bind(&id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert_eq!(due, flow::timer::parse_date("2026-11-18T20:00:00+08:00").unwrap(), "on the hour");
        app.clock.advance_secs(3_199);
        assert_eq!(flow.fire_due_timers().await.unwrap(), 0);
        app.clock.advance_secs(1);
        assert_eq!(flow.fire_due_timers().await.unwrap(), 1, "20:00");
        app.clock.advance_secs(3_600);
        assert_eq!(flow.fire_due_timers().await.unwrap(), 1, "21:00");
        // Re-armed at the next occurrence, and the task is still open (non-interrupting).
        let due: i64 = sqlx::query_scalar("SELECT due_at FROM flow_timers WHERE instance_id = $1")
            .bind(&id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert_eq!(due, flow::timer::parse_date("2026-11-18T22:00:00+08:00").unwrap());
        let open: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_tasks WHERE instance_id = $1 AND state = 'open'")
            .bind(&id)
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert_eq!(open, 1);
        // Working mornings at nine: Thursday, Friday, then not at the weekend, then Monday.
        let started = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM flow_instances i JOIN flow_definitions d ON d.id = i.definition_id WHERE d.key = 'morning'",
            )
            .fetch_one(app.state.db.reader())
            .await
            .unwrap()
        };
        app.clock.advance_secs(12 * 3_600 - 1); // Thursday 08:59:59
        assert_eq!(flow.fire_start_timers().await.unwrap(), 0);
        app.clock.advance_secs(1);
        assert_eq!(flow.fire_start_timers().await.unwrap(), 1, "Thursday 09:00");
        for (day, expected) in [("Friday", 1), ("Saturday", 0), ("Sunday", 0), ("Monday", 1)] {
            app.clock.advance_secs(86_400);
            assert_eq!(flow.fire_start_timers().await.unwrap(), expected, "{day} 09:00");
        }
        assert_eq!(started().await, 3);
    }
}

#[tokio::test]
async fn a_waiting_instance_migrates_to_a_new_version_with_an_element_mapping() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        let v1 = APPROVAL.to_string();
        // Version 2 renames the HR step and adds a final archive task.
        let v2 = APPROVAL
            .replace(r#"id="hr" name="人事备案""#, r#"id="hr_record" name="人事备案""#)
            .replace(r#"sourceRef="fork" targetRef="hr""#, r#"sourceRef="fork" targetRef="hr_record""#)
            .replace(r#"sourceRef="hr" targetRef="join""#, r#"sourceRef="hr_record" targetRef="join""#);
        let d1 = deploy(&admin, &v1, opinion_form()).await;
        let mut others = Vec::new();
        for _ in 0..2 {
            let (_, other) = admin
                .json(
                    Method::POST,
                    "/api/v1/flow/instances",
                    Some(json!({"process_key": "leave", "variables": {"hr": "flowadmin"}})),
                )
                .await;
            others.push(other["id"].as_str().unwrap().to_string());
        }
        let (_, inst) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "leave", "variables": {"hr": "flowadmin"}})),
            )
            .await;
        let id = inst["id"].as_str().unwrap().to_string();
        let d2 = deploy(&admin, &v2, opinion_form()).await;
        assert_eq!(d2["version"], 2);
        // Without a mapping the renamed step has no counterpart: refused, nothing changed.
        let (s, body) = admin
            .json(Method::POST, &format!("/api/v1/flow/instances/{id}/migrate"), Some(json!({"version": 2})))
            .await;
        assert_error(s, &body, 422, "validation_failed");
        assert!(body["message"].as_str().unwrap().contains("'hr'"), "{body}");
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(d["version"], 1);
        // A mapping to a step of another kind is refused too.
        let (s, _) = admin
            .json(
                Method::POST,
                &format!("/api/v1/flow/instances/{id}/migrate"),
                Some(json!({"version": 2, "mapping": {"hr": "fork"}})),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        let (s, body) = admin
            .json(
                Method::POST,
                &format!("/api/v1/flow/instances/{id}/migrate"),
                Some(json!({"version": 2, "mapping": {"hr": "hr_record"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["version"], 2);
        // The HR task follows the new element id and completes on version 2.
        let hr = inbox(&admin).await.into_iter().find(|t| t["instance_id"] == id.as_str()).unwrap();
        assert_eq!(hr["element_id"], "hr_record");
        let (s, _) = task_act(&admin, hr["id"].as_str().unwrap(), json!({"action": "complete"})).await;
        assert_eq!(s, StatusCode::OK);
        let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(d["active_elements"], json!(["dept", "join"]));

        // The rest of version 1 in one go: without the mapping each is refused and stays; with it all move.
        let v1_id = d1["id"].as_str().unwrap();
        let (s, body) = admin
            .json(Method::POST, &format!("/api/v1/flow/definitions/{v1_id}/migrate"), Some(json!({"version": 2})))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!(body["migrated"], 0);
        assert_eq!(body["failed"].as_array().unwrap().len(), 2, "{body}");
        assert!(body["failed"][0]["message"].as_str().unwrap().contains("'hr'"), "{body}");
        let (s, body) = admin
            .json(
                Method::POST,
                &format!("/api/v1/flow/definitions/{v1_id}/migrate"),
                Some(json!({"version": 2, "mapping": {"hr": "hr_record"}})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert_eq!((body["migrated"].as_i64(), body["remaining"].as_i64()), (Some(2), Some(0)), "{body}");
        for o in &others {
            let (_, d) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{o}"), None).await;
            assert_eq!(d["version"], 2);
        }
        let (s, body) = admin
            .json(Method::POST, &format!("/api/v1/flow/definitions/{v1_id}/migrate"), Some(json!({"version": 1})))
            .await;
        assert_error(s, &body, 422, "validation_failed");
    }
}

#[tokio::test]
async fn two_engine_nodes_on_one_database_fire_each_timer_exactly_once() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let a = app.state.services.get::<flow::Flow>().unwrap().clone();
        // A second node: its own Flow service over the same database.
        let other = flow::Flow::new(
            app.state.db.clone(),
            app.state.identity.clone(),
            std::sync::Arc::new(app.clock.clone()),
            Default::default(),
        );
        let admin = app.login("flowadmin").await;
        deploy(&admin, &conformance("events"), json!({})).await;
        let def = other.definition_id("events", None).await.unwrap();
        let n = 300;
        let batch = (0..n)
            .map(|i| {
                (Some(format!("T-{i}")), serde_json::Map::from_iter([("orderId".to_string(), json!(format!("K{i}")))]))
            })
            .collect();
        a.start_batch(&def, batch).await.unwrap();
        app.clock.advance_secs(3601);
        let (x, y) = tokio::join!(
            async {
                let mut t = 0;
                loop {
                    let k = a.fire_due_timers().await.unwrap();
                    if k == 0 {
                        return t;
                    }
                    t += k;
                }
            },
            async {
                let mut t = 0;
                loop {
                    let k = other.fire_due_timers().await.unwrap();
                    if k == 0 {
                        return t;
                    }
                    t += k;
                }
            }
        );
        assert_eq!(x + y, n, "every timer fired once across the two nodes ({x} + {y})");
        let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_instances WHERE status = 'completed'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        let histories: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM flow_history").fetch_one(app.state.db.reader()).await.unwrap();
        assert_eq!(done as usize, n);
        assert_eq!(histories as usize, 2 * n, "one history row for the start, one for the timer");
    }
}

/// Two timers per instance (one and two hours) and a message, 700 instances: the due timers
/// span three batches, so the engine reads batches ahead while it fires the one before (SQLite),
/// the second batch holds instances the first changed, and messages change instances between
/// the reading and the firing. Every timer fires exactly once, every instance completes.
#[tokio::test]
async fn a_backlog_of_due_timers_larger_than_a_batch_fires_each_timer_once_while_instances_change() {
    const MODEL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d" targetNamespace="https://zhongshu.dev/tests">
  <bpmn:message id="m_report" name="report"><bpmn:extensionElements><zeebe:subscription correlationKey="=caseNo"/></bpmn:extensionElements></bpmn:message>
  <bpmn:process id="inspection" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:parallelGateway id="fork"/>
    <bpmn:intermediateCatchEvent id="first_check"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1H</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="second_check"><bpmn:timerEventDefinition><bpmn:timeDuration>PT2H</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:intermediateCatchEvent id="report"><bpmn:messageEventDefinition messageRef="m_report"/></bpmn:intermediateCatchEvent>
    <bpmn:parallelGateway id="join"/>
    <bpmn:endEvent id="end"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="fork"/>
    <bpmn:sequenceFlow id="f2" sourceRef="fork" targetRef="first_check"/>
    <bpmn:sequenceFlow id="f3" sourceRef="fork" targetRef="second_check"/>
    <bpmn:sequenceFlow id="f4" sourceRef="fork" targetRef="report"/>
    <bpmn:sequenceFlow id="f5" sourceRef="first_check" targetRef="join"/>
    <bpmn:sequenceFlow id="f6" sourceRef="second_check" targetRef="join"/>
    <bpmn:sequenceFlow id="f7" sourceRef="report" targetRef="join"/>
    <bpmn:sequenceFlow id="f8" sourceRef="join" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>"#;
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        deploy(&admin, MODEL, json!({})).await;
        let def = flow.definition_id("inspection", None).await.unwrap();
        let n = 700;
        let batch = (0..n)
            .map(|i| (None, serde_json::Map::from_iter([("caseNo".to_string(), json!(format!("XJ-{i:04}")))])))
            .collect();
        let ids = flow.start_batch(&def, batch).await.unwrap();
        app.clock.advance_secs(2 * 3600 + 1);
        let admin = app.login("flowadmin").await; // the first session is idle too long by now
        let (fired, ()) = tokio::join!(
            async {
                let mut total = 0;
                loop {
                    let k = flow.fire_due_timers().await.unwrap();
                    if k == 0 {
                        return total;
                    }
                    total += k;
                }
            },
            async {
                // Every seventh instance gets its report while the timers fire.
                for i in (0..n).step_by(7) {
                    let (s, body) = admin
                        .json(
                            Method::POST,
                            "/api/v1/flow/messages",
                            Some(json!({"name": "report", "correlation_key": format!("XJ-{i:04}")})),
                        )
                        .await;
                    assert_eq!(s, StatusCode::OK, "{body}");
                }
            }
        );
        assert_eq!(fired, 2 * n, "every timer fired once");
        let left: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM flow_timers").fetch_one(app.state.db.reader()).await.unwrap();
        assert_eq!(left, 0);
        for i in (0..n).filter(|i| i % 7 != 0) {
            let (s, body) = admin
                .json(
                    Method::POST,
                    "/api/v1/flow/messages",
                    Some(json!({"name": "report", "correlation_key": format!("XJ-{i:04}")})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }
        let completed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_instances WHERE status = 'completed'")
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert_eq!(completed as usize, n, "every instance completed");
        // Each timer and the message completed once per instance in the history.
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT instance_id, events FROM flow_history")
            .fetch_all(app.state.db.reader())
            .await
            .unwrap();
        let mut seen = std::collections::HashMap::<(String, String), usize>::new();
        for (instance, events) in rows {
            for e in serde_json::from_str::<Vec<Value>>(&events).unwrap() {
                if e["k"] == "completed"
                    && let Some(el @ ("first_check" | "second_check" | "report")) = e["e"].as_str()
                {
                    *seen.entry((instance.clone(), el.to_string())).or_default() += 1;
                }
            }
        }
        for id in &ids {
            for el in ["first_check", "second_check", "report"] {
                assert_eq!(seen.get(&(id.clone(), el.to_string())), Some(&1), "{id} {el}");
            }
        }
        if b != store::Backend::Sqlite {
            continue;
        }
        // What the read-ahead checks, step by step: a batch whose instance changed after the
        // reading, or whose timers fired meanwhile, writes nothing.
        let ids = flow
            .start_batch(
                &def,
                (0..3)
                    .map(|i| (None, serde_json::Map::from_iter([("caseNo".to_string(), json!(format!("FC-{i}")))])))
                    .collect(),
            )
            .await
            .unwrap();
        app.clock.advance_secs(3601);
        let admin = app.login("flowadmin").await;
        let revs = || async {
            let mut r: Vec<(String, i64)> =
                sqlx::query_as("SELECT id, rev FROM flow_instances").fetch_all(app.state.db.reader()).await.unwrap();
            r.retain(|(id, _)| ids.contains(id));
            r.sort();
            r
        };
        let timers = || async {
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM flow_timers")
                .fetch_one(app.state.db.reader())
                .await
                .unwrap()
        };
        let read = flow.read_due_timers(None, "[]").await.unwrap();
        let (s, body) = admin
            .json(Method::POST, "/api/v1/flow/messages", Some(json!({"name": "report", "correlation_key": "FC-1"})))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (before, pending) = (revs().await, timers().await);
        assert_eq!(pending, 6, "two timers for each of the three");
        assert_eq!(flow.fire_read_timers(read).await.unwrap(), None, "FC-1 changed after the reading");
        assert_eq!((revs().await, timers().await), (before, pending), "nothing written");
        let read = flow.read_due_timers(None, "[]").await.unwrap();
        assert_eq!(flow.fire_due_timers().await.unwrap(), 3, "the first checks, claimed in the write");
        let (after, pending) = (revs().await, timers().await);
        assert_eq!(pending, 3);
        assert_eq!(flow.fire_read_timers(read).await.unwrap(), None, "its timers fired meanwhile");
        assert_eq!((revs().await, timers().await), (after, pending), "nothing written");
    }
}

#[tokio::test]
async fn ended_instances_past_the_retention_period_are_removed_with_their_history() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let flow = app.state.services.get::<flow::Flow>().unwrap().clone();
        let admin = app.login("flowadmin").await;
        deploy(&admin, &conformance("reference"), json!({})).await;
        deploy(&admin, APPROVAL, opinion_form()).await;
        let (_, done) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "reference", "variables": {"amount": 1}})),
            )
            .await;
        let (_, running) = admin
            .json(
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "leave", "variables": {"hr": "flowadmin"}})),
            )
            .await;
        app.clock.advance_secs(364 * 86_400);
        assert_eq!(flow.cleanup_history().await.unwrap(), 0, "kept within the 365 days");
        app.clock.advance_secs(2 * 86_400);
        assert_eq!(flow.cleanup_history().await.unwrap(), 1);
        let left: Vec<String> =
            sqlx::query_scalar("SELECT id FROM flow_instances").fetch_all(app.state.db.reader()).await.unwrap();
        assert_eq!(left, vec![running["id"].as_str().unwrap().to_string()], "running instances stay however old");
        let orphans: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_history WHERE instance_id = $1")
            .bind(done["id"].as_str().unwrap())
            .fetch_one(app.state.db.reader())
            .await
            .unwrap();
        assert_eq!(orphans, 0);
    }
}

#[tokio::test]
async fn bad_workflow_input_gets_a_clear_error_and_changes_nothing() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        deploy(&admin, APPROVAL, opinion_form()).await;
        let cases: Vec<(Method, &str, Option<Value>, u16, &str)> = vec![
            (Method::POST, "/api/v1/flow/instances", Some(json!({"process_key": "nope"})), 404, "not_found"),
            (
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "leave", "version": 9})),
                404,
                "not_found",
            ),
            (
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "leave", "variables": {"bad name": 1}})),
                422,
                "validation_failed",
            ),
            (
                Method::POST,
                "/api/v1/flow/instances",
                Some(json!({"process_key": "leave", "business_key": ""})),
                422,
                "validation_failed",
            ),
            (Method::POST, "/api/v1/flow/instances", Some(json!({"process_key": 5})), 400, "invalid_json"),
            (Method::GET, "/api/v1/flow/instances?status=sleeping", None, 400, "invalid_query"),
            (Method::GET, "/api/v1/flow/tasks?view=everything", None, 400, "invalid_query"),
            (Method::GET, "/api/v1/flow/tasks?flag=purple", None, 400, "invalid_query"),
            (Method::GET, "/api/v1/flow/incidents?state=maybe", None, 400, "invalid_query"),
            (
                Method::POST,
                "/api/v1/flow/tasks/01a1fee8-fd7b-706c-8646-c70b34f740d4",
                Some(json!({"action": "complete"})),
                404,
                "not_found",
            ),
            (Method::POST, "/api/v1/flow/tasks/x", Some(json!({"action": "fly"})), 400, "invalid_json"),
            (Method::POST, "/api/v1/flow/definitions", Some(json!({"xml": ""})), 422, "validation_failed"),
            (Method::POST, "/api/v1/flow/signals", Some(json!({"name": " "})), 422, "validation_failed"),
            (
                Method::POST,
                "/api/v1/flow/incidents/x/resolve",
                Some(json!({"resolution": "ignore"})),
                400,
                "invalid_json",
            ),
            (Method::POST, "/api/v1/flow/instances/x/migrate", Some(json!({"version": 2})), 404, "not_found"),
        ];
        for (method, path, body, status, code) in cases {
            let (s, b) = admin.json(method.clone(), path, body).await;
            assert_error(s, &b, status, code);
        }
        let (_, list) = admin.json(Method::GET, "/api/v1/flow/instances", None).await;
        assert_eq!(list["total"], 0, "nothing was started by the refused requests");
        let (_, defs) = admin.json(Method::GET, "/api/v1/flow/definitions", None).await;
        assert_eq!(own_definitions(&defs), 1);
    }
}

/// Runs `calls` at the same time; answers their (status, body) in order.
async fn at_once(calls: Vec<(Session, String, Value)>) -> Vec<(StatusCode, Value)> {
    let handles: Vec<_> = calls
        .into_iter()
        .map(|(s, path, body)| tokio::spawn(async move { s.json(Method::POST, &path, Some(body)).await }))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_and_completions_sent_together_are_each_answered_and_attributed_on_their_own() {
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        deploy(&admin, APPROVAL, opinion_form()).await;
        let starter = app.login("dispatcher").await;
        // 24 starts at once: each its own instance, business key and audit record.
        let starts = (0..24)
            .map(|i| {
                let body = json!({"process_key": "leave", "business_key": format!("QJ-B-{i:02}"), "variables": {"hr": "flowadmin"}});
                (starter.clone(), "/api/v1/flow/instances".to_string(), body)
            })
            .collect();
        let mut ids = Vec::new();
        for (i, (s, inst)) in at_once(starts).await.into_iter().enumerate() {
            assert_eq!(s, StatusCode::CREATED, "{inst}");
            assert_eq!(inst["business_key"], format!("QJ-B-{i:02}"));
            assert_eq!((inst["status"].as_str(), inst["started_by"].as_str()), (Some("active"), Some("dispatcher")));
            ids.push(inst["id"].as_str().unwrap().to_string());
        }
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 24);
        let audited = |action: &'static str| {
            let db = app.state.db.clone();
            async move {
                audit::search(
                    &db,
                    &audit::AuditFilter { action: Some(action.into()), ..Default::default() },
                    Default::default(),
                )
                .await
                .unwrap()
                .total
            }
        };
        assert_eq!(audited("flow.instance.start").await, 24);

        // The department task of each is claimed by the handler; HR's is flowadmin's.
        let handler = app.login("cgj_handler").await;
        let open = |s: Session, element: &'static str| async move {
            let (st, body) = s.json(Method::GET, "/api/v1/flow/tasks?process_key=leave&page_size=100", None).await;
            assert_eq!(st, StatusCode::OK, "{body}");
            let mut by_key = std::collections::HashMap::new();
            for t in body["items"].as_array().unwrap().iter().filter(|t| t["element_id"] == element) {
                by_key.insert(t["business_key"].as_str().unwrap().to_string(), t["id"].as_str().unwrap().to_string());
            }
            by_key
        };
        let (dept, hr) = (open(handler.clone(), "dept").await, open(admin.clone(), "hr").await);
        assert_eq!((dept.len(), hr.len()), (24, 24));
        for id in dept.values() {
            let (s, body) = task_act(&handler, id, json!({"action": "claim"})).await;
            assert_eq!(s, StatusCode::OK, "{body}");
        }

        // Both tasks of every instance completed at once by their two people; every sixth
        // department opinion does not fit the form, and HR's first task is completed twice.
        let mut calls = Vec::new();
        for i in 0..24 {
            let bk = format!("QJ-B-{i:02}");
            let decision = if i % 6 == 0 { "maybe" } else { "agree" };
            let path = |id: &String| format!("/api/v1/flow/tasks/{id}");
            calls.push((
                handler.clone(),
                path(&dept[&bk]),
                json!({"action": "complete", "variables": {"decision": decision}}),
            ));
            calls.push((admin.clone(), path(&hr[&bk]), json!({"action": "complete"})));
        }
        calls.push((admin.clone(), format!("/api/v1/flow/tasks/{}", hr["QJ-B-00"]), json!({"action": "complete"})));
        let answers = at_once(calls).await;
        for i in 0..24 {
            let (s, body) = &answers[2 * i];
            if i % 6 == 0 {
                assert_error(*s, body, 422, "validation_failed");
            } else {
                assert_eq!(*s, StatusCode::OK, "{body}");
                assert_eq!(
                    (body["state"].as_str(), body["completed_by"].as_str()),
                    (Some("completed"), Some("cgj_handler"))
                );
            }
        }
        let hr0 = [&answers[1], &answers[48]];
        let oks = hr0.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!(oks, 1, "one of the two completions of the same task wins: {hr0:?}");
        let lost = hr0.iter().find(|(s, _)| *s != StatusCode::OK).unwrap();
        assert_error(lost.0, &lost.1, 409, "conflict");
        for i in 1..24 {
            assert_eq!(answers[2 * i + 1].0, StatusCode::OK, "{}", answers[2 * i + 1].1);
        }
        assert_eq!(audited("flow.task.complete").await, 24 + 20);

        // Each instance ended (or waits for its department) with every step named after its actor.
        for (i, id) in ids.iter().enumerate() {
            let (_, detail) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
            let timeline = detail["timeline"].as_array().unwrap();
            let by = |el: &str| timeline.iter().find(|t| t["element_id"] == el).map(|t| t["ended_by"].clone());
            assert_eq!(by("hr"), Some(json!("flowadmin")), "{detail}");
            if i % 6 == 0 {
                assert_eq!(detail["status"], "active");
                assert_eq!(detail["active_elements"], json!(["dept", "join"]));
            } else {
                assert_eq!(detail["status"], "completed", "{detail}");
                assert_eq!(by("dept"), Some(json!("cgj_handler")), "{detail}");
            }
        }
    }
}

/// The stored state goes through the database's JSON functions when instances are loaded in
/// bulk: every kind of value comes back exactly (floats to the last digit, integers beyond
/// 2^53, escapes, non-ASCII text, nesting).
#[tokio::test]
async fn variables_keep_every_value_exactly_through_the_stored_state() {
    const ONE_STEP: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d1">
  <bpmn:process id="exact" isExecutable="true">
    <bpmn:startEvent id="s"/>
    <bpmn:userTask id="t"><bpmn:extensionElements><zeebe:assignmentDefinition assignee="=who"/></bpmn:extensionElements></bpmn:userTask>
    <bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/><bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>
  </bpmn:process>
</bpmn:definitions>"#;
    for b in test_backends() {
        let app = TestApp::start(b).await;
        let admin = app.login("flowadmin").await;
        deploy(&admin, ONE_STEP, json!({})).await;
        let vars = json!({"who": "flowadmin", "ratio": 0.30000000000000004, "big": 12345678901234567u64, "tiny": -1e-7,
            "huge": 1.7976931348623157e308, "text": "中文\n\"引号\"\\\u{1}", "nested": {"a": [1, 2.5, null, true, {"b": []}]}});
        let id = start_process(&admin, json!({"process_key": "exact", "variables": vars})).await;
        let task = inbox(&admin).await.into_iter().find(|t| t["instance_id"] == id.as_str()).expect("task");
        let (s, body) = task_act(&admin, task["id"].as_str().unwrap(), json!({"action": "complete"})).await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let (_, detail) = admin.json(Method::GET, &format!("/api/v1/flow/instances/{id}"), None).await;
        assert_eq!(detail["status"], "completed", "{detail}");
        for (k, v) in vars.as_object().unwrap() {
            assert_eq!(&detail["variables"][k], v, "{k}");
        }
    }
}
