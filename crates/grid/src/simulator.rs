//! A third-party platform simulator (数字城管 / 综治 / 12345 stand-in): a small HTTP server that
//! speaks a platform's dialect (a [`Mapping`]), checks our signatures, acknowledges dispatches
//! with its own ticket numbers (deduplicating on the idempotency key, as a real platform must),
//! calls back with acceptance, results and verification feedback, sends events of its own and
//! answers reconciliation queries. It can be slow, down, fail every n-th request, answer
//! garbage, lose its answers after acting on a request, and call back twice — so the tests, the
//! demo and the benchmark see what production will.
//!
//! Listens where it is told (tests and the demo use `127.0.0.1:0`); `/sim/*` shows and changes
//! its behaviour.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kernel::Clock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::platforms::{Mapping, alg_of, as_text, lookup};

/// Where the simulator calls back: our server and the platform's connected application there.
#[derive(Debug, Clone)]
pub struct CallbackTarget {
    /// Our server's base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// The platform's code at our side (the callback path names it).
    pub platform_code: String,
    pub app_id: String,
    pub secret: String,
    pub sign_alg: String,
}

/// How the simulated platform behaves.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Mode {
    /// Wait this long before answering anything.
    pub delay_ms: u64,
    /// Answer 503 to everything (an outage).
    pub down: bool,
    /// Answer 500 to every n-th request (0: never).
    pub fail_every: u64,
    /// Answer 200 with an HTML page instead of the acknowledgement.
    pub garbage: bool,
    /// Act on requests but never answer (the acknowledgement is lost on the way back).
    pub lose_answers: bool,
    /// Send every callback twice.
    pub answer_twice: bool,
    /// Accept dispatches, then call back "accepted" after this long (0: do not).
    pub accept_after_ms: u64,
    /// Call back "handled" this long after a dispatch (0: do not).
    pub handle_after_ms: u64,
    /// Call back "verified" (passed) this long after we report one of its own events handled (0: do not).
    pub verify_after_ms: u64,
}

/// What the simulated platform has seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    pub requests: u64,
    /// Distinct dispatches received.
    pub received: u64,
    /// Dispatches received again under a key already seen (answered with the same ticket).
    pub duplicates: u64,
    pub status_reports: u64,
    pub queries: u64,
    /// Requests refused on purpose (down, fail_every).
    pub refused: u64,
    pub bad_signatures: u64,
    pub callbacks_sent: u64,
    pub callbacks_failed: u64,
    pub events_sent: u64,
}

/// A dispatch the platform holds.
#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub ticket_no: String,
    pub dispatch_id: String,
    pub case_no: Option<String>,
    /// received, accepted, handled, returned
    pub state: String,
    pub note: Option<String>,
    pub times_received: u64,
    /// The dispatch as received, in the platform's words.
    pub body: Value,
}

/// The simulator's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    /// Prefix of its ticket numbers, e.g. `SZCG`.
    pub ticket_prefix: String,
    /// The key and secret we sign with at this platform.
    pub key: String,
    pub secret: String,
    pub sign_alg: String,
    /// The platform's dialect.
    pub mapping: Mapping,
    pub callback: Option<CallbackTarget>,
    pub mode: Mode,
}

struct Sim {
    cfg: Config,
    clock: Arc<dyn Clock>,
    mode: Mutex<Mode>,
    stats: Mutex<Stats>,
    tickets: Mutex<HashMap<String, Ticket>>,
    status: Mutex<Vec<Value>>,
    nonces: Mutex<HashSet<String>>,
    counter: AtomicU64,
    http: reqwest::Client,
}

