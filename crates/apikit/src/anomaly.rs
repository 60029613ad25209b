//! Abnormal-call detection (调用异常监测, 等保 DJ-IP-3) on every request, in memory: per subject
//! (a user, an application or an address) it counts, in one-minute windows, refused requests,
//! the different objects read by id and failed signatures, and notices the three administrators
//! changing things outside their working hours. Crossing a threshold of the security policy
//! raises a [`identity::alerts`] alert (stored, audited, told to the security administrators)
//! and, when the policy says so, refuses the subject with 429 for a while.
//!
//! Windows are fixed minutes, so a threshold fires at most once per subject per minute; repeats
//! are counted into the open alert. The maps are bounded: past [`MAX_WINDOWS`] subjects, windows
//! that have ended are dropped.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use identity::SecurityPolicy;
use identity::alerts::{AlertRule, AlertSignal};

const WINDOW_MS: i64 = 60_000;
/// An administrator's off-hours changes raise one alert an hour; rows taken out are counted by
/// the hour.
const HOUR_MS: i64 = 3_600_000;
const MAX_WINDOWS: usize = 50_000;
/// Distinct objects remembered per window (enough to cross any allowed threshold).
const MAX_DISTINCT: usize = 100_001;

#[derive(Default)]
struct Window {
    start: i64,
    count: u32,
    distinct: HashSet<u64>,
}

#[derive(Default)]
struct Inner {
    windows: HashMap<(AlertRule, String), Window>,
    /// Subject → refused until (ms).
    blocks: HashMap<String, i64>,
}

/// The detector; one per process, in [`crate::AppState`].
#[derive(Default)]
pub struct Detector {
    inner: Mutex<Inner>,
    /// Whether any subject is blocked, so the check on every request is one atomic load.
    any_blocked: std::sync::atomic::AtomicBool,
}

/// How many data rows a response carries (a page of a list, an export): handlers of lists and
/// exports put it in the response's extensions ([`Counted`]) and the detector adds it up per
/// caller and hour (bulk export, DJ-IP-3).
#[derive(Debug, Clone, Copy)]
pub struct RowsOut(pub u64);

/// A response with the number of data rows it carries (see [`RowsOut`]).
pub struct Counted<R>(pub usize, pub R);

impl<R: axum::response::IntoResponse> axum::response::IntoResponse for Counted<R> {
    fn into_response(self) -> axum::response::Response {
        let mut resp = self.1.into_response();
        resp.extensions_mut().insert(RowsOut(self.0 as u64));
        resp
    }
}

/// Who made a request, as the detector keys it.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `user:<id>`, `app:<id>` or `ip:<address>`.
    pub key: String,
    pub name: Option<String>,
    pub ip: Option<IpAddr>,
}

impl Subject {
    pub fn address(ip: Option<IpAddr>) -> Subject {
        Subject { key: format!("ip:{}", ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into())), name: None, ip }
    }
}

/// What one finished request showed.
pub struct Seen<'a> {
    pub subject: &'a Subject,
    pub admin: bool,
    pub method: &'a axum::http::Method,
    /// The route template (`/api/v1/grid/cases/{id}`), if one matched.
    pub route: Option<&'a str>,
    pub path: &'a str,
    pub status: u16,
    /// Data rows the response carried ([`RowsOut`]; 0 when not a list or export).
    pub rows: u64,
}

impl Detector {
    /// Whether a request can concern any rule — refusals, reads of one object, rows taken out,
    /// and administrators' changes — so that the middleware skips the rest at once. `admin` is
    /// `None` before the caller is looked at (then a change may still concern a rule).
    pub fn concerns(
        method: &axum::http::Method,
        route: Option<&str>,
        status: u16,
        rows: u64,
        admin: Option<bool>,
    ) -> bool {
        use axum::http::Method;
        let denied = status == 401 || status == 403;
        let by_id = *method == Method::GET && route.is_some_and(|r| r.contains('{'));
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        denied || by_id || rows > 0 || (mutating && admin.unwrap_or(true))
    }

