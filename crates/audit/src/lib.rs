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

mod archive;
mod model;
mod seal;
mod search;
mod verify;

pub use archive::{
    Archive, FileReport, KeptSegment, KeptWhy, MIN_RETENTION_DAYS, PurgeReport, archive, get_archive, list_archives,
    purge, verify_file,
};
pub use model::{AuditEntry, AuditRecord, AuditResult, Channel};
pub use seal::{Sealer, SealerHandle};
pub use search::{AuditFilter, Checkpoint, checkpoints, search};
pub use verify::{Problem, ProblemKind, VerifyReport, verify};

use std::sync::Arc;

use crypto::{HashAlg, KeyRing};
use kernel::Result;
use store::{DbResultExt, Tx};

pub static MIGRATIONS: store::MigrationSet = store::migrations!("audit": 1 => "0001_audit", 2 => "0002_archives");

/// Audit settings.
#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// Chain hash algorithm.
    pub algorithm: HashAlg,
    /// Records between checkpoints.
    pub checkpoint_every: i64,
    /// How long after sealing the sealer still looks for records that committed late with a
    /// lower id (PostgreSQL), in ms. Longer-running transactions' records are sealed at the next
    /// start; the verifier counts them as unsealed until then.
    pub seal_grace_ms: i64,
    /// Days a record stays in the database at least (≥ [`MIN_RETENTION_DAYS`]); archived segments
    /// older than this may be purged.
    pub retention_days: i64,
    /// Where archive files are written.
    pub archive_dir: std::path::PathBuf,
    /// Records older than this many days are archived by the daily job (0: only by hand).
    pub archive_after_days: i64,
    /// The daily job also purges archived segments past the retention period.
    pub auto_purge: bool,
    /// Records in one archive file at most; a longer backlog becomes several files.
    pub archive_max_records: i64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            algorithm: HashAlg::Sm3,
            checkpoint_every: 10_000,
            seal_grace_ms: 2 * 60 * 1000,
            retention_days: MIN_RETENTION_DAYS,
            archive_dir: std::path::PathBuf::from("audit-archive"),
            archive_after_days: 30,
            auto_purge: false,
            archive_max_records: 1_000_000,
        }
    }
}

/// The audit log's write side: cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    mac: Arc<crypto::hash::KeyedMac>,
    algorithm: HashAlg,
}

/// What a record's own check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordCheck {
    /// The content still hashes to the stored digest.
    pub content_ok: bool,
    /// The stored MAC over the digest is valid (needs the key).
    pub mac_ok: bool,
}

impl AuditLog {
    /// The MAC key is derived from the key ring once; digests use SM3.
    pub fn new(keys: &KeyRing) -> Self {
        let key = keys.mac("audit", b"record-mac-key");
        AuditLog { mac: Arc::new(crypto::hash::KeyedMac::new(HashAlg::Sm3, &key)), algorithm: HashAlg::Sm3 }
    }

    /// Uses `algorithm` for record digests and the chain (SM3 by default).
    pub fn with_algorithm(mut self, algorithm: HashAlg) -> Self {
        self.algorithm = algorithm;
        self
    }

    pub fn algorithm(&self) -> HashAlg {
        self.algorithm
    }

    fn digest_hex(&self, entry: &AuditEntry) -> String {
        crypto::hash::to_hex(&crypto::digest(self.algorithm, &entry.canonical_bytes(None)))
    }

    fn mac_hex(&self, digest_hex: &str) -> String {
        crypto::hash::to_hex(&self.mac.mac(digest_hex.as_bytes()))
    }

    pub(crate) fn mac_ok(&self, digest_hex: &str, mac_hex: &str) -> bool {
        crypto::hash::constant_time_eq(self.mac_hex(digest_hex).as_bytes(), mac_hex.as_bytes())
    }

    /// Checks a stored record against its digest and MAC, reusing `buf` for the encoding.
    pub(crate) fn check_with(&self, record: &AuditRecord, buf: &mut Vec<u8>) -> RecordCheck {
        record.entry.canonical_into(None, buf);
        let digest = crypto::digest(self.algorithm, buf);
        RecordCheck {
            content_ok: crypto::hash::hex_eq(&digest, &record.digest),
            mac_ok: crypto::hash::hex_eq(&self.mac.mac(record.digest.as_bytes()), &record.mac),
        }
    }

    pub(crate) fn check(&self, record: &AuditRecord) -> RecordCheck {
        self.check_with(record, &mut Vec::with_capacity(256))
    }

    /// Appends `entry` inside the caller's transaction: it commits or rolls back with the change.
    pub async fn append(&self, tx: &mut Tx, entry: &AuditEntry) -> Result<()> {
        let digest = self.digest_hex(entry);
        let mac = self.mac_hex(&digest);
        sqlx::query(
            "INSERT INTO audit_records (at, actor_id, actor_name, actor_org, source_ip, request_id, channel, action,
                 object_type, object_id, result, reason, detail, digest, mac)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
        .bind(digest)
        .bind(mac)
        .execute(&mut **tx)
        .await
        .db()?;
        Ok(())
    }

    /// Appends many entries inside the caller's transaction with multi-row inserts (for bulk
    /// writers such as imports and high-volume intake).
    pub async fn append_many(&self, tx: &mut Tx, entries: &[AuditEntry]) -> Result<()> {
        const COLS: usize = 15;
        const ROWS: usize = 16;
        let backend = store::Backend::of(tx);
        for chunk in store::chunks_pow2(entries, ROWS) {
            let mut sql = String::from(
                "INSERT INTO audit_records (at, actor_id, actor_name, actor_org, source_ip, request_id, channel, action,
                     object_type, object_id, result, reason, detail, digest, mac) VALUES ",
            );
            sql.push_str(&backend.values(chunk.len(), COLS, 1));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                let digest = self.digest_hex(e);
                let mac = self.mac_hex(&digest);
                q = q
                    .bind(e.at)
                    .bind(e.actor_id.clone())
                    .bind(e.actor_name.clone())
                    .bind(e.actor_org.clone())
                    .bind(e.source_ip.clone())
                    .bind(e.request_id.clone())
                    .bind(e.channel.as_str())
                    .bind(e.action.clone())
                    .bind(e.object_type.clone())
                    .bind(e.object_id.clone())
                    .bind(e.result.as_str())
                    .bind(e.reason.clone())
                    .bind(e.detail.clone())
                    .bind(digest)
                    .bind(mac);
            }
            q.execute(&mut **tx).await.db()?;
        }
        Ok(())
    }

    /// Appends `entry` in a transaction of its own (for failures and denials, whose business
    /// transaction rolled back).
    pub async fn append_now(&self, db: &store::Db, entry: &AuditEntry) -> Result<()> {
        let mut tx = db.begin().await?;
        self.append(&mut tx, entry).await?;
        tx.commit().await.db()
    }
}
