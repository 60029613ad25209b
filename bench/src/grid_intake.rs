//! Event intake through the service layer on SQLite: each event is located (GCJ-02 input
//! converted, point → grid), categorised, routed by the assignment rules, checked for duplicates,
//! numbered, stored, logged, audited and its case process started — one transaction per event,
//! as the intake API does (events queued together are filed in one transaction). N concurrent
//! reporters (default 64) against the demo city's 75 grids.

use std::sync::Arc;
use std::time::Instant;

use grid::Grid;
use grid::cases::IntakeRequest;
use zhongshu::app::{self, OpenOptions};
use zhongshu::config::Config;

const CATEGORIES: &[&str] = &["BJ0101", "BJ0104", "SJ0101", "SJ0201", "SJ0503", "ZZ0101", "SJ0601", "BJ0302"];

pub async fn run(n: usize, clients: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::defaults();
    cfg.storage.data_dir = dir.path().join("data");
    cfg.flow.workers = false;
    cfg.notify.relay = false;
    cfg.grid.dispatch_center = zhongshu::demo::DISPATCH_CENTER.into();
    let state = app::open(&cfg, OpenOptions { fast_hashing: true, ..OpenOptions::default() }).await.expect("open");
    zhongshu::demo::seed(&state).await.expect("demo city");
    let points = zhongshu::demo_grid::seed_setup(&state).await.expect("grid setup");
    let g = state.services.get::<Grid>().expect("grid service").clone();
    let uid = state.identity.user_id_by_username("dispatcher").await.unwrap().unwrap();
    let caller = state.identity.load_caller(&uid, None).await.unwrap();
    let actor = identity::Actor { username: Some("dispatcher".into()), ..identity::Actor::system() };
    // Spread points around each grid's label point (within ~100 m), in GCJ-02 as phones send them.
    let events: Vec<IntakeRequest> = (0..n)
        .map(|i| {
            let (_, p) = &points[i % points.len()];
            let jitter = ((i * 7919) % 200) as f64 * 5e-6 - 5e-4;
            let g = spatial::coord::wgs84_to_gcj02(spatial::LonLat::new(p[0] + jitter, p[1] - jitter / 2.0));
            IntakeRequest {
                source: "iot".into(),
                external_id: Some(format!("bench-{i}")),
                description: "物联感知设备告警：井盖位移".into(),
                category_code: Some(CATEGORIES[i % CATEGORIES.len()].into()),
                lon: Some(g.lon),
                lat: Some(g.lat),
                crs: Some("gcj02".into()),
                ..Default::default()
            }
        })
        .collect();
    let queue = Arc::new(std::sync::Mutex::new(events));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(n)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (g, caller, actor, queue, latencies) =
            (g.clone(), caller.clone(), actor.clone(), queue.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some(req) = queue.lock().unwrap().pop() else { break };
                let t = Instant::now();
                g.intake(&caller, &actor, req).await.expect("intake");
                latencies.lock().unwrap().push(t.elapsed().as_secs_f64() * 1e3);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let cases: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM grid_cases").fetch_one(state.db.reader()).await.unwrap();
    let instances: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM flow_instances WHERE def_key = 'grid_case'")
        .fetch_one(state.db.reader())
        .await
        .unwrap();
    assert_eq!(cases as usize, n);
    assert_eq!(instances as usize, n);
    let mut l = latencies.lock().unwrap().clone();
    l.sort_by(f64::total_cmp);
    let pct = |q: f64| l[((l.len() as f64 * q) as usize).min(l.len() - 1)];
    println!(
        "grid intake[sqlite]: {n} events (locate, categorise, route, duplicate check, store, audit, start the case process) in {secs:.2} s = {:.0} events/s with {clients} concurrent reporters; latency p50 {:.1} ms, p99 {:.1} ms (target >= 5000 events/s)",
        n as f64 / secs,
        pct(0.5),
        pct(0.99)
    );
}
