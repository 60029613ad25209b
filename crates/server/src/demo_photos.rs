//! Photos for the demo city's cases, drawn at start-up (the repository holds no binary files):
//! simple street scenes of what was reported and of the same spot after handling, stamped along
//! the bottom with time and position as patrol camera apps do, encoded as PNG.

use std::io::Write;

/// What a photo shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scene {
    /// A broken manhole cover on asphalt; repaired: a whole cover.
    Manhole,
    /// Small ads pasted on a stairwell wall; repaired: the clean wall.
    WallAds,
    /// A street at dusk with a dark lamp; repaired: the lamp lit.
    StreetLamp,
    /// Standing water across a road; repaired: the dry road.
    Waterlogging,
    /// Rubbish heaped beside a bin; repaired: the tidy bin.
    Rubbish,
    /// A street tree whose branches hide a road sign; repaired: the sign in view.
    TreeSign,
}

impl Scene {
    /// The scene for a category code, if a photo of it makes sense.
    pub fn for_category(code: &str) -> Option<Scene> {
        Some(match code {
            c if c.starts_with("BJ01") && c != "BJ0104" => Scene::Manhole,
            "BJ0104" => Scene::StreetLamp,
            "SJ0201" => Scene::WallAds,
            "SJ0404" => Scene::Waterlogging,
            c if c.starts_with("SJ01") || c == "BJ0302" => Scene::Rubbish,
            c if c.starts_with("BJ04") => Scene::TreeSign,
            _ => return None,
        })
    }
}

const W: usize = 480;
const H: usize = 360;

type Rgb = [u8; 3];

struct Canvas {
    px: Vec<Rgb>,
    seed: u64,
}

fn hash(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

fn mix(a: Rgb, b: Rgb, t: f64) -> Rgb {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| (a[i] as f64 * (1.0 - t) + b[i] as f64 * t).round() as u8)
}

impl Canvas {
    fn new(seed: u64) -> Canvas {
        Canvas { px: vec![[0, 0, 0]; W * H], seed }
    }

    /// A value in [-1, 1) fixed for (x, y) and this photo.
    fn noise(&self, x: usize, y: usize) -> f64 {
        (hash(self.seed ^ ((y as u64) << 20) ^ x as u64) >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb, alpha: f64) {
        if (0..W as i64).contains(&x) && (0..H as i64).contains(&y) {
            let i = y as usize * W + x as usize;
            self.px[i] = mix(self.px[i], c, alpha);
        }
    }

    /// Fills every pixel for which `f` answers a colour, with grain of `grain` levels.
    fn paint(&mut self, grain: f64, f: impl Fn(f64, f64) -> Option<Rgb>) {
        self.paint_in((0.0, 0.0, W as f64, H as f64), grain, f)
    }

    /// `paint` within a box (x0, y0, x1, y1).
    fn paint_in(&mut self, b: (f64, f64, f64, f64), grain: f64, f: impl Fn(f64, f64) -> Option<Rgb>) {
        let (x0, x1) = (b.0.max(0.0) as usize, (b.2.ceil().max(0.0) as usize).min(W));
        let (y0, y1) = (b.1.max(0.0) as usize, (b.3.ceil().max(0.0) as usize).min(H));
        for y in y0..y1 {
            for x in x0..x1 {
                if let Some(c) = f(x as f64, y as f64) {
                    let n = self.noise(x, y) * grain;
                    self.px[y * W + x] = c.map(|v| (v as f64 + n).clamp(0.0, 255.0) as u8);
                }
            }
        }
    }

    fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: Rgb, grain: f64) {
        self.paint_in((x0, y0, x1, y1), grain, |x, y| (x >= x0 && x < x1 && y >= y0 && y < y1).then_some(c));
    }

