//! Archival and retention of the audit log (等保 DJ-AU-3, DJ-AU-6; Cybersecurity Law art. 21(3):
//! network logs kept at least six months).
//!
//! An *archive* is a segment of the chain — every sealed record from the seq after the previous
//! archive up to the last one written before a cut-off time — copied to a gzip'd JSON Lines file
//! outside the database. The segment is verified as it is written (digests, MACs, links, from
//! the previous archive's last hash), and the file's own digest, the segment's first and last
//! hash and its time span are kept in `audit_archives` under the audit MAC key.
//!
//! A *purge* removes archived segments' rows from the database, oldest first and only when
//! (a) the newest record of the segment is older than the retention period (at least
//! [`MIN_RETENTION_DAYS`]), (b) the archive file is still where it was written, still has its
//! digest and verifies record by record, and (c) the database still holds exactly the segment
//! that was archived. The purge is itself audited, and the last purged segment's last hash
//! becomes the *anchor*: verification of the chain in the database starts there, and the
//! database refuses deleting any row after it (triggers). Files verify on their own with
//! [`verify_file`] (`zhongshu audit verify-archive FILE`).
//!
//! File format, one JSON object a line: a header (`format`, `version`, `algorithm`, `first_seq`,
//! `last_seq`, `prev_hash`, `created_at`), one line per record in seq order (chain entry and
//! every stored column as written), and a trailer (`end`, `records`, `last_hash`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use kernel::{Clock, Error, Result};
use serde::{Deserialize, Serialize};
use store::{Db, DbResultExt, Row};

use crate::model::{AuditEntry, GENESIS, RECORD_COLUMNS, chain_hash_bytes, encode_canonical};
use crate::{AuditLog, AuditOptions};

/// The shortest retention a purge accepts, in days.
pub const MIN_RETENTION_DAYS: i64 = 180;
pub const FORMAT: &str = "zhongshu-audit-archive";
const VERSION: u32 = 1;
const PAGE: i64 = 5_000;
const DAY_MS: i64 = 86_400_000;
/// The hash of a file's bytes: SM3 whatever the chain uses, so a file's digest is known before
/// its header is read.
const FILE_DIGEST: crypto::HashAlg = crypto::HashAlg::Sm3;

/// An archived segment of the chain.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Archive {
    pub first_seq: i64,
    pub last_seq: i64,
    pub records: i64,
    /// Chain hash before the segment.
    pub prev_hash: String,
    /// Chain hash of the segment's last record.
    pub last_hash: String,
    /// Time of the oldest and newest record (Unix ms).
    pub oldest_at: i64,
    pub newest_at: i64,
    pub algorithm: String,
    /// File name in the archive directory.
    pub file_name: String,
    /// SM3 of the file's bytes (hex).
    pub file_digest: String,
    pub file_bytes: i64,
    pub created_at: i64,
    pub created_by: Option<String>,
    /// When the segment's rows were removed from the database (`None`: still there).
    pub purged_at: Option<i64>,
    pub purged_by: Option<String>,
    /// The row's MAC verifies (it was written by the application and not changed since).
    pub intact: bool,
}

const ARCHIVE_COLUMNS: &str = "a.first_seq, a.last_seq, a.records, a.prev_hash, a.last_hash, a.oldest_at, a.newest_at, \
     a.algorithm, a.file_name, a.file_digest, a.file_bytes, a.created_at, a.created_by, a.mac, p.purged_at, p.purged_by";

impl Archive {
    fn from_row(row: &store::AnyRow, log: &AuditLog) -> Archive {
        let mut a = Archive {
            first_seq: row.get(0),
            last_seq: row.get(1),
            records: row.get(2),
            prev_hash: row.get(3),
            last_hash: row.get(4),
            oldest_at: row.get(5),
            newest_at: row.get(6),
            algorithm: row.get(7),
            file_name: row.get(8),
            file_digest: row.get(9),
            file_bytes: row.get(10),
            created_at: row.get(11),
            created_by: row.get(12),
            purged_at: row.get(14),
            purged_by: row.get(15),
            intact: false,
        };
        let mac: String = row.get(13);
        a.intact = crypto::hash::hex_eq(&log.mac.mac(&a.canonical()), &mac);
        a
    }

