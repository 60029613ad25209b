//! Walks the chain and names the first record that was tampered with.
//!
//! Pages of chain entries with their records are read — on SQLite natively (rusqlite over the
//! same file) by two workers that each read and hash every other page, on PostgreSQL through sqlx
//! with the next page fetched while the current one is hashed on two threads. A page keeps every text in one buffer
//! and each record's canonical encoding is built straight from its columns. Each page's digests,
//! MACs and chain hashes are computed in parallel; a sequential pass then checks links, gaps
//! and checkpoints in seq order.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use kernel::{Clock, Error, Result};
use serde::Serialize;
use store::{Db, DbResultExt, Row};

use crypto::hash::hex_eq_bytes;

use crate::model::{AuditRecord, GENESIS, RECORD_COLUMNS, chain_hash_bytes, encode_canonical};
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
    /// The chain in the database starts after this seq: the segments up to it were archived,
    /// verified and purged (0: nothing purged).
    pub archived_through: i64,
    pub checkpoints_checked: usize,
    pub problem: Option<Problem>,
    pub elapsed_ms: u128,
}

/// Where a text lies in its page's buffer.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    end: u32,
}

/// A chain entry's record, its fields in the page's buffer.
struct RecordSpans {
    /// The canonical encoding of the record's content, built from its columns.
    content: Span,
    /// False when a column holds a value of a type the application never writes there.
    readable: bool,
    digest: Span,
    mac: Span,
}

/// One chain entry with its record (if the record still exists).
struct Link {
    seq: i64,
    record_id: i64,
    stored_prev: Span,
    stored_hash: Span,
    record: Option<RecordSpans>,
}

/// A page of chain entries read in seq order; all their texts lie in one buffer, so reading a
/// page allocates twice instead of twenty times a record.
struct Page {
    bytes: Vec<u8>,
    links: Vec<Link>,
}

impl Page {
    fn new() -> Page {
        Page { bytes: Vec::with_capacity(PAGE as usize * 560), links: Vec::with_capacity(PAGE as usize) }
    }

    fn text(&self, span: Span) -> &[u8] {
        &self.bytes[span.start as usize..span.end as usize]
    }

    fn put(&mut self, text: &[u8]) -> Span {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(text);
        Span { start, end: self.bytes.len() as u32 }
    }

    fn put_content(&mut self, at: i64, text: [Option<&[u8]>; 12]) -> Span {
        let start = self.bytes.len() as u32;
        encode_canonical(&mut self.bytes, None, at, text);
        Span { start, end: self.bytes.len() as u32 }
    }
}

/// The per-record work on a link: its own check and the hash recomputed from its stored prev.
#[derive(Clone, Copy)]
struct Checked {
    check: RecordCheck,
    /// The stored hash equals H(stored prev ‖ seq ‖ record): the entry itself is intact.
    hash_matches_stored_prev: bool,
}

/// Chain entries with their records, in seq order, under a condition on `c.seq` and a limit.
fn chain_query(condition: &str, limit: &str) -> String {
    format!(
        "SELECT c.seq, c.record_id, c.prev_hash, c.hash, {RECORD_COLUMNS}
         FROM audit_chain c LEFT JOIN audit_records r ON r.id = c.record_id
         WHERE {condition} ORDER BY c.seq {limit}"
    )
}

/// The state of a walk along the chain.
struct Walker {
    log: Arc<AuditLog>,
    alg: crypto::HashAlg,
    expected: BTreeMap<i64, String>,
    prev: Vec<u8>,
    last: i64,
    report: VerifyReport,
    started: std::time::Instant,
}

impl Walker {
    fn fail(&mut self, kind: ProblemKind, seq: Option<i64>, record_id: Option<i64>, message: String) {
        self.report.ok = false;
        self.report.problem = Some(Problem { kind, seq, record_id, message });
    }

