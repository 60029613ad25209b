//! Logging in: passwords with lockout, server-side sessions with idle and absolute timeouts,
//! the second factor (TOTP, recovery codes), forced password changes and logout.
//!
//! A session moves through stages: `mfa` (second factor owed) → `change_password` (initial,
//! reset or expired password) → `enroll_mfa` (two-factor mandatory but not set up) → `active`.
//! Only an `active` session may use the platform.

use std::sync::OnceLock;

use audit::AuditResult;
use crypto::{HashAlg, otp, password};
use kernel::{Error, ErrorCode, Result};
use serde::Serialize;
use store::{DbResultExt, Row, Tx};

use crate::model::AdminRole;
use crate::service::{Actor, Identity};

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Mfa,
    ChangePassword,
    EnrollMfa,
    Active,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mfa => "mfa",
            Stage::ChangePassword => "change_password",
            Stage::EnrollMfa => "enroll_mfa",
            Stage::Active => "active",
        }
    }

    fn parse(s: &str) -> Stage {
        match s {
            "active" => Stage::Active,
            "change_password" => Stage::ChangePassword,
            "enroll_mfa" => Stage::EnrollMfa,
            _ => Stage::Mfa,
        }
    }

    /// The error a request gets when its session is not active yet.
    pub fn blocking_error(self) -> Option<Error> {
        match self {
            Stage::Active => None,
            Stage::Mfa => {
                Some(Error::new(ErrorCode::MfaRequired, "enter the one-time code from your authenticator app"))
            }
            Stage::ChangePassword => {
                Some(Error::new(ErrorCode::PasswordChangeRequired, "change your password before continuing"))
            }
            Stage::EnrollMfa => {
                Some(Error::new(ErrorCode::MfaEnrollmentRequired, "set up two-factor authentication before continuing"))
            }
        }
    }
}

/// A new session. The token goes into the cookie; only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
    pub stage: Stage,
    pub user_id: String,
    pub expires_at: i64,
}

/// A live session.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub user_id: String,
    pub stage: Stage,
    pub csrf_token: String,
    pub expires_at: i64,
}

/// What the authenticator app needs to enrol.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TotpSetup {
    pub secret: String,
    pub otpauth_uri: String,
    /// `totp` (RFC 6238, any authenticator app) or `sm3` (GM/T 0021 dynamic password, the 密评
    /// profile: needs a token or app that implements it).
    pub algorithm: String,
}

fn session_id(token: &str) -> String {
    crypto::hash::to_hex(&crypto::digest(HashAlg::Sm3, token.as_bytes()))
}

/// A hash of the configured scheme and cost, verified for unknown usernames so they take as long
/// as known ones. One per scheme: the process has one configuration, tests several.
fn dummy_hash(cost: crypto::password::HashCost) -> &'static str {
    static ARGON2: OnceLock<String> = OnceLock::new();
    static PBKDF2_SM3: OnceLock<String> = OnceLock::new();
    let cell = match cost.scheme {
        crypto::password::Scheme::Argon2id => &ARGON2,
        crypto::password::Scheme::Pbkdf2Sm3 => &PBKDF2_SM3,
    };
    cell.get_or_init(|| password::hash(cost, "not-a-real-password"))
}

struct LoginRow {
    id: String,
    username: String,
    org_id: String,
    status: String,
    password_hash: String,
    must_change: bool,
    changed_at: i64,
    failed: i64,
    first_failed_at: Option<i64>,
    locked_until: Option<i64>,
    totp_enabled: bool,
    admin_role: Option<String>,
    expires_at: Option<i64>,
}

