//! A short-lived in-process cache of active sessions with their callers, so an authenticated
//! request costs no database round trip in the common case.
//!
//! Entries live at most [`TTL_MS`]. Every identity change clears the cache (changes are rare
//! next to reads), logout evicts its session, and only `active` sessions are cached. A change made
//! on another node is seen here within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Session;
use crate::scope::Caller;

/// How long a cached session and caller may be used.
pub const TTL_MS: i64 = 1_000;
const MAX_ENTRIES: usize = 50_000;

#[derive(Default)]
pub(crate) struct SessionCache {
    map: Mutex<HashMap<String, (i64, Session, Caller)>>,
}

impl SessionCache {
    pub fn get(&self, session_id: &str, now: i64) -> Option<(Session, Caller)> {
        let map = self.map.lock().expect("session cache lock");
        let (at, s, c) = map.get(session_id)?;
        (now - at < TTL_MS && now >= *at).then(|| (s.clone(), c.clone()))
    }

    pub fn put(&self, session: Session, caller: Caller, now: i64) {
        let mut map = self.map.lock().expect("session cache lock");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, (at, _, _)| now - *at < TTL_MS);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(session.id.clone(), (now, session, caller));
    }

    pub fn evict(&self, session_id: &str) {
        self.map.lock().expect("session cache lock").remove(session_id);
    }

    pub fn clear(&self) {
        self.map.lock().expect("session cache lock").clear();
    }
}
