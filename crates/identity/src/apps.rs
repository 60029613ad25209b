//! Connected applications (接入应用): other government systems calling the API with signed
//! requests instead of sessions.
//!
//! Signing: `signature = hex(HMAC(secret, canonical))` with HMAC-SM3 (default) or HMAC-SHA256,
//! where `canonical = METHOD \n PATH[?QUERY] \n TIMESTAMP \n NONCE \n hex(H(body))` and H is SM3 or
//! SHA-256 to match. Headers: `X-Zs-App-Id`, `X-Zs-Timestamp` (unix seconds), `X-Zs-Nonce`
//! (16-64 characters), `X-Zs-Signature`. Timestamps outside ±5 minutes and reused nonces are
//! refused.

use std::collections::HashMap;

use crypto::HashAlg;
use kernel::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};
use store::{DbResultExt, Row};

use crate::model::OrgId;
use crate::perms::{self, APP_MANAGE, APP_READ};
use crate::scope::{Caller, CallerKind, Scope};
use crate::service::{Actor, Identity};

/// The allowed clock difference for signed requests.
pub const CLOCK_WINDOW_SECS: i64 = 300;

/// A connected application.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct App {
    pub id: String,
    pub app_id: String,
    pub name: String,
    /// `hmac-sm3` or `hmac-sha256`.
    pub sign_alg: String,
    /// Permissions the application may use, within `org_id` and below.
    pub scopes: Vec<String>,
    pub org_id: String,
    pub rate_limit_per_min: i64,
    pub enabled: bool,
    pub created_at: i64,
}

/// A new application; the secret is generated and shown once.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApp {
    pub name: String,
    pub scopes: Vec<String>,
    pub org_id: String,
    #[serde(default = "default_rate")]
    pub rate_limit_per_min: i64,
    #[serde(default = "default_alg")]
    pub sign_alg: String,
}

fn default_rate() -> i64 {
    600
}

fn default_alg() -> String {
    "hmac-sm3".into()
}

/// A created application with its secret (shown once).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedApp {
    pub app: App,
    pub secret: String,
}

/// The signature headers of a request.
#[derive(Debug, Clone)]
pub struct SignedRequest<'a> {
    pub app_id: &'a str,
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub signature: &'a str,
    pub method: &'a str,
    pub path_and_query: &'a str,
    pub body: &'a [u8],
}

fn alg_of(name: &str) -> Option<HashAlg> {
    match name {
        "hmac-sm3" => Some(HashAlg::Sm3),
        "hmac-sha256" => Some(HashAlg::Sha256),
        _ => None,
    }
}