/// A running simulator.
pub struct Simulator {
    addr: SocketAddr,
    sim: Arc<Sim>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

type Answer = Response;

fn json_answer(status: StatusCode, v: Value) -> Answer {
    (status, axum::Json(v)).into_response()
}

/// Sets `v` at a dotted path.
fn set_path(root: &mut Map<String, Value>, path: &str, v: Value) {
    let parts: Vec<&str> = path.split('.').filter(|s| !s.is_empty()).collect();
    let Some((last, init)) = parts.split_last() else { return };
    let mut cur = root;
    for p in init {
        let next = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !next.is_object() {
            *next = Value::Object(Map::new());
        }
        cur = next.as_object_mut().expect("object");
    }
    cur.insert(last.to_string(), v);
}

impl Sim {
    /// The acknowledgement in the dialect's shape.
    fn ack(&self, data: Option<(&str, Value)>) -> Value {
        let a = &self.cfg.mapping.ack;
        let mut root = Map::new();
        set_path(&mut root, &a.code_field, Value::String(a.ok_codes.first().cloned().unwrap_or_else(|| "0".into())));
        set_path(&mut root, &a.message_field, "成功".into());
        if let Some((path, v)) = data {
            set_path(&mut root, path, v);
        }
        Value::Object(root)
    }

    fn refuse(&self, status: StatusCode, code: &str, msg: &str) -> Answer {
        let a = &self.cfg.mapping.ack;
        let mut root = Map::new();
        set_path(&mut root, &a.code_field, code.into());
        set_path(&mut root, &a.message_field, msg.into());
        json_answer(status, Value::Object(root))
    }

    /// Checks our signature; the refusal when it does not verify.
    fn check_signature(&self, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Option<Answer> {
        let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let (key, ts, nonce, sig) = (h("x-zs-app-id"), h("x-zs-timestamp"), h("x-zs-nonce"), h("x-zs-signature"));
        let alg = alg_of(&self.cfg.sign_alg).unwrap_or(crypto::HashAlg::Sm3);
        let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path());
        let expected = identity::apps::sign(alg, &self.cfg.secret, "POST", pq, &ts, &nonce, body);
        let fresh = ts.parse::<i64>().is_ok_and(|t| (self.clock.now_ms() / 1000 - t).abs() <= 300);
        let ok = key == self.cfg.key
            && fresh
            && crypto::hash::constant_time_eq(expected.as_bytes(), sig.as_bytes())
            && self.nonces.lock().expect("nonces").insert(nonce);
        if ok {
            None
        } else {
            self.stats.lock().expect("stats").bad_signatures += 1;
            Some(self.refuse(StatusCode::UNAUTHORIZED, "401", "签名验证失败"))
        }
    }

