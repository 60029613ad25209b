//! Users: creation with one-time initial passwords, listing within data scope, masking,
//! disabling, password resets and unlocking; and loading a [`Caller`] with its permissions.

use std::collections::HashMap;

use crypto::mask::Sensitive;
use crypto::{Masker, password};
use kernel::{Error, ErrorCode, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use store::{DbResultExt, Row, Where, like_escape};

use crate::model::{AdminRole, DataScope, OrgId, User, UserId, UserStatus};
use crate::perms::{self, PI_UNMASK, USER_MANAGE, USER_READ};
use crate::scope::{Caller, CallerKind, Scope};
use crate::service::{Actor, Identity};

/// A new user. The platform chooses the initial password; it must be changed at first login.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub primary_org_id: String,
    /// Further orgs the user belongs to.
    #[serde(default)]
    pub org_ids: Vec<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    /// The account's end date (unix ms, in the future), for temporary accounts.
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl NewUser {
    /// A user in one org, without contact details.
    pub fn new(username: &str, display_name: &str, primary_org_id: &str) -> NewUser {
        NewUser {
            username: username.into(),
            display_name: display_name.into(),
            primary_org_id: primary_org_id.into(),
            org_ids: vec![],
            mobile: None,
            email: None,
            expires_at: None,
        }
    }
}

/// Changes to a user (absent fields stay as they are).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub display_name: Option<String>,
    pub mobile: Option<String>,
    pub email: Option<String>,
    pub status: Option<UserStatus>,
    /// The account's end date (unix ms, in the future); `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub expires_at: Option<Option<i64>>,
}

/// A field that may be absent (`None`), null (`Some(None)`) or set.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// An end date given for an account: it must lie ahead.
fn check_expiry(at: Option<i64>, now: i64) -> Result<Option<i64>> {
    match at {
        Some(t) if t <= now => Err(Error::validation("the account's end date must lie in the future")),
        other => Ok(other),
    }
}

/// A created user with the one-time initial password to hand over.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub user: User,
    pub initial_password: String,
}

/// List filters.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilter {
    /// Users whose primary org is this org or below it.
    pub org_id: Option<String>,
    /// Matches username or display name.
    pub q: Option<String>,
    pub status: Option<String>,
    /// `username` (default), `display_name`, `created_at` or `last_login_at`; `-` before the
    /// field sorts descending.
    pub sort: Option<String>,
}

pub(crate) fn check_username(u: &str) -> Result<String> {
    let ok = (3..=32).contains(&u.len())
        && u.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        && u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(Error::validation(
            "username must be 3-32 letters, digits, '_', '.' or '-', starting with a letter or digit",
        ));
    }
    Ok(u.to_string())
}

fn check_mobile(m: &str) -> Result<String> {
    let m = m.trim();
    if m.len() == 11 && m.starts_with('1') && m.chars().all(|c| c.is_ascii_digit()) {
        Ok(m.to_string())
    } else {
        Err(Error::validation("mobile must be an 11-digit mainland number starting with 1"))
    }
}

fn check_email(e: &str) -> Result<String> {
    let e = e.trim();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok { Ok(e.to_string()) } else { Err(Error::validation("email is not a valid address")) }
}

/// A password that meets any sane policy, for initial and reset passwords.
pub fn initial_password() -> String {
    let body = crypto::random::readable_code(10);
    format!("Zs{body}#7")
}

/// A caller holding every permission with scope `all` (bootstrap, demo, CLI).
pub fn system_caller() -> Caller {
    Caller {
        kind: CallerKind::User,
        id: "system".into(),
        username: "system".into(),
        display_name: "系统".into(),
        primary_org_id: OrgId(String::new()),
        primary_org_name: String::new(),
        org_ids: vec![],
        admin_role: None,
        roles: vec![],
        permissions: perms::CATALOGUE.iter().map(|p| (p.code.to_string(), Scope::all())).collect(),
        session_id: None,
    }
}

