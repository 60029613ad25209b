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

const SEALED_COLUMNS: &str = "id, username, primary_org_id, status, password_hash, admin_role, expires_at, \
                              totp_secret_enc, totp_enabled, must_change_password";

/// The MAC of one row's sealed columns, as stored (lowercase hex).
fn row_mac(keys: &crypto::KeyRing, r: &store::AnyRow) -> String {
    let mut canonical = Vec::with_capacity(256);
    let mut put = |v: Option<String>| crypto::hash::put_field(&mut canonical, v.as_deref().map(str::as_bytes));
    for i in 0..6 {
        put(r.get::<Option<String>, _>(i));
    }
    put(r.get::<Option<i64>, _>(6).map(|v| v.to_string()));
    put(r.get::<Option<String>, _>(7));
    put(Some(r.get::<i64, _>(8).to_string()));
    put(Some(r.get::<i64, _>(9).to_string()));
    crypto::hash::to_hex(&keys.mac("users.row", &canonical))
}

impl Identity {
    /// Recomputes an account's MAC inside the transaction that changed it.
    pub(crate) async fn reseal_user(&self, tx: &mut Tx, user_id: &str) -> Result<()> {
        let sql = format!("SELECT {SEALED_COLUMNS} FROM users WHERE id = $1");
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(&mut **tx).await.db()?
        else {
            return Ok(());
        };
        let mac = row_mac(self.keys(), &row);
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
        let sql = format!("SELECT {SEALED_COLUMNS}, row_mac FROM users WHERE id = $1");
        let Some(row) =
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(user_id).fetch_optional(self.db().reader()).await.db()?
        else {
            return Ok(());
        };
        let stored: Option<String> = row.get(10);
        let expected = row_mac(self.keys(), &row);
        if stored.is_some_and(|s| crypto::hash::constant_time_eq(s.as_bytes(), expected.as_bytes())) {
            return Ok(());
        }
        let username: String = row.get(1);
        tracing::error!(%username, "an account fails its integrity check: it was changed outside the application");
        let now = self.now();
        let entry = audit::AuditEntry {
            actor_name: Some("integrity-check".into()),
            ..audit::AuditEntry::new(now, "user.integrity_violation", audit::Channel::System)
        }
        .object("user", user_id)
        .result(audit::AuditResult::Denied, Some("integrity_violation".into()));
        self.audit_now(entry).await?;
        let signal = AlertSignal {
            rule: AlertRule::IntegrityViolation,
            subject: format!("user:{user_id}"),
            subject_name: Some(username.clone()),
            source_ip: None,
            count: 1,
            detail: format!(
                "账号「{username}」的存储数据未通过完整性校验（口令、角色、状态或有效期等被绕过系统直接修改），已拒绝其登录和使用"
            ),
            blocked_until: None,
        };
        self.raise_alert(signal).await?;
        Err(Error::new(
            ErrorCode::IntegrityViolation,
            "this account's stored data fails its integrity check; it cannot be used until the security administrator restores it",
        ))
    }
}
