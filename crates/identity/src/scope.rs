//! Who is calling and what they may see: the one reusable data-scope mechanism.

use std::collections::HashMap;

use kernel::{Error, ErrorCode};
use serde::Serialize;
use store::{Value, Where};

use crate::model::{AdminRole, Org, OrgId, UserId};
use crate::service::Actor;

/// The set of data a caller may reach with one permission: the union of its grants' scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Scope {
    pub all: bool,
    /// Org paths whose whole subtree is visible.
    pub subtrees: Vec<String>,
    /// Single orgs that are visible.
    pub orgs: Vec<String>,
    /// Objects owned by this user are visible.
    pub owner: Option<String>,
}

impl Scope {
    pub fn all() -> Scope {
        Scope { all: true, ..Scope::default() }
    }

    /// True when nothing is visible.
    pub fn is_empty(&self) -> bool {
        !self.all && self.subtrees.is_empty() && self.orgs.is_empty() && self.owner.is_none()
    }

    /// Adds another scope to this one.
    pub fn merge(&mut self, other: &Scope) {
        self.all |= other.all;
        for s in &other.subtrees {
            if !self.subtrees.contains(s) {
                self.subtrees.push(s.clone());
            }
        }
        for o in &other.orgs {
            if !self.orgs.contains(o) {
                self.orgs.push(o.clone());
            }
        }
        if self.owner.is_none() {
            self.owner.clone_from(&other.owner);
        }
    }

    /// Whether an object belonging to `org` is visible.
    pub fn covers_org(&self, org: &Org) -> bool {
        self.all
            || self.subtrees.iter().any(|p| org.path.starts_with(p.as_str()))
            || self.orgs.iter().any(|o| o == org.id.as_str())
    }

    /// Whether an object owned by `owner` in `org` is visible.
    pub fn covers(&self, org: &Org, owner: Option<&UserId>) -> bool {
        self.covers_org(org) || owner.is_some_and(|u| self.owner.as_deref() == Some(u.as_str()))
    }

    /// Whether everything `self` reaches is also reached by `other` (for graded authorisation).
    pub fn within(&self, other: &Scope, orgs_by_id: &dyn Fn(&str) -> Option<Org>) -> bool {
        if other.all {
            return true;
        }
        if self.all {
            return false;
        }
        let subtree_ok = self.subtrees.iter().all(|p| other.subtrees.iter().any(|q| p.starts_with(q.as_str())));
        let orgs_ok = self.orgs.iter().all(|id| orgs_by_id(id).is_some_and(|o| other.covers_org(&o)));
        let owner_ok = self.owner.is_none() || self.owner == other.owner;
        subtree_ok && orgs_ok && owner_ok
    }

    /// Restricts a query to this scope: `org_col` holds the object's org id, `owner_col` (if the
    /// object has one) its owner's user id.
    pub fn restrict(&self, w: &mut Where, org_col: &str, owner_col: Option<&str>) {
        self.restrict_any(w, &[org_col], owner_col)
    }

    /// Like `restrict`, for objects that belong to several orgs at once (a case belongs to its
    /// grid and to the department handling it): visible when any of `org_cols` is in scope.
    pub fn restrict_any(&self, w: &mut Where, org_cols: &[&str], owner_col: Option<&str>) {
        if self.all {
            return;
        }
        let mut parts: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        for org_col in org_cols {
            for p in &self.subtrees {
                parts.push(format!("{org_col} IN (SELECT id FROM orgs WHERE path >= ? AND path < ?)"));
                values.push(p.clone().into());
                values.push(subtree_end(p).into());
            }
            if !self.orgs.is_empty() {
                let marks = vec!["?"; self.orgs.len()].join(", ");
                parts.push(format!("{org_col} IN ({marks})"));
                values.extend(self.orgs.iter().map(|o| Value::from(o.clone())));
            }
        }
        if let (Some(owner), Some(col)) = (&self.owner, owner_col) {
            parts.push(format!("{col} = ?"));
            values.push(owner.clone().into());
        }
        if parts.is_empty() {
            w.and_sql("1 = 0");
        } else {
            w.and(&format!("({})", parts.join(" OR ")), values);
        }
    }
}

/// The exclusive upper bound of paths under `prefix` (which ends in '/'): '/' + 1 = '0'.
pub fn subtree_end(prefix: &str) -> String {
    let mut s = prefix.trim_end_matches('/').to_string();
    s.push('0');
    s
}

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallerKind {
    User,
    App,
}

/// An authenticated caller with its permissions and their scopes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Caller {
    pub kind: CallerKind,
    /// The user's id, or the connected application's id.
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub primary_org_id: OrgId,
    pub primary_org_name: String,
    pub org_ids: Vec<OrgId>,
    pub admin_role: Option<AdminRole>,
    /// Codes of the roles the caller holds (workflow candidate groups match these).
    #[serde(default)]
    pub roles: Vec<String>,
    pub permissions: HashMap<String, Scope>,
    #[serde(skip)]
    pub session_id: Option<String>,
}

impl Caller {
    pub fn has(&self, perm: &str) -> bool {
        self.permissions.get(perm).is_some_and(|s| !s.is_empty())
    }

    /// The scope of `perm` (empty when the caller lacks it).
    pub fn scope(&self, perm: &str) -> Scope {
        self.permissions.get(perm).cloned().unwrap_or_default()
    }

    /// Fails with `forbidden` unless the caller holds `perm`.
    pub fn require(&self, perm: &str) -> Result<&Scope, Error> {
        self.permissions
            .get(perm)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::new(ErrorCode::Forbidden, format!("this action needs the permission '{perm}'")))
    }

    pub fn user_id(&self) -> Option<UserId> {
        (self.kind == CallerKind::User).then(|| UserId(self.id.clone()))
    }

    /// The audit actor for this caller.
    pub fn actor(&self, source_ip: Option<String>, request_id: Option<String>) -> Actor {
        Actor {
            user_id: Some(self.id.clone()),
            username: Some(self.username.clone()),
            org_id: Some(self.primary_org_id.0.clone()),
            source_ip,
            request_id,
            channel: match self.kind {
                CallerKind::User => audit::Channel::Web,
                CallerKind::App => audit::Channel::Api,
            },
        }
    }
}
