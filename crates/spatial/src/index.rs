//! The point → grid index: answers "which grid is this point in?" in well under a microsecond.
//!
//! Two levels. A uniform cell grid over the extent of all shapes lists, per cell, the shapes
//! whose box meets it; a cell wholly inside one shape (no edge crosses it) answers at once. Each
//! shape keeps its edges sorted into horizontal bands, so the even-odd ray test looks only at
//! the few edges in the point's band instead of every edge of the polygon.

use crate::shape::{BBox, Shape};

struct Prepared {
    bbox: BBox,
    min_lat: f64,
    band_h: f64,
    /// `bands[b]..bands[b + 1]` indexes `edges` for band `b`.
    bands: Vec<u32>,
    /// Edges as (x1, y1, x2, y2).
    edges: Vec<[f64; 4]>,
}

impl Prepared {
    fn new(shape: &Shape) -> Prepared {
        let bbox = shape.bbox();
        let mut all: Vec<[f64; 4]> = Vec::new();
        for ring in shape.polygons.iter().flatten() {
            let n = ring.len();
            if n < 2 {
                continue;
            }
            for i in 0..n {
                let (a, b) = (ring[i], ring[(i + 1) % n]);
                if a == b || a[1] == b[1] {
                    continue; // zero-length and horizontal edges never cross a horizontal ray
                }
                all.push([a[0], a[1], b[0], b[1]]);
            }
        }
        let nb = (all.len() / 3).clamp(1, 256);
        let height = (bbox.max_lat - bbox.min_lat).max(f64::MIN_POSITIVE);
        let band_h = height / nb as f64;
        let mut lists: Vec<Vec<[f64; 4]>> = vec![Vec::new(); nb];
        for e in &all {
            let (lo, hi) = (e[1].min(e[3]), e[1].max(e[3]));
            let b0 = (((lo - bbox.min_lat) / band_h) as usize).min(nb - 1);
            let b1 = (((hi - bbox.min_lat) / band_h) as usize).min(nb - 1);
            for l in &mut lists[b0..=b1] {
                l.push(*e);
            }
        }
        let mut bands = Vec::with_capacity(nb + 1);
        let mut edges = Vec::new();
        bands.push(0);
        for l in lists {
            edges.extend(l);
            bands.push(edges.len() as u32);
        }
        Prepared { bbox, min_lat: bbox.min_lat, band_h, bands, edges }
    }

    #[inline]
    fn contains(&self, x: f64, y: f64) -> bool {
        let nb = self.bands.len() - 1;
        let b = (((y - self.min_lat) / self.band_h) as usize).min(nb - 1);
        let mut inside = false;
        for e in &self.edges[self.bands[b] as usize..self.bands[b + 1] as usize] {
            if (e[1] > y) != (e[3] > y) && x < e[0] + (y - e[1]) * (e[2] - e[0]) / (e[3] - e[1]) {
                inside = !inside;
            }
        }
        inside
    }

    /// Whether any edge meets the box (then the box is not wholly on one side).
    fn edge_meets(&self, b: &BBox) -> bool {
        self.edges.iter().any(|e| segment_meets_box(e, b))
    }
}

fn segment_meets_box(e: &[f64; 4], b: &BBox) -> bool {
    let (x1, y1, x2, y2) = (e[0], e[1], e[2], e[3]);
    if x1.max(x2) < b.min_lon || x1.min(x2) > b.max_lon || y1.max(y2) < b.min_lat || y1.min(y2) > b.max_lat {
        return false;
    }
    // Liang–Barsky clipping of the segment against the box.
    let (dx, dy) = (x2 - x1, y2 - y1);
    let (mut t0, mut t1) = (0.0f64, 1.0f64);
    for (p, q) in [(-dx, x1 - b.min_lon), (dx, b.max_lon - x1), (-dy, y1 - b.min_lat), (dy, b.max_lat - y1)] {
        if p == 0.0 {
            if q < 0.0 {
                return false;
            }
        } else {
            let r = q / p;
            if p < 0.0 {
                t0 = t0.max(r);
            } else {
                t1 = t1.min(r);
            }
            if t0 > t1 {
                return false;
            }
        }
    }
    true
}

/// What a cell of the index says about the points in it.
#[derive(Clone, Copy)]
enum Cell {
    /// Candidates `items[from..to]` must be tested.
    Test { from: u32, to: u32 },
    /// The whole cell lies inside this shape.
    Inside(u32),
}

/// A point → key index over non-overlapping shapes (where shapes overlap, the first added wins).
pub struct GridIndex<K> {
    keys: Vec<K>,
    shapes: Vec<Prepared>,
    extent: BBox,
    nx: usize,
    ny: usize,
    cw: f64,
    ch: f64,
    cells: Vec<Cell>,
    items: Vec<u32>,
}