    /// What the row's MAC covers: every field written when the archive was made.
    fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        let ints = [self.first_seq, self.last_seq, self.records, self.oldest_at, self.newest_at, self.file_bytes];
        for v in ints {
            crypto::hash::put_field(&mut out, Some(itoa::Buffer::new().format(v).as_bytes()));
        }
        for v in [&self.prev_hash, &self.last_hash, &self.algorithm, &self.file_name, &self.file_digest] {
            crypto::hash::put_field(&mut out, Some(v.as_bytes()));
        }
        crypto::hash::put_field(&mut out, Some(itoa::Buffer::new().format(self.created_at).as_bytes()));
        crypto::hash::put_field(&mut out, self.created_by.as_deref().map(str::as_bytes));
        out
    }

    /// Whether a checked file is the one written for this archive: its digest, its span and the
    /// hash it ends on.
    pub fn written_as(&self, file: &FileReport) -> bool {
        file.file_digest == self.file_digest
            && file.first_seq == self.first_seq
            && file.last_seq == self.last_seq
            && file.last_hash == self.last_hash
    }

    /// Where the file lies in `dir`; `None` if the stored name is not one this module writes
    /// (a tampered row must not point a purge or a download elsewhere).
    pub fn path_in(&self, dir: &Path) -> Option<PathBuf> {
        valid_file_name(&self.file_name).then(|| dir.join(&self.file_name))
    }
}

fn file_name(first: i64, last: i64) -> String {
    format!("audit-{first:012}-{last:012}.jsonl.gz")
}

