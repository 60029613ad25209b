//! Walks the chain and names the first record that was tampered with. Pages are fetched ahead
//! while the previous page is hashed on a blocking thread, so reading and hashing overlap.

use std::collections::BTreeMap;
use std::sync::Arc;

use kernel::{Clock, Error, Result};
use serde::Serialize;
use store::{Db, DbResultExt, Row};

use crate::model::{AuditRecord, GENESIS, RECORD_COLUMNS, chain_hash};
use crate::search::Checkpoint;
use crate::{AuditLog, AuditOptions, RecordCheck};

const PAGE: i64 = 20_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A record's content no longer matches its digest or MAC.
    Altered,
    /// A record or chain entry is missing.
    Deleted,
    /// A record was added outside the application (no valid MAC).
    Inserted,
    /// Records are linked in another order than they were sealed in.
    Reordered,
    /// The chain ends before a checkpoint that was taken.
    Truncated,
}

/// The first problem found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    pub kind: ProblemKind,
    pub seq: Option<i64>,
    pub record_id: Option<i64>,
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VerifyReport {
    pub ok: bool,
    pub algorithm: String,
    /// Sealed records checked.
    pub records_checked: i64,
    /// Seq and hash of the last sealed record.
    pub head_seq: i64,
    pub head_hash: String,
    /// Records not sealed yet (normally only the last second's).
    pub unsealed: i64,
    pub checkpoints_checked: usize,
    pub problem: Option<Problem>,
    pub elapsed_ms: u128,
}

/// One chain entry with its record (if the record still exists).
struct Link {
    seq: i64,
    record_id: i64,
    stored_prev: String,
    stored_hash: String,
    record: Option<AuditRecord>,
}

/// A link after the per-record work: its own check and the hash recomputed from its stored prev.
struct Checked {
    link: Link,
    check: RecordCheck,
    hash_from_stored_prev: String,
}

