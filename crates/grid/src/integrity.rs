//! Integrity of stored cases (等保 DJ-DI-2: important business data kept intact in storage).
//! What a case *is* — the report as received (source, its ids, title, description, position,
//! address, reporter, time) — is sealed with a keyed MAC (`grid_cases.report_mac`, context
//! `grid.case.report`) when it is filed, and every step of its timeline (`grid_case_log.row_mac`,
//! context `grid.case.log`: who did what, when, into which stage, with which note) when it is
//! written. Both are append-only facts, so the seal is written once and never recomputed.
//!
//! Reading a case checks both. A case changed outside the application — a description rewritten,
//! a step's actor or time altered, a step deleted out of the middle — is shown with
//! `integrity_violation` and what failed, refuses every action until restored from a backup, and
//! raises a security alert (once per case and problem) with an audit record.
//!
//! Not sealed: the columns the workflow keeps current (stage, status, department, deadlines),
//! which follow from the timeline and the process instance and are rewritten on every step.

use crypto::KeyRing;
use crypto::hash::{KeyedMac, put_field, to_hex};
use store::{DbResultExt, Row};

/// The keyed MACs of case reports and timeline steps, derived once.
pub(crate) struct Seals {
    report: KeyedMac,
    log: KeyedMac,
}

/// The sealed fields of a case report.
pub(crate) struct Report<'a> {
    pub id: &'a str,
    pub case_no: &'a str,
    pub source: &'a str,
    pub external_id: Option<&'a str>,
    pub title: &'a str,
    pub description: &'a str,
    pub lon: Option<f64>,
    pub lat: Option<f64>,
    pub address: Option<&'a str>,
    pub reporter: &'a str,
    pub reporter_user: Option<&'a str>,
    pub created_at: i64,
}

/// The sealed fields of a timeline step.
pub(crate) struct Step<'a> {
    pub case_id: &'a str,
    pub seq: i64,
    pub at: i64,
    pub action: &'a str,
    pub stage: &'a str,
    pub actor: Option<&'a str>,
    pub note: Option<&'a str>,
}

/// Positions to 1e-7 degrees (about a centimetre): the same text whatever the backend's float.
fn coord(v: Option<f64>) -> Option<String> {
    v.map(|v| format!("{v:.7}"))
}

impl Seals {
    pub fn new(keys: &KeyRing) -> Seals {
        Seals { report: keys.mac_key("grid.case.report"), log: keys.mac_key("grid.case.log") }
    }

    pub fn report(&self, r: &Report<'_>) -> String {
        let mut c = Vec::with_capacity(256 + r.description.len());
        let created = r.created_at.to_string();
        let (lon, lat) = (coord(r.lon), coord(r.lat));
        for f in [
            Some(r.id),
            Some(r.case_no),
            Some(r.source),
            r.external_id,
            Some(r.title),
            Some(r.description),
            lon.as_deref(),
            lat.as_deref(),
            r.address,
            Some(r.reporter),
            r.reporter_user,
            Some(created.as_str()),
        ] {
            put_field(&mut c, f.map(str::as_bytes));
        }
        to_hex(&self.report.mac(&c))
    }

    pub fn step(&self, s: &Step<'_>) -> String {
        let mut c = Vec::with_capacity(128 + s.note.map_or(0, str::len));
        let (seq, at) = (s.seq.to_string(), s.at.to_string());
        for f in
            [Some(s.case_id), Some(seq.as_str()), Some(at.as_str()), Some(s.action), Some(s.stage), s.actor, s.note]
        {
            put_field(&mut c, f.map(str::as_bytes));
        }
        to_hex(&self.log.mac(&c))
    }

    /// Whether `stored` is the MAC `expected` (constant time).
    pub fn matches(stored: Option<&str>, expected: &str) -> bool {
        stored.is_some_and(|s| crypto::hash::constant_time_eq(s.as_bytes(), expected.as_bytes()))
    }
}

