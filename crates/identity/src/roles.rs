//! Roles and grants, with graded authorisation (分级授权): a grantor may only hand out
//! permissions it holds itself, within its own data scope. The security administrator defines
//! roles and may grant any business role; the three administrator roles are assigned only by the
//! security administrator, never together, and never alongside business roles.

use std::collections::HashSet;

use kernel::{Error, ErrorCode, Result};
use serde::Deserialize;
use store::{DbResultExt, Row};

use crate::model::{AdminRole, DataScope, Grant, GrantId, OrgId, Role, RoleId, UserId};
use crate::perms::{self, GRANT_MANAGE, ROLE_MANAGE, ROLE_READ};
use crate::scope::{Caller, Scope};
use crate::service::{Actor, Identity};

/// Permissions only the three administrators hold; business roles may not carry them.
pub const ADMIN_ONLY: &[&str] = &[
    perms::AUDIT_READ,
    perms::AUDIT_EXPORT,
    perms::AUDIT_VERIFY,
    perms::AUDIT_RETENTION,
    perms::POLICY_MANAGE,
    perms::ROLE_MANAGE,
    perms::APP_MANAGE,
];

/// A new or changed business role.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub permissions: Vec<String>,
    #[serde(default)]
    pub mfa_required: bool,
}

/// A grant request.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantInput {
    /// Role code, e.g. `staff`, or one of `sysadmin`, `secadmin`, `auditor`.
    pub role: String,
    pub scope: DataScope,
    /// The org the scope is anchored at (defaults to the user's primary org).
    pub anchor_org_id: Option<String>,
    /// For `custom` scopes: the orgs.
    #[serde(default)]
    pub org_ids: Vec<String>,
}

impl Identity {
    /// All roles with their permissions.
    pub async fn list_roles(&self, caller: &Caller) -> Result<Vec<Role>> {
        caller.require(ROLE_READ)?;
        let rows = sqlx::query(
            "SELECT id, code, name, description, builtin, admin_role, mfa_required FROM roles ORDER BY builtin DESC, code",
        )
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let perm_rows = sqlx::query("SELECT role_id, permission FROM role_permissions ORDER BY permission")
            .fetch_all(self.db().reader())
            .await
            .db()?;
        Ok(rows
            .iter()
            .map(|r| {
                let id: String = r.get(0);
                Role {
                    permissions: perm_rows.iter().filter(|p| p.get::<String, _>(0) == id).map(|p| p.get(1)).collect(),
                    id: RoleId(id),
                    code: r.get(1),
                    name: r.get(2),
                    description: r.get(3),
                    builtin: r.get::<i64, _>(4) != 0,
                    admin_role: r.get::<Option<String>, _>(5).and_then(|s| AdminRole::parse(&s)),
                    mfa_required: r.get::<i64, _>(6) != 0,
                }
            })
            .collect())
    }

    async fn role_by_code(&self, code: &str) -> Result<Role> {
        let all = self.list_roles(&crate::users::system_caller()).await?;
        all.into_iter()
            .find(|r| r.code == code)
            .ok_or_else(|| Error::validation(format!("role '{code}' does not exist")))
    }

    fn check_role_input(input: &RoleInput) -> Result<(String, Vec<String>)> {
        crate::orgs::check_code(&input.code)?;
        let name = crate::orgs::check_name("name", &input.name, 50)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for p in &input.permissions {
            if !perms::is_known(p) {
                return Err(Error::validation(format!("unknown permission '{p}'")));
            }
            if ADMIN_ONLY.contains(&p.as_str()) {
                return Err(Error::new(
                    ErrorCode::SeparationOfDuties,
                    format!("'{p}' belongs to the three administrators and cannot be put in a business role"),
                ));
            }
            if seen.insert(p.clone()) {
                out.push(p.clone());
            }
        }
        Ok((name, out))
    }

