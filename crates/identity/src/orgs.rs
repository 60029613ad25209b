//! The organisation tree.

use kernel::{Error, ErrorCode, Result};
use serde::Deserialize;
use store::{DbResultExt, Row, Tx, Where};

use crate::model::{Org, OrgId, OrgKind};
use crate::perms::{ORG_MANAGE, ORG_READ};
use crate::scope::{Caller, Scope};
use crate::service::{Actor, Identity, ORG_COLUMNS, org_from_row};

/// A new organisation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrg {
    pub parent_id: Option<String>,
    pub kind: OrgKind,
    /// Unique code, e.g. the administrative division code `370102`.
    pub code: String,
    pub name: String,
    #[serde(default)]
    pub sort: i64,
}

/// Changes to an organisation (absent fields stay as they are).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgPatch {
    pub code: Option<String>,
    pub name: Option<String>,
    pub sort: Option<i64>,
}

pub fn check_code(code: &str) -> Result<()> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok { Ok(()) } else { Err(Error::validation("code must be 1-64 letters, digits, '-', '_' or '.'")) }
}

pub fn check_name(field: &str, name: &str, max: usize) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > max {
        return Err(Error::validation(format!("{field} must be 1-{max} characters")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::validation(format!("{field} may not contain control characters")));
    }
    Ok(name.to_string())
}

impl Identity {
    /// Creates an org. The caller needs `org.manage` over the parent (a root needs scope `all`).
    pub async fn create_org(&self, caller: &Caller, actor: &Actor, new: NewOrg) -> Result<Org> {
        let scope = caller.require(ORG_MANAGE)?.clone();
        let mut tx = self.db().begin().await?;
        let org = self.create_org_in(&mut tx, &scope, actor, new).await?;
        tx.commit().await.db()?;
        Ok(org)
    }

