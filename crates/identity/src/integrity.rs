//! Integrity of stored accounts (等保 DJ-DI-2: 鉴别数据 and authorisation data kept intact in
//! storage). Each `users` row carries `row_mac`, a keyed MAC (from the key ring, context
//! `users.row`) over the columns that decide who may log in and as what: username, organisation,
//! status, password hash, administrator role, end date, TOTP secret and state, forced change.
//!
//! Every write of those columns reseals the row in its transaction ([`Identity::reseal_user`]);
//! logging in and loading a caller check it ([`Identity::check_user`]). A row changed outside
//! the application — someone with database access making themselves `secadmin`, swapping in a
//! known password hash, lifting a disable — fails the check: the account is refused with
//! `integrity_violation`, the refusal audited and a security alert raised. The security
//! administrator restores the row from a backup (or the system administrator resets it through
//! the application, which reseals it).

use kernel::{Error, ErrorCode, Result};
use store::{DbResultExt, Row, Tx};

use crate::alerts::{AlertRule, AlertSignal};
use crate::service::Identity;

/// The MAC context of account rows.
pub(crate) const ROW_CONTEXT: &str = "users.row";

/// The sealed columns, in MAC order; `row_mac` follows them in every query that checks a row.
pub(crate) const SEALED_COLUMNS: &str = "u.id, u.username, u.primary_org_id, u.status, u.password_hash, u.admin_role, \
                                         u.expires_at, u.totp_secret_enc, u.totp_enabled, u.must_change_password";
/// Where `row_mac` is in a row that starts with [`SEALED_COLUMNS`].
pub(crate) const ROW_MAC_AT: usize = 10;

/// The MAC of one row's sealed columns (the first ten of `r`), as stored (lowercase hex).
fn row_mac(key: &crypto::hash::KeyedMac, r: &store::AnyRow) -> String {
    let mut canonical = Vec::with_capacity(256);
    let mut put = |v: Option<String>| crypto::hash::put_field(&mut canonical, v.as_deref().map(str::as_bytes));
    for i in 0..6 {
        put(r.get::<Option<String>, _>(i));
    }
    put(r.get::<Option<i64>, _>(6).map(|v| v.to_string()));
    put(r.get::<Option<String>, _>(7));
    put(Some(r.get::<i64, _>(8).to_string()));
    put(Some(r.get::<i64, _>(9).to_string()));
    crypto::hash::to_hex(&key.mac(&canonical))
}

impl Identity {
    /// Recomputes an account's MAC inside the transaction that changed it.
    pub(crate) async fn reseal_user(&self, tx: &mut Tx, user_id: &str) -> Result<()> {
        let sql = format!("SELECT {SEALED_COLUMNS} FROM users u WHERE u.id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(&mut **tx).await.db()?
        else {
            return Ok(());
        };
        let mac = row_mac(&self.inner.row_mac, &row);
        sqlx::query("UPDATE users SET row_mac = $1 WHERE id = $2")
            .bind(mac)
            .bind(user_id)
            .execute(&mut **tx)
            .await
            .db()?;
        Ok(())
    }

    /// Seals the accounts that have no MAC yet (rows from before sealing existed); run at start.
    /// Returns how many were sealed.
    pub async fn seal_unsealed_users(&self) -> Result<usize> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM users WHERE row_mac IS NULL")
            .fetch_all(self.db().reader())
            .await
            .db()?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db().begin().await?;
        for id in &ids {
            self.reseal_user(&mut tx, id).await?;
        }
        tx.commit().await.db()?;
        Ok(ids.len())
    }

    /// Checks an account against its MAC; on a mismatch refuses it, audits the refusal and raises
    /// a security alert.
    pub(crate) async fn check_user(&self, user_id: &str) -> Result<()> {
        let sql = format!("SELECT {SEALED_COLUMNS}, u.row_mac FROM users u WHERE u.id = $1");
        let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(self.db().reader()).await.db()?
        else {
            return Ok(());
        };
        self.check_user_row(&row).await
    }

    /// [`Identity::check_user`] on a row already read: [`SEALED_COLUMNS`], then `row_mac`
    /// (further columns may follow).
    pub(crate) async fn check_user_row(&self, row: &store::AnyRow) -> Result<()> {
        let stored: Option<String> = row.get(ROW_MAC_AT);
        let expected = row_mac(&self.inner.row_mac, row);
        if stored.is_some_and(|s| crypto::hash::constant_time_eq(s.as_bytes(), expected.as_bytes())) {
            return Ok(());
        }
        let user_id: String = row.get(0);
        let username: String = row.get(1);
        tracing::error!(%username, "an account fails its integrity check: it was changed outside the application");
        self.report_integrity_violation(IntegrityFinding {
            action: "user.integrity_violation".into(),
            object_type: "user".into(),
            object_id: user_id,
            subject_name: Some(username.clone()),
            audit_detail: None,
            alert_detail: format!(
                "账号「{username}」的存储数据未通过完整性校验（口令、角色、状态或有效期等被绕过系统直接修改），已拒绝其登录和使用"
            ),
        })
        .await?;
        Err(Error::new(
            ErrorCode::IntegrityViolation,
            "this account's stored data fails its integrity check; it cannot be used until the security administrator restores it",
        ))
    }
}

/// Stored data found changed outside the application (DJ-DI-2), for
/// [`Identity::report_integrity_violation`].
pub struct IntegrityFinding {
    /// Audit action, `<area>.integrity_violation`.
    pub action: String,
    pub object_type: String,
    pub object_id: String,
    /// How the security administrator knows the object (a username, a case number).
    pub subject_name: Option<String>,
    /// What failed, for the audit record.
    pub audit_detail: Option<serde_json::Value>,
    /// The alert's text, in Chinese.
    pub alert_detail: String,
}

impl Identity {
    /// Records a finding: an audit record (denied, `integrity_violation`) each time, and one open
    /// security alert per object (`integrity_violation`, 存储数据完整性异常). Accounts, cases and base
    /// records all report through here.
    pub async fn report_integrity_violation(&self, f: IntegrityFinding) -> Result<()> {
        let mut entry = audit::AuditEntry {
            actor_name: Some("integrity-check".into()),
            ..audit::AuditEntry::new(self.now(), &f.action, audit::Channel::System)
        }
        .object(&f.object_type, &f.object_id)
        .result(audit::AuditResult::Denied, Some("integrity_violation".into()));
        if let Some(d) = f.audit_detail {
            entry = entry.detail(d);
        }
        self.audit_now(entry).await?;
        self.raise_alert(AlertSignal {
            rule: AlertRule::IntegrityViolation,
            subject: format!("{}:{}", f.object_type, f.object_id),
            subject_name: f.subject_name,
            source_ip: None,
            count: 1,
            detail: f.alert_detail,
            blocked_until: None,
        })
        .await?;
        Ok(())
    }
}
