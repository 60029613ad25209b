//! Point → grid lookups against 5,000 grid polygons of realistic shape (a jittered city-wide
//! tessellation whose shared edges wiggle, 80 vertices per grid), on one core. Also writes the
//! same polygons and points to a file for the shapely STRtree peer (`bench/peers/shapely_lookup.py`).

use std::time::Instant;

use spatial::{BBox, GridIndex, synth};

/// Jinan's urban core, roughly.
pub const AREA: BBox = BBox { min_lon: 116.80, min_lat: 36.55, max_lon: 117.25, max_lat: 36.80 };

pub fn run(n: usize, out: Option<&str>) {
    let shapes = synth::tessellate(AREA, 100, 50, 20, 42);
    let vertices: usize = shapes.iter().map(|s| s.vertex_count()).sum();
    let points = synth::points(AREA, n, 7);
    if let Some(path) = out {
        let doc = serde_json::json!({
            "polygons": shapes.iter().map(|s| &s.polygons[0][0]).collect::<Vec<_>>(),
            "points": points,
        });
        std::fs::write(path, doc.to_string()).expect("write the peer's input");
    }
    let t = Instant::now();
    let idx = GridIndex::build(shapes.into_iter().enumerate());
    let build = t.elapsed();
    // Warm up, then time; the checksum keeps the work from being optimised away.
    let mut found = 0usize;
    let mut sum = 0usize;
    for p in points.iter().take(10_000) {
        sum = sum.wrapping_add(idx.lookup(p[0], p[1]).copied().unwrap_or(0));
    }
    let t = Instant::now();
    for p in &points {
        if let Some(k) = idx.lookup(p[0], p[1]) {
            found += 1;
            sum = sum.wrapping_add(*k);
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "grid index: {} grids, {} vertices, built in {:.0} ms; {n} lookups ({found} inside) in {:.3} s = {:.0} lookups/s on one core (checksum {sum})",
        idx.len(),
        vertices,
        build.as_secs_f64() * 1e3,
        secs,
        n as f64 / secs
    );
}
