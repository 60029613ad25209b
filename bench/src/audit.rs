//! Audit append (batched commits), sealing and verification throughput on SQLite, and on
//! PostgreSQL when `ZHONGSHU_TEST_POSTGRES_URL` is set.

use std::sync::Arc;
use std::time::Instant;

use audit::{AuditEntry, AuditLog, AuditOptions, AuditResult, Channel, Sealer};
use crypto::KeyRing;
use store::Backend;
use store::testing::TestDb;

const BATCH: usize = 1_000;

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        at: 1_795_000_000_000 + i as i64,
        actor_id: Some("01a1fee8-fd7b-706c-8646-c70b34f740d4".into()),
        actor_name: Some(format!("user{}", i % 97)),
        actor_org: Some("01a1fee8-fbb2-7431-9164-004e54ec4c13".into()),
        source_ip: Some("10.20.30.40".into()),
        request_id: Some(format!("01a1fee9-3f5d-75ca-99b0-{i:012}")),
        channel: Channel::Web,
        action: "case.dispatch".into(),
        object_type: Some("case".into()),
        object_id: Some(format!("JN-2026-{i:08}")),
        result: AuditResult::Success,
        reason: None,
        detail: Some(r#"{"from":"历下区城市管理局","to":"解放路街道"}"#.into()),
    }
}

/// How records are written in a benchmark run.
#[derive(Clone, Copy)]
enum Writes {
    /// One INSERT per record (what a request's transaction does), 1,000 per commit.
    Single,
    /// `append_many`: multi-row INSERTs (bulk writers), 1,000 per commit.
    Many,
}

pub async fn run(n: usize) {
    for b in store::testing::test_backends() {
        audit_bench(b, n, Writes::Single).await;
        audit_bench(b, n, Writes::Many).await;
    }
}

async fn audit_bench(backend: Backend, n: usize, writes: Writes) {
    let t = TestDb::new(backend, &[&audit::MIGRATIONS]).await;
    let log = AuditLog::new(&KeyRing::for_tests());
    let opts = AuditOptions::default();
    let sealer = Sealer::new(t.db.clone(), log.clone(), opts.clone(), Arc::new(kernel::SystemClock));
    let entries: Vec<AuditEntry> = (0..n).map(entry).collect();

    let started = Instant::now();
    for chunk in entries.chunks(BATCH) {
        let mut tx = t.db.begin().await.unwrap();
        match writes {
            Writes::Single => {
                for e in chunk {
                    log.append(&mut tx, e).await.unwrap();
                }
            }
            Writes::Many => log.append_many(&mut tx, chunk).await.unwrap(),
        }
        tx.commit().await.unwrap();
    }
    let append = started.elapsed();
    let started = Instant::now();
    let sealed = sealer.seal_all().await.unwrap();
    let seal = started.elapsed();
    assert_eq!(sealed, n);
    let started = Instant::now();
    let report = audit::verify(&t.db, &log, &opts, &kernel::SystemClock, &[]).await.unwrap();
    let verify = started.elapsed();
    assert!(report.ok && report.records_checked == n as i64, "{report:?}");
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    let label = match writes {
        Writes::Single => "one INSERT per record",
        Writes::Many => "multi-row INSERTs",
    };
    println!(
        "audit[{}] n={n} {label}, {BATCH}/commit: append {:.0}/s, seal {:.0}/s, append+seal {:.0}/s (target >= 20000); verify {:.0}/s (target >= 300000)",
        backend.name(),
        rate(append),
        rate(seal),
        rate(append + seal),
        rate(verify)
    );
    if let Writes::Many = writes {
        archive_bench(&t, &log, &opts, n).await;
    }
}

/// Archival of the whole chain into one file, checking that file, and purging it 181 days on.
async fn archive_bench(t: &TestDb, log: &AuditLog, opts: &AuditOptions, n: usize) {
    let dir = store::testing::TempDir::new();
    let newest = entry(n - 1).at;
    let clock = kernel::FakeClock::new(newest + 1);
    let e = || AuditEntry::new(newest + 1, "audit.archive", Channel::Cli);
    let started = Instant::now();
    let a = audit::archive(&t.db, log, opts, &clock, &dir.0, newest + 1, e()).await.unwrap().unwrap();
    let archive = started.elapsed();
    assert_eq!(a.records, n as i64);
    let path = a.path_in(&dir.0).unwrap();
    let started = Instant::now();
    let file = audit::verify_file(&path, log).unwrap();
    let check = started.elapsed();
    assert!(file.ok, "{file:?}");
    clock.set_ms(newest + 181 * 86_400_000);
    let started = Instant::now();
    let purged = audit::purge(&t.db, log, &clock, &dir.0, 180, e()).await.unwrap();
    let purge = started.elapsed();
    assert_eq!(purged.records_removed, n as i64);
    let rate = |d: std::time::Duration| n as f64 / d.as_secs_f64();
    println!(
        "audit[{}] n={n} archive {:.0}/s ({:.1} bytes/record gzip'd), check archive file {:.0}/s, purge (re-checks the file) {:.0}/s",
        t.db.backend().name(),
        rate(archive),
        a.file_bytes as f64 / n as f64,
        rate(check),
        rate(purge)
    );
}
