//! Coordinate systems used in China and the conversions between them.
//!
//! Zhongshu stores WGS84 (GPS; CGCS2000 differs from it by centimetres, far below what phones
//! and city maps resolve, so the two are treated as one). Phones with Amap or Tencent maps report
//! GCJ-02, the obfuscated system every map licensed in mainland China uses; Baidu uses BD-09, a
//! further transform of GCJ-02. Input in either is converted here. Outside mainland China GCJ-02
//! equals WGS84 by definition.

use kernel::{Error, Result};
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// A coordinate reference system accepted on input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Crs {
    /// GPS, and the storage system.
    #[default]
    Wgs84,
    /// China Geodetic Coordinate System 2000 (treated as WGS84; they differ by centimetres).
    Cgcs2000,
    /// 国测局 GCJ-02 (Amap, Tencent, phones in China).
    Gcj02,
    /// Baidu BD-09.
    Bd09,
}

impl Crs {
    pub fn parse(s: &str) -> Result<Crs> {
        match s.trim().to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "wgs84" | "gps" | "epsg4326" => Ok(Crs::Wgs84),
            "cgcs2000" | "epsg4490" => Ok(Crs::Cgcs2000),
            "gcj02" | "amap" | "tencent" => Ok(Crs::Gcj02),
            "bd09" | "bd09ll" | "baidu" => Ok(Crs::Bd09),
            _ => Err(Error::validation(format!(
                "unknown coordinate system '{}': use wgs84, cgcs2000, gcj02 or bd09",
                s.trim()
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Crs::Wgs84 => "wgs84",
            Crs::Cgcs2000 => "cgcs2000",
            Crs::Gcj02 => "gcj02",
            Crs::Bd09 => "bd09",
        }
    }
}

/// A longitude/latitude pair in degrees.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LonLat {
    pub lon: f64,
    pub lat: f64,
}

impl LonLat {
    pub fn new(lon: f64, lat: f64) -> LonLat {
        LonLat { lon, lat }
    }

    /// Checks the pair is a real position: finite, longitude in −180..180, latitude in −90..90.
    pub fn checked(lon: f64, lat: f64) -> Result<LonLat> {
        if !lon.is_finite() || !lat.is_finite() {
            return Err(Error::validation("coordinates must be finite numbers"));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(Error::validation(format!("longitude {lon} is outside -180..180")));
        }
        if !(-90.0..=90.0).contains(&lat) {
            return Err(Error::validation(format!("latitude {lat} is outside -90..90")));
        }
        Ok(LonLat { lon, lat })
    }

