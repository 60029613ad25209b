//! The audit log on every configured backend: chaining, tamper detection, append-only tables,
//! search.

use std::sync::Arc;

use audit::{AuditEntry, AuditFilter, AuditLog, AuditOptions, AuditResult, Channel, ProblemKind, Sealer};
use crypto::KeyRing;
use kernel::{FakeClock, PageRequest};
use store::testing::{TestDb, test_backends};
use store::{Backend, Db};

struct Fixture {
    t: TestDb,
    log: AuditLog,
    sealer: Sealer,
    opts: AuditOptions,
    clock: FakeClock,
}

async fn fixture(backend: Backend, checkpoint_every: i64) -> Fixture {
    let t = TestDb::new(backend, &[&audit::MIGRATIONS]).await;
    let log = AuditLog::new(&KeyRing::for_tests());
    let opts = AuditOptions { checkpoint_every, ..AuditOptions::default() };
    let clock = FakeClock::new(1_763_700_000_000);
    let sealer = Sealer::new(t.db.clone(), log.clone(), opts.clone(), Arc::new(clock.clone()));
    Fixture { t, log, sealer, opts, clock }
}

fn entry(i: i64, actor: &str, action: &str) -> AuditEntry {
    AuditEntry {
        at: 1_763_700_000_000 + i,
        actor_id: Some(format!("u-{actor}")),
        actor_name: Some(actor.into()),
        actor_org: Some("历下区".into()),
        source_ip: Some("10.1.2.3".into()),
        request_id: Some(format!("req-{i}")),
        channel: Channel::Web,
        action: action.into(),
        object_type: Some("user".into()),
        object_id: Some(format!("obj-{i}")),
        result: if i % 5 == 0 { AuditResult::Failure } else { AuditResult::Success },
        reason: None,
        detail: None,
    }
}

async fn write(f: &Fixture, n: i64) {
    let mut tx = f.t.db.begin().await.unwrap();
    for i in 1..=n {
        f.log.append(&mut tx, &entry(i, if i % 2 == 0 { "wangfang" } else { "zhaolei" }, "user.update")).await.unwrap();
    }
    tx.commit().await.unwrap();
}

async fn verify(f: &Fixture) -> audit::VerifyReport {
    audit::verify(&f.t.db, &f.log, &f.opts, &f.clock, &[]).await.unwrap()
}

/// Drops the append-only triggers, as a database superuser attacking the log could.
async fn drop_guards(db: &Db) {
    let sql = match db.backend() {
        Backend::Sqlite => {
            "DROP TRIGGER audit_records_no_update; DROP TRIGGER audit_records_no_delete;
             DROP TRIGGER audit_chain_no_update; DROP TRIGGER audit_chain_no_delete;"
        }
        Backend::Postgres => {
            "ALTER TABLE audit_records DISABLE TRIGGER USER; ALTER TABLE audit_chain DISABLE TRIGGER USER;"
        }
    };
    sqlx::raw_sql(sql).execute(db.writer()).await.unwrap();
}

async fn exec(db: &Db, sql: &'static str) {
    sqlx::raw_sql(sql).execute(db.writer()).await.unwrap();
}

#[tokio::test]
async fn a_sealed_log_verifies_with_checkpoints() {
    for b in test_backends() {
        let f = fixture(b, 10).await;
        write(&f, 35).await;
        let before = verify(&f).await;
        assert!(before.ok, "{b:?}: {:?}", before.problem);
        assert_eq!(before.unsealed, 35, "{b:?}: written but not sealed yet");
        assert_eq!(f.sealer.seal_all().await.unwrap(), 35);
        let r = verify(&f).await;
        assert!(r.ok, "{b:?}: {:?}", r.problem);
        assert_eq!((r.records_checked, r.unsealed, r.checkpoints_checked), (35, 0, 3), "{b:?}");
        // Sealing again finds nothing; more records continue the chain.
        assert_eq!(f.sealer.seal_all().await.unwrap(), 0);
        write(&f, 3).await;
        f.sealer.seal_all().await.unwrap();
        let r = verify(&f).await;
        assert!(r.ok && r.head_seq == 38, "{b:?}: {r:?}");
    }
}

