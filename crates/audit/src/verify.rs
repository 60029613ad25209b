//! Walks the chain and names the first record that was tampered with.
//!
//! Pages of chain entries with their records are read in seq order — on SQLite natively
//! (rusqlite over the same file, inside one read transaction), on PostgreSQL through sqlx with
//! the next page fetched while the current one is checked. Each page's digests, MACs and chain
//! hashes are computed on two threads; a sequential pass then checks links, gaps and checkpoints.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kernel::{Clock, Error, Result};
use serde::Serialize;
use store::{Db, DbResultExt, Row};

use crate::model::{AuditRecord, GENESIS, RECORD_COLUMNS, chain_hash_bytes};
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
    /// The stored hash equals H(stored prev ‖ seq ‖ record): the entry itself is intact.
    hash_matches_stored_prev: bool,
}

fn chain_query(placeholder: &str) -> String {
    format!(
        "SELECT c.seq, c.record_id, c.prev_hash, c.hash, {RECORD_COLUMNS}
         FROM audit_chain c LEFT JOIN audit_records r ON r.id = c.record_id
         WHERE c.seq > {placeholder}1 ORDER BY c.seq LIMIT {placeholder}2"
    )
}

/// The state of a walk along the chain.
struct Walker {
    log: Arc<AuditLog>,
    alg: crypto::HashAlg,
    expected: BTreeMap<i64, String>,
    prev: String,
    last: i64,
    report: VerifyReport,
    started: std::time::Instant,
}

impl Walker {
    fn fail(&mut self, kind: ProblemKind, seq: Option<i64>, record_id: Option<i64>, message: String) {
        self.report.ok = false;
        self.report.problem = Some(Problem { kind, seq, record_id, message });
    }

    /// Checks one page, hashing on `threads` threads. Returns false once a problem was found.
    fn feed(&mut self, links: Vec<Link>, threads: usize) -> bool {
        let checked = if threads > 1 {
            check_on_two_threads(&self.log, self.alg, links)
        } else {
            check_all(&self.log, self.alg, links)
        };
        for c in checked {
            let Link { seq, record_id, stored_prev, stored_hash, record } = c.link;
            let last = self.last;
            if seq != last + 1 {
                let msg = format!("chain entries {} to {} are missing: records were deleted", last + 1, seq - 1);
                self.fail(ProblemKind::Deleted, Some(last + 1), None, msg);
                return false;
            }
            if record.is_none() {
                self.fail(
                    ProblemKind::Deleted,
                    Some(seq),
                    Some(record_id),
                    format!("record {record_id} (seq {seq}) was deleted"),
                );
                return false;
            }
            if !c.check.content_ok || !c.check.mac_ok {
                let msg = format!(
                    "record {record_id} (seq {seq}) was altered: its content does not match its digest and MAC"
                );
                self.fail(ProblemKind::Altered, Some(seq), Some(record_id), msg);
                return false;
            }
            if stored_prev != self.prev || !c.hash_matches_stored_prev {
                let msg = if c.hash_matches_stored_prev {
                    format!(
                        "record {record_id} (seq {seq}) does not follow seq {}: records were reordered or removed before it",
                        seq - 1
                    )
                } else {
                    format!(
                        "record {record_id} (seq {seq}) is not the record sealed at this position: records were reordered or swapped"
                    )
                };
                self.fail(ProblemKind::Reordered, Some(seq), Some(record_id), msg);
                return false;
            }
            if let Some(cp) = self.expected.get(&seq) {
                if *cp != stored_hash {
                    let msg = format!(
                        "the chain at seq {seq} does not match the checkpoint taken there: history was rewritten"
                    );
                    self.fail(ProblemKind::Altered, Some(seq), Some(record_id), msg);
                    return false;
                }
                self.report.checkpoints_checked += 1;
            }
            self.prev = stored_hash;
            self.last = seq;
            self.report.records_checked += 1;
        }
        true
    }
}

fn check_one(log: &AuditLog, alg: crypto::HashAlg, link: Link, buf: &mut Vec<u8>) -> Checked {
    let (check, hash_matches_stored_prev) = match &link.record {
        Some(r) => {
            let h = chain_hash_bytes(alg, &link.stored_prev, link.seq, r.id, &r.digest, &r.mac);
            (log.check_with(r, buf), crypto::hash::hex_eq(&h, &link.stored_hash))
        }
        None => (RecordCheck { content_ok: false, mac_ok: false }, false),
    };
    Checked { link, check, hash_matches_stored_prev }
}

fn check_all(log: &AuditLog, alg: crypto::HashAlg, links: Vec<Link>) -> Vec<Checked> {
    let mut buf = Vec::with_capacity(512);
    links.into_iter().map(|l| check_one(log, alg, l, &mut buf)).collect()
}

/// Hashes a page on two threads (the machines this runs on have at least two cores).
fn check_on_two_threads(log: &AuditLog, alg: crypto::HashAlg, mut links: Vec<Link>) -> Vec<Checked> {
    if links.len() < 1_000 {
        return check_all(log, alg, links);
    }
    let second = links.split_off(links.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| check_all(log, alg, second));
        let mut out = check_all(log, alg, links);
        out.extend(other.join().expect("hashing thread"));
        out
    })
}

