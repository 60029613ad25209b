//! Killing the server at any moment loses no acknowledged change and never breaks the audit chain.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::PASSWORD;

const BIN: &str = env!("CARGO_BIN_EXE_zhongshu");

/// Starts the binary and waits for its "listening on" line.
async fn start(args: &[&str], dir: &std::path::Path) -> (Child, String) {
    let (child, base, _) = start_capturing(args, dir).await;
    (child, base)
}

/// Like [`start`], also answering the lines printed before "listening on".
async fn start_capturing(args: &[&str], dir: &std::path::Path) -> (Child, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", "127.0.0.1:0"])
        .env("ZHONGSHU_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start zhongshu");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut before = Vec::new();
    let base = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
            before.push(line);
        }
        panic!("zhongshu exited before listening")
    })
    .await
    .expect("zhongshu listens within a minute");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, base, before)
}

/// Logs in with the demo password; answers the client and its CSRF token.
async fn login(base: &str, username: &str) -> (reqwest::Client, String) {
    let (http, r) = login_with(base, username, PASSWORD).await;
    (http, r["csrf_token"].as_str().unwrap().to_string())
}

/// Logs in with `password`; answers the client (with its cookie) and the login answer.
async fn login_with(base: &str, username: &str, password: &str) -> (reqwest::Client, Value) {
    let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let r: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (http, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_every_acknowledged_change_and_an_intact_audit_chain() {
    let dir = store::testing::TempDir::new();
    let data = dir.0.join("city");
    let (mut server, base) = start(&["demo"], &data).await;
    let (http, csrf) = login(&base, "lixia_admin").await;
    let street: Value = http.get(format!("{base}/api/v1/orgs")).send().await.unwrap().json().await.unwrap();
    let street_id = street.as_array().unwrap().iter().find(|o| o["code"] == "370102005").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Four writers create users until the server dies under them.
    let mut writers = Vec::new();
    for w in 0..4 {
        let (http, csrf, base, street_id) = (http.clone(), csrf.clone(), base.clone(), street_id.clone());
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..10_000 {
                let username = format!("crash_{w}_{i}");
                let r = http
                    .post(format!("{base}/api/v1/users"))
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"username": username, "display_name": "压测", "primary_org_id": street_id}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => acknowledged.push(username),
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() >= 10, "some writes were acknowledged before the kill ({})", acknowledged.len());

    // Restart on the same data (serve, not demo, which would start afresh).
    let (mut server, base) = start(&["serve"], &data).await;
    let (http, _) = login(&base, "lixia_admin").await;
    let page: Value = http
        .get(format!("{base}/api/v1/users?q=crash_&page_size=200&org_id={street_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let present = page["total"].as_u64().unwrap() as usize;
    assert!(present >= acknowledged.len(), "acknowledged {} users, found {present}", acknowledged.len());
    for name in acknowledged.iter().step_by(7) {
        let r: Value = http.get(format!("{base}/api/v1/users?q={name}")).send().await.unwrap().json().await.unwrap();
        let found = r["items"].as_array().unwrap().iter().any(|u| u["username"] == name.as_str());
        assert!(found, "{name} was acknowledged and must survive");
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    // The chain verifies, every record written before the kill included.
    let out = std::process::Command::new(BIN).args(["audit", "verify", "--data-dir"]).arg(&data).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "audit verify failed: {text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("audit chain intact"), "{text}");
}

fn cli(args: &[&str], dir: &std::path::Path) -> (bool, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("ZHONGSHU_LOG", "warn")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_round_trip_through_the_command_line() {
    let dir = store::testing::TempDir::new();
    let data = dir.0.join("city");
    let (mut server, _) = start(&["demo"], &data).await;
    let backup = dir.0.join("backup.db");
    // An online backup while the server runs.
    let (ok, out) = cli(&["backup", backup.to_str().unwrap()], &data);
    assert!(ok, "{out}");
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let (ok, out) = cli(
        &["user", "create", "--username", "after_backup", "--name", "备份后", "--org", "370102", "--role", "staff"],
        &data,
    );
    assert!(ok && out.contains("one-time password"), "{out}");
    let (ok, out) = cli(&["user", "reset-password", "after_backup"], &data);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["restore", backup.to_str().unwrap()], &data);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["user", "unlock", "after_backup"], &data);
    assert!(!ok && out.contains("no user named after_backup"), "the restore brought back the earlier state: {out}");
    let (ok, out) = cli(&["audit", "verify"], &data);
    assert!(ok && out.contains("audit chain intact"), "{out}");
    let (ok, out) = cli(&["restore", data.join("keys.txt").to_str().unwrap()], &data);
    assert!(!ok, "a file that is not a backup is refused: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_install_creates_the_three_administrators_with_one_time_passwords() {
    let dir = store::testing::TempDir::new();
    let data = dir.0.join("fresh");
    let (mut child, base, printed) = start_capturing(&["serve"], &data).await;
    let mut passwords = std::collections::HashMap::new();
    for line in &printed {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [user @ ("sysadmin" | "secadmin" | "auditor"), _, pw] = words[..] {
            passwords.insert(user.to_string(), pw.to_string());
        }
    }
    assert_eq!(passwords.len(), 3, "{passwords:?}");
    assert!(data.join("keys.txt").exists(), "a key file was generated");
    for (user, pw) in &passwords {
        let (_, r) = login_with(&base, user, pw).await;
        assert_eq!(r["stage"], "change_password", "{user}: one-time password first, then two-factor enrolment");
    }
    // No well-known default password works.
    let http = reqwest::Client::new();
    for pw in ["admin", "Admin@123", "sysadmin", PASSWORD] {
        let r = http
            .post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": "sysadmin", "password": pw}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    child.start_kill().unwrap();
    // A second start does not create anything again.
    let (mut again, _) = start(&["serve"], &data).await;
    again.start_kill().unwrap();
}

const CRASH_MODEL: &str = r#"<?xml version="1.0"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="crash" isExecutable="true">
    <bpmn:startEvent id="s"/>
    <bpmn:userTask id="a"><bpmn:extensionElements><zeebe:assignmentDefinition assignee="flowadmin"/></bpmn:extensionElements></bpmn:userTask>
    <bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition><bpmn:timeDuration>PT1S</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>
    <bpmn:userTask id="b"><bpmn:extensionElements><zeebe:assignmentDefinition assignee="flowadmin"/></bpmn:extensionElements></bpmn:userTask>
    <bpmn:boundaryEvent id="late" attachedToRef="b"><bpmn:timerEventDefinition><bpmn:timeDuration>P1D</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>
    <bpmn:endEvent id="e"/><bpmn:endEvent id="e2"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="a"/><bpmn:sequenceFlow id="f2" sourceRef="a" targetRef="wait"/>
    <bpmn:sequenceFlow id="f3" sourceRef="wait" targetRef="b"/><bpmn:sequenceFlow id="f4" sourceRef="b" targetRef="e"/>
    <bpmn:sequenceFlow id="f5" sourceRef="late" targetRef="e2"/>
  </bpmn:process>
</bpmn:definitions>"#;

/// Every item of a paged list endpoint.
async fn all_items(http: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for page in 1.. {
        let sep = if url.contains('?') { '&' } else { '?' };
        let r: Value =
            http.get(format!("{url}{sep}page={page}&page_size=200")).send().await.unwrap().json().await.unwrap();
        let items = r["items"].as_array().unwrap().clone();
        let done = items.len() < 200;
        out.extend(items);
        if done {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_engine_resumes_every_instance_exactly_once_with_tasks_and_timers_intact() {
    let dir = store::testing::TempDir::new();
    let data = dir.0.join("city");
    let (mut server, base) = start(&["demo"], &data).await;
    let (http, csrf) = login(&base, "flowadmin").await;
    let r = http
        .post(format!("{base}/api/v1/flow/definitions"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"xml": CRASH_MODEL}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    // Two drivers start instances and complete their first task until the server dies.
    let mut drivers = Vec::new();
    for w in 0..2 {
        let (http, csrf, base) = (http.clone(), csrf.clone(), base.clone());
        drivers.push(tokio::spawn(async move {
            let (mut started, mut advanced) = (Vec::new(), Vec::new());
            for i in 0..100_000 {
                let bk = format!("C{w}-{i}");
                let r = http
                    .post(format!("{base}/api/v1/flow/instances"))
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"process_key": "crash", "business_key": bk}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::CREATED => started.push(bk.clone()),
                    _ => break,
                }
                if i % 2 == 0 {
                    continue; // half stay at the first task
                }
                let tasks: Value = match http.get(format!("{base}/api/v1/flow/tasks?business_key={bk}")).send().await {
                    Ok(r) => match r.json().await {
                        Ok(v) => v,
                        Err(_) => break,
                    },
                    Err(_) => break,
                };
                let Some(id) = tasks["items"][0]["id"].as_str() else { break };
                let r = http
                    .post(format!("{base}/api/v1/flow/tasks/{id}"))
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"action": "complete"}))
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == StatusCode::OK => advanced.push(bk),
                    _ => break,
                }
            }
            (started, advanced)
        }));
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let (mut started, mut advanced) = (Vec::new(), Vec::new());
    for d in drivers {
        let (s, a) = d.await.unwrap();
        started.extend(s);
        advanced.extend(a);
    }
    assert!(
        started.len() >= 10 && !advanced.is_empty(),
        "work was acknowledged before the kill: {} / {}",
        started.len(),
        advanced.len()
    );

    // Restart; the 1-second timers of advanced instances fire after the restart.
    let (mut server, base) = start(&["serve"], &data).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (http, _) = login(&base, "flowadmin").await;
    let instances = all_items(&http, &format!("{base}/api/v1/flow/instances?process_key=crash")).await;
    let tasks = all_items(&http, &format!("{base}/api/v1/flow/tasks?view=all&process_key=crash")).await;
    let by_key: std::collections::HashMap<String, &Value> =
        instances.iter().map(|i| (i["business_key"].as_str().unwrap().to_string(), i)).collect();
    for bk in &started {
        assert!(by_key.contains_key(bk), "acknowledged start of {bk} survived");
    }
    // Every instance is at exactly one place: one open task (a or b), or waiting on its timer.
    for (bk, inst) in &by_key {
        assert_eq!(inst["status"], "active", "{bk}");
        assert_eq!(inst["incidents"], 0, "{bk}");
        let open: Vec<&Value> =
            tasks.iter().filter(|t| t["business_key"] == bk.as_str() && t["state"] == "open").collect();
        assert!(open.len() <= 1, "{bk} has {} open tasks: {open:?}", open.len());
        if advanced.contains(bk) {
            assert_eq!(open.len(), 1, "{bk}: advanced and its timer fired after the restart");
            assert_eq!(open[0]["element_id"], "b", "{bk}");
            let done_a = tasks
                .iter()
                .filter(|t| t["business_key"] == bk.as_str() && t["element_id"] == "a" && t["state"] == "completed")
                .count();
            assert_eq!(done_a, 1, "{bk}: the first task completed exactly once");
        } else if open.len() == 1 {
            // Not acknowledged as advanced: still at a, or advanced just before the kill.
            assert!(open[0]["element_id"] == "a" || open[0]["element_id"] == "b", "{bk}");
        } else {
            panic!("{bk} lost its token: no open task");
        }
    }
    // Instances waiting at b still have their one-day boundary timer.
    let id = by_key[&advanced[0]]["id"].as_str().unwrap();
    let d: Value = http.get(format!("{base}/api/v1/flow/instances/{id}")).send().await.unwrap().json().await.unwrap();
    let mut active =
        d["active_elements"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect::<Vec<_>>();
    active.sort();
    assert_eq!(active, ["b", "late"], "the task and its boundary timer");
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    let out = std::process::Command::new(BIN).args(["audit", "verify", "--data-dir"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "audit verify: {}", String::from_utf8_lossy(&out.stdout));
}
