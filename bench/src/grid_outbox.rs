//! The outbox to third-party platforms on SQLite: N dispatches (one per case) to the platform
//! simulator over loopback HTTP, signed (HMAC-SM3) in the 数字城管 dialect, while the platform
//! is down for the first seconds (an outage) and then refuses every 50th request. Prints the
//! drain rate after the platform came back and checks that every case reached the platform
//! exactly once.
//!
//! Setup writes the cases and their dispatch messages with two INSERT … SELECT statements (the
//! figure is the relay's: claim, sign, send, record, retry), in the shape the case observer writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use grid::Grid;
use grid::simulator::Mode;
use sqlx::Row;
use zhongshu::app::{self, OpenOptions};
use zhongshu::config::Config;

pub async fn run(n: usize, outage_secs: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::defaults();
    cfg.storage.data_dir = dir.path().join("data");
    cfg.flow.workers = false;
    cfg.notify.relay = false;
    cfg.grid.relay = false;
    cfg.grid.dispatch_center = zhongshu::demo::DISPATCH_CENTER.into();
    let state = app::open(&cfg, OpenOptions { fast_hashing: true, ..OpenOptions::default() }).await.expect("open");
    zhongshu::demo::seed(&state).await.expect("demo city");
    zhongshu::demo_grid::seed_setup(&state).await.expect("grid setup");
    let sims = zhongshu::demo_grid::seed_platforms(&state, "http://127.0.0.1:9", Arc::new(kernel::SystemClock))
        .await
        .expect("platforms");
    let g = state.services.get::<Grid>().expect("grid service").clone();
    let sim = &sims.iter().find(|(c, _)| c == "szcg").expect("szcg").1;
    sim.set_mode(Mode { down: true, ..Mode::default() });

    // N cases in the first grid, and one dispatch to 数字城管 each.
    let db = state.db.clone();
    let t = Instant::now();
    let ids = sqlx::query(
        "SELECT (SELECT id FROM grid_platforms WHERE code = 'szcg'), (SELECT id FROM grid_categories WHERE code = 'SJ0504'),
            (SELECT org_id FROM grid_areas a JOIN orgs o ON o.id = a.org_id WHERE o.kind = 'grid' ORDER BY o.code LIMIT 1)",
    )
    .fetch_one(db.reader())
    .await
    .expect("ids");
    let (platform, category, grid): (String, String, String) = (ids.get(0), ids.get(1), ids.get(2));
    let now = kernel::Clock::now_ms(&kernel::SystemClock);
    sqlx::query(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < $1)
         INSERT INTO grid_cases (id, case_no, source, title, description, category_id, urgency, lon, lat, address, grid_id, org_id,
            reporter, stage, status, created_at, updated_at)
         SELECT 'bench-' || i, 'B' || (100000000 + i), 'patrol', '共享单车乱停放', '地铁口共享单车无序堆放，占用盲道', $2, 'normal',
            117.0 + i * 1e-7, 36.65, '山大路地铁站B口', $3, $3, '吴海燕', 'handle', 'open', $4, $4 FROM s",
    )
    .bind(n as i64)
    .bind(&category)
    .bind(&grid)
    .bind(now)
    .execute(db.writer())
    .await
    .expect("cases");
    sqlx::query(
        "INSERT INTO grid_outbox (id, platform_id, case_id, seq, kind, idem_key, payload, state, attempts, next_at, created_at)
         SELECT 'ob-' || c.id, $1, c.id, 1, 'dispatch', 'zs-' || c.case_no || '-1',
            json_object('case_no', c.case_no, 'title', c.title, 'description', c.description, 'category_code', 'SJ0504',
                'category_name', '非机动车乱停放', 'urgency', c.urgency, 'lon', c.lon, 'lat', c.lat, 'address', c.address,
                'reporter', c.reporter, 'source', c.source, 'reported_at', c.created_at),
            'pending', 0, $2, $2
         FROM grid_cases c WHERE c.id LIKE 'bench-%'",
    )
    .bind(&platform)
    .bind(now)
    .execute(db.writer())
    .await
    .expect("outbox");
    println!("setup: {n} cases with a dispatch each in {:.1} s", t.elapsed().as_secs_f64());

    // The relay runs from the start; the platform is down for the first seconds.
    let mut relay = apikit::background::Background::new();
    g.spawn_relay(&mut relay);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(outage_secs)).await;
    let refused = sim.stats().refused;
    sim.set_mode(Mode { fail_every: 50, ..Mode::default() });
    let back = Instant::now();
    loop {
        let left: i64 = sqlx::query("SELECT COUNT(*) FROM grid_outbox WHERE state = 'pending'")
            .fetch_one(db.reader())
            .await
            .expect("count")
            .get(0);
        if left == 0 {
            break;
        }
        if back.elapsed() > Duration::from_secs(600) {
            println!("gave up: {left} still pending after 10 minutes");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drain = back.elapsed().as_secs_f64();
    relay.shutdown().await;
    let s = sim.stats();
    let delivered: i64 =
        sqlx::query("SELECT COUNT(*) FROM grid_outbox WHERE state = 'delivered' AND ticket IS NOT NULL")
            .fetch_one(db.reader())
            .await
            .expect("count")
            .get(0);
    let retried: i64 = sqlx::query("SELECT COUNT(*) FROM grid_outbox WHERE attempts > 1")
        .fetch_one(db.reader())
        .await
        .expect("count")
        .get(0);
    println!(
        "outage: {outage_secs} s down, {refused} requests refused while down (the platform is paused and probed, not hammered)"
    );
    println!(
        "drain after recovery: {n} dispatches in {drain:.2} s = {:.0} dispatches/s (target >= 2,000/s); {retried} retried after refusals; total {:.1} s",
        n as f64 / drain,
        started.elapsed().as_secs_f64()
    );
    println!(
        "exactly once: the platform received {} distinct dispatches for {n} cases, {} under a key it had seen; {delivered} delivered with its ticket — {}",
        s.received,
        s.duplicates,
        if s.received as usize == n && delivered as usize == n { "OK" } else { "MISMATCH" }
    );
}