#[tokio::test]
async fn the_tables_refuse_updates_and_deletes() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 2).await;
        f.sealer.seal_all().await.unwrap();
        for sql in [
            "UPDATE audit_records SET actor_name = 'x'",
            "DELETE FROM audit_records",
            "UPDATE audit_chain SET hash = 'x'",
            "DELETE FROM audit_chain",
        ] {
            let err = sqlx::raw_sql(sql).execute(f.t.db.writer()).await.unwrap_err();
            assert!(err.to_string().contains("append-only"), "{b:?} {sql}: {err}");
        }
    }
}

#[tokio::test]
async fn verify_names_an_altered_record() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 20).await;
        f.sealer.seal_all().await.unwrap();
        drop_guards(&f.t.db).await;
        exec(&f.t.db, "UPDATE audit_records SET result = 'success' WHERE id = 10").await;
        let r = verify(&f).await;
        let p = r.problem.expect("problem found");
        assert_eq!((p.kind, p.record_id, p.seq), (ProblemKind::Altered, Some(10), Some(10)), "{b:?}: {}", p.message);
        assert_eq!(r.records_checked, 9);
    }
}

#[tokio::test]
async fn verify_names_a_record_whose_time_was_moved_or_replaced_by_text() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 20).await;
        f.sealer.seal_all().await.unwrap();
        drop_guards(&f.t.db).await;
        exec(&f.t.db, "UPDATE audit_records SET at = at + 1 WHERE id = 12").await;
        if b == Backend::Sqlite {
            // SQLite keeps text in an integer column: the verifier must flag it, not fail to read.
            exec(&f.t.db, "UPDATE audit_records SET at = 'yesterday noon' WHERE id = 7").await;
        }
        let r = verify(&f).await;
        let p = r.problem.expect("problem found");
        let expected = if b == Backend::Sqlite { 7 } else { 12 };
        assert_eq!((p.kind, p.record_id), (ProblemKind::Altered, Some(expected)), "{b:?}: {}", p.message);
    }
}

#[tokio::test]
async fn verify_names_a_deleted_record() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 20).await;
        f.sealer.seal_all().await.unwrap();
        drop_guards(&f.t.db).await;
        exec(&f.t.db, "DELETE FROM audit_records WHERE id = 7").await;
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.record_id), (ProblemKind::Deleted, Some(7)), "{b:?}: {}", p.message);
        // Deleting the chain entry too leaves a gap, which is named.
        exec(&f.t.db, "DELETE FROM audit_chain WHERE seq = 7").await;
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.seq), (ProblemKind::Deleted, Some(7)), "{b:?}: {}", p.message);
    }
}

#[tokio::test]
async fn verify_names_the_gap_left_by_an_entry_moved_far_beyond_the_head() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 20).await;
        f.sealer.seal_all().await.unwrap();
        drop_guards(&f.t.db).await;
        exec(&f.t.db, "UPDATE audit_chain SET seq = 1000000000000 WHERE seq = 20").await;
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.seq), (ProblemKind::Deleted, Some(20)), "{b:?}: {}", p.message);
        assert!(p.message.contains("20 to 999999999999"), "{b:?}: {}", p.message);
        exec(&f.t.db, "UPDATE audit_chain SET seq = 1000000000001 WHERE seq = 12").await;
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.seq), (ProblemKind::Deleted, Some(12)), "{b:?}: {}", p.message);
    }
}

#[tokio::test]
async fn verify_names_an_inserted_record() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 5).await;
        f.sealer.seal_all().await.unwrap();
        exec(
            &f.t.db,
            "INSERT INTO audit_records (at, actor_name, channel, action, result, digest, mac)
             VALUES (1763700000000, 'intruder', 'web', 'user.create', 'success', 'cafe', 'deadbeef')",
        )
        .await;
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.record_id), (ProblemKind::Inserted, Some(6)), "{b:?}: {}", p.message);
        // Once sealed (the sealer keeps the evidence) it is reported as altered at its position.
        f.sealer.seal_all().await.unwrap();
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.seq), (ProblemKind::Altered, Some(6)), "{b:?}: {}", p.message);
    }
}