impl crate::Grid {
    /// Seals the cases and timeline steps that have no MAC yet (rows from before sealing
    /// existed); run at start. Returns how many rows were sealed.
    pub(crate) async fn seal_unsealed_cases(&self) -> kernel::Result<usize> {
        let cases = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REPORT_COLUMNS} FROM grid_cases WHERE report_mac IS NULL"
        )))
        .fetch_all(self.db().reader())
        .await
        .db()?;
        let steps =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {STEP_COLUMNS} FROM grid_case_log WHERE row_mac IS NULL")))
                .fetch_all(self.db().reader())
                .await
                .db()?;
        if cases.is_empty() && steps.is_empty() {
            return Ok(0);
        }
        let seals = &self.inner.seals;
        let mut tx = self.db().begin().await?;
        for r in &cases {
            sqlx::query("UPDATE grid_cases SET report_mac = $1 WHERE id = $2 AND report_mac IS NULL")
                .bind(seals.report(&ReportRow::read(r).view()))
                .bind(r.get::<String, _>(0))
                .execute(&mut *tx)
                .await
                .db()?;
        }
        for r in &steps {
            sqlx::query("UPDATE grid_case_log SET row_mac = $1 WHERE case_id = $2 AND seq = $3 AND row_mac IS NULL")
                .bind(seals.step(&StepRow::read(r).view()))
                .bind(r.get::<String, _>(0))
                .bind(r.get::<i64, _>(1))
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(cases.len() + steps.len())
    }

    /// Checks a case's report and timeline against their seals; `steps` are the case's timeline
    /// rows as read ([`STEP_COLUMNS`] then `row_mac`, in `seq` order). `None`: intact; otherwise
    /// what failed, in Chinese for the screen (and a security alert is raised, once per case
    /// while open, with an audit record).
    /// Refuses work on a case whose stored report or timeline fails its integrity check (the
    /// check raises the alert and audits it).
    pub(crate) async fn ensure_case_intact(&self, id: &str) -> kernel::Result<()> {
        let sql = format!("SELECT {STEP_COLUMNS}, row_mac FROM grid_case_log WHERE case_id = $1 ORDER BY seq");
        let steps = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_all(self.db().reader()).await.db()?;
        match self.check_case_integrity(id, &steps).await? {
            Some(what) => Err(kernel::Error::new(kernel::ErrorCode::IntegrityViolation, what)),
            None => Ok(()),
        }
    }

    pub(crate) async fn check_case_integrity(
        &self,
        id: &str,
        steps: &[store::AnyRow],
    ) -> kernel::Result<Option<String>> {
        let seals = &self.inner.seals;
        let mut problems = Vec::new();
        let report = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {REPORT_COLUMNS}, report_mac FROM grid_cases WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.db().reader())
        .await
        .db()?;
        let Some(report) = report else { return Ok(None) };
        if !Seals::matches(
            report.get::<Option<String>, _>(12).as_deref(),
            &seals.report(&ReportRow::read(&report).view()),
        ) {
            problems.push("上报内容（标题、描述、位置、来源或上报人）".to_string());
        }
        for (i, r) in steps.iter().enumerate() {
            let seq: i64 = r.get(1);
            if seq != i as i64 + 1 {
                problems.push(format!("办理过程缺少第 {} 步", i + 1));
                break;
            }
            if !Seals::matches(r.get::<Option<String>, _>(7).as_deref(), &seals.step(&StepRow::read(r).view())) {
                problems.push(format!("办理过程第 {seq} 步"));
            }
        }
        if problems.is_empty() {
            return Ok(None);
        }
        let case_no: String = report.get(1);
        let what = problems.join("、");
        tracing::error!(case = %case_no, %what, "a case fails its integrity check: it was changed outside the application");
        let now = self.now();
        let entry = audit::AuditEntry {
            actor_name: Some("integrity-check".into()),
            ..audit::AuditEntry::new(now, "grid.case.integrity_violation", audit::Channel::System)
        }
        .object("grid_case", id)
        .result(audit::AuditResult::Denied, Some("integrity_violation".into()))
        .detail(serde_json::json!({"case_no": case_no, "failed": what}));
        self.identity().audit_now(entry).await?;
        self.identity()
            .raise_alert(identity::alerts::AlertSignal {
                rule: identity::alerts::AlertRule::IntegrityViolation,
                subject: format!("grid_case:{id}"),
                subject_name: Some(case_no.clone()),
                source_ip: None,
                count: 1,
                detail: format!("案卷 {case_no} 的存储数据未通过完整性校验（{what}被绕过系统直接修改），已禁止对其办理，请从备份恢复"),
                blocked_until: None,
            })
            .await?;
        Ok(Some(format!("{what}未通过完整性校验，可能被绕过系统直接修改；在从备份恢复前不能办理")))
    }
}

