//! Event intake over HTTP against a running `zhongshu demo` (bench/run starts it with the rate
//! limit raised): first as fast as 64 clients can send for 10 s, then an open-loop 1,000 events/s
//! for 10 s to read the latency at that rate. Events land at points inside the demo grids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

async fn login(base: &str) -> (reqwest::Client, String) {
    let http = reqwest::Client::builder().cookie_store(true).pool_max_idle_per_host(256).build().unwrap();
    let r: Value = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "dispatcher", "password": "Jinan@2026"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (http, r["csrf_token"].as_str().expect("login").to_string())
}

fn pct(mut l: Vec<f64>, q: f64) -> f64 {
    l.sort_by(f64::total_cmp);
    l.get(((l.len() as f64 * q) as usize).min(l.len().saturating_sub(1))).copied().unwrap_or(0.0)
}

fn event(points: &[[f64; 2]], k: usize, tag: &str) -> Value {
    let p = points[k % points.len()];
    let j = ((k * 7919) % 200) as f64 * 5e-6 - 5e-4;
    json!({"source": "iot", "external_id": format!("{tag}-{k}"), "category_code": "BJ0101",
           "description": "物联感知：井盖位移告警", "lon": p[0] + j, "lat": p[1] - j / 2.0})
}

pub async fn run(base: &str) {
    let (http, csrf) = login(base).await;
    let fc: Value =
        http.get(format!("{base}/api/v1/grid/areas?level=grid")).send().await.unwrap().json().await.unwrap();
    let points: Arc<Vec<[f64; 2]>> = Arc::new(
        fc["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let ring = f["geometry"]["coordinates"][0].as_array().unwrap();
                let xs: Vec<f64> = ring.iter().map(|p| p[0].as_f64().unwrap()).collect();
                let ys: Vec<f64> = ring.iter().map(|p| p[1].as_f64().unwrap()).collect();
                let mid = |v: &[f64]| {
                    (v.iter().cloned().fold(f64::MAX, f64::min) + v.iter().cloned().fold(f64::MIN, f64::max)) / 2.0
                };
                [mid(&xs), mid(&ys)]
            })
            .collect(),
    );
    let tag = format!("h{}", std::process::id());

    // 1. As fast as 64 clients can.
    let deadline = Instant::now() + Duration::from_secs(10);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..64 {
        let (http, csrf, base, points, counter, tag) =
            (http.clone(), csrf.clone(), base.to_string(), points.clone(), counter.clone(), tag.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let k = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t0 = Instant::now();
                let r = http
                    .post(format!("{base}/api/v1/grid/cases"))
                    .header("x-csrf-token", &csrf)
                    .json(&event(&points, k, &tag))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
                lat.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let n = all.len();
    println!(
        "grid intake over HTTP, 64 clients, 10 s: {n} events = {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms (target >= 2000 events/s)",
        n as f64 / 10.0,
        pct(all.clone(), 0.5),
        pct(all, 0.99)
    );

    // 2. Open loop at 1,000 events/s.
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut handles = Vec::with_capacity(10_000);
    let start = counter.load(std::sync::atomic::Ordering::Relaxed) + 1_000_000;
    for k in 0..10_000 {
        tick.tick().await;
        let (http, csrf, base, points, tag) =
            (http.clone(), csrf.clone(), base.to_string(), points.clone(), tag.clone());
        handles.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let r = http
                .post(format!("{base}/api/v1/grid/cases"))
                .header("x-csrf-token", &csrf)
                .json(&event(&points, start + k, &tag))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), t0.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut lat = Vec::new();
    let mut bad = 0;
    for h in handles {
        let (s, l) = h.await.unwrap();
        if s != 201 {
            bad += 1;
        }
        lat.push(l);
    }
    // Each second's p99, to tell a steady state from a stall.
    let seconds: Vec<String> = lat.chunks(1_000).map(|c| format!("{:.0}", pct(c.to_vec(), 0.99))).collect();
    println!(
        "grid intake over HTTP at 1,000 events/s for 10 s: p50 {:.1} ms, p99 {:.1} ms, {bad} failed (target p99 < 50 ms); p99 of each second: {} ms",
        pct(lat.clone(), 0.5),
        pct(lat, 0.99),
        seconds.join(" / ")
    );
}