impl Identity {
    async fn login_row(&self, username: &str) -> Result<Option<LoginRow>> {
        let row = sqlx::query(
            "SELECT id, username, primary_org_id, status, password_hash, must_change_password, password_changed_at,
                    failed_logins, first_failed_at, locked_until, totp_enabled, admin_role, expires_at
             FROM users WHERE username_key = $1",
        )
        .bind(username.trim().to_lowercase())
        .fetch_optional(self.db().reader())
        .await
        .db()?;
        Ok(row.map(|r| LoginRow {
            id: r.get(0),
            username: r.get(1),
            org_id: r.get(2),
            status: r.get(3),
            password_hash: r.get(4),
            must_change: r.get::<i64, _>(5) != 0,
            changed_at: r.get(6),
            failed: r.get(7),
            first_failed_at: r.get(8),
            locked_until: r.get(9),
            totp_enabled: r.get::<i64, _>(10) != 0,
            admin_role: r.get(11),
            expires_at: r.get(12),
        }))
    }

    /// Whether two-factor authentication is mandatory for a user: the three administrators and
    /// holders of a role marked so.
    pub async fn mfa_required(&self, user_id: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT u.admin_role, (SELECT COUNT(*) FROM grants g JOIN roles r ON r.id = g.role_id
                                    WHERE g.user_id = u.id AND r.mfa_required = 1)
             FROM users u WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_one(self.db().reader())
        .await
        .db()?;
        Ok(row.get::<Option<String>, _>(0).is_some() || row.get::<i64, _>(1) > 0)
    }

