//! Deterministic synthetic grids: a jittered lattice of cells whose shared edges wiggle like
//! streets and rivers do, so neighbours share boundaries exactly (no gaps, no overlaps). Used by
//! the demo city, the tests and the benchmarks.

use crate::shape::{BBox, Ring, Shape};

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A number in −1..1 from a seed and three coordinates.
fn noise(seed: u64, a: u64, b: u64, c: u64) -> f64 {
    let h = mix(seed ^ mix(a ^ mix(b ^ mix(c))));
    (h >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// Cuts `area` into `nx × ny` cells, each side of each cell drawn with `seg` segments.
/// Cells come row by row from the south-west corner.
pub fn tessellate(area: BBox, nx: usize, ny: usize, seg: usize, seed: u64) -> Vec<Shape> {
    let seg = seg.max(1);
    let (cw, ch) = ((area.max_lon - area.min_lon) / nx as f64, (area.max_lat - area.min_lat) / ny as f64);
    let vertex = |i: usize, j: usize| -> [f64; 2] {
        let mut x = area.min_lon + i as f64 * cw;
        let mut y = area.min_lat + j as f64 * ch;
        if i > 0 && i < nx {
            x += 0.2 * cw * noise(seed, 1, i as u64, j as u64);
        }
        if j > 0 && j < ny {
            y += 0.2 * ch * noise(seed, 2, i as u64, j as u64);
        }
        [x, y]
    };
    // The points of edge (kind, i, j) from its start to its end, both ends included.
    let edge = |kind: u64, i: usize, j: usize| -> Vec<[f64; 2]> {
        let (a, b) = if kind == 0 { (vertex(i, j), vertex(i + 1, j)) } else { (vertex(i, j), vertex(i, j + 1)) };
        let on_border = if kind == 0 { j == 0 || j == ny } else { i == 0 || i == nx };
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        // Unit-ish perpendicular scaled to the cell size.
        let (px, py) = if kind == 0 { (0.0, ch) } else { (cw, 0.0) };
        let mut pts = Vec::with_capacity(seg + 1);
        pts.push(a);
        for k in 1..seg {
            let t = k as f64 / seg as f64;
            let wiggle = if on_border {
                0.0
            } else {
                0.07 * (std::f64::consts::PI * t).sin() * noise(seed, 3 + kind, (i * 7919 + j) as u64, k as u64)
            };
            pts.push([a[0] + t * dx + wiggle * px, a[1] + t * dy + wiggle * py]);
        }
        pts.push(b);
        pts
    };
    let mut out = Vec::with_capacity(nx * ny);
    for j in 0..ny {
        for i in 0..nx {
            let mut ring: Ring = Vec::with_capacity(4 * seg + 1);
            let bottom = edge(0, i, j);
            ring.extend_from_slice(&bottom[..seg]);
            let right = edge(1, i + 1, j);
            ring.extend_from_slice(&right[..seg]);
            let mut top = edge(0, i, j + 1);
            top.reverse();
            ring.extend_from_slice(&top[..seg]);
            let mut left = edge(1, i, j);
            left.reverse();
            ring.extend_from_slice(&left[..seg]);
            ring.push(ring[0]);
            out.push(Shape::polygon(ring));
        }
    }
    out
}

/// `n` reproducible points spread over `area`.
pub fn points(area: BBox, n: usize, seed: u64) -> Vec<[f64; 2]> {
    (0..n as u64)
        .map(|k| {
            let u = (noise(seed, 9, k, 0) + 1.0) / 2.0;
            let v = (noise(seed, 9, k, 1) + 1.0) / 2.0;
            [area.min_lon + u * (area.max_lon - area.min_lon), area.min_lat + v * (area.max_lat - area.min_lat)]
        })
        .collect()
}