    /// Applies the mode before a request is handled: the refusal, if any.
    async fn before(&self) -> Option<Answer> {
        let m = self.mode.lock().expect("mode").clone();
        let n = {
            let mut s = self.stats.lock().expect("stats");
            s.requests += 1;
            s.requests
        };
        if m.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(m.delay_ms)).await;
        }
        if m.down || (m.fail_every > 0 && n % m.fail_every == 0) {
            self.stats.lock().expect("stats").refused += 1;
            let status = if m.down { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::INTERNAL_SERVER_ERROR };
            return Some(self.refuse(status, "500", "系统繁忙，请稍后重试"));
        }
        None
    }

    /// Applies the mode after a request was acted on.
    async fn after(&self, answer: Answer) -> Answer {
        let m = self.mode.lock().expect("mode").clone();
        if m.lose_answers {
            tokio::time::sleep(Duration::from_secs(120)).await;
        }
        if m.garbage {
            return (StatusCode::OK, "<html><body>Service Temporarily Unavailable</body></html>").into_response();
        }
        answer
    }

    async fn send_callback(self: &Arc<Self>, body: Value) {
        let Some(t) = self.cfg.callback.clone() else { return };
        let twice = self.mode.lock().expect("mode").answer_twice;
        for _ in 0..if twice { 2 } else { 1 } {
            let path = format!("/api/v1/grid/platforms/{}/callbacks", t.platform_code);
            let ok = self.post_to_us(&t, &path, &body).await.is_ok();
            let mut s = self.stats.lock().expect("stats");
            if ok {
                s.callbacks_sent += 1;
            } else {
                s.callbacks_failed += 1;
            }
        }
    }

    /// A signed POST to our server, retried a few times.
    async fn post_to_us(&self, t: &CallbackTarget, path: &str, body: &Value) -> Result<Value, String> {
        let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
        let alg = alg_of(&t.sign_alg).unwrap_or(crypto::HashAlg::Sm3);
        let mut last = String::new();
        for attempt in 0..5u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            let req =
                self.http.post(format!("{}{path}", t.base_url.trim_end_matches('/'))).timeout(Duration::from_secs(10));
            let r =
                crate::platforms::signed_post(req, alg, &t.app_id, &t.secret, path, bytes.clone(), self.clock.now_ms())
                    .send()
                    .await;
            match r {
                Ok(resp) if resp.status().is_success() => return resp.json().await.map_err(|e| e.to_string()),
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status();
                    return Err(format!("HTTP {status}: {}", resp.text().await.unwrap_or_default()));
                }
                Ok(resp) => last = format!("HTTP {}", resp.status()),
                Err(e) => last = e.to_string(),
            }
        }
        Err(last)
    }

    /// The mode's refusals, our signature, a JSON object: the message in its words and ours.
    async fn admit(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        body: &[u8],
    ) -> std::result::Result<(Map<String, Value>, Map<String, Value>), Answer> {
        if let Some(r) = self.before().await {
            return Err(r);
        }
        if let Some(r) = self.check_signature(headers, uri, body) {
            return Err(r);
        }
        let Ok(Value::Object(theirs)) = serde_json::from_slice::<Value>(body) else {
            return Err(self.refuse(StatusCode::BAD_REQUEST, "400", "报文不是 JSON 对象"));
        };
        let ours = self.cfg.mapping.to_ours(&theirs);
        Ok((theirs, ours))
    }

    /// Moves a ticket and tells us.
    async fn progress(self: &Arc<Self>, dispatch_id: &str, state: &str, note: Option<String>) -> Result<(), String> {
        let ticket_no = {
            let mut t = self.tickets.lock().expect("tickets");
            let Some(t) = t.get_mut(dispatch_id) else { return Err(format!("no dispatch {dispatch_id}")) };
            t.state = state.to_string();
            t.note = note.clone();
            t.ticket_no.clone()
        };
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.send_callback(json!({
            "callback_id": format!("{}-CB-{n}", self.cfg.ticket_prefix),
            "type": state, "dispatch_id": dispatch_id, "ticket": ticket_no, "note": note,
        }))
        .await;
        Ok(())
    }
}

async fn on_dispatch(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Answer {
    let (theirs, ours) = match sim.admit(&headers, &uri, &body).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let key = headers
        .get("x-zs-idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(String::from)
        .or_else(|| ours.get("dispatch_id").and_then(as_text));
    let Some(key) = key else {
        return sim.refuse(StatusCode::BAD_REQUEST, "400", "缺少幂等键");
    };
    let (ticket_no, new) = {
        let mut tickets = sim.tickets.lock().expect("tickets");
        match tickets.get_mut(&key) {
            Some(t) => {
                t.times_received += 1;
                (t.ticket_no.clone(), false)
            }
            None => {
                let n = sim.counter.fetch_add(1, Ordering::Relaxed);
                let ticket_no = format!("{}{:08}", sim.cfg.ticket_prefix, n + 1);
                tickets.insert(
                    key.clone(),
                    Ticket {
                        ticket_no: ticket_no.clone(),
                        dispatch_id: key.clone(),
                        case_no: ours.get("case_no").and_then(as_text),
                        state: "received".into(),
                        note: None,
                        times_received: 1,
                        body: Value::Object(theirs),
                    },
                );
                (ticket_no, true)
            }
        }
    };
    {
        let mut s = sim.stats.lock().expect("stats");
        if new {
            s.received += 1;
        } else {
            s.duplicates += 1;
        }
    }
    if new {
        let m = sim.mode.lock().expect("mode").clone();
        if m.accept_after_ms > 0 || m.handle_after_ms > 0 {
            let sim2 = sim.clone();
            tokio::spawn(async move {
                if m.accept_after_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(m.accept_after_ms)).await;
                    let _ = sim2.progress(&key, "accepted", Some("已受理".into())).await;
                }
                if m.handle_after_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(m.handle_after_ms.saturating_sub(m.accept_after_ms)))
                        .await;
                    let _ = sim2.progress(&key, "handled", Some("已派专业队伍处置完毕，现场已恢复".into())).await;
                }
            });
        }
    }
    let field = sim.cfg.mapping.ack.ticket_field.clone();
    let answer = json_answer(StatusCode::OK, sim.ack(Some((&field, Value::String(ticket_no)))));
    sim.after(answer).await
}