const USER_COLUMNS: &str = "u.id, u.username, u.display_name, u.primary_org_id, o.name, u.admin_role, u.status, \
     u.mobile_enc, u.email, u.must_change_password, u.totp_enabled, u.locked_until, u.last_login_at, u.created_at, u.expires_at";

impl Identity {
    fn user_from_row(&self, row: &store::AnyRow, masker: Masker, now: i64) -> User {
        let mobile = row
            .get::<Option<String>, _>(7)
            .and_then(|enc| self.keys().open("users.mobile", &enc).ok())
            .map(|m| masker.apply(Sensitive::Mobile, &m));
        User {
            id: UserId(row.get(0)),
            username: row.get(1),
            display_name: row.get(2),
            primary_org_id: OrgId(row.get(3)),
            primary_org_name: row.get(4),
            org_ids: vec![],
            admin_role: row.get::<Option<String>, _>(5).and_then(|s| AdminRole::parse(&s)),
            status: if row.get::<String, _>(6) == "disabled" { UserStatus::Disabled } else { UserStatus::Active },
            mobile,
            email: masker.apply_opt(Sensitive::Email, row.get::<Option<String>, _>(8).as_deref()),
            must_change_password: row.get::<i64, _>(9) != 0,
            totp_enabled: row.get::<i64, _>(10) != 0,
            locked_until: row.get::<Option<i64>, _>(11).filter(|t| *t > now),
            last_login_at: row.get(12),
            created_at: row.get(13),
            expires_at: row.get(14),
        }
    }

    async fn fill_org_ids(&self, users: &mut [User]) -> Result<()> {
        if users.is_empty() {
            return Ok(());
        }
        let marks: Vec<String> = (1..=users.len()).map(|i| format!("${i}")).collect();
        let sql =
            format!("SELECT user_id, org_id FROM user_orgs WHERE user_id IN ({}) ORDER BY org_id", marks.join(","));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for u in users.iter() {
            q = q.bind(u.id.0.clone());
        }
        let rows = q.fetch_all(self.db().reader()).await.db()?;
        let mut by_user: HashMap<String, Vec<OrgId>> = HashMap::new();
        for r in rows {
            by_user.entry(r.get(0)).or_default().push(OrgId(r.get(1)));
        }
        for u in users.iter_mut() {
            u.org_ids = by_user.remove(u.id.as_str()).unwrap_or_default();
        }
        Ok(())
    }

