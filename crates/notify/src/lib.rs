//! The message service (消息服务, A3.4): every capability tells people things through it.
//!
//! A message is written in the caller's business transaction: the in-app inbox row plus one
//! delivery row per channel (the outbox). The relay claims due deliveries, sends them on their
//! channel (webhook, SMTP mail, SMS gateway, DingTalk, WeCom) and records the state per recipient
//! and channel: pending → sent (delivered for the inbox), retried with backoff, failed after the
//! last attempt, resent on request. Templates carry `{{variable}}` placeholders; users choose
//! their external channels and quiet hours (non-urgent messages wait until the quiet hours end).
//!
//! Architecture invariant: nothing is sent inside a transaction; a crash between the commit and
//! the send means the relay sends it later (at-least-once, with the delivery id for deduplication).

pub mod api;
pub mod channels;

use std::sync::Arc;
use std::time::Duration;

use chrono::{FixedOffset, NaiveTime, TimeZone, Timelike};
use identity::{Actor, Caller, Identity};
use kernel::{Clock, Error, ErrorCode, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{Backend, Db, DbResultExt, Row, Tx, Where};
use tokio::sync::broadcast;

pub use channels::Channel;

pub static MIGRATIONS: store::MigrationSet = store::migrations!("notify": 1 => portable "0001_notify");

/// Settings of the message service (`[notify]` in the config file).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyOptions {
    /// Run the delivery relay on this node.
    pub relay: bool,
    /// How often the relay looks for due deliveries when idle (ms).
    pub poll_ms: u64,
    /// Attempts per delivery before it is marked failed.
    pub max_attempts: i64,
    /// First retry delay (ms), doubled per attempt, at most one hour.
    pub backoff_ms: i64,
    /// Timeout of one send (s).
    pub timeout_seconds: u64,
    /// Default quiet hours (China Standard Time) for users who set none; empty = none.
    pub quiet_start: String,
    pub quiet_end: String,
    /// Generic webhook: every message POSTed as JSON, signed with HMAC-SM3 in `X-Zhongshu-Signature`.
    pub webhook_url: String,
    pub webhook_secret: String,
    /// SMTP relay; AUTH PLAIN when a username is set.
    pub smtp_host: String,
    pub smtp_port: u16,
    pub smtp_from: String,
    pub smtp_username: String,
    pub smtp_password: String,
    /// `starttls` (upgrade after EHLO; a server that does not offer it is refused), `tls`
    /// (implicit TLS, usually port 465) or `none` (plain, for a relay on a trusted network).
    pub smtp_tls: String,
    /// PEM file of the CA(s) that sign the mail server's certificate (a private government CA);
    /// empty: the system's trusted CAs.
    pub smtp_ca_file: String,
    /// SMS gateway: POST {"mobile","content","sign"} with a bearer token.
    pub sms_gateway_url: String,
    pub sms_gateway_token: String,
    pub sms_sign: String,
    /// DingTalk group robot webhook and its signing secret (加签).
    pub dingtalk_webhook: String,
    pub dingtalk_secret: String,
    /// WeCom (企业微信) group robot webhook.
    pub wecom_webhook: String,
}

impl Default for NotifyOptions {
    fn default() -> Self {
        NotifyOptions {
            relay: true,
            poll_ms: 200,
            max_attempts: 8,
            backoff_ms: 2_000,
            timeout_seconds: 10,
            quiet_start: "22:00".into(),
            quiet_end: "07:00".into(),
            webhook_url: String::new(),
            webhook_secret: String::new(),
            smtp_host: String::new(),
            smtp_port: 25,
            smtp_from: "noreply@zhongshu.local".into(),
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_tls: "starttls".into(),
            smtp_ca_file: String::new(),
            sms_gateway_url: String::new(),
            sms_gateway_token: String::new(),
            sms_sign: "中枢".into(),
            dingtalk_webhook: String::new(),
            dingtalk_secret: String::new(),
            wecom_webhook: String::new(),
        }
    }
}

/// A template as cached: (read at, title, body, channels).
type CachedTemplate = (i64, String, String, Vec<Channel>);

/// The message service. Cheap to clone.
#[derive(Clone)]
pub struct Notify {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    identity: Identity,
    clock: Arc<dyn Clock>,
    opts: NotifyOptions,
    live: broadcast::Sender<String>,
    wake: tokio::sync::Notify,
    /// Templates by code with the time they were read; re-read after 30 s (other nodes may edit).
    templates: std::sync::RwLock<std::collections::HashMap<String, CachedTemplate>>,
}