async fn on_status(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Answer {
    let (_, ours) = match sim.admit(&headers, &uri, &body).await {
        Ok(m) => m,
        Err(r) => return r,
    };
    let key = headers.get("x-zs-idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let first = {
        let mut st = sim.status.lock().expect("status");
        let seen = st.iter().any(|v| v.get("dispatch_id").and_then(Value::as_str) == Some(key.as_str()));
        if !seen {
            let mut v = ours.clone();
            v.insert("dispatch_id".into(), key.clone().into());
            st.push(Value::Object(v));
        }
        !seen
    };
    sim.stats.lock().expect("stats").status_reports += 1;
    let verify_after = sim.mode.lock().expect("mode").verify_after_ms;
    if first
        && verify_after > 0
        && ours.get("status").and_then(Value::as_str) == Some("handled")
        && let Some(ext) = ours.get("external_id").and_then(as_text)
    {
        let sim2 = sim.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(verify_after)).await;
            let n = sim2.counter.fetch_add(1, Ordering::Relaxed);
            sim2.send_callback(json!({
                "callback_id": format!("{}-CB-{n}", sim2.cfg.ticket_prefix),
                "type": "verified", "external_id": ext, "passed": true, "note": "回访群众满意",
            }))
            .await;
        });
    }
    let answer = json_answer(StatusCode::OK, sim.ack(None));
    sim.after(answer).await
}

