//! The security policy (password rules, lockout, sessions, rate limits), edited by the security
//! administrator at run time; defaults come from the config file.

use kernel::{Error, ErrorCode};
use serde::{Deserialize, Serialize};

/// Security policy. Defaults follow what MLPS level 3 assessors expect (see SECURITY.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityPolicy {
    /// Minimum password length.
    pub password_min_length: u32,
    /// How many of the four character classes (lower, upper, digit, symbol) a password needs.
    pub password_min_classes: u32,
    /// A new password may not repeat any of this many previous ones.
    pub password_history: u32,
    /// Days before a password must be changed (0: never).
    pub password_max_age_days: u32,
    /// Failed logins within the window that lock the account.
    pub lockout_threshold: u32,
    pub lockout_window_minutes: u32,
    pub lockout_minutes: u32,
    /// A session unused this long ends.
    pub session_idle_minutes: u32,
    /// A session ends this long after login, however active.
    pub session_absolute_hours: u32,
    /// Login attempts per minute from one source address.
    pub login_rate_per_minute: u32,
    /// API requests per minute for one user or application (applications may set their own).
    pub api_rate_per_minute: u32,
    /// Business accounts not used (no login) for this many days are disabled (0: never). The
    /// three administrators are exempt: disabling the last of them would lock the system.
    pub inactive_disable_days: u32,
    /// Abnormal-call detection (等保 DJ-IP-3), each 0 to switch the rule off: refused requests
    /// (401/403) from one source in a minute that raise an alert.
    pub anomaly_denied_per_minute: u32,
    /// Different objects one caller reads by id in a minute that raise an alert (enumeration).
    pub anomaly_objects_per_minute: u32,
    /// Failed signed requests from one address in a minute that raise an alert.
    pub anomaly_signature_failures_per_minute: u32,
    /// Data rows one caller takes out through lists and exports in an hour that raise an alert
    /// (bulk export).
    pub anomaly_rows_per_hour: u32,
    /// Minutes the subject of a refusal-burst or enumeration alert is refused (429) for; 0 only
    /// alerts. Handling the alert lifts the block.
    pub anomaly_block_minutes: u32,
    /// When the three administrators normally work, `HH:MM-HH:MM` China time; a change of
    /// theirs outside it raises an alert (once an hour per administrator). Empty: no rule.
    pub admin_working_hours: String,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        SecurityPolicy {
            password_min_length: 8,
            password_min_classes: 3,
            password_history: 5,
            password_max_age_days: 90,
            lockout_threshold: 5,
            lockout_window_minutes: 15,
            lockout_minutes: 30,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            login_rate_per_minute: 30,
            api_rate_per_minute: 6000,
            inactive_disable_days: 90,
            anomaly_denied_per_minute: 30,
            anomaly_objects_per_minute: 120,
            anomaly_signature_failures_per_minute: 10,
            anomaly_rows_per_hour: 20_000,
            anomaly_block_minutes: 0,
            admin_working_hours: "07:00-22:00".into(),
        }
    }
}

