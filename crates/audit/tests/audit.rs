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
