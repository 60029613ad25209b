//! Geometry checks at import: invalid polygons (self-intersections, bad holes), and overlaps and
//! gaps between sibling grids. Problems are reported with their size, never silently repaired.
//!
//! Areas are computed in a local equirectangular projection (metres) around the set's mean
//! latitude — within 0.1 % over a city, plenty to tell a sliver from a real overlap.

use geo::{Area, BooleanOps, Coord, LineString, MultiPolygon, Validation};

use crate::shape::{BBox, Shape};

/// Overlaps and gaps smaller than this (m²) are drawing noise and not reported.
pub const MIN_AREA_M2: f64 = 1.0;

/// One problem found by the checks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct GeometryProblem {
    /// `invalid`, `overlap`, `gap` or `outside_parent`.
    pub kind: String,
    /// The grid codes concerned.
    pub codes: Vec<String>,
    /// The area concerned in m² (0 for invalid geometry).
    pub area_m2: f64,
    pub message: String,
}

struct Projection {
    lat0: f64,
    kx: f64,
}

impl Projection {
    fn around(shapes: &[&Shape]) -> Projection {
        let mut b = BBox::EMPTY;
        for s in shapes {
            b.union(&s.bbox());
        }
        let lat0 = if b.is_empty() { 0.0 } else { b.center()[1] };
        Projection { lat0, kx: 111_320.0 * lat0.to_radians().cos() }
    }

    fn project(&self, s: &Shape) -> MultiPolygon<f64> {
        let ring = |r: &Vec<[f64; 2]>| -> LineString<f64> {
            LineString::new(r.iter().map(|p| Coord { x: p[0] * self.kx, y: (p[1] - self.lat0) * 110_574.0 }).collect())
        };
        MultiPolygon::new(
            s.polygons
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| geo::Polygon::new(ring(&p[0]), p[1..].iter().map(ring).collect()))
                .collect(),
        )
    }
}

/// Why a single shape is not a valid polygon, if it is not (self-intersections, holes outside
/// the exterior, repeated rings…).
pub fn invalid_reasons(shape: &Shape) -> Vec<String> {
    let p = Projection::around(&[shape]);
    p.project(shape).validation_errors().into_iter().map(|e| e.to_string()).collect()
}

/// Checks a set of sibling grids (same parent): each valid, no two overlapping, none outside the
/// parent, and no gap left inside the parent (or, without a parent boundary, no hole enclosed
/// by the siblings together).
pub fn check_siblings(siblings: &[(String, &Shape)], parent: Option<(&str, &Shape)>) -> Vec<GeometryProblem> {
    let mut all: Vec<&Shape> = siblings.iter().map(|(_, s)| *s).collect();
    if let Some((_, p)) = parent {
        all.push(p);
    }
    let proj = Projection::around(&all);
    let mut out = Vec::new();
    let mut valid: Vec<(usize, MultiPolygon<f64>, BBox)> = Vec::new();
    for (i, (code, shape)) in siblings.iter().enumerate() {
        let mp = proj.project(shape);
        let errs = mp.validation_errors();
        if errs.is_empty() {
            valid.push((i, mp, shape.bbox()));
        } else {
            out.push(GeometryProblem {
                kind: "invalid".into(),
                codes: vec![code.clone()],
                area_m2: 0.0,
                message: format!(
                    "grid {code} is not a valid polygon: {}",
                    errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; ")
                ),
            });
        }
    }
    // Overlaps: boxes first, then the exact intersection.
    let mut order: Vec<usize> = (0..valid.len()).collect();
    order.sort_by(|&a, &b| valid[a].2.min_lon.total_cmp(&valid[b].2.min_lon));
    for (k, &a) in order.iter().enumerate() {
        for &b in &order[k + 1..] {
            if valid[b].2.min_lon > valid[a].2.max_lon {
                break;
            }
            if !valid[a].2.intersects(&valid[b].2) {
                continue;
            }
            let area = valid[a].1.intersection(&valid[b].1).unsigned_area();
            if area >= MIN_AREA_M2 {
                let (ca, cb) = (&siblings[valid[a].0].0, &siblings[valid[b].0].0);
                out.push(GeometryProblem {
                    kind: "overlap".into(),
                    codes: vec![ca.clone(), cb.clone()],
                    area_m2: area.round(),
                    message: format!("grids {ca} and {cb} overlap by {:.0} m²", area),
                });
            }
        }
    }
    if valid.is_empty() {
        return out;
    }
    let union = valid.iter().skip(1).fold(valid[0].1.clone(), |acc, (_, mp, _)| acc.union(mp));
    match parent {
        Some((pcode, pshape)) => {
            let parent = proj.project(pshape);
            if !parent.is_valid() {
                return out;
            }
            for (i, mp, _) in &valid {
                let outside = mp.difference(&parent).unsigned_area();
                if outside >= MIN_AREA_M2 {
                    let code = &siblings[*i].0;
                    out.push(GeometryProblem {
                        kind: "outside_parent".into(),
                        codes: vec![code.clone(), pcode.to_string()],
                        area_m2: outside.round(),
                        message: format!("{:.0} m² of grid {code} lie outside its parent {pcode}", outside),
                    });
                }
            }
            let gap = parent.difference(&union).unsigned_area();
            if gap >= MIN_AREA_M2 {
                out.push(GeometryProblem {
                    kind: "gap".into(),
                    codes: vec![pcode.to_string()],
                    area_m2: gap.round(),
                    message: format!("{:.0} m² of {pcode} are covered by none of its grids", gap),
                });
            }
        }
        None => {
            // Holes in the union are areas enclosed by the siblings but covered by none.
            let gap: f64 = union
                .0
                .iter()
                .flat_map(|p| p.interiors())
                .map(|r| geo::Polygon::new(r.clone(), vec![]).unsigned_area())
                .sum();
            if gap >= MIN_AREA_M2 {
                out.push(GeometryProblem {
                    kind: "gap".into(),
                    codes: siblings.iter().map(|(c, _)| c.clone()).collect(),
                    area_m2: gap.round(),
                    message: format!("{:.0} m² enclosed by these grids are covered by none of them", gap),
                });
            }
        }
    }
    out
}

