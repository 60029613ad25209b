//! The engine durable: the reference process started and run to completion through the
//! service layer (`Flow::start_batch`: one transaction per batch, full history, in-process
//! no-op handlers), on SQLite and on PostgreSQL when `ZHONGSHU_TEST_POSTGRES_URL` is set.

use std::sync::Arc;
use std::time::Instant;

use crypto::KeyRing;
use store::Backend;
use store::testing::TestDb;

const BATCH: usize = 500;

pub async fn run(n: usize) {
    for b in store::testing::test_backends() {
        bench(b, n).await;
    }
}

async fn bench(backend: Backend, n: usize) {
    let t = TestDb::new(backend, &[&audit::MIGRATIONS, &identity::MIGRATIONS, &flow::MIGRATIONS]).await;
    let keys = Arc::new(KeyRing::for_tests());
    let clock: Arc<dyn kernel::Clock> = Arc::new(kernel::SystemClock);
    let audit = audit::AuditLog::new(&keys);
    let id = identity::Identity::new(t.db.clone(), keys, audit, clock.clone(), Default::default()).await.unwrap();
    let flow = flow::Flow::new(t.db.clone(), id, clock, Default::default());
    let system = identity::users::system_caller();
    let actor = identity::Actor::system();
    let def = flow.deploy(&system, &actor, crate::flow_core::REFERENCE, Default::default()).await.unwrap();
    let mut vars = serde_json::Map::new();
    vars.insert("amount".into(), 42.into());
    let started = Instant::now();
    let mut done = 0;
    while done < n {
        let k = BATCH.min(n - done);
        let batch = (0..k).map(|i| (Some(format!("BK-{}", done + i)), vars.clone())).collect();
        flow.start_batch(&def.id, batch).await.unwrap();
        done += k;
    }
    let secs = started.elapsed().as_secs_f64();
    let completed: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_instances WHERE status = 'completed'")
        .fetch_one(t.db.reader())
        .await
        .unwrap();
    let history: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_history").fetch_one(t.db.reader()).await.unwrap();
    assert_eq!(completed as usize, n);
    assert_eq!(history as usize, n);
    let rate = n as f64 / secs;
    println!(
        "flow durable[{}]: {n} reference instances completed with full history in {secs:.2} s = {rate:.0} instances/s, {BATCH}/transaction (target >= 5000 on SQLite)",
        backend.name()
    );
}