fn valid_file_name(name: &str) -> bool {
    name.strip_prefix("audit-")
        .and_then(|s| s.strip_suffix(".jsonl.gz"))
        .and_then(|s| s.split_once('-'))
        .is_some_and(|(a, b)| a.len() == 12 && b.len() == 12 && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}

/// The archives, newest first.
pub async fn list_archives(db: &Db, log: &AuditLog) -> Result<Vec<Archive>> {
    let sql = format!(
        "SELECT {ARCHIVE_COLUMNS} FROM audit_archives a LEFT JOIN audit_purges p ON p.first_seq = a.first_seq
         ORDER BY a.first_seq DESC"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(db.reader()).await.db()?;
    Ok(rows.iter().map(|r| Archive::from_row(r, log)).collect())
}

/// One archive by its first seq.
pub async fn get_archive(db: &Db, log: &AuditLog, first_seq: i64) -> Result<Archive> {
    let sql = format!(
        "SELECT {ARCHIVE_COLUMNS} FROM audit_archives a LEFT JOIN audit_purges p ON p.first_seq = a.first_seq
         WHERE a.first_seq = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(first_seq).fetch_optional(db.reader()).await.db()?;
    row.map(|r| Archive::from_row(&r, log)).ok_or_else(|| Error::not_found("audit archive"))
}

/// The last purged segment: the chain in the database continues after it.
pub(crate) async fn anchor(db: &Db, log: &AuditLog) -> Result<Option<Archive>> {
    let sql = format!(
        "SELECT {ARCHIVE_COLUMNS} FROM audit_purges p JOIN audit_archives a ON a.first_seq = p.first_seq
         ORDER BY p.last_seq DESC LIMIT 1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_optional(db.reader()).await.db()?;
    Ok(row.map(|r| Archive::from_row(&r, log)))
}

/// The first line of a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    algorithm: String,
    first_seq: i64,
    last_seq: i64,
    prev_hash: String,
    created_at: i64,
}

/// The last line of a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Trailer {
    end: bool,
    records: i64,
    last_hash: String,
}

/// One record with its chain entry, every column as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    seq: i64,
    prev_hash: String,
    hash: String,
    id: i64,
    at: i64,
    actor_id: Option<String>,
    actor_name: Option<String>,
    actor_org: Option<String>,
    source_ip: Option<String>,
    request_id: Option<String>,
    channel: Option<String>,
    action: Option<String>,
    object_type: Option<String>,
    object_id: Option<String>,
    result: Option<String>,
    reason: Option<String>,
    detail: Option<String>,
    digest: String,
    mac: String,
}

impl Line {
    fn texts(&self) -> [Option<&[u8]>; 12] {
        [
            &self.actor_id,
            &self.actor_name,
            &self.actor_org,
            &self.source_ip,
            &self.request_id,
            &self.channel,
            &self.action,
            &self.object_type,
            &self.object_id,
            &self.result,
            &self.reason,
            &self.detail,
        ]
        .map(|f| f.as_deref().map(str::as_bytes))
    }
}

/// Checks one line against the hash before it; `Err` says what is wrong.
fn check_line(
    log: &AuditLog,
    alg: crypto::HashAlg,
    prev: &str,
    l: &Line,
    buf: &mut Vec<u8>,
) -> std::result::Result<(), String> {
    buf.clear();
    encode_canonical(buf, None, l.at, l.texts());
    if !crypto::hash::hex_eq(&crypto::digest(alg, buf), &l.digest) {
        return Err(format!("record {} (seq {}) was altered: its content does not match its digest", l.id, l.seq));
    }
    if !crypto::hash::hex_eq(&log.mac.mac(l.digest.as_bytes()), &l.mac) {
        return Err(format!("record {} (seq {}) has no valid MAC: it was forged or altered", l.id, l.seq));
    }
    if l.prev_hash != prev {
        return Err(format!("record {} (seq {}) does not follow the record before it", l.id, l.seq));
    }
    let h = chain_hash_bytes(alg, prev.as_bytes(), l.seq, l.id, l.digest.as_bytes(), l.mac.as_bytes());
    if !crypto::hash::hex_eq(&h, &l.hash) {
        return Err(format!("record {} (seq {}) is not the record sealed at this position", l.id, l.seq));
    }
    Ok(())
}

/// A file writer that hashes what it writes.
struct HashingFile {
    file: std::fs::File,
    hasher: crypto::hash::Hasher,
    bytes: u64,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

type Encoder = flate2::write::GzEncoder<std::io::BufWriter<HashingFile>>;

/// Removes a partly written file unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    Error::internal(format!("cannot {what} {}: {e}", path.display()))
}

/// Archives the sealed records not archived yet that were written before `before` (Unix ms) —
/// at most `opts.archive_max_records` of them; call again for the rest — into a new file in `dir`,
/// verifying the segment as it goes. `entry` is the audit entry for the
/// archival (actor, channel, action); it is written with the archive row. `None` when there is
/// nothing to archive. A segment that does not verify is not archived: the error names the record.
pub async fn archive(
    db: &Db,
    log: &AuditLog,
    opts: &AuditOptions,
    clock: &dyn Clock,
    dir: &Path,
    before: i64,
    entry: AuditEntry,
) -> Result<Option<Archive>> {
    let alg = opts.algorithm;
    let last_archive: Option<(i64, String)> =
        sqlx::query("SELECT last_seq, last_hash FROM audit_archives ORDER BY last_seq DESC LIMIT 1")
            .fetch_optional(db.reader())
            .await
            .db()?
            .map(|r| (r.get(0), r.get(1)));
    let (first, mut prev) = match last_archive {
        Some((last, hash)) => (last + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let head: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM audit_chain").fetch_one(db.reader()).await.db()?;
    let newer: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(c.seq) FROM audit_chain c JOIN audit_records r ON r.id = c.record_id WHERE c.seq >= $1 AND r.at >= $2",
    )
    .bind(first)
    .bind(before)
    .fetch_one(db.reader())
    .await
    .db()?;
    let last = newer.map_or(head, |s| s - 1).min(first + opts.archive_max_records.max(1) - 1);
    if last < first {
        return Ok(None);
    }

    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, "create the archive directory", e))?;
    let name = file_name(first, last);
    let path = dir.join(&name);
    if path.exists() {
        return Err(Error::conflict(format!(
            "{} already exists but the database has no archive for it: move it away and archive again",
            path.display()
        )));
    }
    let partial = dir.join(format!(".{name}.partial"));
    let mut cleanup = RemoveOnDrop(Some(partial.clone()));
    let file = std::fs::File::create(&partial).map_err(|e| io_error(&partial, "create", e))?;
    let mut out: Encoder = flate2::write::GzEncoder::new(
        std::io::BufWriter::with_capacity(
            1 << 16,
            HashingFile { file, hasher: crypto::hash::Hasher::new(FILE_DIGEST), bytes: 0 },
        ),
        flate2::Compression::default(),
    );
    let now = clock.now_ms();
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        algorithm: alg.name().into(),
        first_seq: first,
        last_seq: last,
        prev_hash: prev.clone(),
        created_at: now,
    };
    let mut text = serde_json::to_vec(&header).map_err(Error::internal)?;
    text.push(b'\n');

    let sql = format!(
        "SELECT c.seq, c.record_id, c.prev_hash, c.hash, {RECORD_COLUMNS}
         FROM audit_chain c LEFT JOIN audit_records r ON r.id = c.record_id
         WHERE c.seq >= $1 AND c.seq <= $2 ORDER BY c.seq LIMIT $3"
    );
    let (mut expected, mut oldest, mut newest) = (first, i64::MAX, i64::MIN);
    let mut buf = Vec::with_capacity(512);
    while expected <= last {
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(expected)
            .bind(last)
            .bind(PAGE)
            .fetch_all(db.reader())
            .await
            .db()?;
        if rows.is_empty() {
            return Err(broken(expected, format!("chain entries {expected} to {last} are missing")));
        }
        for row in &rows {
            let seq: i64 = row.get(0);
            if seq != expected {
                return Err(broken(expected, format!("chain entries {expected} to {} are missing", seq - 1)));
            }
            let Some(id) = row.get::<Option<i64>, _>(4) else {
                return Err(broken(seq, format!("record {} (seq {seq}) was deleted", row.get::<i64, _>(1))));
            };
            let s = |i: usize| row.get::<Option<String>, _>(i);
            let line = Line {
                seq,
                prev_hash: row.get(2),
                hash: row.get(3),
                id,
                at: row.get(5),
                actor_id: s(6),
                actor_name: s(7),
                actor_org: s(8),
                source_ip: s(9),
                request_id: s(10),
                channel: s(11),
                action: s(12),
                object_type: s(13),
                object_id: s(14),
                result: s(15),
                reason: s(16),
                detail: s(17),
                digest: row.get(18),
                mac: row.get(19),
            };
            check_line(log, alg, &prev, &line, &mut buf).map_err(|why| broken(seq, why))?;
            oldest = oldest.min(line.at);
            newest = newest.max(line.at);
            serde_json::to_writer(&mut text, &line).map_err(Error::internal)?;
            text.push(b'\n');
            prev = line.hash;
            expected = seq + 1;
        }
        out = write_blocking(out, std::mem::take(&mut text), &partial).await?;
    }
    let trailer = Trailer { end: true, records: last - first + 1, last_hash: prev.clone() };
    let mut text = serde_json::to_vec(&trailer).map_err(Error::internal)?;
    text.push(b'\n');
    out = write_blocking(out, text, &partial).await?;
    let partial2 = partial.clone();
    let (digest, bytes) = tokio::task::spawn_blocking(move || -> Result<([u8; 32], u64)> {
        let writer = out.finish().map_err(|e| io_error(&partial2, "write", e))?;
        let inner = writer.into_inner().map_err(|e| io_error(&partial2, "write", e.into_error()))?;
        inner.file.sync_all().map_err(|e| io_error(&partial2, "sync", e))?;
        Ok((inner.hasher.finish(), inner.bytes))
    })
    .await
    .map_err(Error::internal)??;
    std::fs::rename(&partial, &path).map_err(|e| io_error(&path, "create", e))?;
    cleanup.0 = Some(path.clone());

    let archive = Archive {
        first_seq: first,
        last_seq: last,
        records: last - first + 1,
        prev_hash: header.prev_hash,
        last_hash: prev,
        oldest_at: oldest,
        newest_at: newest,
        algorithm: alg.name().into(),
        file_name: name,
        file_digest: crypto::hash::to_hex(&digest),
        file_bytes: bytes as i64,
        created_at: now,
        created_by: entry.actor_name.clone(),
        purged_at: None,
        purged_by: None,
        intact: true,
    };
    let mac = crypto::hash::to_hex(&log.mac.mac(&archive.canonical()));
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO audit_archives (first_seq, last_seq, records, prev_hash, last_hash, oldest_at, newest_at, algorithm,
             file_name, file_digest, file_bytes, created_at, created_by, mac)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(archive.first_seq)
    .bind(archive.last_seq)
    .bind(archive.records)
    .bind(&archive.prev_hash)
    .bind(&archive.last_hash)
    .bind(archive.oldest_at)
    .bind(archive.newest_at)
    .bind(&archive.algorithm)
    .bind(&archive.file_name)
    .bind(&archive.file_digest)
    .bind(archive.file_bytes)
    .bind(archive.created_at)
    .bind(archive.created_by.as_deref())
    .bind(mac)
    .execute(&mut *tx)
    .await
    .map_err(|e| conflict_or(e, "this segment was archived meanwhile: list the archives and try again"))?;
    let entry = entry.object("audit_archive", archive.first_seq.to_string()).detail(serde_json::json!({
        "first_seq": archive.first_seq, "last_seq": archive.last_seq, "records": archive.records,
        "file": archive.file_name, "file_digest": archive.file_digest,
    }));
    log.append(&mut tx, &entry).await?;
    tx.commit().await.db()?;
    cleanup.0 = None;
    Ok(Some(archive))
}