    /// Creates an org inside the caller's transaction, audited there. `scope` is what the caller
    /// holds of the permission that allows this creation (`org.manage`; the grid import lets a
    /// grid administrator's `grid.manage` create grids): it must cover the parent.
    pub async fn create_org_in(&self, tx: &mut Tx, scope: &Scope, actor: &Actor, new: NewOrg) -> Result<Org> {
        check_code(&new.code)?;
        let name = check_name("name", &new.name, 100)?;
        let now = self.now();
        let id = OrgId::new();
        let (parent_id, path, depth) = match &new.parent_id {
            Some(pid) => {
                let parent = self.org_in(tx, pid).await?;
                if !scope.covers_org(&parent) {
                    return Err(Error::new(
                        ErrorCode::OutOfScope,
                        "the parent organisation is outside your data scope",
                    ));
                }
                if !new.kind.may_sit_under(parent.kind) {
                    return Err(Error::validation(format!(
                        "a {} cannot sit under a {}",
                        new.kind.as_str(),
                        parent.kind.as_str()
                    )));
                }
                (Some(parent.id), format!("{}{}/", parent.path, id), parent.depth + 1)
            }
            None if scope.all => (None, format!("/{id}/"), 0),
            None => return Err(Error::new(ErrorCode::OutOfScope, "only a caller with scope 'all' may create a root")),
        };
        sqlx::query(
            "INSERT INTO orgs (id, parent_id, kind, code, name, path, depth, sort, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
        )
        .bind(id.as_str())
        .bind(parent_id.as_ref().map(|p| p.as_str()))
        .bind(new.kind.as_str())
        .bind(&new.code)
        .bind(&name)
        .bind(&path)
        .bind(depth)
        .bind(new.sort)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| match store::is_unique_violation(&e) {
            true => Error::new(ErrorCode::AlreadyExists, format!("an organisation with code '{}' exists", new.code)),
            false => store::db_error(e),
        })?;
        let entry = actor
            .entry(now, "org.create")
            .object("org", id.as_str())
            .detail(serde_json::json!({"code": new.code, "name": name, "kind": new.kind}));
        self.audit(tx, entry).await?;
        Ok(Org { id, parent_id, kind: new.kind, code: new.code, name, path, depth, sort: new.sort })
    }

    /// Creates an org without a caller (bootstrap and demo set-up), audited as `actor`.
    pub async fn create_org_as_system(&self, actor: &Actor, new: NewOrg) -> Result<Org> {
        let caller = crate::users::system_caller();
        self.create_org(&caller, actor, new).await
    }

    /// Lists the orgs visible to the caller (`org.read`), in tree order.
    pub async fn list_orgs(&self, caller: &Caller) -> Result<Vec<Org>> {
        let scope = caller.require(ORG_READ)?;
        let mut w = Where::new();
        scope.restrict(&mut w, "id", None);
        let sql = format!("SELECT {ORG_COLUMNS} FROM orgs {} ORDER BY depth, sort, code", w.clause());
        let rows = w.bind(sqlx::query(sqlx::AssertSqlSafe(sql))).fetch_all(self.db().reader()).await.db()?;
        Ok(rows.iter().map(org_from_row).collect())
    }

    /// One org, if visible to the caller.
    pub async fn get_org(&self, caller: &Caller, id: &str) -> Result<Org> {
        let org = self.org(id).await?;
        if !caller.require(ORG_READ)?.covers_org(&org) {
            return Err(Error::not_found("organisation"));
        }
        Ok(org)
    }

    /// Renames or recodes an org.
    pub async fn update_org(&self, caller: &Caller, actor: &Actor, id: &str, patch: OrgPatch) -> Result<Org> {
        let scope = caller.require(ORG_MANAGE)?.clone();
        let org = self.org(id).await?;
        if !scope.covers_org(&org) {
            return Err(Error::not_found("organisation"));
        }
        let code = match &patch.code {
            Some(c) => {
                check_code(c)?;
                c.clone()
            }
            None => org.code.clone(),
        };
        let name = match &patch.name {
            Some(n) => check_name("name", n, 100)?,
            None => org.name.clone(),
        };
        let sort = patch.sort.unwrap_or(org.sort);
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE orgs SET code = $1, name = $2, sort = $3, updated_at = $4 WHERE id = $5")
            .bind(&code)
            .bind(&name)
            .bind(sort)
            .bind(now)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| match store::is_unique_violation(&e) {
                true => Error::new(ErrorCode::AlreadyExists, format!("an organisation with code '{code}' exists")),
                false => store::db_error(e),
            })?;
        let entry = actor.entry(now, "org.update").object("org", id).detail(serde_json::json!({
            "before": {"code": org.code, "name": org.name, "sort": org.sort},
            "after": {"code": code, "name": name, "sort": sort},
        }));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        self.org(id).await
    }

    /// Deletes an org that has no children, users or grants.
    pub async fn delete_org(&self, caller: &Caller, actor: &Actor, id: &str) -> Result<()> {
        let scope = caller.require(ORG_MANAGE)?.clone();
        let org = self.org(id).await?;
        if !scope.covers_org(&org) {
            return Err(Error::not_found("organisation"));
        }
        let mut tx = self.db().begin().await?;
        for (sql, what) in [
            ("SELECT COUNT(*) FROM orgs WHERE parent_id = $1", "sub-organisations"),
            ("SELECT COUNT(*) FROM user_orgs WHERE org_id = $1", "users"),
            ("SELECT COUNT(*) FROM grants WHERE anchor_org_id = $1", "grants"),
        ] {
            let n: i64 = sqlx::query(sql).bind(id).fetch_one(&mut *tx).await.db()?.get(0);
            if n > 0 {
                return Err(Error::conflict(format!(
                    "the organisation still has {n} {what}; move or remove them first"
                )));
            }
        }
        sqlx::query("DELETE FROM orgs WHERE id = $1").bind(id).execute(&mut *tx).await.db()?;
        let now = self.now();
        let entry = actor
            .entry(now, "org.delete")
            .object("org", id)
            .detail(serde_json::json!({"code": org.code, "name": org.name}));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()
    }
}