#[tokio::test]
async fn verify_names_reordered_records() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 10).await;
        f.sealer.seal_all().await.unwrap();
        drop_guards(&f.t.db).await;
        // Swap the positions of records 4 and 5 in the chain.
        exec(&f.t.db, "UPDATE audit_chain SET seq = -4 WHERE seq = 4").await;
        exec(&f.t.db, "UPDATE audit_chain SET seq = 4 WHERE seq = 5").await;
        exec(&f.t.db, "UPDATE audit_chain SET seq = 5 WHERE seq = -4").await;
        let p = verify(&f).await.problem.expect("problem found");
        assert_eq!((p.kind, p.seq), (ProblemKind::Reordered, Some(4)), "{b:?}: {}", p.message);
    }
}

#[tokio::test]
async fn verify_detects_a_truncated_tail_against_checkpoints() {
    for b in test_backends() {
        let f = fixture(b, 10).await;
        write(&f, 25).await;
        f.sealer.seal_all().await.unwrap();
        let exported = audit::checkpoints(&f.t.db).await.unwrap();
        assert_eq!(exported.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![10, 20]);
        drop_guards(&f.t.db).await;
        let sql = match b {
            Backend::Sqlite => "DROP TRIGGER audit_checkpoints_no_delete",
            Backend::Postgres => "ALTER TABLE audit_checkpoints DISABLE TRIGGER USER",
        };
        exec(&f.t.db, sql).await;
        // The attacker removes the last 8 records, their chain entries and the checkpoint at 20.
        exec(&f.t.db, "DELETE FROM audit_chain WHERE seq > 17").await;
        exec(&f.t.db, "DELETE FROM audit_records WHERE id > 17").await;
        exec(&f.t.db, "DELETE FROM audit_checkpoints WHERE seq = 20").await;
        assert!(verify(&f).await.ok, "{b:?}: without the exported checkpoints the cut is invisible");
        let r = audit::verify(&f.t.db, &f.log, &f.opts, &f.clock, &exported).await.unwrap();
        let p = r.problem.expect("problem found");
        assert_eq!((p.kind, p.seq), (ProblemKind::Truncated, Some(18)), "{b:?}: {}", p.message);
    }
}

#[tokio::test]
async fn search_filters_by_actor_action_result_and_time() {
    for b in test_backends() {
        let f = fixture(b, 100).await;
        write(&f, 20).await;
        let mut tx = f.t.db.begin().await.unwrap();
        f.log.append(&mut tx, &entry(100, "auditor1", "audit.export")).await.unwrap();
        tx.commit().await.unwrap();
        f.sealer.seal_all().await.unwrap();
        let page = PageRequest::default();
        let q = |filter: AuditFilter| {
            let db = f.t.db.clone();
            async move { audit::search(&db, &filter, page).await.unwrap() }
        };
        let all = q(AuditFilter::default()).await;
        assert_eq!(all.total, 21);
        assert_eq!(all.items[0].entry.action, "audit.export", "newest first");
        assert!(all.items[0].seq.is_some());
        assert_eq!(q(AuditFilter { actor: Some("wangfang".into()), ..Default::default() }).await.total, 10);
        assert_eq!(q(AuditFilter { action: Some("audit.".into()), ..Default::default() }).await.total, 1);
        assert_eq!(q(AuditFilter { result: Some("failure".into()), ..Default::default() }).await.total, 5);
        let window = AuditFilter { from: Some(1_763_700_000_005), to: Some(1_763_700_000_010), ..Default::default() };
        assert_eq!(q(window).await.total, 5);
        let sneaky = AuditFilter { actor: Some("x' OR '1'='1".into()), ..Default::default() };
        assert_eq!(q(sneaky).await.total, 0);
        let bad = AuditFilter { result: Some("maybe".into()), ..Default::default() };
        assert!(audit::search(&f.t.db, &bad, page).await.is_err());
    }
}

const DAY: i64 = 86_400_000;
const T0: i64 = 1_763_700_000_000;

