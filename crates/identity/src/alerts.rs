//! Security alerts (调用异常监测, 等保 DJ-IP-3): abnormal use of the API found by the detector in
//! `apikit::anomaly` — bursts of refusals, one caller sweeping through many objects, failing
//! signatures, the three administrators working at night. Each alert is stored, audited and
//! announced to subscribers (the server tells the security administrators); repeats of an open
//! alert (same rule, same subject) are counted into it until the security administrator handles it.

use kernel::{Error, ErrorCode, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use store::{DbResultExt, Row};

use crate::perms::{POLICY_MANAGE, POLICY_READ};
use crate::scope::Caller;
use crate::service::{Actor, Identity};

/// What the detector saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertRule {
    /// Many requests refused as unauthenticated or forbidden from one source in a minute.
    DeniedBurst,
    /// One caller read many different objects by id in a minute (enumeration, scraping).
    ObjectSweep,
    /// Many signed requests with a bad signature, stale time or reused nonce in a minute.
    SignatureFailures,
    /// One of the three administrators changed something outside working hours.
    OffHoursAdmin,
    /// An account's stored data fails its integrity check (changed outside the application).
    IntegrityViolation,
    /// One caller took more data rows out through lists and exports in an hour than the policy
    /// allows (bulk export).
    BulkExport,
}

impl AlertRule {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::DeniedBurst => "denied_burst",
            AlertRule::ObjectSweep => "object_sweep",
            AlertRule::SignatureFailures => "signature_failures",
            AlertRule::OffHoursAdmin => "off_hours_admin",
            AlertRule::IntegrityViolation => "integrity_violation",
            AlertRule::BulkExport => "bulk_export",
        }
    }

    pub fn parse(s: &str) -> Option<AlertRule> {
        [
            AlertRule::DeniedBurst,
            AlertRule::ObjectSweep,
            AlertRule::SignatureFailures,
            AlertRule::OffHoursAdmin,
            AlertRule::IntegrityViolation,
            AlertRule::BulkExport,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// The rule's name for people.
    pub fn label(self) -> &'static str {
        match self {
            AlertRule::DeniedBurst => "频繁被拒绝访问",
            AlertRule::ObjectSweep => "短时间遍历大量数据",
            AlertRule::SignatureFailures => "签名验证频繁失败",
            AlertRule::OffHoursAdmin => "管理员非工作时间操作",
            AlertRule::IntegrityViolation => "存储数据完整性异常",
            AlertRule::BulkExport => "短时间大量获取数据",
        }
    }
}