/// Something to send.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// A template code; its title and body are rendered with `variables`.
    pub template: Option<String>,
    /// Title and body when no template is used.
    pub title: Option<String>,
    pub body: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub variables: serde_json::Map<String, Value>,
    /// Recipients by username.
    pub recipients: Vec<String>,
    /// Channels; the template's (or just the inbox) when absent.
    pub channels: Option<Vec<Channel>>,
    /// Urgent messages ignore quiet hours.
    #[serde(default)]
    pub urgent: bool,
    /// A link into the platform, e.g. `/flow/tasks`.
    pub link: Option<String>,
}

/// An inbox message.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    pub title: String,
    pub body: String,
    pub link: Option<String>,
    pub urgent: bool,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

/// One delivery: a message to one recipient on one channel.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: String,
    pub message_id: String,
    pub username: String,
    pub title: String,
    pub channel: Channel,
    pub address: Option<String>,
    /// `pending`, `sent`, `delivered`, `failed` or `resent`.
    pub state: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
    pub sent_at: Option<i64>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveryFilter {
    pub state: Option<String>,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub page: Option<i64>,
    pub page_size: Option<i64>,
}

/// A message template.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub code: String,
    pub name: String,
    /// With `{{variable}}` placeholders.
    pub title: String,
    pub body: String,
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub updated_at: i64,
}

/// A user's channel choices and quiet hours.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    /// External channels the user wants besides the inbox.
    pub channels: Vec<Channel>,
    /// `HH:MM` China Standard Time; both empty = no quiet hours.
    pub quiet_start: Option<String>,
    pub quiet_end: Option<String>,
    /// Channels the platform has configured (read-only).
    #[serde(default)]
    pub available: Vec<Channel>,
}

/// Built-in templates, created on start when missing (editable afterwards).
const BUILTIN_TEMPLATES: &[(&str, &str, &str, &str, &[Channel])] = &[
    (
        "flow.task.assigned",
        "新待办",
        "新待办：{{task}}",
        "「{{process}}」{{business_key}} 的「{{task}}」已到您处，请及时办理。",
        &[Channel::Inapp],
    ),
    (
        "flow.task.urge",
        "催办",
        "催办：{{task}}",
        "{{by}} 催办「{{process}}」{{business_key}} 的「{{task}}」。{{comment}}",
        &[Channel::Inapp, Channel::Sms],
    ),
    (
        "flow.task.due_soon",
        "待办即将到期",
        "即将到期：{{task}}",
        "「{{process}}」{{business_key}} 的「{{task}}」将于 {{due}} 到期（办理人 {{assignee}}）。",
        &[Channel::Inapp],
    ),
    (
        "flow.task.overdue",
        "待办已超期",
        "已超期：{{task}}",
        "「{{process}}」{{business_key}} 的「{{task}}」已于 {{due}} 超期（办理人 {{assignee}}），请督促办理。",
        &[Channel::Inapp, Channel::Sms],
    ),
];

/// Replaces `{{name}}` with the variable (strings bare, other values as JSON, missing as empty).
pub fn render(t: &str, vars: &serde_json::Map<String, Value>) -> String {
    kernel::text::fill(t, "{{", "}}", |name| match vars.get(name) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Null) | None => None,
        Some(v) => Some(v.to_string()),
    })
}

fn list(chs: &[Channel]) -> String {
    let v: Vec<&str> = chs.iter().map(|c| c.as_str()).collect();
    format!(",{},", v.join(","))
}

fn parse_list(s: &str) -> Vec<Channel> {
    s.split(',').filter_map(Channel::parse).collect()
}

fn parse_hhmm(s: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(s.trim(), "%H:%M").ok()
}

/// When a non-urgent external message may go out: now, or the end of the quiet hours.
pub fn after_quiet_hours(now_ms: i64, start: Option<&str>, end: Option<&str>) -> i64 {
    let (Some(s), Some(e)) = (start.and_then(parse_hhmm), end.and_then(parse_hhmm)) else { return now_ms };
    if s == e {
        return now_ms;
    }
    let tz = FixedOffset::east_opt(8 * 3600).expect("offset");
    let Some(now) = tz.timestamp_millis_opt(now_ms).single() else { return now_ms };
    let t = now.time().with_nanosecond(0).unwrap_or(now.time());
    let quiet = if s < e { t >= s && t < e } else { t >= s || t < e };
    if !quiet {
        return now_ms;
    }
    let mut day = now.date_naive();
    if s > e && t >= s {
        day = day.succ_opt().unwrap_or(day);
    }
    tz.from_local_datetime(&day.and_time(e)).single().map(|d| d.timestamp_millis()).unwrap_or(now_ms)
}