/// Records written `days` after T0.
async fn write_at(f: &Fixture, days: i64, n: i64) {
    let mut tx = f.t.db.begin().await.unwrap();
    for i in 1..=n {
        let e = AuditEntry { at: T0 + days * DAY + i, ..entry(i, "liuyang", "case.dispatch") };
        f.log.append(&mut tx, &e).await.unwrap();
    }
    tx.commit().await.unwrap();
}

fn auditor_entry(f: &Fixture, action: &str) -> AuditEntry {
    use kernel::Clock;
    AuditEntry { actor_name: Some("auditor".into()), ..AuditEntry::new(f.clock.now_ms(), action, Channel::Cli) }
}

async fn archive_before(f: &Fixture, dir: &std::path::Path, days: i64) -> Option<audit::Archive> {
    let e = auditor_entry(f, "audit.archive");
    let a = audit::archive(&f.t.db, &f.log, &f.opts, &f.clock, dir, T0 + days * DAY, e).await.unwrap();
    f.sealer.seal_all().await.unwrap();
    a
}

async fn purge(f: &Fixture, dir: &std::path::Path, retention_days: i64) -> kernel::Result<audit::PurgeReport> {
    let r = audit::purge(&f.t.db, &f.log, &f.clock, dir, retention_days, auditor_entry(f, "audit.purge")).await;
    f.sealer.seal_all().await.unwrap();
    r
}

async fn count(db: &Db, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.reader()).await.unwrap()
}

#[tokio::test]
async fn archived_segments_are_purged_only_after_the_retention_period_and_the_chain_verifies_from_the_anchor() {
    for b in test_backends() {
        let f = fixture(b, 10).await;
        let dir = store::testing::TempDir::new();
        write_at(&f, 0, 30).await;
        f.sealer.seal_all().await.unwrap();
        write_at(&f, 100, 20).await;
        f.sealer.seal_all().await.unwrap();

        // Archive what was written before day 50: the first 30 records, verified into a file.
        let a = archive_before(&f, &dir.0, 50).await.expect("a segment to archive");
        assert_eq!((a.first_seq, a.last_seq, a.records), (1, 30, 30), "{b:?}");
        assert!(a.intact && a.purged_at.is_none());
        let path = a.path_in(&dir.0).unwrap();
        let file = audit::verify_file(&path, &f.log).unwrap();
        assert!(file.ok, "{b:?}: {:?}", file.problem);
        assert_eq!((file.records_checked, &file.file_digest, &file.last_hash), (30, &a.file_digest, &a.last_hash));
        assert!(archive_before(&f, &dir.0, 50).await.is_none(), "{b:?}: nothing new to archive");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1, "{b:?}: no partial files left");

        // Too short a retention is refused; at day 179 nothing goes.
        let err = purge(&f, &dir.0, 179).await.unwrap_err();
        assert_eq!(err.code, kernel::ErrorCode::ValidationFailed, "{b:?}");
        f.clock.set_ms(T0 + 179 * DAY);
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert!(r.purged.is_empty() && r.records_removed == 0, "{b:?}: {r:?}");
        assert!(r.kept[0].reason.contains("retention"), "{b:?}: {}", r.kept[0].reason);
        let total = count(&f.t.db, "SELECT COUNT(*) FROM audit_records").await;

        // At day 181 the archived segment goes, and only it; the purge is audited.
        f.clock.set_ms(T0 + 181 * DAY);
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert_eq!((r.purged.len(), r.records_removed), (1, 30), "{b:?}: {r:?}");
        assert_eq!(count(&f.t.db, "SELECT COUNT(*) FROM audit_records").await, total - 30 + 1, "{b:?}");
        assert_eq!(count(&f.t.db, "SELECT MIN(seq) FROM audit_chain").await, 31, "{b:?}");
        let purges = audit::search(
            &f.t.db,
            &AuditFilter { action: Some("audit.purge".into()), ..AuditFilter::default() },
            PageRequest::default(),
        )
        .await
        .unwrap();
        assert_eq!(purges.items.len(), 1, "{b:?}");
        let listed = audit::list_archives(&f.t.db, &f.log).await.unwrap();
        assert!(listed[0].purged_at.is_some() && listed[0].purged_by.as_deref() == Some("auditor"), "{b:?}");

        // The chain in the database verifies from the anchor, and goes on after it.
        let r = verify(&f).await;
        assert!(r.ok, "{b:?}: {:?}", r.problem);
        assert_eq!(r.archived_through, 30, "{b:?}");
        write_at(&f, 181, 5).await;
        f.sealer.seal_all().await.unwrap();
        let r = verify(&f).await;
        assert!(r.ok, "{b:?}: {:?}", r.problem);
        assert_eq!(r.head_seq, 30 + r.records_checked, "{b:?}");

        // Rows after the anchor still cannot be deleted.
        let err = sqlx::raw_sql("DELETE FROM audit_chain WHERE seq = 31").execute(f.t.db.writer()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{b:?}: {err}");
        let err = sqlx::raw_sql("DELETE FROM audit_records").execute(f.t.db.writer()).await.unwrap_err();
        assert!(err.to_string().contains("append-only"), "{b:?}: {err}");
    }
}

