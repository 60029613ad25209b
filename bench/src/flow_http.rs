//! A process with one user task, run through the HTTP API: start the instance, find the task,
//! complete it — one complete cycle is three requests. Several clients run cycles in parallel
//! against a running `zhongshu` (bench/run starts the demo with the rate limit raised).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MODEL: &str = r#"<?xml version="1.0"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" id="d">
  <bpmn:process id="bench_http" name="接口压测" isExecutable="true">
    <bpmn:startEvent id="s"/>
    <bpmn:userTask id="t" name="办理"><bpmn:extensionElements><zeebe:assignmentDefinition assignee="=initiator"/></bpmn:extensionElements></bpmn:userTask>
    <bpmn:endEvent id="e"/>
    <bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="t"/><bpmn:sequenceFlow id="f2" sourceRef="t" targetRef="e"/>
  </bpmn:process>
</bpmn:definitions>"#;

async fn login(base: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder().cookie_store(true).pool_max_idle_per_host(64).build().unwrap();
    let r: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "flowadmin", "password": "Jinan@2026"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (http, r["csrf_token"].as_str().expect("login").to_string())
}

pub async fn run(base: &str, secs: u64, clients: usize) {
    let (http, csrf) = login(base).await;
    let r = http
        .post(format!("{base}/api/v1/flow/definitions"))
        .header("x-csrf-token", &csrf)
        .json(&json!({"xml": MODEL}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "deploy: {}", r.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut handles = Vec::new();
    for c in 0..clients {
        let (http, csrf, base) = (http.clone(), csrf.clone(), base.to_string());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let bk = format!("H{c}-{i}");
                i += 1;
                let r = http
                    .post(format!("{base}/api/v1/flow/instances"))
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"process_key": "bench_http", "business_key": bk}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let tasks: Value = http
                    .get(format!("{base}/api/v1/flow/tasks?business_key={bk}"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let id = tasks["items"][0]["id"].as_str().expect("task").to_string();
                let r = http
                    .post(format!("{base}/api/v1/flow/tasks/{id}"))
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"action": "complete"}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    lat.sort();
    let n = lat.len();
    let p99 = lat[(n * 99 / 100).min(n - 1)];
    println!(
        "flow over HTTP: {n} start+find+complete cycles with {clients} clients in {secs} s = {:.0} cycles/s, p99 cycle {:.1} ms (target >= 1000 cycles/s)",
        n as f64 / secs as f64,
        p99.as_secs_f64() * 1000.0
    );
}