/// A unique-key violation as a conflict saying `message`; any other error as usual.
fn conflict_or(e: sqlx::Error, message: &str) -> Error {
    if store::is_unique_violation(&e) { Error::conflict(message) } else { store::db_error(e) }
}

fn broken(seq: i64, why: String) -> Error {
    Error::conflict(format!(
        "the audit chain does not verify at seq {seq}: {why}. Nothing was archived; verify the chain and resolve the finding first"
    ))
}

async fn write_blocking(mut out: Encoder, text: Vec<u8>, path: &Path) -> Result<Encoder> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || out.write_all(&text).map(|()| out).map_err(|e| io_error(&path, "write", e)))
        .await
        .map_err(Error::internal)?
}

/// What checking an archive file found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FileReport {
    pub ok: bool,
    pub file: String,
    pub algorithm: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub records_checked: i64,
    pub prev_hash: String,
    pub last_hash: String,
    /// SM3 of the file's bytes (hex).
    pub file_digest: String,
    pub problem: Option<String>,
}

/// Reads an archive file and checks every record's digest and MAC and every link, from the
/// header's `prev_hash` to the trailer's `last_hash`. A file that cannot be read at all is an
/// error; a file that reads but does not verify is a report with `ok: false`.
pub fn verify_file(path: &Path, log: &AuditLog) -> Result<FileReport> {
    let file =
        std::fs::File::open(path).map_err(|e| Error::validation(format!("cannot open {}: {e}", path.display())))?;
    struct HashingRead<R> {
        inner: R,
        hasher: crypto::hash::Hasher,
    }
    impl<R: std::io::Read> std::io::Read for HashingRead<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.hasher.update(&buf[..n]);
            Ok(n)
        }
    }
    let mut reader = HashingRead {
        inner: std::io::BufReader::with_capacity(1 << 16, file),
        hasher: crypto::hash::Hasher::new(FILE_DIGEST),
    };
    let mut report = FileReport {
        ok: false,
        file: path.display().to_string(),
        algorithm: String::new(),
        first_seq: 0,
        last_seq: 0,
        records_checked: 0,
        prev_hash: String::new(),
        last_hash: String::new(),
        file_digest: String::new(),
        problem: None,
    };
    let problem = check_file(&mut std::io::BufReader::new(flate2::read::GzDecoder::new(&mut reader)), log, &mut report);
    // Hash the rest, so the digest is the whole file's even where checking stopped early.
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|e| Error::validation(format!("cannot read {}: {e}", path.display())))?;
    report.file_digest = crypto::hash::to_hex(&reader.hasher.finish());
    report.ok = problem.is_none();
    report.problem = problem;
    Ok(report)
}