#[tokio::test]
async fn consecutive_segments_are_purged_together_and_the_chain_goes_on_after_them() {
    for b in test_backends() {
        let f = fixture(b, 1000).await;
        let dir = store::testing::TempDir::new();
        write_at(&f, 0, 12).await;
        f.sealer.seal_all().await.unwrap();
        let a = archive_before(&f, &dir.0, 1).await.unwrap();
        assert_eq!(a.last_seq, 12);
        // The second segment is the first archival's own record (seq 13, written at T0).
        f.clock.set_ms(T0 + 400 * DAY);
        let a2 = archive_before(&f, &dir.0, 500).await.unwrap();
        assert_eq!((a2.first_seq, a2.last_seq, &a2.prev_hash), (13, 13, &a.last_hash), "{b:?}");
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert_eq!((r.purged.len(), r.records_removed), (2, 13), "{b:?}: {r:?}");
        // Left: the second archival's record (seq 14) and the purges' records, sealed after it.
        assert_eq!(count(&f.t.db, "SELECT MIN(seq) FROM audit_chain").await, 14, "{b:?}");
        write_at(&f, 400, 3).await;
        f.sealer.seal_all().await.unwrap();
        let r = verify(&f).await;
        assert!(r.ok, "{b:?}: {:?}", r.problem);
        assert_eq!((r.archived_through, r.records_checked, r.head_seq), (13, 6, 19), "{b:?}");
    }
}

#[tokio::test]
async fn a_backlog_is_archived_in_segments_of_bounded_size_that_follow_each_other() {
    for b in test_backends() {
        let mut f = fixture(b, 1000).await;
        f.opts.archive_max_records = 10;
        let dir = store::testing::TempDir::new();
        write_at(&f, 0, 25).await;
        f.sealer.seal_all().await.unwrap();
        let mut segments = Vec::new();
        while let Some(a) =
            audit::archive(&f.t.db, &f.log, &f.opts, &f.clock, &dir.0, T0 + DAY, auditor_entry(&f, "audit.archive"))
                .await
                .unwrap()
        {
            segments.push((a.first_seq, a.last_seq, a.prev_hash));
            assert!(segments.len() < 10);
        }
        // The archivals' own records are written at T0 too, but sealed after the cut: each call
        // takes what was sealed before it.
        assert_eq!(
            segments[..3].iter().map(|s| (s.0, s.1)).collect::<Vec<_>>(),
            vec![(1, 10), (11, 20), (21, 25)],
            "{b:?}"
        );
        f.clock.set_ms(T0 + 200 * DAY);
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert_eq!((r.purged.len(), r.records_removed), (3, 25), "{b:?}: {r:?}");
        assert!(verify(&f).await.ok);
    }
}