    fn ellipse(&mut self, cx: f64, cy: f64, rx: f64, ry: f64, c: Rgb, grain: f64) {
        self.paint_in((cx - rx, cy - ry, cx + rx + 1.0, cy + ry + 1.0), grain, |x, y| {
            (((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0).then_some(c)
        });
    }

    /// A line `w` pixels wide.
    fn line(&mut self, a: (f64, f64), b: (f64, f64), w: f64, c: Rgb) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-9);
        let (x0, x1) = (a.0.min(b.0) - w, a.0.max(b.0) + w);
        let (y0, y1) = (a.1.min(b.1) - w, a.1.max(b.1) + w);
        for y in (y0.max(0.0) as usize)..(y1.min(H as f64 - 1.0) as usize + 1) {
            for x in (x0.max(0.0) as usize)..(x1.min(W as f64 - 1.0) as usize + 1) {
                let t = (((x as f64 - a.0) * dx + (y as f64 - a.1) * dy) / len2).clamp(0.0, 1.0);
                let d = ((x as f64 - a.0 - t * dx).powi(2) + (y as f64 - a.1 - t * dy).powi(2)).sqrt();
                if d <= w / 2.0 {
                    self.set(x as i64, y as i64, c, 1.0);
                }
            }
        }
    }

    /// A jagged crack from `a` heading `angle` for `len` pixels.
    fn crack(&mut self, a: (f64, f64), angle: f64, len: f64, k: u64) {
        let mut p = a;
        let steps = 8;
        for i in 0..steps {
            let wobble = ((hash(self.seed ^ k ^ i) % 100) as f64 / 100.0 - 0.5) * 0.9;
            let q =
                (p.0 + (angle + wobble).cos() * len / steps as f64, p.1 + (angle + wobble).sin() * len / steps as f64);
            self.line(p, q, 2.0, [38, 38, 40]);
            p = q;
        }
    }

    /// Sky to horizon, ground below, with a vignette applied at the end by `finish`.
    fn street(&mut self, sky: (Rgb, Rgb), ground: Rgb, horizon: f64) {
        self.paint(2.0, |_, y| Some(if y < horizon { mix(sky.0, sky.1, y / horizon) } else { ground }));
    }

    /// Buildings along the horizon.
    fn skyline(&mut self, horizon: f64, windows_lit: bool) {
        let mut x = 0.0;
        let mut k = 0;
        while x < W as f64 {
            let w = 50.0 + (hash(self.seed ^ k) % 40) as f64;
            let h = 70.0 + (hash(self.seed ^ (k + 99)) % 90) as f64;
            let shade = 150 + (hash(self.seed ^ (k + 7)) % 50) as u8;
            self.rect(x, horizon - h, x + w - 4.0, horizon, [shade, shade - 8, shade - 20], 3.0);
            let mut wy = horizon - h + 10.0;
            while wy < horizon - 14.0 {
                let mut wx = x + 8.0;
                while wx < x + w - 16.0 {
                    let lit = windows_lit && hash(self.seed ^ (wx as u64) ^ ((wy as u64) << 9)).is_multiple_of(3);
                    let c = if lit { [250, 214, 120] } else { [90, 104, 122] };
                    self.rect(wx, wy, wx + 7.0, wy + 9.0, c, 1.0);
                    wx += 14.0;
                }
                wy += 18.0;
            }
            x += w;
            k += 1;
        }
    }

    /// The road in perspective from the bottom edge to the horizon, with its centre line.
    fn road(&mut self, horizon: f64, asphalt: Rgb) {
        let cx = W as f64 / 2.0;
        self.paint(5.0, |x, y| {
            if y < horizon {
                return None;
            }
            let t = (y - horizon) / (H as f64 - horizon);
            let half = 30.0 + t * 320.0;
            ((x - cx).abs() < half).then_some(mix(mix(asphalt, [150, 150, 150], 0.3), asphalt, t))
        });
        let mut y = horizon + 6.0;
        while y < H as f64 {
            let t = (y - horizon) / (H as f64 - horizon);
            self.rect(cx - 1.0 - t * 3.0, y, cx + 1.0 + t * 3.0, y + 4.0 + t * 16.0, [236, 232, 220], 2.0);
            y += 10.0 + t * 40.0;
        }
    }