    /// Great-circle distance in metres (haversine, mean Earth radius).
    pub fn distance_m(self, other: LonLat) -> f64 {
        const R: f64 = 6_371_008.8;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().asin()
    }
}

/// Converts a checked position in `from` to WGS84.
pub fn to_wgs84(from: Crs, p: LonLat) -> LonLat {
    match from {
        Crs::Wgs84 | Crs::Cgcs2000 => p,
        Crs::Gcj02 => gcj02_to_wgs84(p),
        Crs::Bd09 => gcj02_to_wgs84(bd09_to_gcj02(p)),
    }
}

/// Converts a WGS84 position to `to` (for maps that draw in GCJ-02 or BD-09).
pub fn from_wgs84(to: Crs, p: LonLat) -> LonLat {
    match to {
        Crs::Wgs84 | Crs::Cgcs2000 => p,
        Crs::Gcj02 => wgs84_to_gcj02(p),
        Crs::Bd09 => gcj02_to_bd09(wgs84_to_gcj02(p)),
    }
}

const A: f64 = 6_378_245.0;
const EE: f64 = 0.006_693_421_622_965_943;
const X_PI: f64 = PI * 3000.0 / 180.0;

/// Whether GCJ-02 shifts this point (the rough mainland-China box the transform is defined on).
pub fn in_china(p: LonLat) -> bool {
    (72.004..=137.8347).contains(&p.lon) && (0.8293..=55.8271).contains(&p.lat)
}

fn shift_lat(x: f64, y: f64) -> f64 {
    let mut r = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    r
}

fn shift_lon(x: f64, y: f64) -> f64 {
    let mut r = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * x.abs().sqrt();
    r += (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    r += (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0;
    r += (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    r
}

/// WGS84 → GCJ-02.
pub fn wgs84_to_gcj02(p: LonLat) -> LonLat {
    if !in_china(p) {
        return p;
    }
    let mut d_lat = shift_lat(p.lon - 105.0, p.lat - 35.0);
    let mut d_lon = shift_lon(p.lon - 105.0, p.lat - 35.0);
    let rad = p.lat / 180.0 * PI;
    let magic = 1.0 - EE * rad.sin() * rad.sin();
    let sqrt_magic = magic.sqrt();
    d_lat = (d_lat * 180.0) / ((A * (1.0 - EE)) / (magic * sqrt_magic) * PI);
    d_lon = (d_lon * 180.0) / (A / sqrt_magic * rad.cos() * PI);
    LonLat { lon: p.lon + d_lon, lat: p.lat + d_lat }
}

/// GCJ-02 → WGS84, by fixed-point iteration of the forward transform (error < 1e-9°, about
/// 0.1 mm; the usual one-step inverse is off by metres).
pub fn gcj02_to_wgs84(g: LonLat) -> LonLat {
    if !in_china(g) {
        return g;
    }
    let mut w = g;
    for _ in 0..30 {
        let t = wgs84_to_gcj02(w);
        let (dx, dy) = (t.lon - g.lon, t.lat - g.lat);
        w = LonLat { lon: w.lon - dx, lat: w.lat - dy };
        if dx.abs() < 1e-10 && dy.abs() < 1e-10 {
            break;
        }
    }
    w
}

/// GCJ-02 → BD-09.
pub fn gcj02_to_bd09(p: LonLat) -> LonLat {
    let (x, y) = (p.lon, p.lat);
    let z = (x * x + y * y).sqrt() + 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) + 0.000003 * (x * X_PI).cos();
    LonLat { lon: z * theta.cos() + 0.0065, lat: z * theta.sin() + 0.006 }
}

/// BD-09 → GCJ-02: Baidu's published inverse (off by up to a metre), refined by fixed-point
/// iteration of the forward transform.
pub fn bd09_to_gcj02(p: LonLat) -> LonLat {
    let (x, y) = (p.lon - 0.0065, p.lat - 0.006);
    let z = (x * x + y * y).sqrt() - 0.00002 * (y * X_PI).sin();
    let theta = y.atan2(x) - 0.000003 * (x * X_PI).cos();
    let mut g = LonLat { lon: z * theta.cos(), lat: z * theta.sin() };
    for _ in 0..30 {
        let t = gcj02_to_bd09(g);
        let (dx, dy) = (t.lon - p.lon, t.lat - p.lat);
        g = LonLat { lon: g.lon - dx, lat: g.lat - dy };
        if dx.abs() < 1e-10 && dy.abs() < 1e-10 {
            break;
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bd09_matches_baidus_published_example() {
        // Baidu's documented example: GCJ-02 (116.404, 39.915) is BD-09 (116.41036949371, 39.92133699351).
        let b = gcj02_to_bd09(LonLat::new(116.404, 39.915));
        assert!((b.lon - 116.410_369_493_71).abs() < 1e-8, "{b:?}");
        assert!((b.lat - 39.921_336_993_51).abs() < 1e-8, "{b:?}");
    }

    #[test]
    fn gcj02_shifts_jinan_by_a_few_hundred_metres_and_inverts_exactly() {
        let w = LonLat::new(117.0009, 36.6758); // 泉城广场
        let g = wgs84_to_gcj02(w);
        let shift = w.distance_m(g);
        assert!((300.0..800.0).contains(&shift), "shift {shift} m");
        let back = gcj02_to_wgs84(g);
        assert!(w.distance_m(back) < 0.001, "round trip off by {} m", w.distance_m(back));
        let b = from_wgs84(Crs::Bd09, w);
        assert!(w.distance_m(to_wgs84(Crs::Bd09, b)) < 0.01);
    }

    #[test]
    fn no_shift_outside_china() {
        let paris = LonLat::new(2.35, 48.85);
        assert_eq!(wgs84_to_gcj02(paris), paris);
        assert_eq!(gcj02_to_wgs84(paris), paris);
    }

    #[test]
    fn bad_coordinates_are_refused_with_a_reason() {
        assert!(LonLat::checked(f64::NAN, 1.0).is_err());
        assert!(LonLat::checked(181.0, 1.0).unwrap_err().message.contains("longitude"));
        assert!(LonLat::checked(1.0, -91.0).unwrap_err().message.contains("latitude"));
        assert_eq!(Crs::parse("GCJ-02").unwrap(), Crs::Gcj02);
        assert!(Crs::parse("mars").is_err());
    }
}