    /// Checks one page in seq order, given each link's per-record work. Returns false once a
    /// problem was found.
    fn feed(&mut self, page: &Page, checked: &[Checked]) -> bool {
        for (link, c) in page.links.iter().zip(checked) {
            let (seq, record_id) = (link.seq, link.record_id);
            let last = self.last;
            if seq != last + 1 {
                let msg = format!("chain entries {} to {} are missing: records were deleted", last + 1, seq - 1);
                self.fail(ProblemKind::Deleted, Some(last + 1), None, msg);
                return false;
            }
            if link.record.is_none() {
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
            if page.text(link.stored_prev) != self.prev.as_slice() || !c.hash_matches_stored_prev {
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
            let stored_hash = page.text(link.stored_hash);
            if let Some(cp) = self.expected.get(&seq) {
                if cp.as_bytes() != stored_hash {
                    let msg = format!(
                        "the chain at seq {seq} does not match the checkpoint taken there: history was rewritten"
                    );
                    self.fail(ProblemKind::Altered, Some(seq), Some(record_id), msg);
                    return false;
                }
                self.report.checkpoints_checked += 1;
            }
            self.prev.clear();
            self.prev.extend_from_slice(stored_hash);
            self.last = seq;
            self.report.records_checked += 1;
        }
        true
    }
}

fn check_one(log: &AuditLog, alg: crypto::HashAlg, page: &Page, link: &Link) -> Checked {
    match &link.record {
        Some(r) => {
            let digest = page.text(r.digest);
            let mac = page.text(r.mac);
            let h = chain_hash_bytes(alg, page.text(link.stored_prev), link.seq, link.record_id, digest, mac);
            Checked {
                check: RecordCheck {
                    content_ok: r.readable && hex_eq_bytes(&crypto::digest(alg, page.text(r.content)), digest),
                    mac_ok: hex_eq_bytes(&log.mac.mac(digest), mac),
                },
                hash_matches_stored_prev: hex_eq_bytes(&h, page.text(link.stored_hash)),
            }
        }
        None => Checked { check: RecordCheck { content_ok: false, mac_ok: false }, hash_matches_stored_prev: false },
    }
}

fn check_links(log: &AuditLog, alg: crypto::HashAlg, page: &Page, links: &[Link]) -> Vec<Checked> {
    links.iter().map(|l| check_one(log, alg, page, l)).collect()
}

/// Hashes a page on two threads (the machines this runs on have at least two cores).
fn check_on_two_threads(log: &AuditLog, alg: crypto::HashAlg, page: &Page) -> Vec<Checked> {
    if page.links.len() < 1_000 {
        return check_links(log, alg, page, &page.links);
    }
    let (first, second) = page.links.split_at(page.links.len() / 2);
    std::thread::scope(|s| {
        let other = s.spawn(|| check_links(log, alg, page, second));
        let mut out = check_links(log, alg, page, first);
        out.extend(other.join().expect("hashing thread"));
        out
    })
}

/// Walks the chain natively from the SQLite file on two workers, each with its own read-only
/// connection, reading and hashing every other page of seq numbers (pages are fixed seq ranges,
/// so neither waits for the other to know where its page starts); this thread takes their pages
/// in turn and checks them in seq order. Only chain entries up to the head at the start are
/// walked: entries sealed meanwhile are left to the next verification.
///
/// An intact chain holds seq 1 to its count; past the count there is nothing to read, so the
/// walk ends there (a stray entry at seq 10^12 must not make it read empty pages up to it) and
/// an entry beyond is found by [`missing_after`].
fn walk_sqlite(path: &Path, walker: &mut Walker) -> Result<()> {
    const WORKERS: i64 = 2;
    let (head, count): (i64, i64) = open_read_only(path)?
        .query_row("SELECT COALESCE(MAX(seq), 0), COUNT(*) FROM audit_chain", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(Error::internal)?;
    // Chain entries up to `base` were purged after archival (see `crate::archive`).
    let base = walker.last;
    let pages = (i64::min(head, base + count) - base + PAGE - 1).max(0) / PAGE;
    let (log, alg) = (walker.log.clone(), walker.alg);
    std::thread::scope(|s| {
        let mut receivers = Vec::new();
        let mut workers = Vec::new();
        for first in 0..WORKERS.min(pages) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(Page, Vec<Checked>)>(1);
            receivers.push(rx);
            let log = log.clone();
            workers.push(s.spawn(move || -> Result<()> {
                let conn = open_read_only(path)?;
                let mut stmt = conn.prepare(&chain_query("c.seq > ?1 AND c.seq <= ?2", "")).map_err(Error::internal)?;
                for k in (first..pages).step_by(WORKERS as usize) {
                    let mut page = Page::new();
                    let mut rows = stmt
                        .query(rusqlite::params![base + k * PAGE, base + (k + 1) * PAGE])
                        .map_err(Error::internal)?;
                    while let Some(row) = rows.next().map_err(Error::internal)? {
                        push_sqlite_row(&mut page, row).map_err(Error::internal)?;
                    }
                    let checked = check_links(&log, alg, &page, &page.links);
                    if tx.send((page, checked)).is_err() {
                        break; // the walk stopped at a problem
                    }
                }
                Ok(())
            }));
        }
        for k in 0..pages {
            let Ok((page, checked)) = receivers[(k % WORKERS) as usize].recv() else {
                break; // a worker failed: its error is returned below
            };
            if !walker.feed(&page, &checked) {
                break;
            }
        }
        drop(receivers);
        workers.into_iter().try_for_each(|w| w.join().expect("verification worker"))
    })
}

fn open_read_only(path: &Path) -> Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    let conn =
        rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(Error::internal)?;
    conn.execute_batch("PRAGMA cache_size = -16384; PRAGMA mmap_size = 268435456").map_err(Error::internal)?;
    Ok(conn)
}

/// A text column of a native row as bytes; `None` for NULL. A number where text belongs (never
/// written by the application) becomes its decimal text and marks the record unreadable.
fn sqlite_text<'a>(value: rusqlite::types::ValueRef<'a>, readable: &mut bool) -> Option<std::borrow::Cow<'a, [u8]>> {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Null => None,
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(std::borrow::Cow::Borrowed(b)),
        ValueRef::Integer(i) => {
            *readable = false;
            Some(std::borrow::Cow::Owned(i.to_string().into_bytes()))
        }
        ValueRef::Real(f) => {
            *readable = false;
            Some(std::borrow::Cow::Owned(f.to_string().into_bytes()))
        }
    }
}