/// Area of a shape in m².
pub fn area_m2(shape: &Shape) -> f64 {
    Projection::around(&[shape]).project(shape).unsigned_area()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth;

    fn sq(x0: f64, y0: f64, x1: f64, y1: f64) -> Shape {
        Shape::polygon(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
    }

    #[test]
    fn a_clean_tessellation_has_no_problems() {
        let area = BBox { min_lon: 117.0, min_lat: 36.6, max_lon: 117.02, max_lat: 36.62 };
        let shapes = synth::tessellate(area, 4, 3, 8, 1);
        let sib: Vec<(String, &Shape)> = shapes.iter().enumerate().map(|(i, s)| (format!("g{i}"), s)).collect();
        let parent = sq(117.0, 36.6, 117.02, 36.62);
        assert_eq!(check_siblings(&sib, Some(("c", &parent))), vec![]);
        assert_eq!(check_siblings(&sib, None), vec![]);
        for s in &shapes {
            assert!(invalid_reasons(s).is_empty());
        }
    }

    #[test]
    fn overlaps_gaps_bowties_and_strays_are_reported() {
        let a = sq(117.0, 36.6, 117.01, 36.61);
        let b = sq(117.009, 36.6, 117.02, 36.61); // overlaps a by ~0.001° × 0.01°
        let c = sq(117.0, 36.612, 117.02, 36.62); // leaves a strip uncovered
        let bowtie =
            Shape::polygon(vec![[117.0, 36.6], [117.01, 36.61], [117.01, 36.6], [117.0, 36.61], [117.0, 36.6]]);
        let stray = sq(117.03, 36.6, 117.04, 36.61);
        let parent = sq(117.0, 36.6, 117.02, 36.62);
        let sib = vec![
            ("a".to_string(), &a),
            ("b".to_string(), &b),
            ("c".to_string(), &c),
            ("x".to_string(), &bowtie),
            ("s".to_string(), &stray),
        ];
        let found = check_siblings(&sib, Some(("p", &parent)));
        let kinds: Vec<(&str, Vec<String>)> = found.iter().map(|p| (p.kind.as_str(), p.codes.clone())).collect();
        assert!(kinds.contains(&("invalid", vec!["x".into()])), "{found:?}");
        assert!(kinds.contains(&("overlap", vec!["a".into(), "b".into()])), "{found:?}");
        assert!(kinds.contains(&("outside_parent", vec!["s".into(), "p".into()])), "{found:?}");
        assert!(kinds.iter().any(|k| k.0 == "gap"), "{found:?}");
        let overlap = found.iter().find(|p| p.kind == "overlap").unwrap();
        // 0.001° of longitude × 0.01° of latitude at 36.6° N is about 89 m × 1106 m.
        assert!((90_000.0..110_000.0).contains(&overlap.area_m2), "{}", overlap.area_m2);
        assert!(!invalid_reasons(&bowtie).is_empty());
    }

    #[test]
    fn holes_between_siblings_are_gaps_without_a_parent() {
        // Four squares around an empty middle.
        let s = [
            sq(0.0, 0.0, 0.03, 0.01),
            sq(0.0, 0.02, 0.03, 0.03),
            sq(0.0, 0.01, 0.01, 0.02),
            sq(0.02, 0.01, 0.03, 0.02),
        ];
        let sib: Vec<(String, &Shape)> = s.iter().enumerate().map(|(i, x)| (i.to_string(), x)).collect();
        let found = check_siblings(&sib, None);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].kind, "gap");
    }
}
