//! GeoJSON (RFC 7946) in and out for grid boundaries.
//!
//! Input is checked, not repaired: rings must be closed and have at least four positions,
//! positions must be real longitudes/latitudes, geometries must be Polygon or MultiPolygon.
//! Each problem names the feature (by index and its `code` property) so a person can fix the
//! file. Coordinates may be given in GCJ-02 or BD-09 and are converted to WGS84.

use serde_json::{Map, Value, json};

use crate::coord::{Crs, LonLat, to_wgs84};
use crate::shape::{Polygon, Ring, Shape};

/// Limits that keep a hostile file from exhausting memory.
pub const MAX_FEATURES: usize = 50_000;
pub const MAX_POSITIONS: usize = 5_000_000;

/// One feature: its properties and its boundary.
#[derive(Debug, Clone)]
pub struct Feature {
    pub properties: Map<String, Value>,
    pub shape: Shape,
}

impl Feature {
    pub fn prop(&self, key: &str) -> Option<String> {
        match self.properties.get(key)? {
            Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A problem with one feature (or the whole file when `feature` is `None`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct FeatureProblem {
    pub feature: Option<usize>,
    pub code: Option<String>,
    pub message: String,
}

fn problem(feature: Option<usize>, code: Option<String>, message: impl Into<String>) -> FeatureProblem {
    FeatureProblem { feature, code, message: message.into() }
}

/// Reads a FeatureCollection, a single Feature or a bare geometry. Returns the features read
/// and every problem found (a feature with a problem is not returned).
pub fn parse(text: &str, crs: Crs) -> Result<(Vec<Feature>, Vec<FeatureProblem>), FeatureProblem> {
    let v: Value = serde_json::from_str(text).map_err(|e| problem(None, None, format!("not valid JSON: {e}")))?;
    let features: Vec<Value> = match v.get("type").and_then(Value::as_str) {
        Some("FeatureCollection") => match v.get("features") {
            Some(Value::Array(a)) => a.clone(),
            _ => return Err(problem(None, None, "a FeatureCollection needs a \"features\" array")),
        },
        Some("Feature") => vec![v],
        Some("Polygon" | "MultiPolygon") => vec![json!({"type": "Feature", "properties": {}, "geometry": v})],
        Some(t) => {
            return Err(problem(
                None,
                None,
                format!("GeoJSON type '{t}' is not a FeatureCollection, Feature or (Multi)Polygon"),
            ));
        }
        None => return Err(problem(None, None, "not GeoJSON: there is no \"type\" member")),
    };
    if features.len() > MAX_FEATURES {
        return Err(problem(None, None, format!("{} features; at most {MAX_FEATURES} per file", features.len())));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut positions = 0usize;
    for (i, f) in features.iter().enumerate() {
        let properties = match f.get("properties") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let code = properties.get("code").and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        match read_geometry(f.get("geometry"), crs, &mut positions) {
            Ok(shape) => out.push(Feature { properties, shape }),
            Err(m) => problems.push(problem(Some(i), code, m)),
        }
        if positions > MAX_POSITIONS {
            return Err(problem(None, None, format!("more than {MAX_POSITIONS} positions; split the file")));
        }
    }
    Ok((out, problems))
}

fn read_geometry(g: Option<&Value>, crs: Crs, positions: &mut usize) -> Result<Shape, String> {
    let g = g.filter(|g| !g.is_null()).ok_or("the feature has no geometry")?;
    let coords = g.get("coordinates").ok_or("the geometry has no coordinates")?;
    match g.get("type").and_then(Value::as_str) {
        Some("Polygon") => Ok(Shape { polygons: vec![read_polygon(coords, crs, positions, None)?] }),
        Some("MultiPolygon") => {
            let parts = coords.as_array().ok_or("MultiPolygon coordinates must be an array of polygons")?;
            if parts.is_empty() {
                return Err("the MultiPolygon is empty".into());
            }
            let polygons = parts
                .iter()
                .enumerate()
                .map(|(k, p)| read_polygon(p, crs, positions, Some(k)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Shape { polygons })
        }
        Some(t) => Err(format!("geometry type '{t}' cannot be a grid boundary; use Polygon or MultiPolygon")),
        None => Err("the geometry has no type".into()),
    }
}

fn read_polygon(v: &Value, crs: Crs, positions: &mut usize, part: Option<usize>) -> Result<Polygon, String> {
    let where_ = |r: usize| match part {
        Some(p) => format!("polygon {} ring {}", p + 1, r + 1),
        None => format!("ring {}", r + 1),
    };
    let rings = v.as_array().ok_or("polygon coordinates must be an array of rings")?;
    if rings.is_empty() {
        return Err("the polygon has no rings".into());
    }
    let mut out = Vec::with_capacity(rings.len());
    for (r, ring) in rings.iter().enumerate() {
        let pts = ring.as_array().ok_or_else(|| format!("{} is not an array of positions", where_(r)))?;
        *positions += pts.len();
        if *positions > MAX_POSITIONS {
            return Err(format!("more than {MAX_POSITIONS} positions"));
        }
        let mut ring_out: Ring = Vec::with_capacity(pts.len());
        for (k, p) in pts.iter().enumerate() {
            let xy = p
                .as_array()
                .filter(|a| a.len() >= 2)
                .ok_or_else(|| format!("{} position {} is not [longitude, latitude]", where_(r), k + 1))?;
            let (Some(lon), Some(lat)) = (xy[0].as_f64(), xy[1].as_f64()) else {
                return Err(format!("{} position {} is not a pair of numbers", where_(r), k + 1));
            };
            let ll =
                LonLat::checked(lon, lat).map_err(|e| format!("{} position {}: {}", where_(r), k + 1, e.message))?;
            let w = to_wgs84(crs, ll);
            ring_out.push([w.lon, w.lat]);
        }
        if ring_out.len() < 4 {
            return Err(format!("{} has {} positions; a ring needs at least 4 (closed)", where_(r), ring_out.len()));
        }
        // Closure is checked on the input, before conversion (the conversion keeps it anyway).
        let (first, last) = (&pts[0], &pts[pts.len() - 1]);
        if first != last {
            return Err(format!("{} is not closed: its first and last positions differ", where_(r)));
        }
        let n = ring_out.len();
        ring_out[n - 1] = ring_out[0];
        out.push(ring_out);
    }
    Ok(out)
}

/// A feature for export: WGS84 coordinates rounded to 7 decimals (about 1 cm).
pub fn feature(shape: &Shape, properties: Map<String, Value>) -> Value {
    let round = |x: f64| (x * 1e7).round() / 1e7;
    let poly = |p: &Polygon| -> Value {
        Value::Array(
            p.iter().map(|r| Value::Array(r.iter().map(|c| json!([round(c[0]), round(c[1])])).collect())).collect(),
        )
    };
    let geometry = if shape.polygons.len() == 1 {
        json!({"type": "Polygon", "coordinates": poly(&shape.polygons[0])})
    } else {
        json!({"type": "MultiPolygon", "coordinates": Value::Array(shape.polygons.iter().map(poly).collect())})
    };
    json!({"type": "Feature", "properties": properties, "geometry": geometry})
}

pub fn collection(features: Vec<Value>) -> Value {
    json!({"type": "FeatureCollection", "features": features})
}

#[cfg(test)]
mod tests {
    use super::*;

    const SQUARE: &str = r#"{"type":"FeatureCollection","features":[
        {"type":"Feature","properties":{"code":"a","name":"甲"},"geometry":{"type":"Polygon","coordinates":[[[117,36.6],[117.01,36.6],[117.01,36.61],[117,36.61],[117,36.6]]]}},
        {"type":"Feature","properties":{"code":"b"},"geometry":{"type":"Polygon","coordinates":[[[117,36.6],[117.01,36.6],[117.01,36.61]]]}},
        {"type":"Feature","properties":{"code":"c"},"geometry":{"type":"Polygon","coordinates":[[[117,36.6],[117.01,36.6],[117.01,36.61],[117,36.62]]]}},
        {"type":"Feature","properties":{"code":"d"},"geometry":{"type":"Point","coordinates":[117,36.6]}},
        {"type":"Feature","properties":{"code":"e"},"geometry":{"type":"Polygon","coordinates":[[[117,36.6],[200,36.6],[117.01,36.61],[117,36.6]]]}}
    ]}"#;

    #[test]
    fn reads_good_features_and_names_each_bad_one() {
        let (ok, problems) = parse(SQUARE, Crs::Wgs84).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].prop("name").as_deref(), Some("甲"));
        let msgs: Vec<(Option<String>, String)> = problems.into_iter().map(|p| (p.code, p.message)).collect();
        assert_eq!(msgs.len(), 4, "{msgs:?}");
        assert!(msgs[0].1.contains("at least 4"), "{msgs:?}");
        assert!(msgs[1].1.contains("not closed"), "{msgs:?}");
        assert!(msgs[2].1.contains("'Point'"), "{msgs:?}");
        assert!(msgs[3].1.contains("longitude 200"), "{msgs:?}");
        assert_eq!(msgs[3].0.as_deref(), Some("e"));
    }

    #[test]
    fn malformed_files_get_one_clear_error() {
        assert!(parse("{", Crs::Wgs84).unwrap_err().message.contains("not valid JSON"));
        assert!(parse("{\"a\":1}", Crs::Wgs84).unwrap_err().message.contains("no \"type\""));
        assert!(parse("{\"type\":\"FeatureCollection\"}", Crs::Wgs84).unwrap_err().message.contains("features"));
    }

    #[test]
    fn export_reads_back_the_same() {
        let (ok, _) = parse(SQUARE, Crs::Wgs84).unwrap();
        let text = collection(vec![feature(&ok[0].shape, ok[0].properties.clone())]).to_string();
        let (again, problems) = parse(&text, Crs::Wgs84).unwrap();
        assert!(problems.is_empty());
        assert_eq!(again[0].shape, ok[0].shape);
    }

    #[test]
    fn gcj02_input_is_converted() {
        let (ok, _) = parse(SQUARE, Crs::Gcj02).unwrap();
        let p = ok[0].shape.polygons[0][0][0];
        assert!((p[0] - 117.0).abs() > 1e-4, "converted {p:?}");
        assert_eq!(ok[0].shape.polygons[0][0].first(), ok[0].shape.polygons[0][0].last());
    }
}