/// Appends one native row (chain entry, then [`RECORD_COLUMNS`]) to `page`.
fn push_sqlite_row(page: &mut Page, row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
    let seq: i64 = row.get(0)?;
    let record_id: i64 = row.get(1)?;
    // A number in a hash column cannot match a hash anyway.
    let mut ignored = true;
    let stored_prev = sqlite_text(row.get_ref(2)?, &mut ignored);
    let stored_prev = page.put(stored_prev.as_deref().unwrap_or_default());
    let stored_hash = sqlite_text(row.get_ref(3)?, &mut ignored);
    let stored_hash = page.put(stored_hash.as_deref().unwrap_or_default());
    let record = match row.get_ref(4)? {
        rusqlite::types::ValueRef::Null => None,
        _ => {
            let mut readable = true;
            let at = match row.get_ref(5)? {
                rusqlite::types::ValueRef::Integer(at) => at,
                _ => {
                    readable = false;
                    0
                }
            };
            let mut text: [Option<std::borrow::Cow<'_, [u8]>>; 12] = Default::default();
            for (i, field) in text.iter_mut().enumerate() {
                *field = sqlite_text(row.get_ref(6 + i)?, &mut readable);
            }
            let content = page.put_content(at, text.each_ref().map(|f| f.as_deref()));
            let digest = sqlite_text(row.get_ref(18)?, &mut readable);
            let digest = page.put(digest.as_deref().unwrap_or_default());
            let mac = sqlite_text(row.get_ref(19)?, &mut readable);
            let mac = page.put(mac.as_deref().unwrap_or_default());
            Some(RecordSpans { content, readable, digest, mac })
        }
    };
    page.links.push(Link { seq, record_id, stored_prev, stored_hash, record });
    Ok(())
}

async fn fetch(db: Db, after: i64) -> Result<Page> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(chain_query("c.seq > $1", "LIMIT $2")))
        .bind(after)
        .bind(PAGE)
        .fetch_all(db.reader())
        .await
        .db()?;
    let mut page = Page::new();
    for row in &rows {
        let text = |i: usize| row.get::<Option<String>, _>(i);
        let stored_prev = page.put(text(2).unwrap_or_default().as_bytes());
        let stored_hash = page.put(text(3).unwrap_or_default().as_bytes());
        let record = row.get::<Option<i64>, _>(4).map(|_| {
            let fields: [Option<String>; 12] = std::array::from_fn(|i| text(6 + i));
            let content = page.put_content(row.get(5), fields.each_ref().map(|f| f.as_deref().map(str::as_bytes)));
            let digest = page.put(text(18).unwrap_or_default().as_bytes());
            let mac = page.put(text(19).unwrap_or_default().as_bytes());
            RecordSpans { content, readable: true, digest, mac }
        });
        page.links.push(Link { seq: row.get(0), record_id: row.get(1), stored_prev, stored_hash, record });
    }
    Ok(page)
}