async fn on_query(State(sim): State<Arc<Sim>>, headers: HeaderMap, uri: Uri, body: Bytes) -> Answer {
    if let Some(r) = sim.before().await {
        return r;
    }
    if let Some(r) = sim.check_signature(&headers, &uri, &body) {
        return r;
    }
    sim.stats.lock().expect("stats").queries += 1;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ids: Vec<String> = v
        .get("dispatch_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(as_text).collect())
        .unwrap_or_default();
    let tickets = sim.tickets.lock().expect("tickets");
    let items: Vec<Value> = ids
        .iter()
        .map(|id| match tickets.get(id) {
            Some(t) => json!({"dispatch_id": id, "ticket_no": t.ticket_no, "state": t.state, "note": t.note}),
            None => json!({"dispatch_id": id, "state": "unknown"}),
        })
        .collect();
    drop(tickets);
    json_answer(StatusCode::OK, sim.ack(Some(("data.items", Value::Array(items)))))
}

async fn get_stats(State(sim): State<Arc<Sim>>) -> Answer {
    let s = sim.stats.lock().expect("stats").clone();
    json_answer(StatusCode::OK, serde_json::to_value(s).unwrap_or(Value::Null))
}

async fn get_tickets(State(sim): State<Arc<Sim>>) -> Answer {
    let mut t: Vec<Ticket> = sim.tickets.lock().expect("tickets").values().cloned().collect();
    t.sort_by(|a, b| a.ticket_no.cmp(&b.ticket_no));
    json_answer(StatusCode::OK, serde_json::to_value(t).unwrap_or(Value::Null))
}

async fn put_mode(State(sim): State<Arc<Sim>>, body: Bytes) -> Answer {
    match serde_json::from_slice::<Mode>(&body) {
        Ok(m) => {
            *sim.mode.lock().expect("mode") = m.clone();
            json_answer(StatusCode::OK, serde_json::to_value(m).unwrap_or(Value::Null))
        }
        Err(e) => json_answer(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    }
}

impl Simulator {
    /// Starts a simulator listening on `listen` (e.g. `127.0.0.1:0`).
    pub async fn start(listen: &str, cfg: Config, clock: Arc<dyn Clock>) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let paths = cfg.mapping.paths.clone();
        let sim = Arc::new(Sim {
            mode: Mutex::new(cfg.mode.clone()),
            cfg,
            clock,
            stats: Mutex::new(Stats::default()),
            tickets: Mutex::new(HashMap::new()),
            status: Mutex::new(Vec::new()),
            nonces: Mutex::new(HashSet::new()),
            counter: AtomicU64::new(0),
            http: reqwest::Client::new(),
        });
        let app = axum::Router::new()
            .route(&paths.dispatch, post(on_dispatch))
            .route(&paths.status, post(on_status))
            .route(&paths.query, post(on_query))
            .route("/sim/stats", get(get_stats))
            .route("/sim/tickets", get(get_tickets))
            .route("/sim/mode", axum::routing::put(put_mode))
            .with_state(sim.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Simulator { addr, sim, stop: Some(stop) })
    }

    /// The simulator's base URL (the platform's endpoint).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn mode(&self) -> Mode {
        self.sim.mode.lock().expect("mode").clone()
    }

    pub fn set_mode(&self, m: Mode) {
        *self.sim.mode.lock().expect("mode") = m;
    }

    pub fn stats(&self) -> Stats {
        self.sim.stats.lock().expect("stats").clone()
    }

    /// The dispatches it holds, by our dispatch id.
    pub fn tickets(&self) -> Vec<Ticket> {
        self.sim.tickets.lock().expect("tickets").values().cloned().collect()
    }

    /// Status reports received (in our words, with their dispatch ids), once each.
    pub fn status_reports(&self) -> Vec<Value> {
        self.sim.status.lock().expect("status").clone()
    }

    /// Moves a dispatch on (accepted, handled, returned) and calls back.
    pub async fn progress(&self, dispatch_id: &str, state: &str, note: Option<&str>) -> Result<(), String> {
        self.sim.progress(dispatch_id, state, note.map(String::from)).await
    }

    /// Sends verification feedback (核实反馈) on one of its own events.
    pub async fn verify(&self, external_id: &str, passed: bool, note: &str) {
        let n = self.sim.counter.fetch_add(1, Ordering::Relaxed);
        self.sim
            .send_callback(json!({
                "callback_id": format!("{}-CB-{n}", self.sim.cfg.ticket_prefix),
                "type": "verified", "external_id": external_id, "passed": passed, "note": note,
            }))
            .await;
    }

    /// Moves a dispatch on without calling back (a platform that forgot to).
    pub fn set_state(&self, dispatch_id: &str, state: &str, note: &str) {
        if let Some(t) = self.sim.tickets.lock().expect("tickets").get_mut(dispatch_id) {
            t.state = state.into();
            t.note = Some(note.into());
        }
    }

    /// Sends a callback as given and answers our reply (or the error).
    pub async fn callback_raw(&self, body: Value) -> Result<Value, String> {
        let t = self.sim.cfg.callback.clone().ok_or("the simulator has no callback target")?;
        let path = format!("/api/v1/grid/platforms/{}/callbacks", t.platform_code);
        self.sim.post_to_us(&t, &path, &body).await
    }

    /// Forgets a dispatch, as a platform that lost data would.
    pub fn forget(&self, dispatch_id: &str) {
        self.sim.tickets.lock().expect("tickets").remove(dispatch_id);
    }

    /// Sends us an event of its own, in its words; answers our reply.
    pub async fn send_event(&self, event: Map<String, Value>) -> Result<Value, String> {
        let t = self.sim.cfg.callback.clone().ok_or("the simulator has no callback target")?;
        let path = format!("/api/v1/grid/platforms/{}/events", t.platform_code);
        let r = self.sim.post_to_us(&t, &path, &Value::Object(event)).await;
        if r.is_ok() {
            self.sim.stats.lock().expect("stats").events_sent += 1;
        }
        r
    }

    /// The value of the platform's ticket field in `v` (tests).
    pub fn ticket_in(&self, v: &Value) -> Option<String> {
        lookup(v, &self.sim.cfg.mapping.ack.ticket_field).and_then(as_text)
    }
}
