//! Service-task handlers: in-process ones run inside the transaction that reaches the task;
//! remote ones (the HTTP connector, anything doing IO) run as claimed jobs outside it, with
//! retries and backoff.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use super::Flow;
use crate::engine::VarMap;

/// What a handler receives.
#[derive(Debug, Clone)]
pub struct JobInput {
    pub instance_id: String,
    pub element_id: String,
    pub handler: String,
    pub headers: Vec<(String, String)>,
    pub vars: VarMap,
    pub attempt: u32,
}

impl JobInput {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
pub enum JobResult {
    /// Done; these variables are set.
    Done(VarMap),
    /// A business error (BPMN error code) that boundary events may catch.
    BpmnError { code: String, message: String },
    /// A technical failure: retried with backoff until the retries run out.
    Failed(String),
}

type AsyncFn = dyn Fn(JobInput) -> Pin<Box<dyn Future<Output = JobResult> + Send>> + Send + Sync;

/// A registered handler.
#[derive(Clone)]
pub enum Handler {
    /// Pure and fast: runs inside the transaction (no IO allowed).
    Inline(Arc<dyn Fn(&JobInput) -> JobResult + Send + Sync>),
    /// Does IO: runs as a job outside the transaction.
    Remote(Arc<AsyncFn>),
}

impl Handler {
    pub fn inline(f: impl Fn(&JobInput) -> JobResult + Send + Sync + 'static) -> Handler {
        Handler::Inline(Arc::new(f))
    }

    pub fn remote<F, Fut>(f: F) -> Handler
    where
        F: Fn(JobInput) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = JobResult> + Send + 'static,
    {
        Handler::Remote(Arc::new(move |i| Box::pin(f(i))))
    }
}

pub(crate) fn register_builtins(flow: &Flow) {
    // Does nothing: placeholders while designing, and the benchmark's reference process.
    flow.register("noop", Handler::inline(|_| JobResult::Done(Map::new())));
    // Sets the task headers as variables (`zeebe:header key="status" value="closed"`).
    flow.register(
        "set-variables",
        Handler::inline(|job| {
            JobResult::Done(job.headers.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
        }),
    );
    // Fails on purpose with the header `message` (for drills of the incident handling).
    flow.register(
        "fail",
        Handler::inline(|job| JobResult::Failed(job.header("message").unwrap_or("failed on purpose").to_string())),
    );
    let allowed = flow.options().http_allowed_hosts.clone();
    flow.register(
        "http",
        Handler::remote(move |job| {
            let allowed = allowed.clone();
            async move {
                match host_allowed(job.header("url").map(|u| template(u, &job.vars)).as_deref(), &allowed) {
                    Ok(()) => http_connector(job).await,
                    Err(e) => JobResult::Failed(e),
                }
            }
        }),
    );
}

/// The generic HTTP connector: headers `url`, `method` (GET/POST/PUT/PATCH/DELETE),
/// `header.<Name>` request headers, `body` (a template where `${name}` is replaced by the
/// variable), `timeoutSeconds` (default 10), `resultVariable` (default `response`).
/// 2xx: the JSON (or text) body is stored in the result variable and the status in
/// `<resultVariable>Status`; 4xx: BPMN error `HTTP_<status>`; 5xx and network errors: retried.
pub async fn http_connector(job: JobInput) -> JobResult {
    let Some(url) = job.header("url").map(|u| template(u, &job.vars)) else {
        return JobResult::Failed("the http task has no 'url' header".into());
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return JobResult::Failed(format!("'{url}' is not an http(s) URL"));
    }
    let method = job.header("method").unwrap_or("GET").to_uppercase();
    let Ok(method) = reqwest::Method::from_bytes(method.as_bytes()) else {
        return JobResult::Failed(format!("unknown HTTP method '{method}'"));
    };
    let timeout = job.header("timeoutSeconds").and_then(|t| t.parse().ok()).unwrap_or(10u64).clamp(1, 300);
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(timeout)).build() {
        Ok(c) => c,
        Err(e) => return JobResult::Failed(format!("http client: {e}")),
    };
    let mut req = client.request(method, &url);
    for (k, v) in &job.headers {
        if let Some(name) = k.strip_prefix("header.") {
            req = req.header(name, template(v, &job.vars));
        }
    }
    if let Some(body) = job.header("body") {
        req = req.header("content-type", "application/json").body(template(body, &job.vars));
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return JobResult::Failed(format!("request to {url} failed: {e}")),
    };
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if status.is_server_error() {
        return JobResult::Failed(format!("{url} answered {status}"));
    }
    if status.is_client_error() {
        return JobResult::BpmnError { code: format!("HTTP_{}", status.as_u16()), message: truncate(&text, 500) };
    }
    let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(truncate(&text, 10_000)));
    let name = job.header("resultVariable").unwrap_or("response").to_string();
    let mut out = Map::new();
    out.insert(format!("{name}Status"), Value::from(status.as_u16()));
    out.insert(name, value);
    JobResult::Done(out)
}

/// Checks the URL's host against the allow-list (`gov.cn` allows itself and its subdomains).
pub fn host_allowed(url: Option<&str>, allowed: &[String]) -> Result<(), String> {
    if allowed.is_empty() {
        return Ok(());
    }
    let url = url.ok_or("the http task has no 'url' header")?;
    let host = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_lowercase))
        .ok_or_else(|| format!("'{url}' is not a URL"))?;
    let ok = allowed.iter().map(|a| a.trim().to_lowercase()).any(|a| host == a || host.ends_with(&format!(".{a}")));
    if ok { Ok(()) } else { Err(format!("the host '{host}' is not in flow.http_allowed_hosts")) }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Replaces `${name}` with the variable's value (strings bare, other values as JSON).
pub fn template(t: &str, vars: &VarMap) -> String {
    kernel::text::fill(t, "${", "}", |name| {
        vars.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_allow_list_takes_subdomains_and_refuses_the_rest() {
        let allowed = vec!["jinan.gov.cn".to_string(), "10.1.2.3".to_string()];
        assert!(host_allowed(Some("https://api.jinan.gov.cn/x"), &allowed).is_ok());
        assert!(host_allowed(Some("http://10.1.2.3:8080/x"), &allowed).is_ok());
        assert!(host_allowed(Some("http://169.254.169.254/latest"), &allowed).unwrap_err().contains("169.254.169.254"));
        assert!(host_allowed(Some("http://evil-jinan.gov.cn.example.com/"), &allowed).is_err());
        assert!(host_allowed(Some("http://anything/"), &[]).is_ok());
    }

    #[test]
    fn templates_fill_variables() {
        let vars = serde_json::json!({"id": "A-1", "n": 3}).as_object().cloned().unwrap();
        assert_eq!(template("/cases/${id}?n=${n}&x=${missing}", &vars), "/cases/A-1?n=3&x=");
        assert_eq!(template("open ${", &vars), "open ${");
    }
}