/// Reads the chain through sqlx, fetching the next page while the current one is checked.
async fn walk_sqlx(db: &Db, mut walker: Walker) -> Result<Walker> {
    let mut pending = Some(tokio::spawn(fetch(db.clone(), walker.last)));
    while let Some(next) = pending.take() {
        let page = next.await.map_err(Error::internal)??;
        if page.links.len() as i64 == PAGE {
            let after = page.links.last().map(|l| l.seq).unwrap_or(0);
            pending = Some(tokio::spawn(fetch(db.clone(), after)));
        }
        let (w, going_on) = tokio::task::spawn_blocking(move || {
            let checked = check_on_two_threads(&walker.log, walker.alg, &page);
            let going_on = walker.feed(&page, &checked);
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
        prev: GENESIS.as_bytes().to_vec(),
        last: 0,
        report: VerifyReport {
            ok: true,
            algorithm: opts.algorithm.name().into(),
            records_checked: 0,
            head_seq: 0,
            head_hash: GENESIS.into(),
            unsealed: 0,
            archived_through: 0,
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
    // After a purge the chain starts at the last purged segment's last hash; its archive record
    // carries a MAC, so the anchor cannot be moved without the key.
    if let Some(a) = crate::archive::anchor(db, log).await? {
        if !a.intact {
            let msg = format!(
                "the archive record of seq {} to {} fails its MAC: the purged part of the chain was tampered with",
                a.first_seq, a.last_seq
            );
            walker.fail(ProblemKind::Altered, Some(a.last_seq), None, msg);
            return Ok(finish(walker));
        }
        if let Some(cp) = walker.expected.get(&a.last_seq)
            && *cp != a.last_hash
        {
            let msg =
                format!("the checkpoint at seq {} differs from the archived chain: history was rewritten", a.last_seq);
            walker.fail(ProblemKind::Altered, Some(a.last_seq), None, msg);
            return Ok(finish(walker));
        }
        // Checkpoints inside the purged part were checked when their segments were archived.
        walker.expected = walker.expected.split_off(&(a.last_seq + 1));
        walker.last = a.last_seq;
        walker.prev = a.last_hash.into_bytes();
        walker.report.archived_through = walker.last;
        walker.report.head_seq = walker.last;
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
    if let Some(next) = missing_after(db, walker.last).await? {
        let last = walker.last;
        let msg = format!("chain entries {} to {} are missing: records were deleted", last + 1, next - 1);
        walker.fail(ProblemKind::Deleted, Some(last + 1), None, msg);
        return Ok(finish(walker));
    }
    walker.report.head_seq = walker.last;
    walker.report.head_hash = String::from_utf8_lossy(&walker.prev).into_owned();
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

/// The first chain entry after `last` when the walk ended before it (entries between are missing).
async fn missing_after(db: &Db, last: i64) -> Result<Option<i64>> {
    sqlx::query_scalar("SELECT MIN(seq) FROM audit_chain WHERE seq > $1").bind(last).fetch_one(db.reader()).await.db()
}

fn finish(mut walker: Walker) -> VerifyReport {
    walker.report.elapsed_ms = walker.started.elapsed().as_millis();
    walker.report
}