/// What a send queued in a transaction. Hand it to [`Notify::published`] once the transaction
/// has committed: the recipients' inboxes are told live, and the relay woken for the external
/// channels. Dropping it only delays those until the relay's next round.
#[derive(Debug, Default)]
#[must_use = "hand it to Notify::published after the commit"]
pub struct Queued {
    /// Recipients who got the message (over all messages).
    pub count: usize,
    /// User ids whose inbox got a message.
    inbox_users: Vec<String>,
    /// Deliveries through external channels are waiting for the relay.
    external: bool,
}

impl Queued {
    /// Adds what another send queued.
    pub fn merge(&mut self, other: Queued) {
        self.count += other.count;
        self.inbox_users.extend(other.inbox_users);
        self.external |= other.external;
    }
}

/// A recipient as looked up for sending.
struct Recipient {
    user_id: String,
    email: Option<String>,
    mobile: Option<String>,
    /// The channels the user allows (None: no preferences saved).
    allowed: Option<Vec<Channel>>,
    quiet_start: Option<String>,
    quiet_end: Option<String>,
}

/// A `notify_messages` row to insert.
struct MessageRow {
    id: String,
    user_id: String,
    template: Option<String>,
    title: String,
    body: String,
    link: Option<String>,
    urgent: i64,
}

/// A `notify_deliveries` row to insert.
struct DeliveryRow {
    id: String,
    message_id: String,
    user_id: String,
    channel: &'static str,
    address: Option<String>,
    /// An inbox delivery, done when written.
    delivered: bool,
    next_at: i64,
}