/// Checks the decompressed lines; `Some` names the first problem.
fn check_file(input: &mut impl BufRead, log: &AuditLog, report: &mut FileReport) -> Option<String> {
    let mut lines = input.lines();
    let mut next = |what: &str| -> std::result::Result<String, String> {
        match lines.next() {
            Some(Ok(l)) => Ok(l),
            Some(Err(e)) => Err(format!("the file is damaged (not a complete gzip stream of text) {what}: {e}")),
            None => Err(format!("the file ends {what}")),
        }
    };
    let header: Header = match next("before its header")
        .and_then(|l| serde_json::from_str(&l).map_err(|_| "the first line is not an audit archive header".to_string()))
    {
        Ok(h) => h,
        Err(e) => return Some(e),
    };
    if header.format != FORMAT || header.version != VERSION {
        return Some(format!("not a {FORMAT} version {VERSION} file"));
    }
    let Some(alg) = crypto::HashAlg::parse(&header.algorithm.to_ascii_lowercase()) else {
        return Some(format!("unknown hash algorithm {}", header.algorithm));
    };
    report.algorithm = alg.name().into();
    report.first_seq = header.first_seq;
    report.last_seq = header.last_seq;
    report.prev_hash = header.prev_hash.clone();
    let mut prev = header.prev_hash;
    let mut buf = Vec::with_capacity(512);
    let mut expected = header.first_seq;
    loop {
        let text = match next(&format!("after seq {}, without its trailer: it was cut short", expected - 1)) {
            Ok(t) => t,
            Err(e) => return Some(e),
        };
        if expected > header.last_seq {
            let trailer: Trailer = match serde_json::from_str(&text) {
                Ok(t) => t,
                Err(_) => return Some(format!("line after seq {} is not the trailer", header.last_seq)),
            };
            if trailer.records != report.records_checked || trailer.last_hash != prev {
                return Some("the trailer does not match the records: records were removed or changed".into());
            }
            report.last_hash = prev;
            return None;
        }
        let line: Line = match serde_json::from_str(&text) {
            Ok(l) => l,
            Err(_) => return Some(format!("the line for seq {expected} is not a record")),
        };
        if line.seq != expected {
            return Some(format!("seq {expected} is missing: the file holds seq {} in its place", line.seq));
        }
        if let Err(why) = check_line(log, alg, &prev, &line, &mut buf) {
            return Some(why);
        }
        prev = line.hash;
        report.records_checked += 1;
        expected += 1;
    }
}

