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
const ROWS_PER_INSERT: usize = 512;
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

/// A batch of records linked into the chain, to write.
struct Links {
    /// (seq, record id, previous hash, hash).
    rows: Vec<(i64, i64, String, String)>,
    /// (seq, root hash) of the checkpoints the batch reaches.
    checkpoints: Vec<(i64, String)>,
    max_id: i64,
    now: i64,
}

impl SealState {
    /// Records a committed batch up to `max_id`, sealed at `now`.
    fn sealed(&mut self, max_id: i64, now: i64, grace_ms: i64) {
        self.high = self.high.max(max_id);
        self.recent.push_back((now, max_id));
        while let Some(&(at, id)) = self.recent.front() {
            if at >= now - grace_ms {
                break;
            }
            self.low = self.low.max(id);
            self.recent.pop_front();
        }
    }
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
        if self.db.backend() == Backend::Sqlite {
            // One writer: records commit in id order and only this sealer writes the chain, so
            // the pending records and the chain's head are read — and linked — before the write
            // transaction, which then only inserts (the intake and every other writer queue
            // behind it). Another process sealing the same file loses on the unique keys.
            let mut conn = self.db.reader().acquire().await.db()?;
            let Some(links) = self.link_pending(&mut conn, state.high).await? else { return Ok(0) };
            drop(conn);
            let mut tx = self.db.begin().await?;
            if let Err(e) = self.write_links(&mut tx, &links).await {
                let _ = tx.rollback().await;
                return Err(e);
            }
            tx.commit().await.db()?;
            state.sealed(links.max_id, links.now, self.opts.seal_grace_ms);
            return Ok(links.rows.len());
        }
        let mut tx = self.db.begin().await?;
        // Every path ends the transaction explicitly: a dropped one only queues its rollback,
        // and its advisory lock would block other sealing rounds until the pooled connection
        // is next used.
        let result = self.seal_locked(&mut tx, &state).await;
        match result {
            Ok(Some(links)) => {
                tx.commit().await.db()?;
                state.sealed(links.max_id, links.now, self.opts.seal_grace_ms);
                Ok(links.rows.len())
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

    /// PostgreSQL: under the sealer's advisory lock, links the records after the highest sealed
    /// id; when there are none (idle), looks for late committers from `low`.
    async fn seal_locked(&self, tx: &mut store::Tx, state: &SealState) -> Result<Option<Links>> {
        let got: bool = sqlx::query("SELECT pg_try_advisory_xact_lock($1)")
            .bind(SEALER_LOCK)
            .fetch_one(&mut **tx)
            .await
            .db()?
            .get(0);
        if !got {
            return Ok(None); // another node is sealing
        }
        let mut links = self.link_pending(tx, state.high).await?;
        if links.is_none() && state.low < state.high {
            links = self.link_pending(tx, state.low).await?;
        }
        if let Some(l) = &links {
            self.write_links(tx, l).await?;
        }
        Ok(links)
    }

    /// Reads the chain's head and the unsealed records after `low`, and links them. `None` when
    /// nothing is pending.
    async fn link_pending(&self, conn: &mut sqlx::AnyConnection, low: i64) -> Result<Option<Links>> {
        let head = sqlx::query("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await
            .db()?;
        let head = match head {
            Some(r) => Some(r),
            // Everything sealed so far was archived and purged: the chain goes on from there.
            None => sqlx::query(
                "SELECT a.last_seq, a.last_hash FROM audit_purges p JOIN audit_archives a ON a.first_seq = p.first_seq
                 ORDER BY p.last_seq DESC LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await
            .db()?,
        };
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
        .fetch_all(&mut *conn)
        .await
        .db()?;
        if rows.is_empty() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let alg = self.opts.algorithm;
        let mut links = Links { rows: Vec::with_capacity(rows.len()), checkpoints: Vec::new(), max_id: 0, now };
        for row in &rows {
            let (id, digest, mac): (i64, String, String) = (row.get(0), row.get(1), row.get(2));
            if !self.log.mac_ok(&digest, &mac) {
                // Sealed all the same, so the evidence is kept; the verifier reports it.
                tracing::error!(record_id = id, "audit record with an invalid MAC: forged or altered");
            }
            seq += 1;
            let hash = chain_hash(alg, &prev, seq, id, &digest, &mac);
            links.max_id = links.max_id.max(id);
            if seq % self.opts.checkpoint_every == 0 {
                links.checkpoints.push((seq, hash.clone()));
            }
            links.rows.push((seq, id, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        Ok(Some(links))
    }

    /// Writes the links and checkpoints of a batch.
    async fn write_links(&self, tx: &mut store::Tx, links: &Links) -> Result<()> {
        let backend = Backend::of(tx);
        for chunk in store::chunks_pow2(&links.rows, ROWS_PER_INSERT) {
            let sql = format!(
                "INSERT INTO audit_chain (seq, record_id, prev_hash, hash, sealed_at) VALUES {}",
                backend.values(chunk.len(), 5, 1)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (seq, id, prev, hash) in chunk {
                q = q.bind(*seq).bind(*id).bind(prev.as_str()).bind(hash.as_str()).bind(links.now);
            }
            q.execute(&mut **tx).await.db()?;
        }
        for (seq, hash) in &links.checkpoints {
            sqlx::query(
                "INSERT INTO audit_checkpoints (seq, root_hash, algorithm, created_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(*seq)
            .bind(hash)
            .bind(self.opts.algorithm.name())
            .bind(links.now)
            .execute(&mut **tx)
            .await
            .db()?;
        }
        Ok(())
    }
}