    /// Creates a business role (`role.manage`).
    pub async fn create_role(&self, caller: &Caller, actor: &Actor, input: RoleInput) -> Result<Role> {
        caller.require(ROLE_MANAGE)?;
        let (name, permissions) = Self::check_role_input(&input)?;
        if AdminRole::parse(&input.code).is_some() {
            return Err(Error::new(ErrorCode::AlreadyExists, "that code belongs to a built-in role"));
        }
        let now = self.now();
        let id = RoleId::new();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO roles (id, code, name, description, builtin, mfa_required, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 0, $5, $6, $6)",
        )
        .bind(id.as_str())
        .bind(&input.code)
        .bind(&name)
        .bind(&input.description)
        .bind(input.mfa_required as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match store::is_unique_violation(&e) {
            true => Error::new(ErrorCode::AlreadyExists, format!("a role with code '{}' exists", input.code)),
            false => store::db_error(e),
        })?;
        for p in &permissions {
            sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                .bind(id.as_str())
                .bind(p)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        let entry = actor
            .entry(now, "role.create")
            .object("role", id.as_str())
            .detail(serde_json::json!({"code": input.code, "permissions": permissions}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        self.role_by_code(&input.code).await
    }

    /// Changes a role's name, description, permissions or MFA requirement. Administrator roles
    /// are fixed.
    pub async fn update_role(&self, caller: &Caller, actor: &Actor, id: &str, input: RoleInput) -> Result<Role> {
        caller.require(ROLE_MANAGE)?;
        let (name, permissions) = Self::check_role_input(&input)?;
        let roles = self.list_roles(caller).await?;
        let old = roles.into_iter().find(|r| r.id.0 == id).ok_or_else(|| Error::not_found("role"))?;
        if old.admin_role.is_some() {
            return Err(Error::new(ErrorCode::SeparationOfDuties, "the three administrator roles cannot be changed"));
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE roles SET name = $1, description = $2, mfa_required = $3, updated_at = $4 WHERE id = $5")
            .bind(&name)
            .bind(&input.description)
            .bind(input.mfa_required as i64)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .db()?;
        sqlx::query("DELETE FROM role_permissions WHERE role_id = $1").bind(id).execute(&mut *tx).await.db()?;
        for p in &permissions {
            sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                .bind(id)
                .bind(p)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        let entry = actor.entry(now, "role.update").object("role", id).detail(serde_json::json!({
            "code": old.code, "before": old.permissions, "after": permissions,
        }));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        self.role_by_code(&old.code).await
    }

    /// The grants a user holds (visible to `grant.manage` or `user.read` in scope, or oneself).
    pub async fn list_grants(&self, caller: &Caller, user_id: &str) -> Result<Vec<Grant>> {
        // Visibility of the user decides visibility of their grants.
        self.get_user(caller, user_id).await?;
        let rows = sqlx::query(
            "SELECT g.id, g.user_id, g.role_id, r.code, r.name, g.scope, g.anchor_org_id, o.name, g.created_at
             FROM grants g JOIN roles r ON r.id = g.role_id JOIN orgs o ON o.id = g.anchor_org_id
             WHERE g.user_id = $1 ORDER BY r.code",
        )
        .bind(user_id)
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let mut out = Vec::new();
        for r in rows {
            let id: String = r.get(0);
            let org_ids = sqlx::query("SELECT org_id FROM grant_orgs WHERE grant_id = $1 ORDER BY org_id")
                .bind(&id)
                .fetch_all(self.db().reader())
                .await
                .db()?
                .iter()
                .map(|o| OrgId(o.get(0)))
                .collect();
            out.push(Grant {
                id: GrantId(id),
                user_id: UserId(r.get(1)),
                role_id: RoleId(r.get(2)),
                role_code: r.get(3),
                role_name: r.get(4),
                scope: DataScope::parse(&r.get::<String, _>(5)).unwrap_or(DataScope::SelfOnly),
                anchor_org_id: OrgId(r.get(6)),
                anchor_org_name: r.get(7),
                org_ids,
                created_at: r.get(8),
            });
        }
        Ok(out)
    }

    /// Grants a role to a user. See the module docs for the rules.
    pub async fn grant(
        &self,
        caller: &Caller,
        actor: &Actor,
        user_id: &str,
        input: GrantInput,
    ) -> Result<Option<Grant>> {
        let grantor_scope = caller.require(GRANT_MANAGE)?.clone();
        let target =
            self.user_unchecked(user_id, crypto::Masker::MASKED).await.map_err(|_| Error::not_found("user"))?;
        let target_org = self.org(target.primary_org_id.as_str()).await?;
        if !grantor_scope.covers_org(&target_org) {
            return Err(Error::not_found("user"));
        }
        let role = self.role_by_code(&input.role).await?;
        let now = self.now();
        if let Some(admin) = role.admin_role {
            return self.assign_admin_role(caller, actor, &target, admin, now).await.map(|()| None);
        }
        if target.admin_role.is_some() {
            return Err(Error::new(
                ErrorCode::SeparationOfDuties,
                "administrator accounts hold no business roles; use a separate account",
            ));
        }
        let anchor_id = input.anchor_org_id.clone().unwrap_or_else(|| target.primary_org_id.0.clone());
        let anchor = self.org(&anchor_id).await.map_err(|_| Error::validation("anchor_org_id does not exist"))?;
        let new_scope = match input.scope {
            DataScope::All => Scope::all(),
            DataScope::OrgAndBelow => Scope { subtrees: vec![anchor.path.clone()], ..Scope::default() },
            DataScope::OwnOrg => Scope { orgs: vec![anchor.id.0.clone()], ..Scope::default() },
            DataScope::SelfOnly => Scope { owner: Some(user_id.to_string()), ..Scope::default() },
            DataScope::Custom => {
                if input.org_ids.is_empty() {
                    return Err(Error::validation("a custom scope needs at least one org in org_ids"));
                }
                Scope { orgs: input.org_ids.clone(), ..Scope::default() }
            }
        };
        let mut custom_orgs = Vec::new();
        for id in &input.org_ids {
            custom_orgs.push(self.org(id).await.map_err(|_| Error::validation(format!("org {id} does not exist")))?);
        }
        // Graded authorisation: the grant must fit inside the grantor's own reach.
        let is_secadmin = caller.admin_role == Some(AdminRole::Secadmin);
        let lookup = |id: &str| custom_orgs.iter().chain(std::iter::once(&anchor)).find(|o| o.id.0 == id).cloned();
        let fits = |s: &Scope| new_scope.within(s, &lookup) && (input.scope != DataScope::SelfOnly || !s.is_empty());
        let secadmin_everywhere = is_secadmin && grantor_scope.all;
        if !(fits(&grantor_scope) || secadmin_everywhere) {
            return Err(Error::new(ErrorCode::GrantExceedsGrantor, "the grant's data scope is wider than your own"));
        }
        if !is_secadmin {
            for p in &role.permissions {
                let mine = caller.scope(p);
                if mine.is_empty() || !fits(&mine) {
                    return Err(Error::new(
                        ErrorCode::GrantExceedsGrantor,
                        format!("you cannot grant '{p}' with this scope because you do not hold it that widely"),
                    ));
                }
            }
        }
        let id = GrantId::new();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO grants (id, user_id, role_id, scope, anchor_org_id, granted_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.as_str())
        .bind(user_id)
        .bind(role.id.as_str())
        .bind(input.scope.as_str())
        .bind(anchor.id.as_str())
        .bind(&caller.id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| match store::is_unique_violation(&e) {
            true => {
                Error::new(ErrorCode::AlreadyExists, "the user already holds this role; revoke it to change its scope")
            }
            false => store::db_error(e),
        })?;
        if input.scope == DataScope::Custom {
            for org in &custom_orgs {
                sqlx::query("INSERT INTO grant_orgs (grant_id, org_id) VALUES ($1, $2)")
                    .bind(id.as_str())
                    .bind(org.id.as_str())
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
        }
        let entry = actor.entry(now, "grant.create").object("user", user_id).detail(serde_json::json!({
            "username": target.username, "role": role.code, "scope": input.scope, "anchor": anchor.name,
        }));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        let grants = self.list_grants(&crate::users::system_caller(), user_id).await?;
        Ok(grants.into_iter().find(|g| g.id == id))
    }

    async fn assign_admin_role(
        &self,
        caller: &Caller,
        actor: &Actor,
        target: &crate::model::User,
        admin: AdminRole,
        now: i64,
    ) -> Result<()> {
        if caller.admin_role != Some(AdminRole::Secadmin) && caller.id != "system" {
            return Err(Error::forbidden("only the security administrator assigns administrator roles"));
        }
        if caller.id == target.id.0 {
            return Err(Error::new(ErrorCode::SeparationOfDuties, "you cannot change your own administrator role"));
        }
        if let Some(held) = target.admin_role {
            return Err(Error::new(
                ErrorCode::SeparationOfDuties,
                format!(
                    "the account already holds the {} role; one account may hold only one of the three",
                    held.as_str()
                ),
            ));
        }
        let mut tx = self.db().begin().await?;
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM grants WHERE user_id = $1")
            .bind(target.id.as_str())
            .fetch_one(&mut *tx)
            .await
            .db()?
            .get(0);
        if n > 0 {
            return Err(Error::new(
                ErrorCode::SeparationOfDuties,
                "the account holds business roles; use a separate account",
            ));
        }
        sqlx::query("UPDATE users SET admin_role = $1, updated_at = $2 WHERE id = $3 AND admin_role IS NULL")
            .bind(admin.as_str())
            .bind(now)
            .bind(target.id.as_str())
            .execute(&mut *tx)
            .await
            .db()?;
        self.reseal_user(&mut tx, target.id.as_str()).await?;
        // New privileges take effect at the next login.
        self.revoke_sessions_in(&mut tx, target.id.as_str(), None, now).await?;
        let entry = actor
            .entry(now, "grant.admin_role")
            .object("user", target.id.as_str())
            .detail(serde_json::json!({"username": target.username, "role": admin.as_str()}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()
    }

    /// Revokes a grant. A grantor may revoke only what it could have granted.
    pub async fn revoke_grant(&self, caller: &Caller, actor: &Actor, user_id: &str, grant_id: &str) -> Result<()> {
        let grantor_scope = caller.require(GRANT_MANAGE)?.clone();
        let grants = self.list_grants(&crate::users::system_caller(), user_id).await?;
        let grant = grants.into_iter().find(|g| g.id.0 == grant_id).ok_or_else(|| Error::not_found("grant"))?;
        let target_org = self.org(grant.anchor_org_id.as_str()).await?;
        if !grantor_scope.covers_org(&target_org) {
            return Err(Error::not_found("grant"));
        }
        if caller.admin_role != Some(AdminRole::Secadmin) {
            let role = self.role_by_code(&grant.role_code).await?;
            if let Some(p) = role.permissions.iter().find(|p| !caller.has(p)) {
                return Err(Error::new(
                    ErrorCode::GrantExceedsGrantor,
                    format!("you cannot revoke a role with '{p}', which you do not hold"),
                ));
            }
        }
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("DELETE FROM grant_orgs WHERE grant_id = $1").bind(grant_id).execute(&mut *tx).await.db()?;
        sqlx::query("DELETE FROM grants WHERE id = $1").bind(grant_id).execute(&mut *tx).await.db()?;
        let entry = actor
            .entry(now, "grant.revoke")
            .object("user", user_id)
            .detail(serde_json::json!({"role": grant.role_code, "scope": grant.scope}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()
    }
}