/// Computes the signature of a request (used by clients and tests too).
pub fn sign(
    alg: HashAlg,
    secret: &str,
    method: &str,
    path_and_query: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> String {
    let body_hash = crypto::hash::to_hex(&crypto::digest(alg, body));
    let canonical =
        format!("{}\n{}\n{}\n{}\n{}", method.to_ascii_uppercase(), path_and_query, timestamp, nonce, body_hash);
    crypto::hash::to_hex(&crypto::hmac(alg, secret.as_bytes(), canonical.as_bytes()))
}

const APP_COLUMNS: &str =
    "id, app_id, name, sign_alg, scopes, org_id, rate_limit_per_min, enabled, created_at, secret_enc";

fn app_from_row(r: &store::AnyRow) -> App {
    App {
        id: r.get(0),
        app_id: r.get(1),
        name: r.get(2),
        sign_alg: r.get(3),
        scopes: serde_json::from_str(&r.get::<String, _>(4)).unwrap_or_default(),
        org_id: r.get(5),
        rate_limit_per_min: r.get(6),
        enabled: r.get::<i64, _>(7) != 0,
        created_at: r.get(8),
    }
}

impl Identity {
    /// Registers an application (`app.manage`).
    pub async fn create_app(&self, caller: &Caller, actor: &Actor, new: NewApp) -> Result<CreatedApp> {
        caller.require(APP_MANAGE)?;
        let name = crate::orgs::check_name("name", &new.name, 100)?;
        if alg_of(&new.sign_alg).is_none() {
            return Err(Error::validation("sign_alg must be hmac-sm3 or hmac-sha256"));
        }
        for s in &new.scopes {
            if !perms::is_known(s) {
                return Err(Error::validation(format!("unknown permission '{s}'")));
            }
            if crate::roles::ADMIN_ONLY.contains(&s.as_str()) || s == perms::USER_MANAGE || s == perms::GRANT_MANAGE {
                return Err(Error::validation(format!("'{s}' cannot be given to a connected application")));
            }
        }
        if !(1..=100_000).contains(&new.rate_limit_per_min) {
            return Err(Error::validation("rate_limit_per_min must be between 1 and 100000"));
        }
        self.org(&new.org_id).await.map_err(|_| Error::validation("org_id does not exist"))?;
        let secret = crypto::random::token();
        let app_id = format!("zs{}", crypto::random::readable_code(14));
        let id = kernel::ids::new_id();
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query(
            "INSERT INTO api_clients (id, app_id, name, secret_enc, sign_alg, scopes, org_id, rate_limit_per_min, enabled, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)",
        )
        .bind(&id)
        .bind(&app_id)
        .bind(&name)
        .bind(self.keys().seal("api_clients.secret", &secret))
        .bind(&new.sign_alg)
        .bind(serde_json::to_string(&new.scopes).map_err(Error::internal)?)
        .bind(&new.org_id)
        .bind(new.rate_limit_per_min)
        .bind(now)
        .execute(&mut *tx)
        .await
        .db()?;
        let entry = actor.entry(now, "app.create").object("app", &id).detail(serde_json::json!({
            "app_id": app_id, "name": name, "scopes": new.scopes,
        }));
        self.audit(&mut tx, entry).await?;
        tx.commit().await.db()?;
        let app = self.app_by(&id).await?.0;
        Ok(CreatedApp { app, secret })
    }

    async fn app_by(&self, id_or_app_id: &str) -> Result<(App, String)> {
        let sql = format!("SELECT {APP_COLUMNS} FROM api_clients WHERE id = $1 OR app_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id_or_app_id)
            .fetch_optional(self.db().reader())
            .await
            .db()?
            .ok_or_else(|| Error::not_found("application"))?;
        Ok((app_from_row(&row), row.get(9)))
    }

    /// A connected application by id or app id, for capabilities that bind their own records
    /// to one (no secret).
    pub async fn app_summary(&self, id_or_app_id: &str) -> Result<App> {
        Ok(self.app_by(id_or_app_id).await?.0)
    }

    /// All connected applications (`app.read`).
    pub async fn list_apps(&self, caller: &Caller) -> Result<Vec<App>> {
        caller.require(APP_READ)?;
        let sql = format!("SELECT {APP_COLUMNS} FROM api_clients ORDER BY created_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.db().reader()).await.db()?;
        Ok(rows.iter().map(app_from_row).collect())
    }

    /// Enables or disables an application.
    pub async fn set_app_enabled(&self, caller: &Caller, actor: &Actor, id: &str, enabled: bool) -> Result<App> {
        caller.require(APP_MANAGE)?;
        let (app, _) = self.app_by(id).await?;
        let now = self.now();
        let mut tx = self.db().begin().await?;
        sqlx::query("UPDATE api_clients SET enabled = $1, updated_at = $2 WHERE id = $3")
            .bind(enabled as i64)
            .bind(now)
            .bind(&app.id)
            .execute(&mut *tx)
            .await
            .db()?;
        let action = if enabled { "app.enable" } else { "app.disable" };
        self.audit(&mut tx, actor.entry(now, action).object("app", &app.id)).await?;
        tx.commit().await.db()?;
        Ok(self.app_by(&app.id).await?.0)
    }

    /// Verifies a signed request and returns the application as a caller (with its rate limit).
    pub async fn verify_signed(&self, req: &SignedRequest<'_>) -> Result<(Caller, i64)> {
        let bad_sig = || Error::new(ErrorCode::InvalidSignature, "the request signature does not verify");
        let (app, secret_enc) = self.app_by(req.app_id).await.map_err(|_| bad_sig())?;
        if !app.enabled || app.app_id != req.app_id {
            return Err(bad_sig());
        }
        let now_secs = self.now() / 1000;
        let ts: i64 = req
            .timestamp
            .parse()
            .map_err(|_| Error::new(ErrorCode::StaleTimestamp, "X-Zs-Timestamp must be unix seconds"))?;
        if (now_secs - ts).abs() > CLOCK_WINDOW_SECS {
            return Err(Error::new(
                ErrorCode::StaleTimestamp,
                "the request timestamp is more than 5 minutes off the server clock",
            ));
        }
        if !(16..=64).contains(&req.nonce.len())
            || !req.nonce.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Error::validation("X-Zs-Nonce must be 16-64 letters, digits, '-' or '_'"));
        }
        let alg = alg_of(&app.sign_alg).ok_or_else(bad_sig)?;
        let secret = self.keys().open("api_clients.secret", &secret_enc).map_err(Error::internal)?;
        let expected = sign(alg, &secret, req.method, req.path_and_query, req.timestamp, req.nonce, req.body);
        if !crypto::hash::constant_time_eq(expected.as_bytes(), req.signature.to_ascii_lowercase().as_bytes()) {
            return Err(bad_sig());
        }
        // A nonce is accepted once; old nonces are forgotten once outside the clock window.
        let inserted = sqlx::query("INSERT INTO api_nonces (app_id, nonce, seen_at) VALUES ($1, $2, $3)")
            .bind(&app.app_id)
            .bind(req.nonce)
            .bind(self.now())
            .execute(self.db().writer())
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if store::is_unique_violation(&e) => {
                return Err(Error::new(
                    ErrorCode::ReplayedNonce,
                    "this nonce was already used; sign each request anew",
                ));
            }
            Err(e) => return Err(store::db_error(e)),
        }
        Ok((self.caller_of(&app).await?, app.rate_limit_per_min))
    }

    /// An enabled application as a caller, for work done on its behalf without a request (a
    /// capability reconciling with the system the application stands for).
    pub async fn app_caller(&self, app_id: &str) -> Result<Caller> {
        let (app, _) = self.app_by(app_id).await?;
        if !app.enabled {
            return Err(Error::forbidden(format!("the connected application {} is disabled", app.name)));
        }
        self.caller_of(&app).await
    }

    async fn caller_of(&self, app: &App) -> Result<Caller> {
        let org = self.org(&app.org_id).await?;
        let scope = Scope { subtrees: vec![org.path.clone()], ..Scope::default() };
        let permissions: HashMap<String, Scope> = app.scopes.iter().map(|p| (p.clone(), scope.clone())).collect();
        let caller = Caller {
            kind: CallerKind::App,
            id: app.app_id.clone(),
            username: format!("app:{}", app.app_id),
            display_name: app.name.clone(),
            primary_org_id: OrgId(org.id.0.clone()),
            primary_org_name: org.name.clone(),
            org_ids: vec![org.id.clone()],
            admin_role: None,
            roles: vec![],
            permissions,
            session_id: None,
        };
        Ok(caller)
    }

    /// Forgets nonces older than twice the clock window.
    pub async fn prune_nonces(&self) -> Result<u64> {
        let cutoff = self.now() - 2 * CLOCK_WINDOW_SECS * 1000;
        let res = sqlx::query("DELETE FROM api_nonces WHERE seen_at < $1")
            .bind(cutoff)
            .execute(self.db().writer())
            .await
            .db()?;
        Ok(res.rows_affected())
    }
}