#[tokio::test]
async fn a_purge_keeps_segments_whose_file_is_missing_or_altered_and_files_verify_alone() {
    use std::io::{Read, Write};
    for b in test_backends() {
        let f = fixture(b, 1000).await;
        let dir = store::testing::TempDir::new();
        write_at(&f, 0, 40).await;
        f.sealer.seal_all().await.unwrap();
        let a = archive_before(&f, &dir.0, 1).await.unwrap();
        let path = a.path_in(&dir.0).unwrap();
        let original = std::fs::read(&path).unwrap();
        f.clock.set_ms(T0 + 365 * DAY);

        // A record changed inside the archive: the file no longer verifies, and names the record.
        let mut text = String::new();
        flate2::read::GzDecoder::new(&original[..]).read_to_string(&mut text).unwrap();
        let forged = text.replacen("\"actor_name\":\"liuyang\"", "\"actor_name\":\"someone\"", 1);
        assert_ne!(forged, text);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(forged.as_bytes()).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let report = audit::verify_file(&path, &f.log).unwrap();
        assert!(!report.ok && report.problem.as_deref().unwrap().contains("(seq 1) was altered"), "{b:?}: {report:?}");
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert!(r.purged.is_empty(), "{b:?}");
        assert_eq!(r.kept[0].why, audit::KeptWhy::FileInvalid, "{b:?}: {}", r.kept[0].reason);

        // A file cut short.
        std::fs::write(&path, &original[..original.len() / 2]).unwrap();
        let report = audit::verify_file(&path, &f.log).unwrap();
        assert!(!report.ok, "{b:?}: {report:?}");

        // The file gone.
        std::fs::remove_file(&path).unwrap();
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert_eq!(r.kept[0].why, audit::KeptWhy::FileMissing, "{b:?}: {}", r.kept[0].reason);
        assert_eq!(count(&f.t.db, "SELECT COUNT(*) FROM audit_chain WHERE seq <= 40").await, 40, "{b:?}");

        // Put back, it goes.
        std::fs::write(&path, &original).unwrap();
        let r = purge(&f, &dir.0, 180).await.unwrap();
        assert_eq!(r.records_removed, 40, "{b:?}: {r:?}");
    }
}

#[tokio::test]
async fn archiving_refuses_a_broken_chain_and_verify_catches_a_forged_anchor() {
    for b in test_backends() {
        let f = fixture(b, 1000).await;
        let dir = store::testing::TempDir::new();
        write_at(&f, 0, 20).await;
        f.sealer.seal_all().await.unwrap();
        drop_guards(&f.t.db).await;
        exec(&f.t.db, "UPDATE audit_records SET actor_name = 'nobody' WHERE id = 7").await;
        let err =
            audit::archive(&f.t.db, &f.log, &f.opts, &f.clock, &dir.0, T0 + DAY, auditor_entry(&f, "audit.archive"))
                .await
                .unwrap_err();
        assert_eq!(err.code, kernel::ErrorCode::Conflict, "{b:?}");
        assert!(err.message.contains("seq 7"), "{b:?}: {}", err.message);
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "{b:?}: no file left behind");
        assert!(audit::list_archives(&f.t.db, &f.log).await.unwrap().is_empty());
    }
    for b in test_backends() {
        let f = fixture(b, 1000).await;
        let dir = store::testing::TempDir::new();
        write_at(&f, 0, 20).await;
        f.sealer.seal_all().await.unwrap();
        archive_before(&f, &dir.0, 1).await.unwrap();
        f.clock.set_ms(T0 + 200 * DAY);
        purge(&f, &dir.0, 180).await.unwrap();
        assert!(verify(&f).await.ok);
        // Someone moves the anchor to hide removed records: the archive row's MAC no longer verifies.
        let sql = match b {
            Backend::Sqlite => "DROP TRIGGER audit_archives_no_update",
            Backend::Postgres => "ALTER TABLE audit_archives DISABLE TRIGGER USER",
        };
        exec(&f.t.db, sql).await;
        exec(&f.t.db, "UPDATE audit_archives SET last_seq = 25").await;
        let r = verify(&f).await;
        let p = r.problem.expect("problem found");
        assert_eq!(p.kind, ProblemKind::Altered, "{b:?}: {}", p.message);
        assert!(p.message.contains("archive record"), "{b:?}: {}", p.message);
    }
}
