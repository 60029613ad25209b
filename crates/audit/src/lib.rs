//! The tamper-evident audit log (审计日志, A4.2, A5.3).
//!
//! Business transactions append [`AuditEntry`] rows to `audit_records` in the same transaction
//! as their change; each row carries a keyed MAC (HMAC-SM3 under the key ring), so a row forged
//! or edited without the key file is detected. A single [`Sealer`] then links committed records,
//! in the order it sees them, into `audit_chain`: `hash = H(prev_hash ‖ seq ‖ record)`, with H =
//! SM3 by default (SHA-256 selectable). This is the transparency-log design: concurrent writers on
//! PostgreSQL never wait on one chain-head lock, and the chain has no gaps. Periodic checkpoints
//! (sequence number + head hash) can be exported and kept outside the database; [`verify`] walks
//! the chain and names the first record that was altered, deleted, inserted or reordered.
//!
//! Architecture invariant: no code path updates or deletes audit rows; the tables refuse it with
//! triggers, and the chain and MACs detect it when a database superuser does it anyway.

mod model;
mod seal;
mod search;
mod verify;

pub use model::{AuditEntry, AuditRecord, AuditResult, Channel};
pub use seal::{Sealer, SealerHandle};
pub use search::{AuditFilter, Checkpoint, checkpoints, search};
pub use verify::{Problem, ProblemKind, VerifyReport, verify};

use std::sync::Arc;

use crypto::{HashAlg, KeyRing};
use kernel::Result;
use store::{DbResultExt, Tx};

pub static MIGRATIONS: store::MigrationSet = store::migrations!("audit": 1 => "0001_audit");

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Chain hash algorithm.
    pub algorithm: HashAlg,
    /// Records between checkpoints.
    pub checkpoint_every: i64,
    /// Unsealed records older than this are reported by the verifier (ms).
    pub seal_grace_ms: i64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions { algorithm: HashAlg::Sm3, checkpoint_every: 10_000, seal_grace_ms: 10 * 60 * 1000 }
    }
}

/// The audit log's write side: cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    mac_key: Arc<[u8; 32]>,
}

impl AuditLog {
    /// The MAC key is derived from the key ring once; records are MACed with HMAC-SM3 under it.
    pub fn new(keys: &KeyRing) -> Self {
        AuditLog { mac_key: Arc::new(keys.mac("audit", b"record-mac-key")) }
    }

    fn mac_hex(&self, entry: &AuditEntry) -> String {
        crypto::hash::to_hex(&crypto::hmac(HashAlg::Sm3, &self.mac_key[..], &entry.canonical_bytes(None)))
    }

    /// Appends `entry` inside the caller's transaction: it commits or rolls back with the change.
    pub async fn append(&self, tx: &mut Tx, entry: &AuditEntry) -> Result<()> {
        let mac = self.mac_hex(entry);
        sqlx::query(
            "INSERT INTO audit_records (at, actor_id, actor_name, actor_org, source_ip, request_id, channel, action,
                 object_type, object_id, result, reason, detail, mac)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(entry.at)
        .bind(entry.actor_id.as_deref())
        .bind(entry.actor_name.as_deref())
        .bind(entry.actor_org.as_deref())
        .bind(entry.source_ip.as_deref())
        .bind(entry.request_id.as_deref())
        .bind(entry.channel.as_str())
        .bind(entry.action.as_str())
        .bind(entry.object_type.as_deref())
        .bind(entry.object_id.as_deref())
        .bind(entry.result.as_str())
        .bind(entry.reason.as_deref())
        .bind(entry.detail.as_deref())
        .bind(mac)
        .execute(&mut **tx)
        .await
        .db()?;
        Ok(())
    }

    /// Appends `entry` in a transaction of its own (for failures and denials, whose business
    /// transaction rolled back).
    pub async fn append_now(&self, db: &store::Db, entry: &AuditEntry) -> Result<()> {
        let mut tx = db.begin().await?;
        self.append(&mut tx, entry).await?;
        tx.commit().await.db()
    }

    pub(crate) fn record_mac_ok(&self, record: &AuditRecord) -> bool {
        let expected = self.mac_hex(&record.entry);
        crypto::hash::constant_time_eq(expected.as_bytes(), record.mac.as_bytes())
    }
}
