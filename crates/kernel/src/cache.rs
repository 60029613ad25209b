//! A value read often and changed rarely (reference data), kept for a time to live.
//!
//! When the value has expired, the first caller reloads it and every caller meanwhile is
//! answered with the value it replaces: an expiry costs one load, not one per concurrent caller.
//! A change made on this node clears the cell, so that the next caller loads the new value; a
//! change made on another node is seen here within the time to live.

use std::future::Future;
use std::sync::Mutex;

use crate::Result;

/// A cached value with a time to live, refreshed by one caller at a time.
pub struct TtlCell<T> {
    ttl_ms: i64,
    slot: Mutex<Slot<T>>,
}

struct Slot<T> {
    value: Option<(i64, T)>,
    refreshing: bool,
    /// Bumped by `clear`: a load that began before it is not kept.
    generation: u64,
}

impl<T: Clone> TtlCell<T> {
    pub const fn new(ttl_ms: i64) -> Self {
        TtlCell { ttl_ms, slot: Mutex::new(Slot { value: None, refreshing: false, generation: 0 }) }
    }

    /// The value at `now` (ms): the cached one while it is fresh, or while another caller is
    /// reloading it; else the value `load` gives, which is kept.
    pub async fn get<F, Fut>(&self, now: i64, load: F) -> Result<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let generation = {
            let mut s = self.slot.lock().expect("cache lock");
            match &s.value {
                Some((at, v)) if now - at < self.ttl_ms && now >= *at => return Ok(v.clone()),
                Some((_, v)) if s.refreshing => return Ok(v.clone()),
                Some(_) => s.refreshing = true,
                None => {}
            }
            s.generation
        };
        let loaded = load().await;
        let mut s = self.slot.lock().expect("cache lock");
        s.refreshing = false;
        let v = loaded?;
        if s.generation == generation {
            s.value = Some((now, v.clone()));
        }
        Ok(v)
    }

    /// Drops the value: the next caller loads it anew.
    pub fn clear(&self) {
        let mut s = self.slot.lock().expect("cache lock");
        s.value = None;
        s.refreshing = false;
        s.generation += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn block<F: Future>(f: F) -> F::Output {
        // The loads below never wait, so one poll finishes them.
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the future waited"),
        }
    }

    #[test]
    fn keeps_reloads_and_clears() {
        let cell = TtlCell::new(1_000);
        let loads = AtomicUsize::new(0);
        let load = |v: u32| {
            loads.fetch_add(1, Ordering::SeqCst);
            async move { Ok(v) }
        };
        assert_eq!(block(cell.get(0, || load(1))).unwrap(), 1);
        assert_eq!(block(cell.get(999, || load(2))).unwrap(), 1, "fresh: kept");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(block(cell.get(1_000, || load(3))).unwrap(), 3, "expired: reloaded");
        cell.clear();
        assert_eq!(block(cell.get(1_001, || load(4))).unwrap(), 4, "cleared: reloaded at once");
        assert_eq!(loads.load(Ordering::SeqCst), 3);
        // A failed load keeps nothing and leaves the old value for the next caller to replace.
        let failed: Result<u32> = block(cell.get(5_000, || async { Err(crate::Error::internal("down")) }));
        assert!(failed.is_err());
        assert_eq!(block(cell.get(5_001, || load(5))).unwrap(), 5);
    }

    /// Pending until opened.
    struct Gate<'a>(&'a std::sync::atomic::AtomicBool);

    impl Future for Gate<'_> {
        type Output = ();
        fn poll(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.0.load(Ordering::SeqCst) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        }
    }

    #[test]
    fn one_caller_reloads_while_the_others_get_the_old_value() {
        let cell = TtlCell::new(1_000);
        block(cell.get(0, || async { Ok(1u32) })).unwrap();
        let open = std::sync::atomic::AtomicBool::new(false);
        // The first caller after expiry starts a load that waits…
        let mut first = Box::pin(cell.get(2_000, || async {
            Gate(&open).await;
            Ok(2u32)
        }));
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(first.as_mut().poll(&mut cx).is_pending());
        // …and a second caller meanwhile gets the old value without loading.
        assert_eq!(block(cell.get(2_001, || async { panic!("a second load") })).unwrap(), 1);
        open.store(true, Ordering::SeqCst);
        assert!(matches!(first.as_mut().poll(&mut cx), std::task::Poll::Ready(Ok(2))));
        assert_eq!(block(cell.get(2_002, || async { panic!("a load of a fresh value") })).unwrap(), 2);
    }

    #[test]
    fn a_load_overtaken_by_a_change_is_not_kept() {
        let cell = TtlCell::new(1_000);
        let v = block(cell.get(0, || async { Ok(1u32) }));
        assert_eq!(v.unwrap(), 1);
        let stale = block(cell.get(5_000, || {
            cell.clear(); // a change lands while the load runs
            async { Ok(2u32) }
        }));
        assert_eq!(stale.unwrap(), 2);
        assert_eq!(block(cell.get(5_001, || async { Ok(3u32) })).unwrap(), 3, "the overtaken load was not kept");
    }
}
