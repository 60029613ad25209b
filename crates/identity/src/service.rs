//! The identity service: shared state and helpers used by the use-case modules.

use std::sync::{Arc, RwLock};

use audit::{AuditEntry, AuditLog, Channel};

use crypto::KeyRing;
use crypto::password::HashCost;
use kernel::{Clock, Error, ErrorCode, Result};
use store::{Db, DbResultExt, Row, Tx};

use crate::model::{Org, OrgId, OrgKind};
use crate::perms::BUILTIN_ROLES;
use crate::policy::SecurityPolicy;

/// Identity settings from the config file.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    pub hash_cost: HashCost,
    /// The policy used until the security administrator saves one.
    pub default_policy: SecurityPolicy,
    /// Shown in authenticator apps.
    pub totp_issuer: String,
    /// The algorithm of new second-factor enrolments (existing ones keep theirs).
    pub otp_algorithm: crypto::otp::Algorithm,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            hash_cost: HashCost::default(),
            default_policy: SecurityPolicy::default(),
            totp_issuer: "中枢".into(),
            otp_algorithm: crypto::otp::Algorithm::Totp,
        }
    }
}

/// Who does something, for the audit log.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub org_id: Option<String>,
    pub source_ip: Option<String>,
    pub request_id: Option<String>,
    pub channel: Channel,
}

impl Actor {
    /// The command line on the server.
    pub fn cli() -> Actor {
        Actor { username: Some("cli".into()), channel: Channel::Cli, ..Actor::default() }
    }

    /// The platform itself.
    pub fn system() -> Actor {
        Actor { username: Some("system".into()), channel: Channel::System, ..Actor::default() }
    }

    /// An audit entry for `action` by this actor at `at`.
    pub fn entry(&self, at: i64, action: &str) -> AuditEntry {
        AuditEntry {
            actor_id: self.user_id.clone(),
            actor_name: self.username.clone(),
            actor_org: self.org_id.clone(),
            source_ip: self.source_ip.clone(),
            request_id: self.request_id.clone(),
            ..AuditEntry::new(at, action, self.channel)
        }
    }
}

/// The identity service. Cheap to clone.
#[derive(Clone)]
pub struct Identity {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: Db,
    pub keys: Arc<KeyRing>,
    pub audit: AuditLog,
    pub clock: Arc<dyn Clock>,
    pub opts: IdentityOptions,
    pub policy: RwLock<SecurityPolicy>,
    pub sessions: crate::cache::SessionCache,
    /// Security alerts as they are raised (see [`crate::alerts`]).
    pub alerts: tokio::sync::broadcast::Sender<crate::alerts::SecurityAlert>,
    /// The MAC key of account rows (context `users.row`), derived once.
    pub row_mac: crypto::hash::KeyedMac,
}

const POLICY_KEY: &str = "security_policy";

impl Identity {
    /// Builds the service and makes sure the built-in roles exist.
    pub async fn new(
        db: Db,
        keys: Arc<KeyRing>,
        audit: AuditLog,
        clock: Arc<dyn Clock>,
        opts: IdentityOptions,
    ) -> Result<Identity> {
        let policy = RwLock::new(opts.default_policy.clone());
        let row_mac = keys.mac_key(crate::integrity::ROW_CONTEXT);
        let me = Identity {
            inner: Arc::new(Inner {
                row_mac,
                db,
                keys,
                audit,
                clock,
                opts,
                policy,
                sessions: Default::default(),
                alerts: tokio::sync::broadcast::channel(64).0,
            }),
        };
        me.ensure_builtin_roles().await?;
        me.reload_policy().await?;
        let sealed = me.seal_unsealed_users().await?;
        if sealed > 0 {
            tracing::info!(accounts = sealed, "sealed accounts that had no integrity MAC yet");
        }
        Ok(me)
    }

    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn audit_log(&self) -> &AuditLog {
        &self.inner.audit
    }

    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    pub fn now(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        self.inner.clock.clone()
    }

    /// The security policy in force.
    pub fn policy(&self) -> SecurityPolicy {
        self.inner.policy.read().expect("policy lock").clone()
    }

    /// Re-reads the saved policy (other nodes may have changed it).
    pub async fn reload_policy(&self) -> Result<()> {
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(POLICY_KEY)
            .fetch_optional(self.db().reader())
            .await
            .db()?;
        if let Some(row) = row {
            let saved: SecurityPolicy = serde_json::from_str(&row.get::<String, _>(0)).map_err(Error::internal)?;
            *self.inner.policy.write().expect("policy lock") = saved;
        }
        Ok(())
    }