    /// Seconds `subject` is still refused for, if blocked.
    pub fn blocked(&self, subject: &str, now: i64) -> Option<u64> {
        if !self.any_blocked.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let mut inner = self.inner.lock().expect("detector lock");
        match inner.blocks.get(subject).copied() {
            Some(until) if until > now => Some(((until - now + 999) / 1000) as u64),
            Some(_) => {
                inner.blocks.remove(subject);
                None
            }
            None => None,
        }
    }

    /// Whether any subject is (or was, until its next check) blocked.
    pub fn has_blocks(&self) -> bool {
        self.any_blocked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends a block (the alert was handled).
    pub fn unblock(&self, subject: &str) {
        self.inner.lock().expect("detector lock").blocks.remove(subject);
    }

    /// Counts one event of `rule` for `subject` (with `object` for rules counting distinct
    /// objects); the count reached in the window when it has just crossed `threshold`.
    #[allow(clippy::too_many_arguments)]
    fn count(
        &self,
        rule: AlertRule,
        subject: &str,
        object: Option<u64>,
        add: u32,
        threshold: u32,
        window: i64,
        now: i64,
    ) -> Option<u32> {
        if threshold == 0 {
            return None;
        }
        let mut inner = self.inner.lock().expect("detector lock");
        if inner.windows.len() >= MAX_WINDOWS {
            inner.windows.retain(|(r, _), w| {
                now - w.start
                    < if matches!(*r, AlertRule::OffHoursAdmin | AlertRule::BulkExport) { HOUR_MS } else { WINDOW_MS }
            });
        }
        let w = inner.windows.entry((rule, subject.to_string())).or_default();
        if now - w.start >= window {
            *w = Window { start: now, ..Window::default() };
        }
        let before = w.count;
        match object {
            Some(o) => {
                if w.distinct.len() < MAX_DISTINCT {
                    w.distinct.insert(o);
                }
                w.count = w.distinct.len() as u32;
            }
            None => w.count = w.count.saturating_add(add),
        }
        (before < threshold && w.count >= threshold).then_some(w.count)
    }

    /// Looks at a finished request; returns the alert to raise, if any (the block it carries is
    /// already in force).
    pub fn observe(&self, policy: &SecurityPolicy, seen: &Seen<'_>, now: i64) -> Option<AlertSignal> {
        let s = seen.subject;
        if seen.status == 401 || seen.status == 403 {
            let threshold = policy.anomaly_denied_per_minute;
            if let Some(n) = self.count(AlertRule::DeniedBurst, &s.key, None, 1, threshold, WINDOW_MS, now) {
                let detail =
                    format!("1 分钟内 {n} 次请求被拒绝（未登录或无权限），最近一次：{} {}", seen.method, seen.path);
                return Some(self.signal(policy, AlertRule::DeniedBurst, s, n, detail, now, true));
            }
        }
        let by_id = seen.route.is_some_and(|r| r.contains('{'));
        if seen.method == axum::http::Method::GET && by_id && seen.status < 500 && seen.status != 429 {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            seen.path.hash(&mut h);
            let threshold = policy.anomaly_objects_per_minute;
            if let Some(n) = self.count(AlertRule::ObjectSweep, &s.key, Some(h.finish()), 1, threshold, WINDOW_MS, now)
            {
                let detail = format!(
                    "1 分钟内按编号读取了 {n} 个不同对象（疑似遍历或批量抓取），最近一次：{}",
                    seen.route.unwrap_or(seen.path)
                );
                return Some(self.signal(policy, AlertRule::ObjectSweep, s, n, detail, now, true));
            }
        }
        if seen.rows > 0 && seen.status < 300 {
            let threshold = policy.anomaly_rows_per_hour;
            let add = u32::try_from(seen.rows).unwrap_or(u32::MAX);
            if let Some(n) = self.count(AlertRule::BulkExport, &s.key, None, add, threshold, HOUR_MS, now) {
                let detail = format!(
                    "1 小时内通过列表和导出取得 {n} 条数据（告警阈值 {threshold} 条），最近一次：{}",
                    seen.route.unwrap_or(seen.path)
                );
                return Some(self.signal(policy, AlertRule::BulkExport, s, n, detail, now, true));
            }
        }
        let mutating =
            !matches!(*seen.method, axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS);
        if seen.admin
            && mutating
            && seen.status < 400
            && policy.outside_working_hours(kernel::calendar::china_minute_of_day(now))
            && let Some(n) = self.count(AlertRule::OffHoursAdmin, &s.key, None, 1, 1, HOUR_MS, now)
        {
            let detail = format!(
                "管理员在工作时间（{}）以外进行了变更操作：{} {}",
                policy.admin_working_hours,
                seen.method,
                seen.route.unwrap_or(seen.path)
            );
            return Some(self.signal(policy, AlertRule::OffHoursAdmin, s, n, detail, now, false));
        }
        None
    }

    /// A signed request from `ip` failed verification.
    pub fn signature_failed(
        &self,
        policy: &SecurityPolicy,
        ip: Option<IpAddr>,
        app_id: &str,
        now: i64,
    ) -> Option<AlertSignal> {
        let s = Subject {
            name: Some(format!("应用 {}", app_id.chars().take(40).collect::<String>())),
            ..Subject::address(ip)
        };
        let threshold = policy.anomaly_signature_failures_per_minute;
        let n = self.count(AlertRule::SignatureFailures, &s.key, None, 1, threshold, WINDOW_MS, now)?;
        let detail = format!("1 分钟内 {n} 次签名请求验证失败（签名错误、时间戳超出范围或随机数重复）");
        Some(self.signal(policy, AlertRule::SignatureFailures, &s, n, detail, now, true))
    }

    #[allow(clippy::too_many_arguments)]
    fn signal(
        &self,
        policy: &SecurityPolicy,
        rule: AlertRule,
        s: &Subject,
        n: u32,
        detail: String,
        now: i64,
        may_block: bool,
    ) -> AlertSignal {
        let blocked_until =
            (may_block && policy.anomaly_block_minutes > 0).then(|| now + policy.anomaly_block_minutes as i64 * 60_000);
        if let Some(until) = blocked_until {
            self.inner.lock().expect("detector lock").blocks.insert(s.key.clone(), until);
            self.any_blocked.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        AlertSignal {
            rule,
            subject: s.key.clone(),
            subject_name: s.name.clone(),
            source_ip: s.ip.map(|i| i.to_string()),
            count: n as i64,
            detail,
            blocked_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_reads_of_one_object_rows_out_and_administrators_changes_concern_a_rule() {
        use axum::http::Method;
        let list = Some("/api/v1/grid/cases");
        let one = Some("/api/v1/grid/cases/{id}");
        assert!(!Detector::concerns(&Method::GET, list, 200, 0, None), "a plain list read");
        assert!(Detector::concerns(&Method::GET, list, 200, 20, None), "rows taken out");
        assert!(Detector::concerns(&Method::GET, one, 200, 0, Some(false)), "one object by id");
        assert!(Detector::concerns(&Method::GET, list, 403, 0, Some(false)), "a refusal");
        assert!(Detector::concerns(&Method::POST, list, 201, 0, None), "a change, caller not yet known");
        assert!(!Detector::concerns(&Method::POST, list, 201, 0, Some(false)), "staff's change");
        assert!(Detector::concerns(&Method::POST, list, 201, 0, Some(true)), "an administrator's change");
    }

    fn seen<'a>(s: &'a Subject, method: &'a axum::http::Method, path: &'a str, status: u16) -> Seen<'a> {
        Seen { subject: s, admin: false, method, route: Some("/api/v1/grid/cases/{id}"), path, status, rows: 0 }
    }

    #[test]
    fn a_sweep_over_distinct_objects_fires_once_per_window_and_blocks_when_told() {
        let d = Detector::default();
        let mut p = SecurityPolicy { anomaly_objects_per_minute: 10, ..SecurityPolicy::default() };
        let u = Subject { key: "user:1".into(), name: Some("wang".into()), ip: None };
        let get = axum::http::Method::GET;
        // The same object again and again is not a sweep.
        for _ in 0..50 {
            assert!(d.observe(&p, &seen(&u, &get, "/api/v1/grid/cases/7", 200), 1_000).is_none());
        }
        let mut fired = Vec::new();
        for i in 0..30 {
            let path = format!("/api/v1/grid/cases/{i}");
            fired.extend(d.observe(&p, &seen(&u, &get, &path, 404), 2_000 + i));
        }
        assert_eq!(fired.len(), 1, "once per window");
        assert_eq!((fired[0].rule, fired[0].count, fired[0].blocked_until), (AlertRule::ObjectSweep, 10, None));
        assert_eq!(d.blocked("user:1", 3_000), None, "alert only by default");
        // The next minute counts afresh, and with blocking on the subject is refused.
        p.anomaly_block_minutes = 5;
        for i in 0..10 {
            let path = format!("/api/v1/grid/cases/x{i}");
            if let Some(sig) = d.observe(&p, &seen(&u, &get, &path, 200), 70_000 + i) {
                assert_eq!(sig.blocked_until, Some(70_009 + 300_000));
            }
        }
        assert_eq!(d.blocked("user:1", 70_010), Some(300));
        assert_eq!(d.blocked("user:2", 70_010), None);
        assert_eq!(d.blocked("user:1", 70_009 + 300_000), None, "the block ends");
    }

    #[test]
    fn refusals_signatures_and_off_hours_changes_are_noticed() {
        let d = Detector::default();
        let p = SecurityPolicy {
            anomaly_denied_per_minute: 5,
            anomaly_signature_failures_per_minute: 5,
            ..Default::default()
        };
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let anon = Subject::address(Some(ip));
        let get = axum::http::Method::GET;
        let hits: Vec<_> = (0..7).filter_map(|i| d.observe(&p, &seen(&anon, &get, "/api/v1/users", 401), i)).collect();
        assert_eq!(hits.len(), 1);
        assert_eq!((hits[0].rule, hits[0].subject.as_str()), (AlertRule::DeniedBurst, "ip:10.1.2.3"));
        let sigs: Vec<_> = (0..6).filter_map(|i| d.signature_failed(&p, Some(ip), "zhcg", i)).collect();
        assert_eq!(sigs.len(), 1);
        // 23:30 China time is 15:30 UTC.
        let night = 1_795_000_000_000 - 1_795_000_000_000 % 86_400_000 + 15 * 3_600_000 + 30 * 60_000;
        let noon = night - 11 * 3_600_000 - 30 * 60_000;
        let admin = Subject { key: "user:sec".into(), name: Some("secadmin".into()), ip: None };
        let put = axum::http::Method::PUT;
        let change = |at: i64| {
            let s = Seen {
                subject: &admin,
                admin: true,
                method: &put,
                route: Some("/api/v1/security-policy"),
                path: "/api/v1/security-policy",
                status: 200,
                rows: 0,
            };
            d.observe(&p, &s, at)
        };
        assert!(change(noon).is_none(), "within working hours");
        let sig = change(night).expect("a change at 23:30");
        assert_eq!(sig.rule, AlertRule::OffHoursAdmin);
        assert!(change(night + 60_000).is_none(), "once an hour");
        assert!(change(night + HOUR_MS).is_some());
    }

    #[test]
    fn rows_taken_out_are_summed_per_hour_and_fire_once() {
        let d = Detector::default();
        let p = SecurityPolicy { anomaly_rows_per_hour: 1_000, ..SecurityPolicy::default() };
        let u = Subject { key: "user:2".into(), name: Some("li".into()), ip: None };
        let get = axum::http::Method::GET;
        let list = |rows, status| Seen {
            subject: &u,
            admin: false,
            method: &get,
            route: Some("/api/v1/grid/people"),
            path: "/api/v1/grid/people",
            status,
            rows,
        };
        let mut fired = Vec::new();
        // Failed answers carry no rows that count.
        fired.extend(d.observe(&p, &list(900, 403), 0));
        for i in 0..20 {
            fired.extend(d.observe(&p, &list(100, 200), 1_000 + i));
        }
        assert_eq!(fired.len(), 1, "once an hour");
        assert_eq!((fired[0].rule, fired[0].count), (AlertRule::BulkExport, 1_000));
        // A new hour counts afresh.
        assert!(d.observe(&p, &list(999, 200), 3_700_000).is_none());
        assert!(d.observe(&p, &list(1, 200), 3_700_001).is_some());
    }
}
