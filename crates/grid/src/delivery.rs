//! Delivering the outbox to third-party platforms, and reconciling with them.
//!
//! The relay claims due messages (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so several nodes share
//! the work), leases them, sends them outside any transaction — many at once, signed, in the
//! platform's words — and records each outcome. A message is retried with a doubling delay
//! until the platform acknowledges it; it is never given up. Messages of one case to one
//! platform go in order: a later one waits for the earlier. A platform whose every message
//! failed is paused (doubling up to the longest delay) and probed with one message; when the
//! probe gets through, everything waiting for it is due at once. Messages pending longer than
//! the platform's alert time are reported to the grid administrators, once.
//!
//! Each message carries its idempotency key (`X-Zs-Idempotency-Key` and `dispatch_id`), so a
//! message delivered twice — an acknowledgement lost on the way back — is one message to the
//! platform. Reconciliation asks each platform for the state of the cases it holds and applies
//! what was missed: results become the callbacks that never came, and dispatches the platform
//! does not know are sent again (with the same key).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use identity::perms::GRID_MANAGE;
use identity::{Actor, Caller};
use kernel::{Error, Result};
use serde::Serialize;
use serde_json::{Map, Value, json};
use store::{Backend, DbResultExt, Row};

use crate::Grid;
use crate::platforms::{Callback, Conn, Mapping, alg_of, as_text, lookup, outgoing};

/// A platform paused after failures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Breaker {
    streak: u32,
    paused_until: i64,
}

/// A claimed message.
struct Claimed {
    id: String,
    platform_id: String,
    case_id: String,
    kind: String,
    idem_key: String,
    payload: String,
    attempts: i64,
}

/// One run of the reconciliation with a platform.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub id: String,
    pub platform_id: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// Cases the platform holds (dispatched to it, open, at handling).
    pub checked: i64,
    /// Cases where the platform and we agree.
    pub matched: i64,
    /// Cases moved on by what the platform reported (results and returns never called back).
    pub advanced: i64,
    /// Dispatches the platform did not know, sent again.
    pub resent: i64,
    /// Each case that did not match: {case_no, ours, theirs, action}.
    #[schema(value_type = Vec<Object>)]
    pub detail: Vec<Value>,
    pub error: Option<String>,
}

/// The longest answer read from a platform.
const MAX_ANSWER: usize = 256 * 1024;
/// Dispatch ids per reconciliation query.
const QUERY_CHUNK: usize = 100;

fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    let s: String = s.chars().take(200).collect();
    s.replace(['\n', '\r'], " ")
}

/// Signs and posts `body` to `path` of the platform; answers the acknowledgement's JSON or why not.
async fn post_signed(
    http: &reqwest::Client,
    c: &Conn,
    path: &str,
    body: &Value,
    idem_key: Option<&str>,
    now_ms: i64,
) -> std::result::Result<Value, String> {
    let url = format!("{}{}", c.endpoint, path);
    let parsed = reqwest::Url::parse(&url).map_err(|e| format!("bad URL {url}: {e}"))?;
    let path_and_query = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let bytes = serde_json::to_vec(body).map_err(|e| e.to_string())?;
    let mut req = http.post(parsed).timeout(Duration::from_millis(c.timeout_ms.max(1) as u64));
    if let Some(k) = idem_key {
        req = req.header("X-Zs-Idempotency-Key", k);
    }
    let req = crate::platforms::signed_post(req, c.alg, &c.out_key, &c.secret, &path_and_query, bytes, now_ms);
    let resp = req.send().await.map_err(|e| {
        if e.is_timeout() {
            format!("no answer within {} ms", c.timeout_ms)
        } else if e.is_connect() {
            "cannot connect to the platform".to_string()
        } else {
            format!("the request failed: {e}")
        }
    })?;
    let status = resp.status();
    let mut answer = Vec::new();
    let mut resp = resp;
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("the answer broke off: {e}"))? {
        if answer.len() + chunk.len() > MAX_ANSWER {
            return Err(format!("the answer is larger than {} KiB", MAX_ANSWER / 1024));
        }
        answer.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        return Err(format!("HTTP {}: {}", status.as_u16(), snippet(&answer)));
    }
    let v: Value =
        serde_json::from_slice(&answer).map_err(|_| format!("the answer is not JSON: {}", snippet(&answer)))?;
    let ack = &c.mapping.ack;
    let code = lookup(&v, &ack.code_field)
        .and_then(as_text)
        .ok_or_else(|| format!("the answer has no '{}' field: {}", ack.code_field, snippet(&answer)))?;
    if !ack.ok_codes.contains(&code) {
        let msg = lookup(&v, &ack.message_field).and_then(as_text).unwrap_or_default();
        return Err(format!("the platform refused it (code {code}): {msg}"));
    }
    Ok(v)
}

