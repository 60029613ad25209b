//! The sealer: links committed audit records into the hash chain, in the order it sees them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use kernel::{Clock, Result};
use store::{Backend, Db, DbResultExt, Row};
use tokio::sync::{Mutex, Notify, watch};

use crate::model::{GENESIS, chain_hash};
use crate::{AuditLog, AuditOptions};

const BATCH: i64 = 5_000;
const ROWS_PER_INSERT: usize = 500;
const SEALER_LOCK: i64 = 0x6175_6469_745f_7365; // "audit_se"

/// Seals pending records. One per process; on PostgreSQL an advisory lock keeps it to one per
/// cluster at a time, and a lost race only rolls back (seq and record id are unique).
#[derive(Clone)]
pub struct Sealer {
    db: Db,
    log: AuditLog,
    opts: AuditOptions,
    clock: Arc<dyn Clock>,
    state: Arc<Mutex<SealState>>,
    wake: Arc<Notify>,
}

#[derive(Default)]
struct SealState {
    /// Every record with id <= low was sealed more than `seal_grace_ms` ago.
    low: i64,
    /// The highest record id sealed so far. On SQLite (one writer) ids commit in order, so
    /// nothing below it can still appear; on PostgreSQL a transaction that took a lower id may
    /// commit later, and the slower scan from `low` finds it.
    high: i64,
    /// (when, highest record id sealed then), oldest first.
    recent: VecDeque<(i64, i64)>,
}

/// A running sealer: wake it after writes; dropping the handle does not stop it, `shutdown` does.
pub struct SealerHandle {
    pub sealer: Sealer,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SealerHandle {
    /// Seals what is pending, then stops the background loop.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        if let Err(e) = self.sealer.seal_all().await {
            tracing::error!(error = %e, "final audit seal failed");
        }
    }
}

impl Sealer {
    pub fn new(db: Db, log: AuditLog, opts: AuditOptions, clock: Arc<dyn Clock>) -> Sealer {
        Sealer { db, log, opts, clock, state: Arc::default(), wake: Arc::new(Notify::new()) }
    }

    /// Asks the background loop to seal soon.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs the sealing loop in the background every `interval` (or when woken).
    pub fn spawn(self, interval: Duration) -> SealerHandle {
        let (stop, mut stopped) = watch::channel(false);
        let me = self.clone();
        let task = tokio::spawn(async move {
            loop {
                match me.seal_once().await {
                    Ok(n) if n as i64 >= BATCH => continue,
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "audit sealing failed; will retry"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = me.wake.notified() => {}
                    _ = stopped.changed() => break,
                }
            }
        });
        SealerHandle { sealer: self, stop, task }
    }

    /// Seals until nothing is pending. Returns how many records were sealed.
    pub async fn seal_all(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let n = self.seal_once().await?;
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Seals one batch of pending records in one transaction.
    pub async fn seal_once(&self) -> Result<usize> {
        let mut state = self.state.lock().await;
        let mut tx = self.db.begin().await?;
        // Every path ends the transaction explicitly: a dropped one only queues its rollback,
        // and its advisory lock would block other sealing rounds until the pooled connection
        // is next used.
        // Fast path: records after the highest sealed id. When there are none (idle), look for
        // late committers from `low` (PostgreSQL only; on SQLite commit order is id order).
        let mut result = self.seal_batch(&mut tx, state.high).await;
        if matches!(result, Ok(None)) && self.db.backend() == Backend::Postgres && state.low < state.high {
            result = self.seal_batch(&mut tx, state.low).await;
        }
        match result {
            Ok(Some((n, max_id, now))) => {
                tx.commit().await.db()?;
                state.high = state.high.max(max_id);
                state.recent.push_back((now, max_id));
                while let Some(&(at, id)) = state.recent.front() {
                    if at >= now - self.opts.seal_grace_ms {
                        break;
                    }
                    state.low = state.low.max(id);
                    state.recent.pop_front();
                }
                Ok(n)
            }
            Ok(None) => {
                tx.rollback().await.db()?;
                Ok(0)
            }
            Err(e) => {
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Links pending records after `low` into the chain. Returns (count, highest record id,
    /// time), or `None` when there was nothing to do or another node is sealing.
    async fn seal_batch(&self, tx: &mut store::Tx, low: i64) -> Result<Option<(usize, i64, i64)>> {
        if self.db.backend() == Backend::Postgres {
            let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
                .bind(SEALER_LOCK)
                .fetch_one(&mut **tx)
                .await
                .db()?
                .get(0);
            if !got {
                return Ok(None);
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await
            .db()?;
        let (mut seq, mut prev) = match head {
            Some(r) => (r.get::<i64, _>(0), r.get::<String, _>(1)),
            None => (0, GENESIS.to_string()),
        };
        let rows = sqlx::query(
            "SELECT r.id, r.digest, r.mac FROM audit_records r
             WHERE r.id > $1 AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.record_id = r.id)
             ORDER BY r.id LIMIT $2",
        )
        .bind(low)
        .bind(BATCH)
        .fetch_all(&mut **tx)
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let alg = self.opts.algorithm;
        let mut links = Vec::with_capacity(rows.len());
        let mut checkpoints = Vec::new();
        let mut max_id = 0;
        for row in &rows {
            let (id, digest, mac): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            if !self.log.mac_ok(&digest, &mac) {
                // Sealed all the same, so the evidence is kept; the verifier reports it.
                tracing::error!(record_id = id, "audit record with an invalid MAC: forged or altered");
            }
            seq += 1;
            let hash = chain_hash(alg, &prev, seq, id, &digest, &mac);
            max_id = max_id.max(id);
            if seq % self.opts.checkpoint_every == 0 {
                checkpoints.push((seq, hash.clone()));
            }
            links.push((seq, id, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        for chunk in links.chunks(ROWS_PER_INSERT) {
            let mut sql = String::from("INSERT INTO audit_chain (seq, record_id, prev_hash, hash, sealed_at) VALUES ");
            for i in 0..chunk.len() {
                let b = i * 5;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!("(${}, ${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4, b + 5));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (seq, id, prev, hash) in chunk {
                q = q.bind(*seq).bind(*id).bind(prev.as_str()).bind(hash.as_str()).bind(now);
            }
            q.execute(&mut **tx).await.db()?;
        }
        for (seq, hash) in checkpoints {
            sqlx::query(
                "INSERT INTO audit_checkpoints (seq, root_hash, algorithm, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(seq)
            .bind(hash)
            .bind(alg.name())
            .bind(now)
            .execute(&mut **tx)
            .await
            .db()?;
        }
        Ok(Some((rows.len(), max_id, now)))
    }
}