impl SecurityPolicy {
    /// Checks the policy itself is sane (an administrator cannot switch protections off).
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::new(ErrorCode::ValidationFailed, m.to_string()));
        if !(8..=128).contains(&self.password_min_length) {
            return bad("password_min_length must be between 8 and 128");
        }
        if !(1..=4).contains(&self.password_min_classes) {
            return bad("password_min_classes must be between 1 and 4");
        }
        if self.password_history > 24 {
            return bad("password_history must be at most 24");
        }
        if self.password_max_age_days > 3650 {
            return bad("password_max_age_days must be at most 3650 (0 disables expiry)");
        }
        if !(3..=20).contains(&self.lockout_threshold) {
            return bad("lockout_threshold must be between 3 and 20");
        }
        if !(1..=1440).contains(&self.lockout_window_minutes) || !(1..=1440).contains(&self.lockout_minutes) {
            return bad("lockout_window_minutes and lockout_minutes must be between 1 and 1440");
        }
        if !(1..=120).contains(&self.session_idle_minutes) {
            return bad("session_idle_minutes must be between 1 and 120");
        }
        if !(1..=24).contains(&self.session_absolute_hours) {
            return bad("session_absolute_hours must be between 1 and 24");
        }
        if self.login_rate_per_minute == 0 || self.api_rate_per_minute == 0 {
            return bad("rate limits must be at least 1 per minute");
        }
        if self.inactive_disable_days != 0 && !(30..=3650).contains(&self.inactive_disable_days) {
            return bad("inactive_disable_days must be 0 (never) or between 30 and 3650");
        }
        let thresholds = [
            ("anomaly_denied_per_minute", self.anomaly_denied_per_minute),
            ("anomaly_objects_per_minute", self.anomaly_objects_per_minute),
            ("anomaly_signature_failures_per_minute", self.anomaly_signature_failures_per_minute),
        ];
        for (name, v) in thresholds {
            if v != 0 && !(5..=100_000).contains(&v) {
                return bad(&format!("{name} must be 0 (off) or between 5 and 100000"));
            }
        }
        if self.anomaly_rows_per_hour != 0 && !(100..=10_000_000).contains(&self.anomaly_rows_per_hour) {
            return bad("anomaly_rows_per_hour must be 0 (off) or between 100 and 10000000");
        }
        if self.anomaly_block_minutes > 1440 {
            return bad("anomaly_block_minutes must be at most 1440 (0 only alerts)");
        }
        if !self.admin_working_hours.is_empty() && self.working_hours().is_none() {
            return bad("admin_working_hours must look like 07:00-22:00 (or be empty)");
        }
        Ok(())
    }

    /// The administrators' working hours as minutes of the day `[start, end)`; `None` when unset.
    /// A span over midnight (`20:00-08:00`) has start > end.
    pub fn working_hours(&self) -> Option<(u32, u32)> {
        let (a, b) = self.admin_working_hours.split_once('-')?;
        let minute = |t: &str| {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
        };
        let (start, end) = (minute(a)?, minute(b)?);
        (start != end).then_some((start, end))
    }

    /// Whether `minute_of_day` lies outside the administrators' working hours.
    pub fn outside_working_hours(&self, minute_of_day: u32) -> bool {
        match self.working_hours() {
            None => false,
            Some((start, end)) if start < end => !(start..end).contains(&minute_of_day),
            Some((start, end)) => (end..start).contains(&minute_of_day),
        }
    }

    /// Checks a new password against the rules (history is checked by the caller).
    pub fn check_password(&self, username: &str, password: &str) -> Result<(), Error> {
        let weak = |m: String| Err(Error::new(ErrorCode::WeakPassword, m));
        let len = password.chars().count();
        if len < self.password_min_length as usize {
            return weak(format!("the password needs at least {} characters", self.password_min_length));
        }
        if len > 128 {
            return weak("the password may have at most 128 characters".into());
        }
        let classes = [
            password.chars().any(|c| c.is_ascii_lowercase()),
            password.chars().any(|c| c.is_ascii_uppercase()),
            password.chars().any(|c| c.is_ascii_digit()),
            password.chars().any(|c| !c.is_ascii_alphanumeric()),
        ]
        .iter()
        .filter(|b| **b)
        .count() as u32;
        if classes < self.password_min_classes {
            return weak(format!(
                "the password needs {} of: lower-case letters, upper-case letters, digits, symbols",
                self.password_min_classes
            ));
        }
        if !username.is_empty() && password.to_lowercase().contains(&username.to_lowercase()) {
            return weak("the password may not contain the username".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_rules() {
        let p = SecurityPolicy::default();
        assert!(p.check_password("lilei", "Jinan@2026").is_ok());
        let code = |pw: &str| p.check_password("lilei", pw).unwrap_err().code;
        assert_eq!(code("Ab1!"), ErrorCode::WeakPassword);
        assert_eq!(code("alllowercase"), ErrorCode::WeakPassword);
        assert_eq!(code("LiLei@2026x"), ErrorCode::WeakPassword, "contains the username");
        assert!(p.check_password("lilei", "济南泉城Ab12").is_ok(), "Chinese characters count as symbols");
    }

    #[test]
    fn working_hours_parse_and_wrap_midnight() {
        let mut p = SecurityPolicy::default();
        assert_eq!(p.working_hours(), Some((420, 1320)));
        assert!(p.outside_working_hours(6 * 60 + 59) && !p.outside_working_hours(7 * 60));
        assert!(!p.outside_working_hours(21 * 60 + 59) && p.outside_working_hours(22 * 60));
        p.admin_working_hours = "20:00-08:00".into();
        assert!(!p.outside_working_hours(23 * 60) && !p.outside_working_hours(60) && p.outside_working_hours(12 * 60));
        p.admin_working_hours = String::new();
        assert!(!p.outside_working_hours(3 * 60) && p.validate().is_ok());
        for bad in ["7:00-22:00", "07:00", "25:00-08:00", "08:00-08:00", "ab:cd-ef:gh"] {
            p.admin_working_hours = bad.into();
            assert!(p.validate().is_err(), "{bad}");
        }
        p.admin_working_hours = "07:00-22:00".into();
        p.anomaly_objects_per_minute = 2;
        assert!(p.validate().is_err(), "a threshold that would flag every user is refused");
    }

    #[test]
    fn policy_cannot_switch_protections_off() {
        let mut p = SecurityPolicy::default();
        assert!(p.validate().is_ok());
        p.lockout_threshold = 0;
        assert!(p.validate().is_err());
        let p = SecurityPolicy { password_min_length: 4, ..SecurityPolicy::default() };
        assert!(p.validate().is_err());
    }
}
