//! In-memory token buckets keyed by caller or address. Each node limits on its own; behind a
//! load balancer the effective limit is per node.

use std::collections::HashMap;
use std::sync::Mutex;

/// A set of token buckets.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket of `per_minute` tokens (refilling continuously).
    /// On refusal returns the seconds until a token is available.
    pub fn check(&self, key: &str, per_minute: u32, now_ms: i64) -> Result<(), u64> {
        let capacity = per_minute.max(1) as f64;
        let per_ms = capacity / 60_000.0;
        let mut map = self.buckets.lock().expect("rate limiter lock");
        if map.len() > 100_000 {
            // Forget full buckets so the map cannot grow without bound.
            map.retain(|_, b| b.tokens + (now_ms - b.at_ms) as f64 * per_ms < capacity);
        }
        let b = map.entry(key.to_string()).or_insert(Bucket { tokens: capacity, at_ms: now_ms });
        b.tokens = (b.tokens + (now_ms - b.at_ms).max(0) as f64 * per_ms).min(capacity);
        b.at_ms = now_ms;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((((1.0 - b.tokens) / per_ms) / 1000.0).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_rate_and_refills() {
        let l = RateLimiter::default();
        for _ in 0..3 {
            assert!(l.check("k", 3, 0).is_ok());
        }
        let wait = l.check("k", 3, 0).unwrap_err();
        assert_eq!(wait, 20, "one token per 20 s at 3/min");
        assert!(l.check("other", 3, 0).is_ok(), "keys are independent");
        assert!(l.check("k", 3, 20_000).is_ok());
    }
}
