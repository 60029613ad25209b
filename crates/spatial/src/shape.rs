//! Area shapes (a grid's boundary): one or more polygons with holes, WGS84 lon/lat degrees.

use serde::{Deserialize, Serialize};

/// A ring of `[lon, lat]` positions; stored closed (first == last).
pub type Ring = Vec<[f64; 2]>;

/// One polygon: the exterior ring, then any holes.
pub type Polygon = Vec<Ring>;

/// A grid's boundary: a multi-polygon (usually a single polygon).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Shape {
    pub polygons: Vec<Polygon>,
}

/// An axis-aligned box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

impl BBox {
    pub const EMPTY: BBox =
        BBox { min_lon: f64::INFINITY, min_lat: f64::INFINITY, max_lon: f64::NEG_INFINITY, max_lat: f64::NEG_INFINITY };

    pub fn add(&mut self, p: [f64; 2]) {
        self.min_lon = self.min_lon.min(p[0]);
        self.min_lat = self.min_lat.min(p[1]);
        self.max_lon = self.max_lon.max(p[0]);
        self.max_lat = self.max_lat.max(p[1]);
    }

    pub fn union(&mut self, o: &BBox) {
        self.min_lon = self.min_lon.min(o.min_lon);
        self.min_lat = self.min_lat.min(o.min_lat);
        self.max_lon = self.max_lon.max(o.max_lon);
        self.max_lat = self.max_lat.max(o.max_lat);
    }

    pub fn is_empty(&self) -> bool {
        self.min_lon > self.max_lon
    }

    pub fn intersects(&self, o: &BBox) -> bool {
        self.min_lon <= o.max_lon && o.min_lon <= self.max_lon && self.min_lat <= o.max_lat && o.min_lat <= self.max_lat
    }

    pub fn center(&self) -> [f64; 2] {
        [(self.min_lon + self.max_lon) / 2.0, (self.min_lat + self.max_lat) / 2.0]
    }
}

impl Shape {
    pub fn polygon(exterior: Ring) -> Shape {
        Shape { polygons: vec![vec![exterior]] }
    }

    pub fn bbox(&self) -> BBox {
        let mut b = BBox::EMPTY;
        for p in self.polygons.iter().flatten().flatten() {
            b.add(*p);
        }
        b
    }

    pub fn vertex_count(&self) -> usize {
        self.polygons.iter().flatten().map(|r| r.len()).sum()
    }

    /// Even-odd point-in-shape test over every ring (exact, no index; see `GridIndex` for speed).
    pub fn contains(&self, lon: f64, lat: f64) -> bool {
        let mut inside = false;
        for ring in self.polygons.iter().flatten() {
            let n = ring.len();
            if n < 2 {
                continue;
            }
            let mut j = n - 1;
            for i in 0..n {
                let (a, b) = (ring[i], ring[j]);
                if (a[1] > lat) != (b[1] > lat) && lon < a[0] + (lat - a[1]) * (b[0] - a[0]) / (b[1] - a[1]) {
                    inside = !inside;
                }
                j = i;
            }
        }
        inside
    }

    /// A point inside the shape for labels and map markers: the bbox centre when it is inside,
    /// else the midpoint of the widest horizontal chord through the exterior's middle.
    pub fn label_point(&self) -> [f64; 2] {
        let b = self.bbox();
        let c = b.center();
        if self.contains(c[0], c[1]) {
            return c;
        }
        let y = c[1];
        let mut xs: Vec<f64> = Vec::new();
        for ring in self.polygons.iter().flatten() {
            for w in ring.windows(2) {
                let (a, bb) = (w[0], w[1]);
                if (a[1] > y) != (bb[1] > y) {
                    xs.push(a[0] + (y - a[1]) * (bb[0] - a[0]) / (bb[1] - a[1]));
                }
            }
        }
        xs.sort_by(f64::total_cmp);
        xs.chunks(2)
            .filter(|p| p.len() == 2)
            .max_by(|p, q| (p[1] - p[0]).total_cmp(&(q[1] - q[0])))
            .map(|p| [(p[0] + p[1]) / 2.0, y])
            .unwrap_or(c)
    }
}