async fn fetch(db: Db, after: i64) -> Result<Vec<Link>> {
    let sql = format!(
        "SELECT c.seq, c.record_id, c.prev_hash, c.hash, {RECORD_COLUMNS}
         FROM audit_chain c LEFT JOIN audit_records r ON r.id = c.record_id
         WHERE c.seq > $1 ORDER BY c.seq LIMIT $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(after).bind(PAGE).fetch_all(db.reader()).await.db()?;
    Ok(rows
        .iter()
        .map(|row| {
            let seq: i64 = row.get(0);
            Link {
                seq,
                record_id: row.get(1),
                stored_prev: row.get(2),
                stored_hash: row.get(3),
                record: row.get::<Option<i64>, _>(4).map(|_| AuditRecord::from_row(row, 4, Some(seq))),
            }
        })
        .collect())
}

fn check_links(log: &AuditLog, alg: crypto::HashAlg, links: Vec<Link>) -> Vec<Checked> {
    links
        .into_iter()
        .map(|link| {
            let (check, hash_from_stored_prev) = match &link.record {
                Some(r) => (log.check(r), chain_hash(alg, &link.stored_prev, link.seq, r.id, &r.digest, &r.mac)),
                None => (RecordCheck { content_ok: false, mac_ok: false }, String::new()),
            };
            Checked { link, check, hash_from_stored_prev }
        })
        .collect()
}

/// Verifies the whole chain against its records, MACs, stored checkpoints and any `external`
/// checkpoints kept outside the database.
pub async fn verify(
    db: &Db,
    log: &AuditLog,
    opts: &AuditOptions,
    _clock: &dyn Clock,
    external: &[Checkpoint],
) -> Result<VerifyReport> {
    let started = std::time::Instant::now();
    let mut report = VerifyReport {
        ok: true,
        algorithm: opts.algorithm.name().into(),
        records_checked: 0,
        head_seq: 0,
        head_hash: GENESIS.into(),
        unsealed: 0,
        checkpoints_checked: 0,
        problem: None,
        elapsed_ms: 0,
    };
    let mut expected: BTreeMap<i64, String> = BTreeMap::new();
    for cp in crate::search::checkpoints(db).await?.into_iter().chain(external.iter().cloned()) {
        if let Some(old) = expected.insert(cp.seq, cp.root_hash.clone())
            && old != cp.root_hash
        {
            let msg = format!("checkpoint at seq {} differs between the database and the exported copy", cp.seq);
            return Ok(fail(report, ProblemKind::Altered, Some(cp.seq), None, msg, started));
        }
    }
    let alg = opts.algorithm;
    let log = Arc::new(log.clone());
    let mut prev = GENESIS.to_string();
    let mut last = 0i64;
    let mut pending = Some(tokio::spawn(fetch(db.clone(), 0)));
    while let Some(page) = pending.take() {
        let links = page.await.map_err(Error::internal)??;
        if links.len() as i64 == PAGE {
            let after = links.last().map(|l| l.seq).unwrap_or(last);
            pending = Some(tokio::spawn(fetch(db.clone(), after)));
        }
        let log2 = log.clone();
        let checked =
            tokio::task::spawn_blocking(move || check_links(&log2, alg, links)).await.map_err(Error::internal)?;
        for c in checked {
            let Link { seq, record_id, stored_prev, stored_hash, record } = c.link;
            if seq != last + 1 {
                let msg = format!("chain entries {} to {} are missing: records were deleted", last + 1, seq - 1);
                return Ok(fail(report, ProblemKind::Deleted, Some(last + 1), None, msg, started));
            }
            if record.is_none() {
                let msg = format!("record {record_id} (seq {seq}) was deleted");
                return Ok(fail(report, ProblemKind::Deleted, Some(seq), Some(record_id), msg, started));
            }
            if !c.check.content_ok || !c.check.mac_ok {
                let msg = format!(
                    "record {record_id} (seq {seq}) was altered: its content does not match its digest and MAC"
                );
                return Ok(fail(report, ProblemKind::Altered, Some(seq), Some(record_id), msg, started));
            }
            if stored_prev != prev || c.hash_from_stored_prev != stored_hash {
                let msg = if c.hash_from_stored_prev == stored_hash {
                    format!(
                        "record {record_id} (seq {seq}) does not follow seq {}: records were reordered or removed before it",
                        seq - 1
                    )
                } else {
                    format!(
                        "record {record_id} (seq {seq}) is not the record sealed at this position: records were reordered or swapped"
                    )
                };
                return Ok(fail(report, ProblemKind::Reordered, Some(seq), Some(record_id), msg, started));
            }
            if let Some(cp) = expected.get(&seq) {
                if *cp != stored_hash {
                    let msg = format!(
                        "the chain at seq {seq} does not match the checkpoint taken there: history was rewritten"
                    );
                    return Ok(fail(report, ProblemKind::Altered, Some(seq), Some(record_id), msg, started));
                }
                report.checkpoints_checked += 1;
            }
            prev = stored_hash;
            last = seq;
            report.records_checked += 1;
        }
    }
    report.head_seq = last;
    report.head_hash = prev.clone();
    if let Some((&cp_seq, _)) = expected.range(last + 1..).next() {
        let msg = format!(
            "the chain ends at seq {last} but a checkpoint was taken at seq {cp_seq}: records were removed from the end"
        );
        return Ok(fail(report, ProblemKind::Truncated, Some(last + 1), None, msg, started));
    }
    // Records outside the chain: pending ones carry a valid digest and MAC; forged ones do not.
    let sql = format!(
        "SELECT {RECORD_COLUMNS} FROM audit_records r
         WHERE NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.record_id = r.id) ORDER BY r.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await.db()?;
    for row in rows {
        let record = AuditRecord::from_row(&row, 0, None);
        let check = log.check(&record);
        if !check.content_ok || !check.mac_ok {
            let msg = format!("record {} was inserted outside the application: it has no valid MAC", record.id);
            return Ok(fail(report, ProblemKind::Inserted, None, Some(record.id), msg, started));
        }
        report.unsealed += 1;
    }
    report.elapsed_ms = started.elapsed().as_millis();
    Ok(report)
}

fn fail(
    mut report: VerifyReport,
    kind: ProblemKind,
    seq: Option<i64>,
    record_id: Option<i64>,
    message: String,
    started: std::time::Instant,
) -> VerifyReport {
    report.ok = false;
    report.problem = Some(Problem { kind, seq, record_id, message });
    report.elapsed_ms = started.elapsed().as_millis();
    report
}