    /// The stage after `from`, given the user's state now.
    async fn next_stage(&self, user_id: &str, mfa_passed: bool) -> Result<Stage> {
        let row =
            sqlx::query("SELECT must_change_password, password_changed_at, totp_enabled FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_one(self.db().reader())
                .await
                .db()?;
        let totp_enabled = row.get::<i64, _>(2) != 0;
        if totp_enabled && !mfa_passed {
            return Ok(Stage::Mfa);
        }
        if row.get::<i64, _>(0) != 0 || self.password_expired(row.get(1)) {
            return Ok(Stage::ChangePassword);
        }
        if !totp_enabled && self.mfa_required(user_id).await? {
            return Ok(Stage::EnrollMfa);
        }
        Ok(Stage::Active)
    }

    fn password_expired(&self, changed_at: i64) -> bool {
        let days = self.policy().password_max_age_days as i64;
        days > 0 && self.now() > changed_at + days * 86_400_000
    }

    /// Checks a username and password and opens a session.
    pub async fn login(&self, username: &str, password_input: &str, actor: &Actor) -> Result<NewSession> {
        let now = self.now();
        let policy = self.policy();
        let name_for_audit: String = username.chars().filter(|c| !c.is_control()).take(64).collect();
        let mut attempt = actor.clone();
        attempt.username = Some(name_for_audit.clone());
        let Some(u) = self.login_row(username).await? else {
            // Spend the same time as a real check so usernames cannot be probed by timing.
            let _ = password::verify(password_input, dummy_hash(self.inner.opts.hash_cost));
            let entry = attempt
                .entry(now, "auth.login")
                .result(AuditResult::Failure, Some(ErrorCode::InvalidCredentials.as_str().into()));
            self.audit_now(entry).await?;
            return Err(Error::new(ErrorCode::InvalidCredentials, "username or password is wrong"));
        };
        attempt.user_id = Some(u.id.clone());
        attempt.username = Some(u.username.clone());
        attempt.org_id = Some(u.org_id.clone());
        // Before trusting the stored hash, role or status: a row edited in the database is refused.
        self.check_user(&u.id).await?;
        if let Some(until) = u.locked_until.filter(|t| *t > now) {
            let entry = attempt
                .entry(now, "auth.login")
                .object("user", &u.id)
                .result(AuditResult::Denied, Some(ErrorCode::AccountLocked.as_str().into()));
            self.audit_now(entry).await?;
            let mins = ((until - now) / 60_000).max(1);
            return Err(Error::new(
                ErrorCode::AccountLocked,
                format!("too many failed logins; the account is locked for another {mins} minute(s)"),
            ));
        }
        if !password::verify(password_input, &u.password_hash) {
            let window = policy.lockout_window_minutes as i64 * 60_000;
            let (failed, first) = match u.first_failed_at {
                Some(first) if first >= now - window => (u.failed + 1, first),
                _ => (1, now),
            };
            let lock = failed >= policy.lockout_threshold as i64;
            let mut tx = self.db().begin().await?;
            if lock {
                sqlx::query(
                    "UPDATE users SET failed_logins = 0, first_failed_at = NULL, locked_until = $1 WHERE id = $2",
                )
                .bind(now + policy.lockout_minutes as i64 * 60_000)
                .bind(&u.id)
                .execute(&mut *tx)
                .await
                .db()?;
            } else {
                sqlx::query("UPDATE users SET failed_logins = $1, first_failed_at = $2 WHERE id = $3")
                    .bind(failed)
                    .bind(first)
                    .bind(&u.id)
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
            let entry = attempt
                .entry(now, "auth.login")
                .object("user", &u.id)
                .result(AuditResult::Failure, Some(ErrorCode::InvalidCredentials.as_str().into()));
            self.audit(&mut tx, entry).await?;
            if lock {
                let entry = attempt.entry(now, "auth.lock").object("user", &u.id).detail(serde_json::json!({
                    "failures": failed, "minutes": policy.lockout_minutes,
                }));
                self.audit(&mut tx, entry).await?;
            }
            tx.commit().await.db()?;
            if lock {
                return Err(Error::new(
                    ErrorCode::AccountLocked,
                    format!("too many failed logins; the account is locked for {} minutes", policy.lockout_minutes),
                ));
            }
            return Err(Error::new(ErrorCode::InvalidCredentials, "username or password is wrong"));
        }
        if u.status != "active" {
            let entry = attempt
                .entry(now, "auth.login")
                .object("user", &u.id)
                .result(AuditResult::Denied, Some(ErrorCode::AccountDisabled.as_str().into()));
            self.audit_now(entry).await?;
            return Err(Error::new(ErrorCode::AccountDisabled, "the account is disabled; ask your administrator"));
        }
        if let Some(end) = u.expires_at.filter(|t| *t <= now) {
            let entry = attempt
                .entry(now, "auth.login")
                .object("user", &u.id)
                .result(AuditResult::Denied, Some(ErrorCode::AccountExpired.as_str().into()));
            self.audit_now(entry).await?;
            let day = kernel::calendar::china_date(end).map(|d| d.to_string()).unwrap_or_default();
            return Err(Error::new(
                ErrorCode::AccountExpired,
                format!("the account ended on {day}; ask your administrator to extend it"),
            ));
        }
        let _ = (u.must_change, u.changed_at, u.totp_enabled, &u.admin_role);
        let stage = self.next_stage(&u.id, false).await?;
        let token = crypto::random::token();
        let csrf_token = crypto::random::token();
        let expires_at = now + policy.session_absolute_hours as i64 * 3_600_000;
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "UPDATE users SET failed_logins = 0, first_failed_at = NULL, locked_until = NULL, last_login_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(&u.id)
        .execute(&mut *tx)
        .await
        .db()?;
        sqlx::query(
            "INSERT INTO sessions (id, user_id, stage, csrf_token, created_at, last_seen_at, expires_at, source_ip)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7)",
        )
        .bind(session_id(&token))
        .bind(&u.id)
        .bind(stage.as_str())
        .bind(&csrf_token)
        .bind(now)
        .bind(expires_at)
        .bind(actor.source_ip.as_deref())
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = attempt.entry(now, "auth.login").object("user", &u.id).detail(serde_json::json!({"stage": stage}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        Ok(NewSession { token, csrf_token, stage, user_id: u.id, expires_at })
    }

    /// The active session and its caller for a cookie token, from the short-lived cache when
    /// possible (see `cache.rs`). Sessions in a login step are never cached.
    pub async fn authenticate_active(&self, token: &str) -> Result<(Session, crate::Caller)> {
        let now = self.now();
        if let Some(hit) = self.inner.sessions.get(&session_id(token), now) {
            return Ok(hit);
        }
        let loaded = async {
            let session = self.authenticate(token).await?;
            if let Some(e) = session.stage.blocking_error() {
                return Err(e);
            }
            let caller = self.load_caller(&session.user_id, Some(session.id.clone())).await?;
            Ok((session, caller))
        };
        match loaded.await {
            Ok((session, caller)) => {
                self.inner.sessions.put(session.clone(), caller.clone(), now);
                Ok((session, caller))
            }
            Err(e) => {
                // No longer valid (or not loadable): nobody may use the cached entry meanwhile.
                self.inner.sessions.evict(&session_id(token));
                Err(e)
            }
        }
    }

    /// Finds the live session for a cookie token, enforcing idle and absolute timeouts.
    pub async fn authenticate(&self, token: &str) -> Result<Session> {
        let id = session_id(token);
        let expired = |m: &str| Error::new(ErrorCode::SessionExpired, m.to_string());
        let row = sqlx::query(
            "SELECT user_id, stage, csrf_token, last_seen_at, expires_at, revoked_at FROM sessions WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(self.db().reader())
        .await
        .db()?
        .ok_or_else(|| expired("the session is not valid; log in again"))?;
        if row.get::<Option<i64>, _>(5).is_some() {
            return Err(expired("the session has ended; log in again"));
        }
        let now = self.now();
        let last_seen: i64 = row.get(3);
        let expires_at: i64 = row.get(4);
        let idle = self.policy().session_idle_minutes as i64 * 60_000;
        if now >= expires_at || now - last_seen >= idle {
            sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now)
                .bind(&id)
                .execute(self.db().writer())
                .await
                .db()?;
            return Err(expired(if now >= expires_at {
                "the session reached its maximum lifetime; log in again"
            } else {
                "the session was idle too long; log in again"
            }));
        }
        // Touch at most every 15 s: enough precision for minutes-long timeouts, few writes.
        if now - last_seen > 15_000 {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&id)
                .execute(self.db().writer())
                .await
                .db()?;
        }
        Ok(Session {
            id,
            user_id: row.get(0),
            stage: Stage::parse(&row.get::<String, _>(1)),
            csrf_token: row.get(2),
            expires_at,
        })
    }

    async fn set_stage(&self, tx: &mut Tx, session: &Session, stage: Stage) -> Result<()> {
        sqlx::query("UPDATE sessions SET stage = $1 WHERE id = $2")
            .bind(stage.as_str())
            .bind(&session.id)
            .execute(&mut **tx)
            .await
            .db()?;
        Ok(())
    }

    /// Checks the second factor (a TOTP code or a recovery code) for a session in stage `mfa`.
    pub async fn verify_second_factor(&self, session: &Session, code: &str, actor: &Actor) -> Result<Stage> {
        if session.stage != Stage::Mfa {
            return Err(Error::conflict("no second factor is pending for this session"));
        }
        let now = self.now();
        let row = sqlx::query("SELECT totp_secret_enc, totp_last_step FROM users WHERE id = $1")
            .bind(&session.user_id)
            .fetch_one(self.db().reader())
            .await
            .db()?;
        let secret = row
            .get::<Option<String>, _>(0)
            .and_then(|enc| self.keys().open("users.totp", &enc).ok())
            .map(|stored| otp::Secret::from_stored(&stored))
            .ok_or_else(|| Error::internal("totp secret missing or undecryptable"))?;
        let mut tx = self.db().begin().await?;
        let code = code.trim();
        let ok = if code.len() == 6 {
            match secret.verify(code, now / 1000, row.get(1)) {
                Some(step) => {
                    sqlx::query("UPDATE users SET totp_last_step = $1 WHERE id = $2")
                        .bind(step)
                        .bind(&session.user_id)
                        .execute(&mut *tx)
                        .await
                        .db()?;
                    true
                }
                None => false,
            }
        } else {
            let hash = recovery_hash(code);
            let res = sqlx::query(
                "UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hash = $3 AND used_at IS NULL",
            )
            .bind(now)
            .bind(&session.user_id)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .db()?;
            res.rows_affected() == 1
        };
        if !ok {
            drop(tx);
            let entry = actor
                .entry(now, "auth.mfa")
                .object("user", &session.user_id)
                .result(AuditResult::Failure, Some(ErrorCode::InvalidTotp.as_str().into()));
            self.audit_now(entry).await?;
            return Err(Error::new(ErrorCode::InvalidTotp, "the code is wrong, expired or already used"));
        }
        let stage = self.next_stage(&session.user_id, true).await?;
        self.set_stage(&mut tx, session, stage).await?;
        self.audit(&mut tx, actor.entry(now, "auth.mfa").object("user", &session.user_id)).await?;
        tx.commit().await.db()?;
        Ok(stage)
    }

    /// Changes the session user's password (after checking the current one); ends their other
    /// sessions.
    pub async fn change_password(&self, session: &Session, current: &str, new: &str, actor: &Actor) -> Result<Stage> {
        if session.stage == Stage::Mfa {
            return Err(Stage::Mfa.blocking_error().expect("mfa blocks"));
        }
        let policy = self.policy();
        let row = sqlx::query("SELECT username, password_hash FROM users WHERE id = $1")
            .bind(&session.user_id)
            .fetch_one(self.db().reader())
            .await
            .db()?;
        let username: String = row.get(0);
        let now = self.now();
        if !password::verify(current, &row.get::<String, _>(1)) {
            let entry = actor
                .entry(now, "auth.password_change")
                .object("user", &session.user_id)
                .result(AuditResult::Failure, Some(ErrorCode::InvalidCredentials.as_str().into()));
            self.audit_now(entry).await?;
            return Err(Error::new(ErrorCode::InvalidCredentials, "the current password is wrong"));
        }
        policy.check_password(&username, new)?;
        let history = sqlx::query(
            "SELECT password_hash FROM password_history WHERE user_id = $1 ORDER BY changed_at DESC LIMIT $2",
        )
        .bind(&session.user_id)
        .bind(policy.password_history.max(1) as i64)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        if current == new || history.iter().any(|h| password::verify(new, &h.get::<String, _>(0))) {
            return Err(Error::new(
                ErrorCode::PasswordReused,
                format!("the new password may not be one of your last {} passwords", policy.password_history.max(1)),
            ));
        }
        let hash = password::hash(self.inner.opts.hash_cost, new);
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1, must_change_password = 0, password_changed_at = $2, updated_at = $2 WHERE id = $3")
            .bind(&hash)
            .bind(now)
            .bind(&session.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        self.reseal_user(&mut tx, &session.user_id).await?;
        sqlx::query("INSERT INTO password_history (user_id, password_hash, changed_at) VALUES ($1, $2, $3)")
            .bind(&session.user_id)
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        self.revoke_sessions_in(&mut tx, &session.user_id, Some(&session.id), now).await?;
        self.audit(&mut tx, actor.entry(now, "auth.password_change").object("user", &session.user_id)).await?;
        tx.commit().await.db()?;
        let stage = self.next_stage(&session.user_id, true).await?;
        let mut tx = self.db().begin().await?;
        self.set_stage(&mut tx, session, stage).await?;
        tx.commit().await.db()?;
        Ok(stage)
    }

    /// For enrolment: the session must be enrolling or active, and TOTP not set up yet.
    /// Answers the username and the pending (encrypted) secret, if one was started.
    async fn enrolment_state(&self, session: &Session) -> Result<(String, Option<String>)> {
        if !matches!(session.stage, Stage::EnrollMfa | Stage::Active) {
            return Err(session.stage.blocking_error().unwrap_or_else(|| Error::conflict("not now")));
        }
        let row = sqlx::query("SELECT username, totp_secret_enc, totp_enabled FROM users WHERE id = $1")
            .bind(&session.user_id)
            .fetch_one(self.db().reader())
            .await
            .db()?;
        if row.get::<i64, _>(2) != 0 {
            return Err(Error::conflict("two-factor authentication is already set up"));
        }
        Ok((row.get(0), row.get(1)))
    }

    /// Starts TOTP enrolment: a new secret, stored encrypted but not yet enabled.
    pub async fn totp_begin(&self, session: &Session, actor: &Actor) -> Result<TotpSetup> {
        let (username, _) = self.enrolment_state(session).await?;
        let secret = otp::Secret::generate(self.inner.opts.otp_algorithm);
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE users SET totp_secret_enc = $1 WHERE id = $2")
            .bind(self.keys().seal("users.totp", &secret.to_stored()))
            .bind(&session.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        self.reseal_user(&mut tx, &session.user_id).await?;
        self.audit(&mut tx, actor.entry(now, "auth.totp_begin").object("user", &session.user_id)).await?;
        tx.commit().await.db()?;
        let otpauth_uri = secret.provisioning_uri(&self.inner.opts.totp_issuer, &username);
        Ok(TotpSetup { otpauth_uri, algorithm: secret.algorithm.as_str().into(), secret: secret.key_b32 })
    }

    /// Confirms enrolment with a first code; returns ten one-time recovery codes.
    pub async fn totp_enable(&self, session: &Session, code: &str, actor: &Actor) -> Result<(Vec<String>, Stage)> {
        let (_, pending) = self.enrolment_state(session).await?;
        let secret = pending
            .and_then(|enc| self.keys().open("users.totp", &enc).ok())
            .map(|stored| otp::Secret::from_stored(&stored))
            .ok_or_else(|| Error::conflict("start the set-up first"))?;
        let now = self.now();
        let Some(step) = secret.verify(code, now / 1000, None) else {
            return Err(Error::new(
                ErrorCode::InvalidTotp,
                "the code does not match; check the phone's time and try again",
            ));
        };
        let codes: Vec<String> = (0..10)
            .map(|_| format!("{}-{}", crypto::random::readable_code(5), crypto::random::readable_code(5)))
            .collect();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE users SET totp_enabled = 1, totp_last_step = $1 WHERE id = $2")
            .bind(step)
            .bind(&session.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        self.reseal_user(&mut tx, &session.user_id).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
            .bind(&session.user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        for c in &codes {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hash) VALUES ($1, $2)")
                .bind(&session.user_id)
                .bind(recovery_hash(c))
                .execute(&mut *tx)
                .await
                .db()?;
        }
        self.audit(&mut tx, actor.entry(now, "auth.totp_enable").object("user", &session.user_id)).await?;
        tx.commit().await.db()?;
        let stage = self.next_stage(&session.user_id, true).await?;
        let mut tx = self.db().begin().await?;
        self.set_stage(&mut tx, session, stage).await?;
        tx.commit().await.db()?;
        Ok((codes, stage))
    }

    /// Ends one session.
    pub async fn logout(&self, session: &Session, actor: &Actor) -> Result<()> {
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&session.id)
            .execute(&mut *tx)
            .await
            .db()?;
        self.audit(&mut tx, actor.entry(now, "auth.logout").object("user", &session.user_id)).await?;
        tx.commit().await.db()?;
        self.inner.sessions.evict(&session.id);
        Ok(())
    }

    /// Ends every session of a user (but `except`).
    pub(crate) async fn revoke_sessions_in(
        &self,
        tx: &mut Tx,
        user_id: &str,
        except: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.inner.sessions.clear();
        sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3")
            .bind(now)
            .bind(user_id)
            .bind(except.unwrap_or(""))
            .execute(&mut **tx)
            .await
            .db()?;
        Ok(())
    }

    /// Whether the user is one of the three administrators.
    pub async fn admin_role_of(&self, user_id: &str) -> Result<Option<AdminRole>> {
        let row = sqlx::query("SELECT admin_role FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>(0)).and_then(|s| AdminRole::parse(&s)))
    }
}

fn recovery_hash(code: &str) -> String {
    let normalised: String = code.trim().to_ascii_lowercase().chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    crypto::hash::to_hex(&crypto::digest(HashAlg::Sm3, normalised.as_bytes()))
}