impl Notify {
    pub async fn new(db: Db, identity: Identity, clock: Arc<dyn Clock>, opts: NotifyOptions) -> Result<Notify> {
        let (live, _) = broadcast::channel(1024);
        let n = Notify {
            inner: Arc::new(Inner {
                db,
                identity,
                clock,
                opts,
                live,
                wake: tokio::sync::Notify::new(),
                templates: Default::default(),
            }),
        };
        n.ensure_templates().await?;
        Ok(n)
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn options(&self) -> &NotifyOptions {
        &self.inner.opts
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Live updates: the user id of every inbox that changed.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.inner.live.subscribe()
    }

    async fn ensure_templates(&self) -> Result<()> {
        for (code, name, title, body, chs) in BUILTIN_TEMPLATES {
            sqlx::query(
                "INSERT INTO notify_templates (code, name, title, body, channels, updated_at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (code) DO NOTHING",
            )
            .bind(*code)
            .bind(*name)
            .bind(*title)
            .bind(*body)
            .bind(list(chs))
            .bind(self.now())
            .execute(self.db().writer())
            .await
            .db()?;
        }
        Ok(())
    }

    /// Queues a message in the caller's transaction. Recipients are usernames; unknown or
    /// inactive ones are skipped (the count tells how many got it).
    pub async fn send_in(&self, tx: &mut Tx, req: &SendRequest) -> Result<Queued> {
        self.send_many_in(tx, std::slice::from_ref(req)).await
    }

    /// The template of a message: (title, body, default channels), cached for 30 s.
    async fn template_of(&self, tx: &mut Tx, req: &SendRequest) -> Result<(String, String, Vec<Channel>)> {
        Ok(match &req.template {
            Some(code) => {
                let cached = self.inner.templates.read().expect("templates lock").get(code).cloned();
                match cached.filter(|(at, ..)| self.now() - at < 30_000) {
                    Some((_, t, b, c)) => (t, b, c),
                    None => {
                        let row = sqlx::query("SELECT title, body, channels FROM notify_templates WHERE code = $1")
                            .bind(code)
                            .fetch_optional(&mut **tx)
                            .await
                            .db()?
                            .ok_or_else(|| Error::validation(format!("there is no message template '{code}'")))?;
                        let t =
                            (row.get::<String, _>(0), row.get::<String, _>(1), parse_list(&row.get::<String, _>(2)));
                        self.inner
                            .templates
                            .write()
                            .expect("templates lock")
                            .insert(code.clone(), (self.now(), t.0.clone(), t.1.clone(), t.2.clone()));
                        t
                    }
                }
            }
            None => {
                let title = req
                    .title
                    .clone()
                    .filter(|t| !t.trim().is_empty())
                    .ok_or_else(|| Error::validation("a title or a template is required"))?;
                (title, req.body.clone().unwrap_or_default(), vec![Channel::Inapp])
            }
        })
    }

    /// Queues several messages in the caller's transaction (the engine's task assignments of a
    /// batch): the recipients are looked up together and the rows written with multi-row
    /// INSERTs. The inbox needs no transport: its deliveries are written delivered, and
    /// [`Notify::published`] tells the recipients' open pages after the commit.
    pub async fn send_many_in(&self, tx: &mut Tx, reqs: &[SendRequest]) -> Result<Queued> {
        let backend = self.db().backend();
        let mut names: Vec<String> =
            reqs.iter().flat_map(|r| r.recipients.iter().map(|u| u.trim().to_lowercase())).collect();
        names.sort();
        names.dedup();
        // username key → (user id, email, mobile, preferred channels, quiet start, quiet end)
        let mut users: std::collections::HashMap<String, Recipient> = std::collections::HashMap::new();
        for chunk in store::chunks_pow2(&names, 32) {
            let sql = format!(
                "SELECT u.username_key, u.id, u.email, u.mobile_enc, p.channels, p.quiet_start, p.quiet_end FROM users u
                 LEFT JOIN notify_preferences p ON p.user_id = u.id WHERE u.status = 'active' AND u.username_key IN {}",
                backend.values(1, chunk.len(), 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for n in chunk {
                q = q.bind(n.as_str());
            }
            for row in q.fetch_all(&mut **tx).await.db()? {
                let prefs: Option<String> = row.get(4);
                let (quiet_start, quiet_end) = match &prefs {
                    Some(_) => (row.get(5), row.get(6)),
                    None => (Some(self.inner.opts.quiet_start.clone()), Some(self.inner.opts.quiet_end.clone())),
                };
                users.insert(
                    row.get(0),
                    Recipient {
                        user_id: row.get(1),
                        email: row.get(2),
                        mobile: row
                            .get::<Option<String>, _>(3)
                            .and_then(|enc| self.inner.identity.keys().open("users.mobile", &enc).ok()),
                        allowed: prefs.as_deref().map(parse_list),
                        quiet_start,
                        quiet_end,
                    },
                );
            }
        }
        let now = self.now();
        let mut messages: Vec<MessageRow> = Vec::new();
        let mut deliveries: Vec<DeliveryRow> = Vec::new();
        let mut queued = Queued::default();
        for req in reqs {
            let (title_t, body_t, default_chs) = self.template_of(tx, req).await?;
            let title: String = render(&title_t, &req.variables).chars().take(200).collect();
            let body: String = render(&body_t, &req.variables).chars().take(4000).collect();
            let wanted = req.channels.clone().unwrap_or(default_chs);
            let mut seen = std::collections::HashSet::new();
            for username in &req.recipients {
                let key = username.trim().to_lowercase();
                if !seen.insert(key.clone()) {
                    continue;
                }
                let Some(u) = users.get(&key) else { continue };
                let message_id = uuid::Uuid::now_v7().to_string();
                let external_at = if req.urgent {
                    now
                } else {
                    after_quiet_hours(now, u.quiet_start.as_deref(), u.quiet_end.as_deref())
                };
                for ch in std::iter::once(Channel::Inapp).chain(wanted.iter().copied().filter(|c| *c != Channel::Inapp))
                {
                    if ch != Channel::Inapp {
                        if !ch.configured(&self.inner.opts) {
                            continue;
                        }
                        // Users opt out of external channels; urgent messages still use the template's.
                        if !req.urgent && u.allowed.as_ref().is_some_and(|a| !a.contains(&ch)) {
                            continue;
                        }
                    }
                    let address = match ch {
                        Channel::Email => u.email.clone(),
                        Channel::Sms => u.mobile.clone(),
                        _ => None,
                    };
                    if matches!(ch, Channel::Email | Channel::Sms) && address.is_none() {
                        continue;
                    }
                    let inbox = ch == Channel::Inapp;
                    deliveries.push(DeliveryRow {
                        id: uuid::Uuid::now_v7().to_string(),
                        message_id: message_id.clone(),
                        user_id: u.user_id.clone(),
                        channel: ch.as_str(),
                        address,
                        delivered: inbox,
                        next_at: if inbox { now } else { external_at },
                    });
                    if inbox {
                        queued.inbox_users.push(u.user_id.clone());
                    } else {
                        queued.external = true;
                    }
                }
                messages.push(MessageRow {
                    id: message_id,
                    user_id: u.user_id.clone(),
                    template: req.template.clone(),
                    title: title.clone(),
                    body: body.clone(),
                    link: req.link.clone(),
                    urgent: req.urgent as i64,
                });
            }
        }
        for chunk in store::chunks_pow2(&messages, 32) {
            let sql = format!(
                "INSERT INTO notify_messages (id, user_id, template_code, title, body, link, urgent, created_at) VALUES {}",
                backend.values(chunk.len(), 8, 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for m in chunk {
                q = q
                    .bind(&m.id)
                    .bind(&m.user_id)
                    .bind(&m.template)
                    .bind(&m.title)
                    .bind(&m.body)
                    .bind(&m.link)
                    .bind(m.urgent)
                    .bind(now);
            }
            q.execute(&mut **tx).await.db()?;
        }
        for chunk in store::chunks_pow2(&deliveries, 32) {
            let sql = format!(
                "INSERT INTO notify_deliveries (id, message_id, user_id, channel, address, state, attempts, sent_at, next_at, created_at) VALUES {}",
                backend.values(chunk.len(), 10, 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in chunk {
                q = q
                    .bind(&d.id)
                    .bind(&d.message_id)
                    .bind(&d.user_id)
                    .bind(d.channel)
                    .bind(&d.address)
                    .bind(if d.delivered { "delivered" } else { "pending" })
                    .bind(d.delivered as i64)
                    .bind(d.delivered.then_some(now))
                    .bind(d.next_at)
                    .bind(now);
            }
            q.execute(&mut **tx).await.db()?;
        }
        queued.count = messages.len();
        Ok(queued)
    }

    /// Sends in a transaction of its own, audited (the admin's "send a notice").
    pub async fn send(&self, caller: &Caller, actor: &Actor, req: SendRequest) -> Result<usize> {
        caller.require(identity::perms::NOTIFY_MANAGE)?;
        if req.recipients.is_empty() || req.recipients.len() > 1000 {
            return Err(Error::validation("name 1-1000 recipients"));
        }
        let mut tx = self.db().begin().await?;
        let queued = self.send_in(&mut tx, &req).await?;
        let n = queued.count;
        let mut entry = actor.entry(self.now(), "notify.send");
        entry.detail =
            Some(serde_json::json!({"recipients": req.recipients.len(), "template": req.template}).to_string());
        self.inner.identity.audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.published(queued);
        Ok(n)
    }

    /// Wakes the relay (due deliveries to send).
    pub fn wake(&self) {
        self.inner.wake.notify_waiters();
    }

    /// After the commit of a transaction that sent messages: tells the recipients' open pages
    /// their inbox changed, and wakes the relay for the external channels.
    pub fn published(&self, mut queued: Queued) {
        queued.inbox_users.sort();
        queued.inbox_users.dedup();
        for u in queued.inbox_users {
            let _ = self.inner.live.send(u);
        }
        if queued.external {
            self.wake();
        }
    }

    /// Sends every due delivery once. Returns how many were attempted.
    pub async fn relay_once(&self) -> Result<usize> {
        let now = self.now();
        // Ask the read pool first, so idle polling takes no write transaction.
        let due = sqlx::query("SELECT 1 FROM notify_deliveries WHERE state = 'pending' AND next_at <= $1 LIMIT 1")
            .bind(now)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        if due.is_none() {
            return Ok(0);
        }
        let mut tx = self.db().begin().await?;
        let skip = if self.db().backend() == Backend::Postgres { " FOR UPDATE OF d SKIP LOCKED" } else { "" };
        let sql = format!(
            "SELECT d.id, d.channel, d.address, d.attempts, m.title, m.body, m.link, m.urgent, u.username, d.user_id
             FROM notify_deliveries d JOIN notify_messages m ON m.id = d.message_id JOIN users u ON u.id = d.user_id
             WHERE d.state = 'pending' AND d.next_at <= $1 AND (d.lease_until IS NULL OR d.lease_until < $1)
             ORDER BY d.next_at LIMIT 64{skip}"
        );
        let all = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).fetch_all(&mut *tx).await.db()?;
        // The inbox needs no transport: its deliveries are done in this transaction, in one
        // statement; the others are leased and sent outside it.
        let (inapp, rows): (Vec<_>, Vec<_>) = all.into_iter().partition(|r| r.get::<String, _>(1) == "inapp");
        let mut touched: Vec<String> = inapp.iter().map(|r| r.get::<String, _>(9)).collect();
        for (ids, set) in [
            (
                inapp.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>(),
                "state = 'delivered', attempts = attempts + 1, sent_at = $1, lease_until = NULL",
            ),
            (rows.iter().map(|r| r.get::<String, _>(0)).collect::<Vec<_>>(), "lease_until = $1 + 60000"),
        ] {
            if ids.is_empty() {
                continue;
            }
            let marks: Vec<String> = (0..ids.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!("UPDATE notify_deliveries SET {set} WHERE id IN ({})", marks.join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now);
            for id in ids {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await.db()?;
        }
        let inapp_n = inapp.len();
        tx.commit().await.db()?;
        let o = self.inner.opts.clone();
        let jobs = rows.iter().map(|r| {
            let id: String = r.get(0);
            let channel = Channel::parse(&r.get::<String, _>(1)).unwrap_or(Channel::Inapp);
            let address: Option<String> = r.get(2);
            let attempts: i64 = r.get(3);
            let (title, body, link): (String, String, Option<String>) = (r.get(4), r.get(5), r.get(6));
            let urgent = r.get::<i64, _>(7) != 0;
            let username: String = r.get(8);
            let user_id: String = r.get(9);
            let o = o.clone();
            async move {
                let out = channels::Outgoing {
                    delivery_id: &id,
                    username: &username,
                    title: &title,
                    body: &body,
                    link: link.as_deref(),
                    urgent,
                };
                let result = channels::send(&o, channel, address.as_deref(), &out).await;
                (id, channel, attempts, user_id, result)
            }
        });
        let results = futures::future::join_all(jobs).await;
        let n = results.len() + inapp_n;
        if results.is_empty() {
            touched.dedup();
            for u in touched {
                let _ = self.inner.live.send(u);
            }
            return Ok(n);
        }
        let mut tx = self.db().begin().await?;
        for (id, channel, attempts, user_id, result) in results {
            match result {
                Ok(()) => {
                    let state = if channel == Channel::Inapp { "delivered" } else { "sent" };
                    sqlx::query("UPDATE notify_deliveries SET state = $2, attempts = attempts + 1, sent_at = $3, lease_until = NULL, last_error = NULL WHERE id = $1")
                        .bind(&id)
                        .bind(state)
                        .bind(self.now())
                        .execute(&mut *tx)
                        .await
                        .db()?;
                    if channel == Channel::Inapp {
                        touched.push(user_id);
                    }
                }
                Err(e) => {
                    let attempts = attempts + 1;
                    let (state, next) = if attempts >= o.max_attempts {
                        ("failed", self.now())
                    } else {
                        (
                            "pending",
                            self.now() + o.backoff_ms.saturating_mul(1 << (attempts - 1).min(16)).min(3_600_000),
                        )
                    };
                    tracing::info!(delivery = %id, channel = channel.as_str(), error = %e, attempts, "delivery failed");
                    sqlx::query("UPDATE notify_deliveries SET state = $2, attempts = $3, next_at = $4, lease_until = NULL, last_error = $5 WHERE id = $1")
                        .bind(&id)
                        .bind(state)
                        .bind(attempts)
                        .bind(next)
                        .bind(e.chars().take(500).collect::<String>())
                        .execute(&mut *tx)
                        .await
                        .db()?;
                }
            }
        }
        tx.commit().await.db()?;
        touched.dedup();
        for u in touched {
            let _ = self.inner.live.send(u);
        }
        Ok(n)
    }

    /// The caller's inbox, newest first.
    pub async fn inbox(&self, caller: &Caller, unread_only: bool, page: PageRequest) -> Result<Page<Message>> {
        let mut w = Where::new();
        w.and("user_id = ?", [caller.id.clone().into()]);
        if unread_only {
            w.and_sql("read_at IS NULL");
        }
        let cols = "id, title, body, link, urgent, created_at, read_at";
        let (rows, total) =
            store::fetch_page(self.db(), &w, cols, "FROM notify_messages", "created_at DESC, id DESC", page).await?;
        let items = rows
            .iter()
            .map(|r| Message {
                id: r.get(0),
                title: r.get(1),
                body: r.get(2),
                link: r.get(3),
                urgent: r.get::<i64, _>(4) != 0,
                created_at: r.get(5),
                read_at: r.get(6),
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    pub async fn unread_count(&self, user_id: &str) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM notify_messages WHERE user_id = $1 AND read_at IS NULL")
            .bind(user_id)
            .fetch_one(self.db().reader())
            .await
            .db()?
            .get(0))
    }

    /// Marks one message of the caller read.
    pub async fn mark_read(&self, caller: &Caller, id: &str) -> Result<()> {
        let exists = sqlx::query("SELECT 1 FROM notify_messages WHERE user_id = $1 AND id = $2")
            .bind(&caller.id)
            .bind(id)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        if exists.is_none() {
            return Err(Error::not_found("message"));
        }
        sqlx::query("UPDATE notify_messages SET read_at = $3 WHERE user_id = $1 AND id = $2 AND read_at IS NULL")
            .bind(&caller.id)
            .bind(id)
            .bind(self.now())
            .execute(self.db().writer())
            .await
            .db()?;
        let _ = self.inner.live.send(caller.id.clone());
        Ok(())
    }

    /// Marks every message of the caller created up to `before` (default: now) read.
    pub async fn mark_all_read(&self, caller: &Caller, before: Option<i64>) -> Result<u64> {
        let now = self.now();
        let n = sqlx::query(
            "UPDATE notify_messages SET read_at = $2 WHERE user_id = $1 AND read_at IS NULL AND created_at <= $3",
        )
        .bind(&caller.id)
        .bind(now)
        .bind(before.unwrap_or(now))
        .execute(self.db().writer())
        .await
        .db()?
        .rows_affected();
        let _ = self.inner.live.send(caller.id.clone());
        Ok(n)
    }

    /// The send log: every delivery with its state.
    pub async fn deliveries(&self, caller: &Caller, f: &DeliveryFilter) -> Result<Page<Delivery>> {
        caller.require(identity::perms::NOTIFY_MANAGE)?;
        let page = PageRequest::new(f.page, f.page_size)?;
        let mut w = Where::new();
        if let Some(s) = &f.state {
            if !["pending", "sent", "delivered", "failed", "resent"].contains(&s.as_str()) {
                return Err(Error::new(
                    ErrorCode::InvalidQuery,
                    "state must be pending, sent, delivered, failed or resent",
                ));
            }
            w.and("d.state = ?", [s.clone().into()]);
        }
        if let Some(c) = &f.channel {
            let c = Channel::parse(c)
                .ok_or_else(|| Error::new(ErrorCode::InvalidQuery, format!("unknown channel '{c}'")))?;
            w.and("d.channel = ?", [c.as_str().to_string().into()]);
        }
        if let Some(u) = &f.username {
            w.and("u.username = ?", [u.clone().into()]);
        }
        let from =
            "FROM notify_deliveries d JOIN notify_messages m ON m.id = d.message_id JOIN users u ON u.id = d.user_id";
        let cols = "d.id, d.message_id, u.username, m.title, d.channel, d.address, d.state, d.attempts, d.next_at, d.last_error, d.sent_at, d.created_at";
        let (rows, total) = store::fetch_page(self.db(), &w, cols, from, "d.created_at DESC, d.id DESC", page).await?;
        let masker = crypto::Masker { unmask: caller.has(identity::perms::PI_UNMASK) };
        let items = rows
            .iter()
            .map(|r| {
                let channel = Channel::parse(&r.get::<String, _>(4)).unwrap_or(Channel::Inapp);
                let address: Option<String> = r.get(5);
                let address = address.map(|a| match channel {
                    Channel::Sms => masker.apply(crypto::mask::Sensitive::Mobile, &a),
                    Channel::Email => masker.apply(crypto::mask::Sensitive::Email, &a),
                    _ => a,
                });
                Delivery {
                    id: r.get(0),
                    message_id: r.get(1),
                    username: r.get(2),
                    title: r.get(3),
                    channel,
                    address,
                    state: r.get(6),
                    attempts: r.get(7),
                    next_at: r.get(8),
                    last_error: r.get(9),
                    sent_at: r.get(10),
                    created_at: r.get(11),
                }
            })
            .collect();
        Ok(Page::new(items, total, page))
    }

    /// Sends a delivery again: a new pending delivery; the old one is marked `resent`.
    pub async fn resend(&self, caller: &Caller, actor: &Actor, id: &str) -> Result<()> {
        caller.require(identity::perms::NOTIFY_MANAGE)?;
        let mut tx = self.db().begin().await?;
        let row =
            sqlx::query("SELECT message_id, user_id, channel, address, state FROM notify_deliveries WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .db()?
                .ok_or_else(|| Error::not_found("delivery"))?;
        if row.get::<String, _>(4) == "pending" {
            return Err(Error::conflict("the delivery is still pending; it will be sent"));
        }
        let now = self.now();
        sqlx::query("UPDATE notify_deliveries SET state = 'resent' WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query(
            "INSERT INTO notify_deliveries (id, message_id, user_id, channel, address, state, next_at, created_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(row.get::<String, _>(0))
        .bind(row.get::<String, _>(1))
        .bind(row.get::<String, _>(2))
        .bind(row.get::<Option<String>, _>(3))
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = actor.entry(now, "notify.resend").object("notify_delivery", id);
        self.inner.identity.audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.wake();
        Ok(())
    }

    pub async fn templates(&self, caller: &Caller) -> Result<Vec<Template>> {
        caller.require(identity::perms::NOTIFY_MANAGE)?;
        let rows =
            sqlx::query("SELECT code, name, title, body, channels, updated_at FROM notify_templates ORDER BY code")
                .fetch_all(self.db().reader())
                .await
                .db()?;
        Ok(rows
            .iter()
            .map(|r| Template {
                code: r.get(0),
                name: r.get(1),
                title: r.get(2),
                body: r.get(3),
                channels: parse_list(&r.get::<String, _>(4)),
                updated_at: r.get(5),
            })
            .collect())
    }

    /// Creates or replaces a template.
    pub async fn save_template(&self, caller: &Caller, actor: &Actor, t: Template) -> Result<Template> {
        caller.require(identity::perms::NOTIFY_MANAGE)?;
        let ok_code = !t.code.is_empty()
            && t.code.len() <= 64
            && t.code.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok_code {
            return Err(Error::validation("code must be 1-64 letters, digits, '.', '_' or '-'"));
        }
        if t.name.trim().is_empty()
            || t.title.trim().is_empty()
            || t.title.chars().count() > 200
            || t.body.chars().count() > 4000
        {
            return Err(Error::validation(
                "name and title are required; title at most 200, body at most 4000 characters",
            ));
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO notify_templates (code, name, title, body, channels, updated_at, updated_by) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (code) DO UPDATE SET name = excluded.name, title = excluded.title, body = excluded.body,
                channels = excluded.channels, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(&t.code)
        .bind(t.name.trim())
        .bind(&t.title)
        .bind(&t.body)
        .bind(list(&t.channels))
        .bind(now)
        .bind(&caller.username)
        .execute(&mut *tx)
        .await
        .db()?;
        self.inner.templates.write().expect("templates lock").remove(&t.code);
        let entry = actor.entry(now, "notify.template.save").object("notify_template", &t.code);
        self.inner.identity.audit_log().append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        Ok(Template { updated_at: now, ..t })
    }

    pub async fn preferences(&self, caller: &Caller) -> Result<Preferences> {
        let row = sqlx::query("SELECT channels, quiet_start, quiet_end FROM notify_preferences WHERE user_id = $1")
            .bind(&caller.id)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        let available: Vec<Channel> =
            Channel::ALL.into_iter().filter(|c| *c != Channel::Inapp && c.configured(&self.inner.opts)).collect();
        Ok(match row {
            Some(r) => Preferences {
                channels: parse_list(&r.get::<String, _>(0)),
                quiet_start: r.get(1),
                quiet_end: r.get(2),
                available,
            },
            None => Preferences {
                channels: available.clone(),
                quiet_start: Some(self.inner.opts.quiet_start.clone()).filter(|s| !s.is_empty()),
                quiet_end: Some(self.inner.opts.quiet_end.clone()).filter(|s| !s.is_empty()),
                available,
            },
        })
    }

    pub async fn save_preferences(&self, caller: &Caller, p: Preferences) -> Result<Preferences> {
        for t in [&p.quiet_start, &p.quiet_end].into_iter().flatten() {
            if parse_hhmm(t).is_none() {
                return Err(Error::validation(format!("'{t}' is not a time like 22:00")));
            }
        }
        if p.quiet_start.is_some() != p.quiet_end.is_some() {
            return Err(Error::validation("set both ends of the quiet hours, or neither"));
        }
        sqlx::query(
            "INSERT INTO notify_preferences (user_id, channels, quiet_start, quiet_end, updated_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (user_id) DO UPDATE SET channels = excluded.channels, quiet_start = excluded.quiet_start,
                quiet_end = excluded.quiet_end, updated_at = excluded.updated_at",
        )
        .bind(&caller.id)
        .bind(list(&p.channels))
        .bind(&p.quiet_start)
        .bind(&p.quiet_end)
        .bind(self.now())
        .execute(self.db().writer())
        .await
        .db()?;
        self.preferences(caller).await
    }

    /// Runs the relay among `bg`'s loops until they stop.
    pub fn spawn_relay(&self, bg: &mut apikit::background::Background) {
        let mut rx = bg.stop_signal();
        let me = self.clone();
        bg.spawn(async move {
            loop {
                let busy = match me.relay_once().await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "message relay");
                        false
                    }
                };
                if busy {
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(me.inner.opts.poll_ms)) => {}
                    _ = me.inner.wake.notified() => {}
                    _ = rx.changed() => return,
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_variables() {
        let v = serde_json::json!({"task": "部门审核", "n": 3}).as_object().cloned().unwrap();
        assert_eq!(render("请办理「{{task}}」（{{ n }}）{{missing}}", &v), "请办理「部门审核」（3）");
        assert_eq!(render("open {{", &v), "open {{");
    }

    #[test]
    fn quiet_hours_push_non_urgent_messages_to_the_morning() {
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        let at = |h, m| tz.with_ymd_and_hms(2026, 11, 21, h, m, 0).unwrap().timestamp_millis();
        let morning = tz.with_ymd_and_hms(2026, 11, 22, 7, 0, 0).unwrap().timestamp_millis();
        assert_eq!(after_quiet_hours(at(23, 30), Some("22:00"), Some("07:00")), morning);
        assert_eq!(after_quiet_hours(at(3, 0), Some("22:00"), Some("07:00")), at(7, 0));
        assert_eq!(after_quiet_hours(at(12, 0), Some("22:00"), Some("07:00")), at(12, 0));
        assert_eq!(after_quiet_hours(at(13, 0), Some("12:00"), Some("14:00")), at(14, 0));
        assert_eq!(after_quiet_hours(at(23, 30), None, None), at(23, 30));
    }
}