/// What a purge did and why segments were kept.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PurgeReport {
    pub retention_days: i64,
    /// Records older than this (Unix ms) may be purged once archived.
    pub cutoff: i64,
    pub purged: Vec<Archive>,
    pub records_removed: i64,
    pub kept: Vec<KeptSegment>,
}

/// A segment a purge left in the database, and why.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeptSegment {
    pub first_seq: i64,
    pub last_seq: i64,
    pub why: KeptWhy,
    /// The reason in full, for a person.
    pub reason: String,
    /// For `within_retention`: when the segment may go.
    pub purgeable_from: Option<i64>,
}

/// Why a purge kept a segment (stable codes for the UI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeptWhy {
    /// Its newest record is younger than the retention period.
    WithinRetention,
    /// An older segment is kept, and segments go oldest first.
    WaitsForOlder,
    /// The archive record fails its MAC.
    RecordTampered,
    /// It does not start where the purged part of the chain ends.
    NotContiguous,
    /// The file is not in the archive directory.
    FileMissing,
    /// The file does not verify or is not the one written for the segment.
    FileInvalid,
    /// The database no longer holds the segment as archived.
    DatabaseDiffers,
}

/// Why a segment may not be purged now.
struct Refusal {
    why: KeptWhy,
    reason: String,
    purgeable_from: Option<i64>,
}

fn refuse(why: KeptWhy, reason: impl Into<String>) -> Option<Refusal> {
    Some(Refusal { why, reason: reason.into(), purgeable_from: None })
}