impl<K> GridIndex<K> {
    /// Builds the index. Cost is roughly linear in the number of edges.
    pub fn build(entries: impl IntoIterator<Item = (K, Shape)>) -> GridIndex<K> {
        let mut keys = Vec::new();
        let mut shapes = Vec::new();
        let mut extent = BBox::EMPTY;
        for (k, s) in entries {
            let p = Prepared::new(&s);
            if p.bbox.is_empty() {
                continue;
            }
            extent.union(&p.bbox);
            keys.push(k);
            shapes.push(p);
        }
        if shapes.is_empty() {
            return GridIndex {
                keys,
                shapes,
                extent,
                nx: 0,
                ny: 0,
                cw: 1.0,
                ch: 1.0,
                cells: Vec::new(),
                items: Vec::new(),
            };
        }
        // About eight cells per shape, shaped like the extent.
        let target = (shapes.len() * 8).clamp(16, 4_000_000) as f64;
        let w = (extent.max_lon - extent.min_lon).max(1e-9);
        let h = (extent.max_lat - extent.min_lat).max(1e-9);
        let nx = ((target * w / h).sqrt().ceil() as usize).clamp(1, 8192);
        let ny = ((target / nx as f64).ceil() as usize).clamp(1, 8192);
        let (cw, ch) = (w / nx as f64, h / ny as f64);
        let mut lists: Vec<Vec<u32>> = vec![Vec::new(); nx * ny];
        for (i, p) in shapes.iter().enumerate() {
            let x0 = (((p.bbox.min_lon - extent.min_lon) / cw) as usize).min(nx - 1);
            let x1 = (((p.bbox.max_lon - extent.min_lon) / cw) as usize).min(nx - 1);
            let y0 = (((p.bbox.min_lat - extent.min_lat) / ch) as usize).min(ny - 1);
            let y1 = (((p.bbox.max_lat - extent.min_lat) / ch) as usize).min(ny - 1);
            for y in y0..=y1 {
                for x in x0..=x1 {
                    lists[y * nx + x].push(i as u32);
                }
            }
        }
        let mut cells = Vec::with_capacity(nx * ny);
        let mut items = Vec::new();
        for (c, list) in lists.into_iter().enumerate() {
            let (cx, cy) = (c % nx, c / nx);
            let cell = BBox {
                min_lon: extent.min_lon + cx as f64 * cw,
                min_lat: extent.min_lat + cy as f64 * ch,
                max_lon: extent.min_lon + (cx + 1) as f64 * cw,
                max_lat: extent.min_lat + (cy + 1) as f64 * ch,
            };
            let [mx, my] = cell.center();
            let whole = list.iter().copied().find(|&i| {
                let p = &shapes[i as usize];
                p.contains(mx, my) && !p.edge_meets(&cell)
            });
            match whole {
                Some(i) => cells.push(Cell::Inside(i)),
                None => {
                    let from = items.len() as u32;
                    items.extend(list);
                    cells.push(Cell::Test { from, to: items.len() as u32 });
                }
            }
        }
        GridIndex { keys, shapes, extent, nx, ny, cw, ch, cells, items }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of the shape containing the point, if any.
    #[inline]
    pub fn lookup(&self, lon: f64, lat: f64) -> Option<&K> {
        let e = &self.extent;
        if !(lon >= e.min_lon && lon <= e.max_lon && lat >= e.min_lat && lat <= e.max_lat) {
            return None; // also refuses NaN
        }
        let x = (((lon - e.min_lon) / self.cw) as usize).min(self.nx - 1);
        let y = (((lat - e.min_lat) / self.ch) as usize).min(self.ny - 1);
        match self.cells[y * self.nx + x] {
            Cell::Inside(i) => Some(&self.keys[i as usize]),
            Cell::Test { from, to } => {
                for &i in &self.items[from as usize..to as usize] {
                    let p = &self.shapes[i as usize];
                    if lon >= p.bbox.min_lon
                        && lon <= p.bbox.max_lon
                        && lat >= p.bbox.min_lat
                        && lat <= p.bbox.max_lat
                        && p.contains(lon, lat)
                    {
                        return Some(&self.keys[i as usize]);
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    #[test]
    fn index_agrees_with_the_plain_test_everywhere() {
        let area = BBox { min_lon: 116.9, min_lat: 36.6, max_lon: 117.2, max_lat: 36.75 };
        let shapes = synth::tessellate(area, 20, 12, 6, 7);
        let idx = GridIndex::build(shapes.iter().cloned().enumerate());
        assert_eq!(idx.len(), 240);
        let mut hits = 0;
        for (i, [lon, lat]) in synth::points(area, 20_000, 3).into_iter().enumerate() {
            let want = shapes.iter().position(|s| s.contains(lon, lat));
            let got = idx.lookup(lon, lat).copied();
            assert_eq!(got, want, "point {i} ({lon}, {lat})");
            hits += usize::from(got.is_some());
        }
        // The tessellation covers its area, so nearly every point lands somewhere.
        assert!(hits > 19_000, "{hits}");
        assert_eq!(idx.lookup(0.0, 0.0), None);
        assert_eq!(idx.lookup(f64::NAN, 36.7), None);
    }

    #[test]
    fn holes_and_multi_polygons() {
        let ring = |x0: f64, y0: f64, x1: f64, y1: f64| vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]];
        let donut = Shape {
            polygons: vec![
                vec![ring(0.0, 0.0, 10.0, 10.0), ring(4.0, 4.0, 6.0, 6.0)],
                vec![ring(20.0, 0.0, 22.0, 2.0)],
            ],
        };
        let idx = GridIndex::build([("donut", donut)]);
        assert_eq!(idx.lookup(1.0, 1.0), Some(&"donut"));
        assert_eq!(idx.lookup(5.0, 5.0), None);
        assert_eq!(idx.lookup(21.0, 1.0), Some(&"donut"));
        assert_eq!(idx.lookup(15.0, 1.0), None);
    }
}
