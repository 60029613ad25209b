//! The working-day calendar: weekends, public holidays and the make-up working days (调休) that
//! Chinese government offices observe. Deadlines given in days count working days.

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, TimeZone, Weekday};

/// Which days are working days.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkCalendar {
    /// Public holidays (no work even on a weekday), as `YYYY-MM-DD`.
    pub holidays: BTreeSet<NaiveDate>,
    /// Make-up working days (work even on a weekend), as `YYYY-MM-DD`.
    pub workdays: BTreeSet<NaiveDate>,
}

fn tz() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8")
}

/// The day (China Standard Time) of a unix-ms time.
pub fn china_date(ms: i64) -> Option<NaiveDate> {
    tz().timestamp_millis_opt(ms).single().map(|d| d.date_naive())
}

/// The unix-ms time at which day `d` begins in China Standard Time.
pub fn china_day_start(d: NaiveDate) -> i64 {
    (d.and_hms_opt(0, 0, 0).expect("midnight").and_utc().timestamp() - 8 * 3600) * 1000
}

/// A point in time given as a day (`YYYY-MM-DD`, its start in China Standard Time) or as an
/// RFC 3339 time.
pub fn parse_day_or_time(s: &str) -> Option<i64> {
    let s = s.trim();
    match NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        Ok(d) => Some(china_day_start(d)),
        Err(_) => crate::clock::parse_rfc3339(s),
    }
}

/// Minutes since midnight (China Standard Time) of a unix-ms time, 0-1439.
pub fn china_minute_of_day(ms: i64) -> u32 {
    (ms.div_euclid(60_000) + 8 * 60).rem_euclid(1440) as u32
}

impl WorkCalendar {
    pub fn is_working_day(&self, d: NaiveDate) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// Moves `from_ms` forward by `days` working days, keeping the time of day (China Standard
    /// Time). Starting on a non-working day counts from the next working day's same time.
    pub fn add_working_days(&self, from_ms: i64, days: i64) -> i64 {
        let Some(start) = tz().timestamp_millis_opt(from_ms).single() else { return from_ms };
        let time = start.time();
        let mut d = start.date_naive();
        let mut left = days.max(0);
        // At most ten years of searching, so a calendar with no working days cannot hang.
        let mut guard = 3660;
        while left > 0 && guard > 0 {
            d += Duration::days(1);
            guard -= 1;
            if self.is_working_day(d) {
                left -= 1;
            }
        }
        tz().from_local_datetime(&d.and_time(time)).single().map(|t| t.timestamp_millis()).unwrap_or(from_ms)
    }

    /// Working days strictly between two instants' dates (for reports of elapsed working time).
    pub fn working_days_between(&self, from_ms: i64, to_ms: i64) -> i64 {
        let (Some(a), Some(b)) =
            (tz().timestamp_millis_opt(from_ms).single(), tz().timestamp_millis_opt(to_ms).single())
        else {
            return 0;
        };
        let (mut d, end) = (a.date_naive(), b.date_naive());
        let mut n = 0;
        while d < end {
            d += Duration::days(1);
            if self.is_working_day(d) {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_china_day_starts_at_16_utc_the_day_before() {
        let d = NaiveDate::from_ymd_opt(2026, 5, 1).unwrap();
        let ms = china_day_start(d);
        assert_eq!(crate::clock::to_rfc3339(ms), "2026-04-30T16:00:00.000Z");
        assert_eq!(china_date(ms), Some(d));
        assert_eq!(china_date(ms - 1), d.pred_opt());
        assert_eq!(parse_day_or_time("2026-05-01"), Some(ms));
        assert_eq!(parse_day_or_time("2026-05-01T00:00:00+08:00"), Some(ms));
        assert_eq!(parse_day_or_time("2026-13-01"), None);
    }

    fn ms(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn the_china_date_turns_at_midnight_in_beijing() {
        assert_eq!(china_date(ms("2026-11-22T23:59:59+08:00")), NaiveDate::from_ymd_opt(2026, 11, 22));
        assert_eq!(china_date(ms("2026-11-22T16:00:00Z")), NaiveDate::from_ymd_opt(2026, 11, 23));
    }

    #[test]
    fn weekends_holidays_and_make_up_days() {
        let mut cal = WorkCalendar::default();
        // Friday + 1 working day = Monday.
        assert_eq!(cal.add_working_days(ms("2026-11-20T10:00:00+08:00"), 1), ms("2026-11-23T10:00:00+08:00"));
        // A holiday on Monday pushes to Tuesday; a make-up Saturday counts.
        cal.holidays.insert(NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(cal.add_working_days(ms("2026-11-20T10:00:00+08:00"), 1), ms("2026-11-24T10:00:00+08:00"));
        cal.workdays.insert(NaiveDate::from_ymd_opt(2026, 11, 21).unwrap());
        assert_eq!(cal.add_working_days(ms("2026-11-20T10:00:00+08:00"), 1), ms("2026-11-21T10:00:00+08:00"));
        assert_eq!(cal.working_days_between(ms("2026-11-20T10:00:00+08:00"), ms("2026-11-25T10:00:00+08:00")), 3);
    }
}