/// A detection to record.
#[derive(Debug, Clone)]
pub struct AlertSignal {
    pub rule: AlertRule,
    /// `user:<id>`, `app:<app id>` or `ip:<address>`.
    pub subject: String,
    /// Username or application name, when known.
    pub subject_name: Option<String>,
    pub source_ip: Option<String>,
    /// Events seen in the window that raised it.
    pub count: i64,
    /// What was seen, for people (Chinese).
    pub detail: String,
    /// Until when the subject's requests are refused (when the policy blocks).
    pub blocked_until: Option<i64>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecurityAlert {
    pub id: String,
    pub rule: AlertRule,
    pub subject: String,
    pub subject_name: Option<String>,
    pub source_ip: Option<String>,
    pub first_at: i64,
    pub last_at: i64,
    /// Events counted into this alert over all its windows.
    pub count: i64,
    pub detail: String,
    pub blocked_until: Option<i64>,
    /// `open` or `handled`.
    pub status: String,
    pub handled_by: Option<String>,
    pub handled_at: Option<i64>,
    pub note: Option<String>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertFilter {
    /// `open` or `handled`.
    pub status: Option<String>,
    pub rule: Option<AlertRule>,
}

const COLUMNS: &str = "id, rule, subject, subject_name, source_ip, first_at, last_at, count, detail, blocked_until, \
                       status, handled_by, handled_at, note";

fn from_row(r: &store::AnyRow) -> SecurityAlert {
    let rule: String = r.get(1);
    SecurityAlert {
        id: r.get(0),
        rule: AlertRule::parse(&rule).unwrap_or(AlertRule::DeniedBurst),
        subject: r.get(2),
        subject_name: r.get(3),
        source_ip: r.get(4),
        first_at: r.get(5),
        last_at: r.get(6),
        count: r.get(7),
        detail: r.get(8),
        blocked_until: r.get(9),
        status: r.get(10),
        handled_by: r.get(11),
        handled_at: r.get(12),
        note: r.get(13),
    }
}

impl Identity {
    /// Records a detection: counted into the open alert of the same rule and subject, or a new
    /// one. Audited as `security.alert`; subscribers hear of it.
    pub async fn raise_alert(&self, signal: AlertSignal) -> Result<SecurityAlert> {
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let open: Option<String> = sqlx::query_scalar(
            "SELECT id FROM security_alerts WHERE rule = $1 AND subject = $2 AND status = 'open' ORDER BY last_at DESC LIMIT 1",
        )
        .bind(signal.rule.as_str())
        .bind(&signal.subject)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        let id = match open {
            Some(id) => {
                sqlx::query(
                    "UPDATE security_alerts SET last_at = $2, count = count + $3, detail = $4,
                        blocked_until = COALESCE($5, blocked_until), source_ip = COALESCE($6, source_ip)
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(now)
                .bind(signal.count)
                .bind(&signal.detail)
                .bind(signal.blocked_until)
                .bind(signal.source_ip.as_deref())
                .execute(&mut *tx)
                .await
                .db()?;
                id
            }
            None => {
                let id = kernel::ids::new_id();
                sqlx::query(
                    "INSERT INTO security_alerts (id, rule, subject, subject_name, source_ip, first_at, last_at, count,
                        detail, blocked_until, status)
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, 'open')",
                )
                .bind(&id)
                .bind(signal.rule.as_str())
                .bind(&signal.subject)
                .bind(signal.subject_name.as_deref())
                .bind(signal.source_ip.as_deref())
                .bind(now)
                .bind(signal.count)
                .bind(&signal.detail)
                .bind(signal.blocked_until)
                .execute(&mut *tx)
                .await
                .db()?;
                id
            }
        };
        let entry = audit::AuditEntry {
            actor_name: Some("detector".into()),
            source_ip: signal.source_ip.clone(),
            ..audit::AuditEntry::new(now, "security.alert", audit::Channel::System)
        }
        .object("security_alert", &id)
        .detail(serde_json::json!({
            "rule": signal.rule.as_str(), "subject": signal.subject, "subject_name": signal.subject_name,
            "count": signal.count, "detail": signal.detail, "blocked_until": signal.blocked_until,
        }));
        self.inner.audit.append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        let alert = self.alert_by_id(&id).await?;
        let _ = self.inner.alerts.send(alert.clone());
        Ok(alert)
    }

    /// New and repeated alerts as they are raised.
    pub fn subscribe_alerts(&self) -> tokio::sync::broadcast::Receiver<SecurityAlert> {
        self.inner.alerts.subscribe()
    }

    async fn alert_by_id(&self, id: &str) -> Result<SecurityAlert> {
        let sql = format!("SELECT {COLUMNS} FROM security_alerts WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.db().reader()).await.db()?;
        row.map(|r| from_row(&r)).ok_or_else(|| Error::new(ErrorCode::NotFound, "no such security alert"))
    }

    /// Alerts, the most recent first (security administrator).
    pub async fn list_alerts(
        &self,
        caller: &Caller,
        filter: &AlertFilter,
        page: PageRequest,
    ) -> Result<Page<SecurityAlert>> {
        caller.require(POLICY_READ)?;
        if let Some(s) = filter.status.as_deref()
            && s != "open"
            && s != "handled"
        {
            return Err(Error::validation("status must be open or handled"));
        }
        let mut w = store::Where::new();
        if let Some(s) = &filter.status {
            w.and("status = ?", [store::Value::Text(s.clone())]);
        }
        if let Some(r) = filter.rule {
            w.and("rule = ?", [store::Value::Text(r.as_str().into())]);
        }
        let (rows, total) =
            store::fetch_page(self.db(), &w, COLUMNS, "FROM security_alerts", "last_at DESC, id", page).await?;
        Ok(Page::new(rows.iter().map(from_row).collect(), total, page))
    }

    /// How many alerts are open (for the badge; the caller was checked by [`Identity::list_alerts`]).
    pub async fn open_alert_count(&self) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM security_alerts WHERE status = 'open'")
            .fetch_one(self.db().reader())
            .await
            .db()
    }

    /// Marks an alert handled with what was done (security administrator); audited. Handling
    /// it also ends any block on its subject (the caller of this lifts the in-memory block).
    pub async fn handle_alert(&self, caller: &Caller, actor: &Actor, id: &str, note: &str) -> Result<SecurityAlert> {
        caller.require(POLICY_MANAGE)?;
        let note = note.trim();
        if note.is_empty() || note.chars().count() > 500 {
            return Err(Error::validation("say in 1-500 characters what was found or done"));
        }
        let alert = self.alert_by_id(id).await?;
        if alert.status != "open" {
            return Err(Error::new(ErrorCode::Conflict, "this alert was already handled"));
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "UPDATE security_alerts SET status = 'handled', handled_by = $2, handled_at = $3, note = $4,
                blocked_until = CASE WHEN blocked_until > $3 THEN $3 ELSE blocked_until END
             WHERE id = $1 AND status = 'open'",
        )
        .bind(id)
        .bind(actor.username.as_deref())
        .bind(now)
        .bind(note)
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = actor.entry(now, "security.alert.handle").object("security_alert", id).detail(serde_json::json!({
            "rule": alert.rule.as_str(), "subject": alert.subject, "note": note,
        }));
        self.inner.audit.append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        self.alert_by_id(id).await
    }

    /// Active accounts holding an administrator role (`secadmin`, …), by username.
    pub async fn usernames_with_admin_role(&self, role: &str) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT username FROM users WHERE admin_role = $1 AND status = 'active' ORDER BY username")
            .bind(role)
            .fetch_all(self.db().reader())
            .await
            .db()
    }
}
