//! A short-lived in-process cache of active sessions with their callers, so an authenticated
//! request costs no database round trip in the common case.
//!
//! Entries live at most [`TTL_MS`]. Every identity change clears the cache (changes are rare
//! next to reads), logout evicts its session, and only `active` sessions are cached. A change made
//! on another node is seen here within the TTL. When an entry expires, the first request reloads
//! it and the requests of the same session meanwhile (a page's parallel calls, a busy client)
//! still use it — for at most [`REFRESH_GRACE_MS`] — instead of all reloading at once.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Session;
use crate::scope::Caller;

/// How long a cached session and caller may be used.
pub const TTL_MS: i64 = 1_000;
/// How long an expired entry still serves while one request reloads it.
pub const REFRESH_GRACE_MS: i64 = 2_000;
const MAX_ENTRIES: usize = 50_000;

struct Entry {
    at: i64,
    /// A request is reloading the entry (since this time).
    refreshing: Option<i64>,
    session: Session,
    caller: Caller,
}

#[derive(Default)]
pub(crate) struct SessionCache {
    map: Mutex<HashMap<String, Entry>>,
}

impl SessionCache {
    /// The cached session, when fresh, or expired while another request reloads it. `None`:
    /// the caller loads it (and then `put`s it, or `evict`s it when it is no longer valid).
    pub fn get(&self, session_id: &str, now: i64) -> Option<(Session, Caller)> {
        let mut map = self.map.lock().expect("session cache lock");
        let e = map.get_mut(session_id)?;
        if now < e.at || now - e.at >= TTL_MS + REFRESH_GRACE_MS {
            return None;
        }
        let fresh = now - e.at < TTL_MS;
        let covered = e.refreshing.is_some_and(|since| now - since < REFRESH_GRACE_MS);
        if fresh || covered {
            return Some((e.session.clone(), e.caller.clone()));
        }
        e.refreshing = Some(now);
        None
    }

    pub fn put(&self, session: Session, caller: Caller, now: i64) {
        let mut map = self.map.lock().expect("session cache lock");
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| now - e.at < TTL_MS);
            if map.len() >= MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(session.id.clone(), Entry { at: now, refreshing: None, session, caller });
    }

    pub fn evict(&self, session_id: &str) {
        self.map.lock().expect("session cache lock").remove(session_id);
    }

    pub fn clear(&self) {
        self.map.lock().expect("session cache lock").clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> (Session, Caller) {
        let session = Session {
            id: "s1".into(),
            user_id: "u1".into(),
            stage: crate::auth::Stage::Active,
            csrf_token: "c".into(),
            expires_at: i64::MAX,
        };
        let caller = Caller {
            kind: crate::scope::CallerKind::User,
            id: "u1".into(),
            username: "wang".into(),
            display_name: "王".into(),
            primary_org_id: crate::OrgId("o1".into()),
            primary_org_name: "历下区".into(),
            org_ids: Vec::new(),
            admin_role: None,
            roles: Vec::new(),
            permissions: Default::default(),
            session_id: Some("s1".into()),
        };
        (session, caller)
    }

    #[test]
    fn one_request_reloads_an_expired_session_while_the_others_use_it() {
        let cache = SessionCache::default();
        let (s, c) = entry();
        cache.put(s, c, 0);
        assert!(cache.get("s1", TTL_MS - 1).is_some(), "fresh");
        assert!(cache.get("s1", TTL_MS).is_none(), "expired: this request reloads");
        assert!(cache.get("s1", TTL_MS + 1).is_some(), "the others meanwhile use the old entry");
        assert!(cache.get("s1", TTL_MS + REFRESH_GRACE_MS).is_none(), "a reload that never came back");
        // The reload found the session gone: evicted, every request loads (and fails) again.
        cache.evict("s1");
        assert!(cache.get("s1", TTL_MS + 2).is_none());
        assert!(cache.get("s1", TTL_MS + 3).is_none());
        assert!(cache.get("other", 0).is_none());
    }
}