impl Grid {
    /// Where the grid platform sends alerts (set by the server).
    pub fn set_notify(&self, n: notify::Notify) {
        let _ = self.inner.notify.set(n);
    }

    pub(crate) fn forget_conns(&self) {
        *self.inner.conns.lock().expect("conns lock") = None;
    }

    /// The enabled platforms' connections (cached for 2 s).
    pub(crate) async fn conns(&self) -> Result<crate::platforms::Conns> {
        let now = self.now();
        if let Some((at, c)) = &*self.inner.conns.lock().expect("conns lock")
            && now - at < crate::REF_TTL_MS
        {
            return Ok(c.clone());
        }
        let rows = sqlx::query(
            "SELECT id, code, name, endpoint, out_key, out_secret_enc, sign_alg, mapping, timeout_ms FROM grid_platforms WHERE enabled = 1",
        )
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let mut map = HashMap::new();
        for r in rows {
            let secret = self
                .identity()
                .keys()
                .open("grid_platforms.out_secret", &r.get::<String, _>(5))
                .map_err(Error::internal)?;
            let c = Conn {
                id: r.get(0),
                code: r.get(1),
                name: r.get(2),
                endpoint: r.get(3),
                out_key: r.get(4),
                secret,
                alg: alg_of(&r.get::<String, _>(6)).unwrap_or(crypto::HashAlg::Sm3),
                mapping: serde_json::from_str::<Mapping>(&r.get::<String, _>(7)).unwrap_or_default(),
                timeout_ms: r.get(8),
            };
            map.insert(c.id.clone(), c);
        }
        let map = Arc::new(map);
        *self.inner.conns.lock().expect("conns lock") = Some((now, map.clone()));
        Ok(map)
    }

