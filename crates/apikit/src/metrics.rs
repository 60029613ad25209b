//! Request counts and latencies by route and status, in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

const BUCKETS_MS: [f64; 11] = [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

#[derive(Debug, Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

#[derive(Debug, Default, Clone)]
struct Series {
    count: u64,
    sum_ms: f64,
    buckets: [u64; BUCKETS_MS.len()],
}

impl Metrics {
    pub fn observe(&self, method: &str, route: &str, status: u16, ms: f64) {
        let mut map = self.series.lock().expect("metrics lock");
        let s = map.entry((method.to_string(), route.to_string(), status)).or_default();
        s.count += 1;
        s.sum_ms += ms;
        for (i, le) in BUCKETS_MS.iter().enumerate() {
            if ms <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// Renders the request series plus the given extra gauges.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let map = self.series.lock().expect("metrics lock").clone();
        let mut out = String::new();
        out.push_str(
            "# HELP zhongshu_http_requests_total HTTP requests served.\n# TYPE zhongshu_http_requests_total counter\n",
        );
        for ((m, r, s), v) in &map {
            let _ = writeln!(
                out,
                "zhongshu_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{s}\"}} {}",
                v.count
            );
        }
        out.push_str(
            "# HELP zhongshu_http_request_duration_seconds HTTP request latency.\n# TYPE zhongshu_http_request_duration_seconds histogram\n",
        );
        for ((m, r, s), v) in &map {
            let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{s}\"");
            for (i, le) in BUCKETS_MS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "zhongshu_http_request_duration_seconds_bucket{{{labels},le=\"{}\"}} {}",
                    le / 1000.0,
                    v.buckets[i]
                );
            }
            let _ = writeln!(out, "zhongshu_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}", v.count);
            let _ = writeln!(out, "zhongshu_http_request_duration_seconds_sum{{{labels}}} {}", v.sum_ms / 1000.0);
            let _ = writeln!(out, "zhongshu_http_request_duration_seconds_count{{{labels}}} {}", v.count);
        }
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }
}