    fn vignette(&mut self) {
        let (cx, cy) = (W as f64 / 2.0, H as f64 / 2.0);
        let r = (cx * cx + cy * cy).sqrt();
        for y in 0..H {
            for x in 0..W {
                let d = (((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt() / r).powi(2);
                let i = y * W + x;
                self.px[i] = mix(self.px[i], [0, 0, 0], d * 0.35);
            }
        }
    }

    /// The stamp of patrol camera apps: a dark band with time and position.
    fn stamp(&mut self, text: &str) {
        let band = H as f64 - 26.0;
        for y in band as usize..H {
            for x in 0..W {
                self.set(x as i64, y as i64, [0, 0, 0], 0.55);
            }
        }
        let scale = 2;
        let mut x0 = 10i64;
        for ch in text.chars() {
            if let Some(rows) = glyph(ch) {
                for (r, bits) in rows.iter().enumerate() {
                    for c in 0..5 {
                        if bits & (0b10000 >> c) != 0 {
                            for dy in 0..scale {
                                for dx in 0..scale {
                                    let (x, y) =
                                        (x0 + (c * scale + dx) as i64, band as i64 + 6 + (r * scale + dy) as i64);
                                    self.set(x, y, [255, 255, 255], 1.0);
                                }
                            }
                        }
                    }
                }
            }
            x0 += 6 * scale as i64;
        }
    }

    fn png(&self) -> Vec<u8> {
        // Rows filtered with "Up" (2): smooth scenes compress well.
        let mut raw = Vec::with_capacity(H * (W * 3 + 1));
        for y in 0..H {
            raw.push(2u8);
            for x in 0..W {
                let up = if y == 0 { [0, 0, 0] } else { self.px[(y - 1) * W + x] };
                let p = self.px[y * W + x];
                raw.extend((0..3).map(|i| p[i].wrapping_sub(up[i])));
            }
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).expect("writing to memory");
        let idat = z.finish().expect("writing to memory");
        let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        let mut ihdr = Vec::with_capacity(13);
        ihdr.extend((W as u32).to_be_bytes());
        ihdr.extend((H as u32).to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]); // 8-bit RGB, deflate, no interlace
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(&mut out, b"IDAT", &idat);
        chunk(&mut out, b"IEND", &[]);
        out
    }
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    out.extend(kind);
    out.extend(data);
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend(crc.finalize().to_be_bytes());
}

/// 5×7 glyphs for the stamp: digits and the punctuation of times and positions.
fn glyph(c: char) -> Option<[u8; 7]> {
    Some(match c {
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        '-' => [0, 0, 0, 0x1F, 0, 0, 0],
        ':' => [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0],
        '.' => [0, 0, 0, 0, 0, 0x0C, 0x0C],
        ',' => [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'N' => [0x11, 0x19, 0x15, 0x13, 0x11, 0x11, 0x11],
        ' ' => [0; 7],
        _ => return None,
    })
}

/// Draws `scene` before (`after = false`) or after handling, stamped with `stamp`
/// (e.g. `2026-11-20 09:32 E117.0415 N36.6721`), as a PNG.
pub fn photo(scene: Scene, after: bool, seed: u64, stamp: &str) -> Vec<u8> {
    let mut c = Canvas::new(hash(seed) ^ scene as u64);
    let day = ([150, 190, 228], [214, 228, 238]);
    match scene {
        Scene::Manhole => {
            // Close up: asphalt filling the frame, the cover in the middle.
            c.paint(14.0, |_, _| Some([92, 92, 96]));
            let (cx, cy) = (240.0, 170.0);
            // After handling: a new cover in a new, darker frame.
            let (frame, plate, rib) = match after {
                false => (([70, 72, 74], 122.0, 92.0), [58, 60, 64], [74, 76, 80]),
                true => (([40, 40, 42], 126.0, 96.0), [62, 64, 68], [80, 82, 86]),
            };
            c.ellipse(cx, cy, frame.1, frame.2, frame.0, 6.0);
            c.ellipse(cx, cy, 110.0, 82.0, plate, 8.0);
            for k in 0..6 {
                let a = k as f64 * std::f64::consts::PI / 6.0;
                let (dx, dy) = (a.cos() * 100.0, a.sin() * 74.0);
                c.line((cx - dx, cy - dy), (cx + dx, cy + dy), 3.0, rib);
            }
            c.ellipse(cx, cy, 30.0, 22.0, [66, 68, 72], 4.0);
            if !after {
                // A broken edge: a dark hole where a wedge of the cover is missing, and cracks.
                c.paint(6.0, |x, y| {
                    let (dx, dy) = ((x - cx) / 110.0, (y - cy) / 82.0);
                    let r = (dx * dx + dy * dy).sqrt();
                    let a = dy.atan2(dx);
                    (r > 0.62 && r <= 1.02 && (-0.55..0.05).contains(&a)).then_some([18, 16, 16])
                });
                c.crack((cx + 60.0, cy - 20.0), 2.6, 90.0, 1);
                c.crack((cx + 40.0, cy + 6.0), 2.0, 70.0, 2);
                c.crack((cx + 120.0, cy - 30.0), -0.4, 110.0, 3);
                // The temporary warning cone the grid worker put up.
                c.paint(3.0, |x, y| {
                    let (bx, by) = (392.0, 300.0);
                    let half = (y - (by - 120.0)) * 0.3;
                    (y > by - 120.0 && y < by && (x - bx).abs() < half)
                        .then_some(if ((y - by) / 24.0) as i64 % 2 == 0 { [236, 236, 230] } else { [232, 96, 36] })
                });
                c.rect(350.0, 300.0, 434.0, 312.0, [200, 70, 30], 3.0);
            }
        }
        Scene::WallAds => {
            c.paint(6.0, |_, y| Some(if y < 250.0 { [226, 218, 200] } else { [150, 130, 110] }));
            c.rect(0.0, 236.0, W as f64, 250.0, [120, 140, 150], 3.0);
            c.rect(300.0, 40.0, 420.0, 250.0, [150, 98, 60], 4.0); // the flat's door
            c.ellipse(404.0, 150.0, 5.0, 5.0, [210, 190, 120], 0.0);
            if after {
                // Faint marks where the ads were scraped off.
                for k in 0..6u64 {
                    let (x, y) = (30.0 + (k * 41 % 230) as f64, 40.0 + (k * 67 % 170) as f64);
                    c.rect(x, y, x + 40.0, y + 26.0, [218, 210, 192], 2.0);
                }
            } else {
                for k in 0..14u64 {
                    let x = 20.0 + (hash(k ^ 5) % 250) as f64;
                    let y = 30.0 + (hash(k ^ 9) % 180) as f64;
                    let paper = [[250, 250, 244], [255, 238, 120], [244, 170, 160], [190, 220, 250]][k as usize % 4];
                    c.rect(x, y, x + 44.0, y + 30.0, paper, 3.0);
                    for l in 0..3 {
                        c.rect(
                            x + 5.0,
                            y + 6.0 + l as f64 * 8.0,
                            x + 38.0,
                            y + 9.0 + l as f64 * 8.0,
                            [60, 60, 70],
                            1.0,
                        );
                    }
                }
            }
        }
        Scene::StreetLamp => {
            let sky = if after { ([30, 40, 80], [90, 90, 120]) } else { ([24, 30, 60], [70, 70, 96]) };
            c.street(sky, [60, 60, 64], 200.0);
            c.skyline(200.0, true);
            c.road(200.0, [52, 52, 56]);
            for (k, x) in [70.0, 410.0].iter().enumerate() {
                c.rect(x - 3.0, 60.0, x + 3.0, 330.0, [70, 74, 80], 2.0);
                let head = if k == 1 { x - 40.0 } else { x + 40.0 };
                c.line((*x, 62.0), (head, 62.0), 5.0, [70, 74, 80]);
                let lit = after || k == 0;
                if lit {
                    for y in 0..160i64 {
                        for x in (head as i64 - 90)..(head as i64 + 90) {
                            let d = ((x as f64 - head).powi(2) + (y as f64 - 70.0).powi(2)).sqrt();
                            if d < 90.0 {
                                c.set(x, y, [255, 236, 170], (1.0 - d / 90.0).powi(2) * 0.8);
                            }
                        }
                    }
                    for y in 70..330 {
                        for x in 0..W {
                            let spread = (y as f64 - 70.0) * 0.45;
                            if (x as f64 - head).abs() < spread {
                                c.set(x as i64, y, [255, 226, 150], 0.10);
                            }
                        }
                    }
                }
                c.ellipse(head, 68.0, 16.0, 6.0, if lit { [255, 250, 220] } else { [96, 100, 104] }, 1.0);
            }
        }
        Scene::Waterlogging => {
            c.street(day, [120, 120, 118], 170.0);
            c.skyline(170.0, false);
            c.road(170.0, [84, 84, 88]);
            if !after {
                c.paint(4.0, |x, y| {
                    let e = ((x - 240.0) / 300.0).powi(2) + ((y - 290.0) / 80.0).powi(2);
                    (e < 1.0).then(|| mix([150, 170, 180], [96, 118, 130], (y - 210.0) / 160.0))
                });
                for k in 0..10u64 {
                    let y = 230.0 + (hash(k ^ 3) % 110) as f64;
                    let x = 80.0 + (hash(k ^ 4) % 320) as f64;
                    c.line((x, y), (x + 30.0, y), 2.0, [196, 212, 220]);
                }
            }
        }
        Scene::Rubbish => {
            c.street(day, [168, 160, 146], 150.0);
            c.skyline(150.0, false);
            c.rect(300.0, 170.0, 380.0, 300.0, [40, 120, 70], 4.0); // the bin
            c.rect(296.0, 160.0, 384.0, 176.0, [30, 96, 56], 3.0);
            if !after {
                for k in 0..26u64 {
                    let x = 120.0 + (hash(k ^ 11) % 220) as f64;
                    let y = 260.0 + (hash(k ^ 12) % 60) as f64;
                    let col =
                        [[40, 40, 44], [230, 230, 230], [200, 60, 50], [70, 110, 200], [210, 180, 90]][k as usize % 5];
                    c.ellipse(x, y, 14.0 + (k % 4) as f64 * 5.0, 10.0 + (k % 3) as f64 * 4.0, col, 6.0);
                }
            }
        }
        Scene::TreeSign => {
            c.street(day, [120, 120, 118], 190.0);
            c.skyline(190.0, false);
            c.road(190.0, [84, 84, 88]);
            c.rect(352.0, 120.0, 358.0, 300.0, [150, 150, 150], 2.0);
            c.ellipse(355.0, 110.0, 30.0, 30.0, [236, 236, 236], 1.0);
            c.ellipse(355.0, 110.0, 26.0, 26.0, [210, 40, 40], 1.0);
            c.ellipse(355.0, 110.0, 18.0, 18.0, [236, 236, 236], 1.0);
            c.rect(343.0, 103.0, 367.0, 117.0, [30, 30, 30], 0.0); // no-entry bar stands for the limit
            c.rect(430.0, 60.0, 444.0, 330.0, [96, 70, 48], 6.0); // the trunk
            let reach = if after { 392.0 } else { 300.0 };
            c.paint(18.0, |x, y| {
                let d = ((x - 430.0) / (430.0 - reach)).powi(2) + ((y - 100.0) / 80.0).powi(2);
                (d < 1.0 && x > reach).then_some([66, 120, 52])
            });
        }
    }
    c.vignette();
    c.stamp(stamp);
    c.png()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scene_is_a_png_the_upload_accepts_and_differs_before_and_after() {
        for scene in
            [Scene::Manhole, Scene::WallAds, Scene::StreetLamp, Scene::Waterlogging, Scene::Rubbish, Scene::TreeSign]
        {
            let before = photo(scene, false, 7, "2026-11-20 09:32 E117.0415 N36.6721");
            let after = photo(scene, true, 7, "2026-11-21 15:05 E117.0415 N36.6721");
            assert_eq!(grid::attachments::sniff(&before), Some("image/png"));
            assert!(before.len() < 1024 * 1024, "{scene:?}: {} bytes", before.len());
            assert_ne!(before, after);
            // The IHDR says 480×360 RGB and the data inflates to exactly the rows.
            assert_eq!(&before[16..24], &[0, 0, 1, 224, 0, 0, 1, 104]);
            let idat_len = u32::from_be_bytes(before[33..37].try_into().unwrap()) as usize;
            assert_eq!(&before[37..41], b"IDAT");
            let mut raw = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&before[41..41 + idat_len]), &mut raw)
                .unwrap();
            assert_eq!(raw.len(), H * (W * 3 + 1));
        }
    }
}