    /// Sends every due message once. Returns how many were attempted.
    pub async fn relay_once(&self) -> Result<usize> {
        let now = self.now();
        let due = sqlx::query("SELECT 1 FROM grid_outbox WHERE state = 'pending' AND next_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        if due.is_none() {
            return Ok(0);
        }
        let conns = self.conns().await?;
        let (allowed, probing): (Vec<String>, HashSet<String>) = {
            let b = self.inner.breakers.lock().expect("breakers lock");
            let allowed = conns.keys().filter(|id| b.get(*id).is_none_or(|x| x.paused_until <= now)).cloned().collect();
            let probing =
                b.iter().filter(|(_, x)| x.streak > 0 && x.paused_until <= now).map(|(k, _)| k.clone()).collect();
            (allowed, probing)
        };
        if allowed.is_empty() {
            return Ok(0);
        }
        let opts = self.options();
        let lease = conns.values().map(|c| c.timeout_ms).max().unwrap_or(10_000) + 30_000;
        let mut tx = self.db().begin().await?;
        let skip = if self.db().backend() == Backend::Postgres { " FOR UPDATE OF o SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT o.id, o.platform_id, o.case_id, o.kind, o.idem_key, o.payload, o.attempts FROM grid_outbox o
             WHERE o.state = 'pending' AND o.next_at <= $1 AND (o.lease_until IS NULL OR o.lease_until < $1)
               AND o.platform_id IN ({})
               AND NOT EXISTS (SELECT 1 FROM grid_outbox e WHERE e.platform_id = o.platform_id AND e.case_id = o.case_id
                               AND e.seq < o.seq AND e.state = 'pending')
             ORDER BY o.next_at LIMIT $2{skip}",
            crate::cases::marks(2, allowed.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(opts.outbox_batch.clamp(1, 5_000));
        for a in &allowed {
            q = q.bind(a);
        }
        let mut claimed: Vec<Claimed> = q
            .fetch_all(&mut *tx)
            .await
            .db()?
            .into_iter()
            .map(|r| Claimed {
                id: r.get(0),
                platform_id: r.get(1),
                case_id: r.get(2),
                kind: r.get(3),
                idem_key: r.get(4),
                payload: r.get(5),
                attempts: r.get(6),
            })
            .collect();
        // A paused platform gets one message as a probe.
        let mut probed = HashSet::new();
        claimed.retain(|c| !probing.contains(&c.platform_id) || probed.insert(c.platform_id.clone()));
        for chunk in claimed.chunks(256) {
            let sql = format!(
                "UPDATE grid_outbox SET lease_until = $1 WHERE id IN ({})",
                crate::cases::marks(1, chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now + lease);
            for c in chunk {
                q = q.bind(&c.id);
            }
            q.execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()?;
        if claimed.is_empty() {
            return Ok(0);
        }
        let n = claimed.len();
        let http = self.inner.http.clone();
        let results: Vec<(Claimed, std::result::Result<Option<String>, String>)> =
            futures::stream::iter(claimed.into_iter().map(|c| {
                let http = http.clone();
                let conn = conns.get(&c.platform_id).cloned();
                let now = self.now();
                async move {
                    let r = match conn {
                        None => Err("the platform is disabled".to_string()),
                        Some(conn) => {
                            let payload: Map<String, Value> = serde_json::from_str(&c.payload).unwrap_or_default();
                            let body = Value::Object(outgoing(&conn.mapping, &c.idem_key, &payload));
                            let path = if c.kind == "dispatch" {
                                &conn.mapping.paths.dispatch
                            } else {
                                &conn.mapping.paths.status
                            };
                            post_signed(&http, &conn, path, &body, Some(&c.idem_key), now).await.map(|v| {
                                lookup(&v, &conn.mapping.ack.ticket_field)
                                    .and_then(as_text)
                                    .filter(|t| !t.is_empty() && t.len() <= 100)
                            })
                        }
                    };
                    (c, r)
                }
            }))
            .buffer_unordered(opts.outbox_concurrency.clamp(1, 1024))
            .collect()
            .await;
        self.record(results).await?;
        Ok(n)
    }

    /// Writes the outcomes of a round of sends, and opens or closes platforms' breakers.
    async fn record(&self, results: Vec<(Claimed, std::result::Result<Option<String>, String>)>) -> Result<()> {
        let now = self.now();
        let opts = self.options();
        let mut ok_by: HashMap<&str, (usize, usize)> = HashMap::new();
        for (c, r) in &results {
            let e = ok_by.entry(c.platform_id.as_str()).or_default();
            if r.is_ok() {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let delivered: Vec<(&Claimed, Option<&String>)> =
            results.iter().filter_map(|(c, r)| r.as_ref().ok().map(|t| (c, t.as_ref()))).collect();
        let mut tx = self.db().begin().await?;
        for chunk in delivered.chunks(32) {
            let selects: Vec<String> = (0..chunk.len())
                .map(|i| format!("SELECT CAST(${} AS TEXT) AS id, CAST(${} AS TEXT) AS ticket", i * 2 + 2, i * 2 + 3))
                .collect();
            let sql = format!(
                "UPDATE grid_outbox SET state = 'delivered', attempts = grid_outbox.attempts + 1, delivered_at = $1,
                    last_attempt_at = $1, lease_until = NULL, last_error = NULL, ticket = v.ticket
                 FROM ({}) AS v WHERE grid_outbox.id = v.id",
                selects.join(" UNION ALL ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for (c, t) in chunk {
                q = q.bind(&c.id).bind(t.map(String::as_str));
            }
            q.execute(&mut *tx).await.db()?;
        }
        let tickets: Vec<&(&Claimed, Option<&String>)> =
            delivered.iter().filter(|(c, t)| c.kind == "dispatch" && t.is_some()).collect();
        for chunk in tickets.chunks(32) {
            let selects: Vec<String> = (0..chunk.len())
                .map(|i| {
                    format!(
                        "SELECT CAST(${} AS TEXT) AS p, CAST(${} AS TEXT) AS c, CAST(${} AS TEXT) AS ticket",
                        i * 3 + 1,
                        i * 3 + 2,
                        i * 3 + 3
                    )
                })
                .collect();
            let sql = format!(
                "UPDATE grid_platform_links SET ticket = v.ticket, remote_state = COALESCE(grid_platform_links.remote_state, 'received')
                 FROM ({}) AS v WHERE grid_platform_links.platform_id = v.p AND grid_platform_links.case_id = v.c",
                selects.join(" UNION ALL ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (c, t) in chunk {
                q = q.bind(&c.platform_id).bind(&c.case_id).bind(t.map(String::as_str));
            }
            q.execute(&mut *tx).await.db()?;
        }
        for (c, r) in &results {
            let Err(e) = r else { continue };
            let attempts = c.attempts + 1;
            let delay = opts
                .outbox_retry_first_ms
                .max(1)
                .saturating_mul(1i64 << (attempts - 1).clamp(0, 30))
                .min(opts.outbox_retry_max_ms.max(1));
            // ±10 % so that messages failed together do not come back together.
            let jitter = (crypto::random::bytes(1)[0] as i64 - 128) * delay / 1280;
            sqlx::query(
                "UPDATE grid_outbox SET attempts = $2, next_at = $3, last_error = $4, last_attempt_at = $5, lease_until = NULL
                 WHERE id = $1",
            )
            .bind(&c.id)
            .bind(attempts)
            .bind(now + delay + jitter)
            .bind(e.chars().take(500).collect::<String>())
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
            tracing::info!(platform = %c.platform_id, message = %c.idem_key, attempts, error = %e, "delivery to platform failed");
        }
        // A platform that answered is due again at once; one that answered nothing pauses.
        let mut recovered = Vec::new();
        {
            let mut b = self.inner.breakers.lock().expect("breakers lock");
            for (pid, (ok, failed)) in &ok_by {
                if *ok > 0 {
                    if b.remove(*pid).is_some() {
                        recovered.push(pid.to_string());
                    }
                } else if *failed > 0 {
                    let e = b.entry(pid.to_string()).or_insert(Breaker { streak: 0, paused_until: 0 });
                    e.streak = (e.streak + 1).min(30);
                    let pause = opts
                        .outbox_retry_first_ms
                        .max(1)
                        .saturating_mul(1i64 << (e.streak - 1))
                        .min(opts.outbox_retry_max_ms.max(1));
                    e.paused_until = now + pause;
                }
            }
        }
        for pid in recovered {
            sqlx::query(
                "UPDATE grid_outbox SET next_at = $2 WHERE platform_id = $1 AND state = 'pending' AND next_at > $2",
            )
            .bind(&pid)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    /// Tells the grid administrators, once per message, of messages pending longer than their
    /// platform's alert time. Returns how many messages were reported.
    pub async fn alert_undelivered(&self) -> Result<usize> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT x.platform_id, p.name, COUNT(*), MIN(c.case_no), MAX(x.last_error), p.alert_after_minutes
             FROM grid_outbox x JOIN grid_platforms p ON p.id = x.platform_id JOIN grid_cases c ON c.id = x.case_id
             WHERE x.state = 'pending' AND x.alerted_at IS NULL AND x.created_at + p.alert_after_minutes * 60000 <= $1
             GROUP BY x.platform_id, p.name, p.alert_after_minutes",
        )
        .bind(now)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let recipients: Vec<String> = sqlx::query(
            "SELECT DISTINCT u.username FROM users u JOIN grants g ON g.user_id = u.id
                JOIN role_permissions rp ON rp.role_id = g.role_id
             WHERE rp.permission = $1 AND u.status = 'active' ORDER BY u.username",
        )
        .bind(GRID_MANAGE)
        .fetch_all(self.db().reader())
        .await
        .db()?
        .into_iter()
        .map(|r| r.get(0))
        .collect();
        let mut tx = self.db().begin().await?;
        let mut total = 0usize;
        let mut queued = notify::Queued::default();
        for r in &rows {
            let (pid, name, count, first, error, minutes): (String, String, i64, String, Option<String>, i64) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5));
            if let Some(n) = self.inner.notify.get()
                && !recipients.is_empty()
            {
                let body = format!(
                    "{count} 条发往「{name}」的消息超过 {minutes} 分钟未送达（最早：事件 {first}）。最近的错误：{}。平台恢复后会自动补发，也可在「网格与规则 → 第三方平台」立即重试。",
                    error.unwrap_or_else(|| "尚未尝试".into())
                );
                let req = notify::SendRequest {
                    title: Some(format!("第三方平台推送告警：{name}")),
                    body: Some(body),
                    recipients: recipients.clone(),
                    urgent: true,
                    link: Some("/grid/admin?tab=platforms".into()),
                    ..Default::default()
                };
                queued.merge(n.send_in(&mut tx, &req).await?);
            }
            sqlx::query(
                "UPDATE grid_outbox SET alerted_at = $2 WHERE platform_id = $1 AND state = 'pending' AND alerted_at IS NULL
                    AND created_at + $3 * 60000 <= $2",
            )
            .bind(&pid)
            .bind(now)
            .bind(minutes)
            .execute(&mut *tx)
            .await
            .db()?;
            tracing::warn!(platform = %name, count, "messages to a platform are overdue");
            total += count as usize;
        }
        tx.commit().await.db()?;
        if let Some(n) = self.inner.notify.get() {
            n.published(queued);
        }
        Ok(total)
    }

    /// Reconciles the cases a platform holds with what it says of them (`grid.manage`).
    pub async fn reconcile(&self, caller: &Caller, actor: &Actor, platform: &str) -> Result<Reconciliation> {
        caller.require(GRID_MANAGE)?;
        let conns = self.conns().await?;
        let conn = conns
            .values()
            .find(|c| c.id == platform || c.code == platform)
            .cloned()
            .ok_or_else(|| Error::validation("there is no enabled platform with this id or code"))?;
        self.reconcile_with(&conn, actor).await
    }

    pub(crate) async fn reconcile_with(&self, conn: &Conn, actor: &Actor) -> Result<Reconciliation> {
        let started = self.now();
        let run_id = uuid::Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO grid_platform_reconciliations (id, platform_id, started_at) VALUES ($1, $2, $3)")
            .bind(&run_id)
            .bind(&conn.id)
            .bind(started)
            .execute(self.db().writer())
            .await
            .db()?;
        let mut run = Reconciliation {
            id: run_id.clone(),
            platform_id: conn.id.clone(),
            started_at: started,
            finished_at: None,
            checked: 0,
            matched: 0,
            advanced: 0,
            resent: 0,
            detail: vec![],
            error: None,
        };
        if let Err(e) = self.reconcile_cases(conn, actor, &mut run).await {
            run.error = Some(e.message.clone());
        }
        run.finished_at = Some(self.now());
        sqlx::query(
            "UPDATE grid_platform_reconciliations SET finished_at = $2, checked = $3, matched = $4, advanced = $5, resent = $6,
                detail = $7, error = $8 WHERE id = $1",
        )
        .bind(&run_id)
        .bind(run.finished_at)
        .bind(run.checked)
        .bind(run.matched)
        .bind(run.advanced)
        .bind(run.resent)
        .bind(crate::to_json(&run.detail)?)
        .bind(&run.error)
        .execute(self.db().writer())
        .await
        .db()?;
        Ok(run)
    }

    async fn reconcile_cases(&self, conn: &Conn, actor: &Actor, run: &mut Reconciliation) -> Result<()> {
        let (platform, _) = self.platform_row(&conn.id).await?;
        // Cases the platform holds: dispatched to it, delivered, open and at handling.
        let rows = sqlx::query(
            "SELECT c.id, c.case_no, x.id, x.idem_key, c.stage FROM grid_platform_links l
                JOIN grid_cases c ON c.id = l.case_id
                JOIN grid_outbox x ON x.platform_id = l.platform_id AND x.case_id = l.case_id AND x.kind = 'dispatch'
             WHERE l.platform_id = $1 AND l.direction = 'out' AND c.status = 'open' AND c.department_id = $2
               AND c.stage IN ('handle', 'extension') AND x.state = 'delivered'
               AND x.seq = (SELECT MAX(y.seq) FROM grid_outbox y WHERE y.platform_id = l.platform_id AND y.case_id = l.case_id
                            AND y.kind = 'dispatch')
             ORDER BY c.case_no",
        )
        .bind(&conn.id)
        .bind(&platform.org_id)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let held: Vec<(String, String, String, String, String)> =
            rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))).collect();
        run.checked = held.len() as i64;
        if held.is_empty() {
            return Ok(());
        }
        let platform_caller = self.identity().app_caller(&platform.app_id).await?;
        for chunk in held.chunks(QUERY_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|h| h.3.as_str()).collect();
            let answer = post_signed(
                &self.inner.http,
                conn,
                &conn.mapping.paths.query,
                &json!({ "dispatch_ids": ids }),
                None,
                self.now(),
            )
            .await
            .map_err(|e| {
                Error::new(kernel::ErrorCode::Unavailable, format!("{} did not answer the query: {e}", conn.name))
            })?;
            let items = lookup(&answer, "data.items").and_then(Value::as_array).cloned().unwrap_or_default();
            let theirs: HashMap<String, (String, Option<String>)> = items
                .iter()
                .filter_map(|i| {
                    let id = i.get("dispatch_id").and_then(as_text)?;
                    let state = i.get("state").and_then(as_text).unwrap_or_else(|| "unknown".into());
                    Some((id, (state, i.get("note").and_then(as_text))))
                })
                .collect();
            for (_case_id, case_no, outbox_id, idem, stage) in chunk {
                let (state, note) = theirs.get(idem).cloned().unwrap_or_else(|| ("unknown".into(), None));
                let mut differ = |action: &str| {
                    run.detail.push(json!({"case_no": case_no, "ours": stage, "theirs": state, "action": action}));
                };
                match state.as_str() {
                    "received" | "accepted" | "handling" => run.matched += 1,
                    "handled" | "returned" => {
                        let cb = Callback {
                            callback_id: format!("reconcile:{idem}:{state}"),
                            kind: state.clone(),
                            dispatch_id: Some(idem.clone()),
                            case_no: None,
                            external_id: None,
                            ticket: None,
                            note: Some(note.clone().unwrap_or_else(|| "（对账补录）".into())),
                            passed: None,
                        };
                        match self.apply_callback(&platform, &platform_caller, actor, cb).await {
                            Ok(r) if r.outcome == "applied" => {
                                run.advanced += 1;
                                differ("advanced");
                            }
                            Ok(_) => run.matched += 1,
                            Err(e) => differ(&format!("failed: {}", e.message)),
                        }
                    }
                    _ => {
                        // The platform lost it: send it again, with the same key.
                        sqlx::query(
                            "UPDATE grid_outbox SET state = 'pending', next_at = $2, delivered_at = NULL, alerted_at = NULL,
                                last_error = 'the platform did not know this dispatch at reconciliation' WHERE id = $1",
                        )
                        .bind(outbox_id)
                        .bind(self.now())
                        .execute(self.db().writer())
                        .await
                        .db()?;
                        run.resent += 1;
                        differ("resent");
                    }
                }
            }
        }
        Ok(())
    }

    /// The latest reconciliation runs of a platform (`grid.manage`).
    pub async fn reconciliations(&self, caller: &Caller, platform: &str) -> Result<Vec<Reconciliation>> {
        caller.require(GRID_MANAGE)?;
        let (p, _) = self.platform_row(platform).await?;
        let rows = sqlx::query(
            "SELECT id, platform_id, started_at, finished_at, checked, matched, advanced, resent, detail, error
             FROM grid_platform_reconciliations WHERE platform_id = $1 ORDER BY started_at DESC LIMIT 30",
        )
        .bind(&p.id)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        Ok(rows
            .iter()
            .map(|r| Reconciliation {
                id: r.get(0),
                platform_id: r.get(1),
                started_at: r.get(2),
                finished_at: r.get(3),
                checked: r.get(4),
                matched: r.get(5),
                advanced: r.get(6),
                resent: r.get(7),
                detail: serde_json::from_str(&r.get::<String, _>(8)).unwrap_or_default(),
                error: r.get(9),
            })
            .collect())
    }

    /// Runs the nightly reconciliation of every enabled platform when its time has come today
    /// and it has not run today. Returns how many platforms were reconciled.
    pub async fn reconcile_if_due(&self) -> Result<usize> {
        let now = self.now();
        let (h, m) = parse_hhmm(&self.options().reconcile_at).unwrap_or((2, 30));
        let local = now + 8 * 3_600_000;
        let day_start = local - local.rem_euclid(86_400_000);
        let due_at = day_start + (h * 60 + m) * 60_000;
        if local < due_at {
            return Ok(0);
        }
        let since = day_start - 8 * 3_600_000;
        let conns = self.conns().await?;
        let mut n = 0;
        for c in conns.values() {
            let ran =
                sqlx::query("SELECT 1 FROM grid_platform_reconciliations WHERE platform_id = $1 AND started_at >= $2")
                    .bind(&c.id)
                    .bind(since + (h * 60 + m) * 60_000)
                    .fetch_optional(self.db().reader())
                    .await
                    .db()?;
            // A platform registered after today's time waits for tomorrow's.
            let new = sqlx::query("SELECT 1 FROM grid_platforms WHERE id = $1 AND created_at >= $2")
                .bind(&c.id)
                .bind(since + (h * 60 + m) * 60_000)
                .fetch_optional(self.db().reader())
                .await
                .db()?;
            if ran.is_none() && new.is_none() {
                let r = self.reconcile_with(c, &Actor::system()).await?;
                tracing::info!(platform = %c.code, checked = r.checked, advanced = r.advanced, resent = r.resent,
                    error = ?r.error, "nightly reconciliation");
                n += 1;
            }
        }
        Ok(n)
    }

    /// Runs the relay (and the alerts and nightly reconciliation) among `bg`'s loops until they stop.
    pub fn spawn_relay(&self, bg: &mut apikit::background::Background) {
        let mut rx = bg.stop_signal();
        let me = self.clone();
        bg.spawn(async move {
            let mut last_check = 0i64;
            loop {
                let busy = match me.relay_once().await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "platform relay");
                        false
                    }
                };
                let now = me.now();
                if now - last_check >= 60_000 {
                    last_check = now;
                    if let Err(e) = me.alert_undelivered().await {
                        tracing::warn!(error = %e, "platform delivery alerts");
                    }
                    if let Err(e) = me.reconcile_if_due().await {
                        tracing::warn!(error = %e, "nightly reconciliation");
                    }
                }
                if busy {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = rx.changed() => return,
                }
            }
        });
    }
}

/// "HH:MM" → (hours, minutes).
pub fn parse_hhmm(s: &str) -> Option<(i64, i64)> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
    ((0..24).contains(&h) && (0..60).contains(&m)).then_some((h, m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciliation_times_read_as_hours_and_minutes() {
        assert_eq!(parse_hhmm("02:30"), Some((2, 30)));
        assert_eq!(parse_hhmm(" 23:59 "), Some((23, 59)));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("2.30"), None);
    }
}
