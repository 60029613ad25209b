//! `TestApp`: one running platform per test.

use std::collections::HashMap;
use std::sync::Arc;

use apikit::AppState;
use kernel::FakeClock;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{Value, json};
use store::Backend;
use store::testing::TestDb;
use zhongshu::app::{self, OpenOptions};
use zhongshu::config::Config;

pub const PASSWORD: &str = zhongshu::demo::DEMO_PASSWORD;

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub clock: FakeClock,
    /// TOTP secrets of the demo administrators.
    pub totp: HashMap<String, crypto::otp::Secret>,
    pub db: TestDb,
    _dir: store::testing::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl TestApp {
    /// Starts the platform with the demo city on `backend`.
    pub async fn start(backend: Backend) -> TestApp {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts with a configuration changed by `configure` (e.g. to point channels at local servers).
    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> TestApp {
        let db = TestDb::new(backend, &app::migration_sets()).await;
        let dir = store::testing::TempDir::new();
        let mut cfg = Config::defaults();
        cfg.storage.data_dir = dir.0.clone();
        cfg.storage.database_url = db.url.clone();
        cfg.storage.max_connections = 4;
        // Tests drive timers, jobs and message deliveries step by step with the fake clock.
        cfg.flow.workers = false;
        cfg.notify.relay = false;
        cfg.grid.relay = false;
        configure(&mut cfg);
        let clock = FakeClock::new(1_795_000_000_000);
        let state =
            app::open(&cfg, OpenOptions { clock: Arc::new(clock.clone()), fast_hashing: true }).await.expect("open");
        let accounts = zhongshu::demo::seed(&state).await.expect("seed demo city");
        let totp = accounts.iter().filter_map(|a| a.totp_secret.clone().map(|s| (a.username.to_string(), s))).collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls = cfg.server.tls.enabled().then(|| {
            let (cert, key) = (&cfg.server.tls.cert_file, &cfg.server.tls.key_file);
            zhongshu::tls::server_config(cert.as_ref(), key.as_ref()).expect("TLS configuration")
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_state = state.clone();
        let stopped = async {
            let _ = stopped.await;
        };
        tokio::spawn(async move {
            let _ = match tls {
                Some(tls) => {
                    let listener = zhongshu::tls::TlsListener::new(listener, tls).unwrap();
                    app::serve(serve_state, listener, stopped).await
                }
                None => app::serve(serve_state, listener, stopped).await,
            };
        });
        TestApp { base, state, clock, totp, db, _dir: dir, stop: Some(stop) }
    }

    /// A browser-like client with its own cookie jar.
    pub fn client(&self) -> Session {
        Session {
            http: Client::builder().cookie_store(true).build().unwrap(),
            base: self.base.clone(),
            csrf: String::new(),
        }
    }

    /// Logs in fully (passing the second factor for administrators).
    pub async fn login(&self, username: &str) -> Session {
        let mut s = self.client();
        let r = s.post("/api/v1/auth/login", json!({"username": username, "password": PASSWORD})).await;
        assert_eq!(r.status(), StatusCode::OK, "{username} logs in");
        let body: Value = r.json().await.unwrap();
        s.csrf = body["csrf_token"].as_str().unwrap().to_string();
        if body["stage"] == "mfa" {
            let code = self.totp_code(username);
            let r = s.post("/api/v1/auth/mfa", json!({"code": code})).await;
            assert_eq!(r.status(), StatusCode::OK, "{username} passes the second factor");
        }
        s
    }

    pub fn totp_code(&self, username: &str) -> String {
        // Each code may be used once: move to a fresh time step first.
        self.clock.advance_secs(31);
        self.totp[username].code_at(kernel::Clock::now_ms(&self.clock) / 1000).unwrap()
    }

    /// The id of a user by username.
    pub async fn user_id(&self, username: &str) -> String {
        self.state.identity.user_id_by_username(username).await.unwrap().unwrap()
    }

    /// Runs a statement straight against the database, as someone with database access would
    /// (tamper tests).
    pub async fn sql(&self, q: String) {
        sqlx::query(sqlx::AssertSqlSafe(q)).execute(self.state.db.writer()).await.unwrap();
    }

    pub async fn org_id(&self, code: &str) -> String {
        self.state.identity.org_id_by_code(code).await.unwrap().unwrap()
    }
}

/// A logged-in (or anonymous) HTTP client (clones share the cookies).
#[derive(Clone)]
pub struct Session {
    pub http: Client,
    pub base: String,
    pub csrf: String,
}

impl Session {
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).header("x-csrf-token", &self.csrf);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.unwrap()
    }

    pub async fn get(&self, path: &str) -> Response {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Response {
        self.send(Method::POST, path, Some(body)).await
    }

    /// Sends a request and answers (status, request id, body).
    pub async fn traced(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, String, Value) {
        let r = self.send(method, path, body).await;
        let status = r.status();
        let request_id = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let text = r.text().await.unwrap();
        (status, request_id, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// POSTs a raw body (a file) with its content type; answers (status, JSON body or null).
    pub async fn upload(&self, path: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("x-csrf-token", &self.csrf)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn json(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let r = self.send(method, path, body).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// Asserts an error body with `code`.
pub fn assert_error(status: StatusCode, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status.as_u16(), want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["request_id"].as_str().is_some_and(|s| !s.is_empty()), "request id present: {body}");
    assert!(body["message"].as_str().is_some_and(|s| !s.is_empty()), "message present: {body}");
}