/// Removes archived segments older than `retention_days` from the database, oldest first,
/// stopping at the first segment that may not go (see the module docs). Each removal is one
/// transaction with its audit record (`entry`, with the segment added).
pub async fn purge(
    db: &Db,
    log: &AuditLog,
    clock: &dyn Clock,
    dir: &Path,
    retention_days: i64,
    entry: AuditEntry,
) -> Result<PurgeReport> {
    if retention_days < MIN_RETENTION_DAYS {
        return Err(Error::validation(format!(
            "the retention period must be at least {MIN_RETENTION_DAYS} days (Cybersecurity Law art. 21: six months)"
        )));
    }
    let now = clock.now_ms();
    let cutoff = now - retention_days * DAY_MS;
    let mut report = PurgeReport { retention_days, cutoff, purged: vec![], records_removed: 0, kept: vec![] };
    let mut archives = list_archives(db, log).await?;
    archives.reverse(); // oldest first
    let mut anchor = archives.iter().filter(|a| a.purged_at.is_some()).map(|a| a.last_seq).max().unwrap_or(0);
    let mut waiting: Option<i64> = None;
    for a in archives.into_iter().filter(|a| a.purged_at.is_none()) {
        let keep = |r: Refusal| KeptSegment {
            first_seq: a.first_seq,
            last_seq: a.last_seq,
            why: r.why,
            reason: r.reason,
            purgeable_from: r.purgeable_from,
        };
        if let Some(first) = waiting {
            let r = refuse(KeptWhy::WaitsForOlder, format!("waits for the older segment from seq {first}"));
            report.kept.extend(r.map(keep));
            continue;
        }
        if let Some(r) = purge_refusal(db, log, dir, &a, anchor, cutoff, retention_days).await? {
            report.kept.push(keep(r));
            waiting = Some(a.first_seq);
            continue;
        }
        let mut tx = db.begin().await?;
        sqlx::query("INSERT INTO audit_purges (first_seq, last_seq, purged_at, purged_by) VALUES ($1, $2, $3, $4)")
            .bind(a.first_seq)
            .bind(a.last_seq)
            .bind(now)
            .bind(entry.actor_name.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "this segment was purged meanwhile"))?;
        let removed = sqlx::query(
            "DELETE FROM audit_records WHERE id IN (SELECT record_id FROM audit_chain WHERE seq >= $1 AND seq <= $2)",
        )
        .bind(a.first_seq)
        .bind(a.last_seq)
        .execute(&mut *tx)
        .await
        .db()?
        .rows_affected() as i64;
        sqlx::query("DELETE FROM audit_chain WHERE seq >= $1 AND seq <= $2")
            .bind(a.first_seq)
            .bind(a.last_seq)
            .execute(&mut *tx)
            .await
            .db()?;
        let e = entry.clone().object("audit_archive", a.first_seq.to_string()).detail(serde_json::json!({
            "first_seq": a.first_seq, "last_seq": a.last_seq, "records": removed, "file": a.file_name,
            "retention_days": retention_days,
        }));
        log.append(&mut tx, &e).await?;
        tx.commit().await.db()?;
        anchor = a.last_seq;
        report.records_removed += removed;
        report.purged.push(Archive { purged_at: Some(now), purged_by: entry.actor_name.clone(), ..a });
    }
    Ok(report)
}

/// Why segment `a` may not be purged now, or `None` if it may.
async fn purge_refusal(
    db: &Db,
    log: &AuditLog,
    dir: &Path,
    a: &Archive,
    anchor: i64,
    cutoff: i64,
    retention_days: i64,
) -> Result<Option<Refusal>> {
    if !a.intact {
        return Ok(refuse(
            KeptWhy::RecordTampered,
            "the archive record fails its integrity check (MAC): it was changed outside the application",
        ));
    }
    if a.first_seq != anchor + 1 {
        return Ok(refuse(
            KeptWhy::NotContiguous,
            format!("does not follow the purged part of the chain (which ends at seq {anchor})"),
        ));
    }
    if a.newest_at >= cutoff {
        let from = a.newest_at + retention_days * DAY_MS;
        return Ok(Some(Refusal {
            why: KeptWhy::WithinRetention,
            reason: format!(
                "its newest record ({}) is within the {retention_days}-day retention period; it may be purged from {}",
                kernel::clock::to_rfc3339(a.newest_at),
                kernel::clock::to_rfc3339(from)
            ),
            purgeable_from: Some(from),
        }));
    }
    let Some(path) = a.path_in(dir) else {
        return Ok(refuse(KeptWhy::RecordTampered, "the archive record names no valid file"));
    };
    if !path.exists() {
        return Ok(refuse(
            KeptWhy::FileMissing,
            format!("the archive file {} is missing: put it back before purging", path.display()),
        ));
    }
    let log2 = log.clone();
    let report = tokio::task::spawn_blocking(move || verify_file(&path, &log2)).await.map_err(Error::internal)??;
    if let Some(p) = report.problem {
        return Ok(refuse(KeptWhy::FileInvalid, format!("the archive file does not verify: {p}")));
    }
    if !a.written_as(&report) {
        return Ok(refuse(
            KeptWhy::FileInvalid,
            "the archive file is not the one written for this segment (its digest differs)",
        ));
    }
    let (count, last_hash): (i64, Option<String>) = {
        let row = sqlx::query(
            "SELECT COUNT(*), MAX(CASE WHEN seq = $2 THEN hash END) FROM audit_chain WHERE seq >= $1 AND seq <= $2",
        )
        .bind(a.first_seq)
        .bind(a.last_seq)
        .fetch_one(db.reader())
        .await
        .db()?;
        (row.get(0), row.get(1))
    };
    if count != a.records || last_hash.as_deref() != Some(a.last_hash.as_str()) {
        return Ok(refuse(
            KeptWhy::DatabaseDiffers,
            "the database no longer holds the segment as archived: verify the chain",
        ));
    }
    Ok(None)
}