    /// Loads a user by id without scope checks (internal use).
    pub async fn user_unchecked(&self, id: &str, masker: Masker) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users u JOIN orgs o ON o.id = u.primary_org_id WHERE u.id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("user"))?;
        let mut user = [self.user_from_row(&row, masker, self.now())];
        self.fill_org_ids(&mut user).await?;
        let [user] = user;
        Ok(user)
    }

    /// The people who supervise a user, for escalations: holders of `user.manage` anchored at
    /// the user's primary org or, failing that, the nearest ancestor where there are any.
    /// Returns (user id, username) pairs; never the user themself.
    pub async fn supervisors(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let path: Option<String> =
            sqlx::query("SELECT o.path FROM users u JOIN orgs o ON o.id = u.primary_org_id WHERE u.id = $1")
                .bind(user_id)
                .fetch_optional(self.db().reader())
                .await
                .db()?
                .map(|r| r.get(0));
        let Some(path) = path else { return Ok(vec![]) };
        let rows = sqlx::query(
            "SELECT DISTINCT u.id, u.username, o.depth FROM grants g
             JOIN users u ON u.id = g.user_id JOIN orgs o ON o.id = g.anchor_org_id
             JOIN role_permissions rp ON rp.role_id = g.role_id
             WHERE rp.permission = 'user.manage' AND u.id <> $1 AND u.status = 'active' AND $2 LIKE o.path || '%'
             ORDER BY o.depth DESC, u.username",
        )
        .bind(user_id)
        .bind(&path)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let nearest = rows.first().map(|r| r.get::<i64, _>(2));
        Ok(rows.iter().filter(|r| Some(r.get::<i64, _>(2)) == nearest).map(|r| (r.get(0), r.get(1))).collect())
    }

    fn masker_for(caller: &Caller) -> Masker {
        Masker { unmask: caller.has(PI_UNMASK) }
    }

    /// One user, if within the caller's `user.read` scope (or the caller themself).
    pub async fn get_user(&self, caller: &Caller, id: &str) -> Result<User> {
        let user = self.user_unchecked(id, Self::masker_for(caller)).await.map_err(|_| Error::not_found("user"))?;
        let org = self.org(user.primary_org_id.as_str()).await?;
        let is_self = caller.id == user.id.0;
        if !is_self && !caller.require(USER_READ)?.covers(&org, Some(&user.id)) {
            return Err(Error::not_found("user"));
        }
        Ok(user)
    }

    /// Users visible to the caller, filtered and paged, by username.
    pub async fn list_users(&self, caller: &Caller, filter: &UserFilter, page: PageRequest) -> Result<Page<User>> {
        let scope = caller.require(USER_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "u.primary_org_id", Some("u.id"));
        if let Some(org_id) = filter.org_id.as_deref().filter(|s| !s.is_empty()) {
            let org = self.org(org_id).await?;
            w.and("o.path >= ? AND o.path < ?", [org.path.clone().into(), crate::scope::subtree_end(&org.path).into()]);
        }
        if let Some(q) = filter.q.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let pat = format!("%{}%", like_escape(&q.to_lowercase()));
            w.and(
                "(u.username_key LIKE ? ESCAPE '\\' OR u.display_name LIKE ? ESCAPE '\\')",
                [pat.clone().into(), format!("%{}%", like_escape(q)).into()],
            );
        }
        match filter.status.as_deref() {
            None | Some("") => {}
            Some(s @ ("active" | "disabled")) => {
                w.and("u.status = ?", [s.into()]);
            }
            Some(_) => return Err(Error::new(ErrorCode::InvalidQuery, "status must be active or disabled")),
        }
        let from = "FROM users u JOIN orgs o ON o.id = u.primary_org_id";
        let total: i64 = w
            .bind(sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) {from} {}", w.clause()))))
            .fetch_one(self.db().reader())
            .await
            .db()?
            .get(0);
        let n = w.len();
        let (column, dir) = kernel::paging::parse_sort(
            filter.sort.as_deref(),
            &[
                ("username", "u.username_key"),
                ("display_name", "u.display_name"),
                ("created_at", "u.created_at"),
                ("last_login_at", "u.last_login_at"),
            ],
            ("u.username_key", kernel::SortDir::Asc),
        )?;
        let sql = format!(
            "SELECT {USER_COLUMNS} {from} {} ORDER BY {column} {}, u.id LIMIT ${} OFFSET ${}",
            w.clause(),
            dir.sql(),
            n + 1,
            n + 2
        );
        let rows = w
            .bind(sqlx::query(sqlx::AssertSqlSafe(sql)))
            .bind(page.limit())
            .bind(page.offset())
            .fetch_all(self.db().reader())
            .await
            .db()?;
        let masker = Self::masker_for(caller);
        let now = self.now();
        let mut items: Vec<User> = rows.iter().map(|r| self.user_from_row(r, masker, now)).collect();
        self.fill_org_ids(&mut items).await?;
        Ok(Page::new(items, total, page))
    }

    /// Creates a user in orgs within the caller's `user.manage` scope.
    pub async fn create_user(&self, caller: &Caller, actor: &Actor, new: NewUser) -> Result<CreatedUser> {
        let scope = caller.require(USER_MANAGE)?.clone();
        let username = check_username(new.username.trim())?;
        let display_name = crate::orgs::check_name("display_name", &new.display_name, 50)?;
        let mobile = new.mobile.as_deref().filter(|s| !s.trim().is_empty()).map(check_mobile).transpose()?;
        let email = new.email.as_deref().filter(|s| !s.trim().is_empty()).map(check_email).transpose()?;
        let now = self.now();
        let expires_at = check_expiry(new.expires_at, now)?;
        let mut tx = self.db().begin().await?;
        let primary = self.org_in(&mut tx, &new.primary_org_id).await?;
        let mut org_ids = vec![primary.id.0.clone()];
        for id in &new.org_ids {
            if !org_ids.contains(id) {
                org_ids.push(id.clone());
            }
        }
        for id in &org_ids {
            let org = self.org_in(&mut tx, id).await?;
            if !scope.covers_org(&org) {
                return Err(Error::new(
                    ErrorCode::OutOfScope,
                    format!("organisation '{}' is outside your data scope", org.name),
                ));
            }
        }
        let initial = initial_password();
        let hash = password::hash(self.inner.opts.hash_cost, &initial);
        let id = UserId::new();
        sqlx::query(
            "INSERT INTO users (id, username, username_key, display_name, primary_org_id, status, password_hash,
                 must_change_password, password_changed_at, mobile_enc, mobile_idx, email, created_at, updated_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, 'active', $6, 1, $7, $8, $9, $10, $7, $7, $11)",
        )
        .bind(id.as_str())
        .bind(&username)
        .bind(username.to_lowercase())
        .bind(&display_name)
        .bind(primary.id.as_str())
        .bind(&hash)
        .bind(now)
        .bind(mobile.as_ref().map(|m| self.keys().seal("users.mobile", m)))
        .bind(mobile.as_ref().map(|m| self.keys().blind_index("users.mobile", m)))
        .bind(email.as_deref())
        .bind(expires_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| match store::is_unique_violation(&e) {
            true => Error::new(ErrorCode::AlreadyExists, format!("the username '{username}' is taken")),
            false => store::db_error(e),
        })?;
        for org_id in &org_ids {
            sqlx::query("INSERT INTO user_orgs (user_id, org_id) VALUES ($1, $2)")
                .bind(id.as_str())
                .bind(org_id)
                .execute(&mut *tx)
                .await
                .db()?;
            self.reseal_user(&mut tx, id.as_str()).await?;
        }
        sqlx::query("INSERT INTO password_history (user_id, password_hash, changed_at) VALUES ($1, $2, $3)")
            .bind(id.as_str())
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        let entry = actor
            .entry(now, "user.create")
            .object("user", id.as_str())
            .detail(serde_json::json!({"username": username, "org": primary.name, "expires_at": expires_at}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        let user = self.user_unchecked(id.as_str(), Self::masker_for(caller)).await?;
        Ok(CreatedUser { user, initial_password: initial })
    }

    /// Checks the caller may manage the user (in scope, and not an administrator unless the
    /// caller's scope is `all`). Returns the user.
    async fn manageable_user(&self, caller: &Caller, id: &str) -> Result<User> {
        let scope = caller.require(USER_MANAGE)?.clone();
        let user = self.user_unchecked(id, Masker::MASKED).await.map_err(|_| Error::not_found("user"))?;
        let org = self.org(user.primary_org_id.as_str()).await?;
        if !scope.covers_org(&org) {
            return Err(Error::not_found("user"));
        }
        if user.admin_role.is_some() && !scope.all {
            return Err(Error::forbidden("administrator accounts are managed by the system administrator only"));
        }
        Ok(user)
    }

    /// Updates a user's details or status; disabling ends their sessions.
    pub async fn update_user(&self, caller: &Caller, actor: &Actor, id: &str, patch: UserPatch) -> Result<User> {
        let user = self.manageable_user(caller, id).await?;
        if caller.id == id && patch.status == Some(UserStatus::Disabled) {
            return Err(Error::conflict("you cannot disable your own account"));
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let mut changed = serde_json::Map::new();
        if let Some(n) = &patch.display_name {
            let n = crate::orgs::check_name("display_name", n, 50)?;
            sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
                .bind(&n)
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
            changed.insert("display_name".into(), n.into());
        }
        if let Some(m) = &patch.mobile {
            let m = if m.trim().is_empty() { None } else { Some(check_mobile(m)?) };
            sqlx::query("UPDATE users SET mobile_enc = $1, mobile_idx = $2 WHERE id = $3")
                .bind(m.as_ref().map(|m| self.keys().seal("users.mobile", m)))
                .bind(m.as_ref().map(|m| self.keys().blind_index("users.mobile", m)))
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
            changed.insert("mobile".into(), m.map(|m| crypto::mask::mask(Sensitive::Mobile, &m)).into());
        }
        if let Some(e) = &patch.email {
            let e = if e.trim().is_empty() { None } else { Some(check_email(e)?) };
            sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
                .bind(e.as_deref())
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
            changed.insert("email".into(), e.map(|e| crypto::mask::mask(Sensitive::Email, &e)).into());
        }
        if let Some(s) = patch.status {
            let s = match s {
                UserStatus::Active => "active",
                UserStatus::Disabled => "disabled",
            };
            sqlx::query("UPDATE users SET status = $1 WHERE id = $2").bind(s).bind(id).execute(&mut *tx).await.db()?;
            if s == "disabled" {
                self.revoke_sessions_in(&mut tx, id, None, now).await?;
            }
            changed.insert("status".into(), s.into());
        }
        if let Some(at) = patch.expires_at {
            let at = check_expiry(at, now)?;
            sqlx::query("UPDATE users SET expires_at = $1 WHERE id = $2")
                .bind(at)
                .bind(id)
                .execute(&mut *tx)
                .await
                .db()?;
            changed.insert("expires_at".into(), at.into());
        }
        sqlx::query("UPDATE users SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?;
        self.reseal_user(&mut tx, id).await?;
        let entry = actor
            .entry(now, "user.update")
            .object("user", id)
            .detail(serde_json::json!({"username": user.username, "changed": changed}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        self.get_user(caller, id).await
    }

    /// Gives the user a new one-time password that must be changed at next login; ends their
    /// sessions. The administrator never chooses the password (ASVS 6.4.6).
    pub async fn reset_password(&self, caller: &Caller, actor: &Actor, id: &str) -> Result<String> {
        let user = self.manageable_user(caller, id).await?;
        let initial = initial_password();
        let hash = password::hash(self.inner.opts.hash_cost, &initial);
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = 1, password_changed_at = $2,
                 failed_logins = 0, first_failed_at = NULL, locked_until = NULL, updated_at = $2 WHERE id = $3",
        )
        .bind(&hash)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .db()?;
        self.reseal_user(&mut tx, id).await?;
        self.revoke_sessions_in(&mut tx, id, None, now).await?;
        let entry = actor
            .entry(now, "user.reset_password")
            .object("user", id)
            .detail(serde_json::json!({"username": user.username}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        Ok(initial)
    }

    /// Disables business accounts not used for the policy's `inactive_disable_days` (last login,
    /// or creation when never used), ending their sessions; each is audited. Run by the server
    /// every few minutes. Returns how many were disabled.
    pub async fn disable_inactive(&self) -> Result<u64> {
        let days = self.policy().inactive_disable_days as i64;
        if days == 0 {
            return Ok(0);
        }
        let now = self.now();
        let cutoff = now - days * 86_400_000;
        let rows = sqlx::query(
            "SELECT id, username FROM users WHERE status = 'active' AND admin_role IS NULL
                AND COALESCE(last_login_at, created_at) < $1 AND id <> 'system'",
        )
        .bind(cutoff)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db().begin().await?;
        let mut n = 0;
        for r in &rows {
            let (id, username): (String, String) = (r.get(0), r.get(1));
            let changed = sqlx::query(
                "UPDATE users SET status = 'disabled', updated_at = $2 WHERE id = $1 AND status = 'active'
                    AND COALESCE(last_login_at, created_at) < $3",
            )
            .bind(&id)
            .bind(now)
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .db()?
            .rows_affected();
            if changed == 0 {
                continue; // logged in meanwhile
            }
            self.revoke_sessions_in(&mut tx, &id, None, now).await?;
            self.reseal_user(&mut tx, &id).await?;
            let entry = Actor::system()
                .entry(now, "user.disable_inactive")
                .object("user", &id)
                .detail(serde_json::json!({"username": username, "inactive_days": days}));
            self.audit(&mut tx, entry).await?;
            n += 1;
        }
        tx.commit().await.db()?;
        Ok(n)
    }

    /// Lifts a lockout.
    pub async fn unlock_user(&self, caller: &Caller, actor: &Actor, id: &str) -> Result<()> {
        let user = self.manageable_user(caller, id).await?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE users SET failed_logins = 0, first_failed_at = NULL, locked_until = NULL WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?;
        let entry =
            actor.entry(now, "user.unlock").object("user", id).detail(serde_json::json!({"username": user.username}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()
    }

    /// Finds a user id by username (case-insensitive).
    pub async fn user_id_by_username(&self, username: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM users WHERE username_key = $1")
            .bind(username.trim().to_lowercase())
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Loads the caller for a user: their orgs, and every permission with the union of the
    /// scopes of the grants that give it.
    pub async fn load_caller(&self, user_id: &str, session_id: Option<String>) -> Result<Caller> {
        // The account with its integrity MAC (checked on this same row) and its organisation.
        use crate::integrity::{ROW_MAC_AT, SEALED_COLUMNS};
        let sql = format!(
            "SELECT {SEALED_COLUMNS}, u.row_mac, u.display_name, o.name
             FROM users u JOIN orgs o ON o.id = u.primary_org_id WHERE u.id = $1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::new(ErrorCode::SessionExpired, "the account no longer exists"))?;
        self.check_user_row(&row).await?;
        let (display_name_at, org_name_at) = (ROW_MAC_AT + 1, ROW_MAC_AT + 2);
        if row.get::<String, _>(3) != "active" {
            return Err(Error::new(ErrorCode::AccountDisabled, "the account is disabled"));
        }
        if row.get::<Option<i64>, _>(6).is_some_and(|at| at <= self.now()) {
            return Err(Error::new(ErrorCode::AccountExpired, "the account has passed its end date"));
        }
        let admin_role = row.get::<Option<String>, _>(5).and_then(|s| AdminRole::parse(&s));
        let org_rows = sqlx::query("SELECT org_id FROM user_orgs WHERE user_id = $1")
            .bind(user_id)
            .fetch_all(self.db().reader())
            .await
            .db()?;
        let mut permissions: HashMap<String, Scope> = HashMap::new();
        if let Some(admin) = admin_role {
            // Administrators act on the whole platform, within their role's fixed permissions.
            let rows = sqlx::query(
                "SELECT rp.permission FROM roles r JOIN role_permissions rp ON rp.role_id = r.id WHERE r.code = $1",
            )
            .bind(admin.as_str())
            .fetch_all(self.db().reader())
            .await
            .db()?;
            for r in rows {
                permissions.insert(r.get(0), Scope::all());
            }
        }
        let grants = sqlx::query(
            "SELECT g.id, g.scope, g.anchor_org_id, o.path, rp.permission
             FROM grants g JOIN orgs o ON o.id = g.anchor_org_id JOIN role_permissions rp ON rp.role_id = g.role_id
             WHERE g.user_id = $1",
        )
        .bind(user_id)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let mut custom_cache: HashMap<String, Vec<String>> = HashMap::new();
        for g in grants {
            let grant_id: String = g.get(0);
            let scope = match DataScope::parse(&g.get::<String, _>(1)) {
                Some(DataScope::All) => Scope::all(),
                Some(DataScope::OrgAndBelow) => Scope { subtrees: vec![g.get(3)], ..Scope::default() },
                Some(DataScope::OwnOrg) => Scope { orgs: vec![g.get(2)], ..Scope::default() },
                Some(DataScope::SelfOnly) => Scope { owner: Some(user_id.to_string()), ..Scope::default() },
                Some(DataScope::Custom) => {
                    if !custom_cache.contains_key(&grant_id) {
                        let rows = sqlx::query("SELECT org_id FROM grant_orgs WHERE grant_id = $1")
                            .bind(&grant_id)
                            .fetch_all(self.db().reader())
                            .await
                            .db()?;
                        custom_cache.insert(grant_id.clone(), rows.iter().map(|r| r.get(0)).collect());
                    }
                    Scope { orgs: custom_cache[&grant_id].clone(), ..Scope::default() }
                }
                None => continue,
            };
            permissions.entry(g.get(4)).or_default().merge(&scope);
        }
        let mut roles: Vec<String> =
            sqlx::query("SELECT DISTINCT r.code FROM grants g JOIN roles r ON r.id = g.role_id WHERE g.user_id = $1")
                .bind(user_id)
                .fetch_all(self.db().reader())
                .await
                .db()?
                .iter()
                .map(|r| r.get(0))
                .collect();
        if let Some(admin) = admin_role {
            roles.push(admin.as_str().to_string());
        }
        roles.sort();
        Ok(Caller {
            kind: CallerKind::User,
            id: user_id.to_string(),
            username: row.get(1),
            display_name: row.get(display_name_at),
            primary_org_id: OrgId(row.get(2)),
            primary_org_name: row.get(org_name_at),
            org_ids: org_rows.iter().map(|r| OrgId(r.get(0))).collect(),
            admin_role,
            roles,
            permissions,
            session_id,
        })
    }
}

impl Identity {
    /// Creates a user as the platform itself (bootstrap, the demo, the command line on the
    /// server) and grants it `role` with `scope` anchored at its own org. Audited as `actor`.
    pub async fn provision_user(
        &self,
        actor: &Actor,
        new: NewUser,
        role: Option<(&str, crate::model::DataScope)>,
    ) -> Result<CreatedUser> {
        let system = system_caller();
        let created = self.create_user(&system, actor, new).await?;
        if let Some((role, scope)) = role {
            let grant = crate::roles::GrantInput { role: role.into(), scope, anchor_org_id: None, org_ids: vec![] };
            self.grant(&system, actor, created.user.id.as_str(), grant).await?;
        }
        Ok(created)
    }

    /// Sets a known password (the demo and the command line on the server only; never exposed
    /// over the API, where administrators cannot choose passwords).
    pub async fn seed_password(
        &self,
        actor: &Actor,
        user_id: &str,
        new_password: &str,
        must_change: bool,
    ) -> Result<()> {
        let hash = password::hash(self.inner.opts.hash_cost, new_password);
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "UPDATE users SET password_hash = $1, must_change_password = $2, password_changed_at = $3 WHERE id = $4",
        )
        .bind(&hash)
        .bind(must_change as i64)
        .bind(now)
        .bind(user_id)
        .execute(&mut *tx)
        .await
        .db()?;
        self.reseal_user(&mut tx, user_id).await?;
        sqlx::query("INSERT INTO password_history (user_id, password_hash, changed_at) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(&hash)
            .bind(now)
            .execute(&mut *tx)
            .await
            .db()?;
        self.audit(&mut tx, actor.entry(now, "user.seed_password").object("user", user_id)).await?;
        tx.commit().await.db()
    }

    /// Enables the second factor with a fresh secret in the configured algorithm and returns it
    /// (the demo only).
    pub async fn seed_totp(&self, actor: &Actor, user_id: &str) -> Result<crypto::otp::Secret> {
        let secret = crypto::otp::Secret::generate(self.inner.opts.otp_algorithm);
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE users SET totp_secret_enc = $1, totp_enabled = 1 WHERE id = $2")
            .bind(self.keys().seal("users.totp", &secret.to_stored()))
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .db()?;
        self.reseal_user(&mut tx, user_id).await?;
        self.audit(&mut tx, actor.entry(now, "auth.totp_enable").object("user", user_id)).await?;
        tx.commit().await.db()?;
        Ok(secret)
    }

    /// Finds an org id by code.
    pub async fn org_id_by_code(&self, code: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT id FROM orgs WHERE code = $1")
            .bind(code)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        Ok(row.map(|r| r.get(0)))
    }
}