/// Reads the chain natively from the SQLite file, in one read transaction, on this thread while
/// a second thread checks the previous page (reading and hashing cost about the same per record).
fn walk_sqlite(path: &Path, walker: &mut Walker) -> Result<()> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Link>>(1);
    std::thread::scope(|s| {
        let checker = s.spawn(move || {
            for page in rx {
                if !walker.feed(page, 1) {
                    return; // dropping the receiver stops the reader
                }
            }
        });
        let read = read_sqlite_pages(path, |page| tx.send(page).is_ok());
        drop(tx);
        checker.join().expect("checking thread");
        read
    })
}

/// Calls `on_page` with each page of chain entries until it answers false or the chain ends.
fn read_sqlite_pages(path: &Path, mut on_page: impl FnMut(Vec<Link>) -> bool) -> Result<()> {
    use rusqlite::OpenFlags;
    let conn =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(Error::internal)?;
    conn.execute_batch("PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456; BEGIN").map_err(Error::internal)?;
    let mut stmt = conn.prepare(&chain_query("?")).map_err(Error::internal)?;
    let mut after = 0i64;
    loop {
        let mut page = Vec::with_capacity(PAGE as usize);
        let mut rows = stmt.query(rusqlite::params![after, PAGE]).map_err(Error::internal)?;
        while let Some(row) = rows.next().map_err(Error::internal)? {
            let seq: i64 = row.get(0).map_err(Error::internal)?;
            let record = match row.get::<_, Option<i64>>(4).map_err(Error::internal)? {
                Some(_) => Some(AuditRecord::from_sqlite_row(row, 4, Some(seq)).map_err(Error::internal)?),
                None => None,
            };
            page.push(Link {
                seq,
                record_id: row.get(1).map_err(Error::internal)?,
                stored_prev: row.get(2).map_err(Error::internal)?,
                stored_hash: row.get(3).map_err(Error::internal)?,
                record,
            });
        }
        let full = page.len() as i64 == PAGE;
        after = page.last().map(|l| l.seq).unwrap_or(after);
        if !on_page(page) || !full {
            return Ok(());
        }
    }
}

async fn fetch(db: Db, after: i64) -> Result<Vec<Link>> {
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(chain_query("$"))).bind(after).bind(PAGE).fetch_all(db.reader()).await.db()?;
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

/// Reads the chain through sqlx, fetching the next page while the current one is checked.
async fn walk_sqlx(db: &Db, mut walker: Walker) -> Result<Walker> {
    let mut pending = Some(tokio::spawn(fetch(db.clone(), 0)));
    while let Some(page) = pending.take() {
        let links = page.await.map_err(Error::internal)??;
        if links.len() as i64 == PAGE {
            let after = links.last().map(|l| l.seq).unwrap_or(0);
            pending = Some(tokio::spawn(fetch(db.clone(), after)));
        }
        let (w, going_on) = tokio::task::spawn_blocking(move || {
            let going_on = walker.feed(links, 2);
            (walker, going_on)
        })
        .await
        .map_err(Error::internal)?;
        walker = w;
        if !going_on {
            break;
        }
    }
    Ok(walker)
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
    let mut walker = Walker {
        log: Arc::new(log.clone()),
        alg: opts.algorithm,
        expected: BTreeMap::new(),
        prev: GENESIS.to_string(),
        last: 0,
        report: VerifyReport {
            ok: true,
            algorithm: opts.algorithm.name().into(),
            records_checked: 0,
            head_seq: 0,
            head_hash: GENESIS.into(),
            unsealed: 0,
            checkpoints_checked: 0,
            problem: None,
            elapsed_ms: 0,
        },
        started,
    };
    for cp in crate::search::checkpoints(db).await?.into_iter().chain(external.iter().cloned()) {
        if let Some(old) = walker.expected.insert(cp.seq, cp.root_hash.clone())
            && old != cp.root_hash
        {
            let msg = format!("checkpoint at seq {} differs between the database and the exported copy", cp.seq);
            walker.fail(ProblemKind::Altered, Some(cp.seq), None, msg);
            return Ok(finish(walker));
        }
    }
    walker = match db.sqlite_path() {
        Some(path) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || walk_sqlite(&path, &mut walker).map(|()| walker))
                .await
                .map_err(Error::internal)??
        }
        None => walk_sqlx(db, walker).await?,
    };
    if walker.report.problem.is_some() {
        return Ok(finish(walker));
    }
    walker.report.head_seq = walker.last;
    walker.report.head_hash = walker.prev.clone();
    let last = walker.last;
    if let Some((&cp_seq, _)) = walker.expected.range(last + 1..).next() {
        let msg = format!(
            "the chain ends at seq {last} but a checkpoint was taken at seq {cp_seq}: records were removed from the end"
        );
        walker.fail(ProblemKind::Truncated, Some(last + 1), None, msg);
        return Ok(finish(walker));
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
            walker.fail(ProblemKind::Inserted, None, Some(record.id), msg);
            return Ok(finish(walker));
        }
        walker.report.unsealed += 1;
    }
    Ok(finish(walker))
}

fn finish(mut walker: Walker) -> VerifyReport {
    walker.report.elapsed_ms = walker.started.elapsed().as_millis();
    walker.report
}