/// The report's sealed columns, in [`Seals::report`] order after the id.
const REPORT_COLUMNS: &str =
    "id, case_no, source, external_id, title, description, lon, lat, address, reporter, reporter_user, created_at";
/// A timeline step's sealed columns.
pub(crate) const STEP_COLUMNS: &str = "case_id, seq, at, action, stage, actor, note";

/// A report as read, owning its fields.
struct ReportRow(
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    Option<f64>,
    Option<f64>,
    Option<String>,
    String,
    Option<String>,
    i64,
);

impl ReportRow {
    fn read(r: &store::AnyRow) -> ReportRow {
        ReportRow(
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
            r.get(7),
            r.get(8),
            r.get(9),
            r.get(10),
            r.get(11),
        )
    }

    fn view(&self) -> Report<'_> {
        Report {
            id: &self.0,
            case_no: &self.1,
            source: &self.2,
            external_id: self.3.as_deref(),
            title: &self.4,
            description: &self.5,
            lon: self.6,
            lat: self.7,
            address: self.8.as_deref(),
            reporter: &self.9,
            reporter_user: self.10.as_deref(),
            created_at: self.11,
        }
    }
}

/// A timeline step as read, owning its fields.
struct StepRow(String, i64, i64, String, String, Option<String>, Option<String>);

impl StepRow {
    fn read(r: &store::AnyRow) -> StepRow {
        StepRow(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6))
    }

    fn view(&self) -> Step<'_> {
        Step {
            case_id: &self.0,
            seq: self.1,
            at: self.2,
            action: &self.3,
            stage: &self.4,
            actor: self.5.as_deref(),
            note: self.6.as_deref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>(description: &'a str) -> Report<'a> {
        Report {
            id: "c1",
            case_no: "2026112200001",
            source: "patrol",
            external_id: None,
            title: "井盖破损",
            description,
            lon: Some(117.0412345),
            lat: Some(36.6712345),
            address: Some("山大路"),
            reporter: "吴海燕",
            reporter_user: Some("u1"),
            created_at: 1_795_000_000_000,
        }
    }

    #[test]
    fn any_change_to_a_sealed_field_changes_the_seal() {
        let s = Seals::new(&KeyRing::for_tests());
        let a = s.report(&report("污水井盖破损"));
        assert_eq!(a, s.report(&report("污水井盖破损")));
        assert_ne!(a, s.report(&report("污水井盖破损。")));
        assert_ne!(a, s.report(&Report { lat: Some(36.6712346), ..report("污水井盖破损") }));
        assert_ne!(a, s.report(&Report { external_id: Some(""), ..report("污水井盖破损") }), "absent is not empty");
        let step =
            Step { case_id: "c1", seq: 2, at: 5, action: "accept", stage: "dispatch", actor: Some("li"), note: None };
        let b = s.step(&step);
        assert_ne!(b, s.step(&Step { seq: 3, ..step }));
        assert_ne!(b, s.step(&Step { actor: Some("wang"), ..step }));
        assert!(Seals::matches(Some(&b), &b) && !Seals::matches(None, &b));
        // Another key ring seals differently.
        let other =
            KeyRing::parse(&format!("index hmac-sm3 {}\nt1 sm4-gcm {}\n", "33".repeat(32), "22".repeat(16))).unwrap();
        assert_ne!(a, Seals::new(&other).report(&report("污水井盖破损")));
    }
}