    /// Saves a new security policy (security administrator only), audited with before and after.
    pub async fn set_policy(&self, actor: &Actor, policy: SecurityPolicy) -> Result<SecurityPolicy> {
        policy.validate()?;
        let before = self.policy();
        let now = self.now();
        let mut tx = self.db().begin().await?;
        let json = serde_json::to_string(&policy).map_err(Error::internal)?;
        sqlx::query("DELETE FROM settings WHERE key = $1").bind(POLICY_KEY).execute(&mut *tx).await.db()?;
        sqlx::query("INSERT INTO settings (key, value, updated_at, updated_by) VALUES ($1, $2, $3, $4)")
            .bind(POLICY_KEY)
            .bind(&json)
            .bind(now)
            .bind(actor.username.as_deref())
            .execute(&mut *tx)
            .await
            .db()?;
        let entry = actor
            .entry(now, "policy.update")
            .object("policy", POLICY_KEY)
            .detail(serde_json::json!({ "before": before, "after": policy }));
        self.inner.audit.append(&mut tx, &entry).await?;
        tx.commit().await.db()?;
        *self.inner.policy.write().expect("policy lock") = policy.clone();
        self.inner.sessions.clear();
        Ok(policy)
    }

    /// Writes an audit entry in its own transaction (for denials and failures).
    pub async fn audit_now(&self, entry: AuditEntry) -> Result<()> {
        self.inner.audit.append_now(self.db(), &entry).await
    }

    /// Audits a change inside its transaction. Every identity change passes here, so this is
    /// also where cached sessions and callers are dropped.
    pub(crate) async fn audit(&self, tx: &mut Tx, entry: AuditEntry) -> Result<()> {
        self.inner.sessions.clear();
        self.inner.audit.append(tx, &entry).await
    }

    async fn ensure_builtin_roles(&self) -> Result<()> {
        let now = self.now();
        let mut tx = self.db().begin().await?;
        for r in BUILTIN_ROLES {
            let exists =
                sqlx::query("SELECT id FROM roles WHERE code = $1").bind(r.code).fetch_optional(&mut *tx).await.db()?;
            let id = match exists {
                Some(row) => row.get::<String, _>(0),
                None => {
                    let id = crate::model::RoleId::new().0;
                    sqlx::query(
                        "INSERT INTO roles (id, code, name, description, builtin, admin_role, mfa_required, created_at, updated_at)
                         VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $7)",
                    )
                    .bind(&id)
                    .bind(r.code)
                    .bind(r.name)
                    .bind(r.description)
                    .bind(r.admin_role)
                    .bind(r.mfa_required as i64)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .db()?;
                    id
                }
            };
            // Built-in administrator roles always carry exactly their fixed permissions.
            if r.admin_role.is_some() {
                sqlx::query("DELETE FROM role_permissions WHERE role_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .db()?;
            }
            for p in r.perms {
                let have = sqlx::query("SELECT 1 FROM role_permissions WHERE role_id = $1 AND permission = $2")
                    .bind(&id)
                    .bind(*p)
                    .fetch_optional(&mut *tx)
                    .await
                    .db()?;
                if have.is_none() {
                    sqlx::query("INSERT INTO role_permissions (role_id, permission) VALUES ($1, $2)")
                        .bind(&id)
                        .bind(*p)
                        .execute(&mut *tx)
                        .await
                        .db()?;
                }
            }
        }
        tx.commit().await.db()
    }

    /// Loads an org by id (no scope check).
    pub async fn org(&self, id: &str) -> Result<Org> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("organisation"))?;
        Ok(org_from_row(&row))
    }

    pub(crate) async fn org_in(&self, tx: &mut Tx, id: &str) -> Result<Org> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {ORG_COLUMNS} FROM orgs WHERE id = $1")))
            .bind(id)
            .fetch_optional(&mut **tx)
            .await
            .db()?
            .ok_or_else(|| Error::new(ErrorCode::ValidationFailed, format!("organisation {id} does not exist")))?;
        Ok(org_from_row(&row))
    }

    /// Whether any organisation exists yet (a fresh install has none).
    pub async fn is_empty(&self) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM orgs").fetch_one(self.db().reader()).await.db()?.get(0);
        Ok(n == 0)
    }
}

pub(crate) const ORG_COLUMNS: &str = "id, parent_id, kind, code, name, path, depth, sort";

pub(crate) fn org_from_row(row: &store::AnyRow) -> Org {
    Org {
        id: OrgId(row.get(0)),
        parent_id: row.get::<Option<String>, _>(1).map(OrgId),
        kind: OrgKind::parse(&row.get::<String, _>(2)).unwrap_or(OrgKind::Department),
        code: row.get(3),
        name: row.get(4),
        path: row.get(5),
        depth: row.get(6),
        sort: row.get(7),
    }
}
