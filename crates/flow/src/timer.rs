//! ISO 8601 timer values: durations (`PT15M`, `P1DT2H`, `P2W`), date-times
//! (`2026-12-01T09:00:00+08:00`; without an offset, China Standard Time is assumed), and cycles
//! (`R3/PT10M`, `R/P1D`, `R2/2026-12-01T09:00:00+08:00/PT1H`, or a cron expression as Camunda 8
//! accepts in `timeCycle`: `0 0 9 * * MON-FRI` — seconds optional — evaluated in China Standard Time).

use chrono::{DateTime, Duration, FixedOffset, Months, NaiveDateTime, TimeZone};

/// A parsed ISO 8601 duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IsoDuration {
    pub months: u32,
    pub days: i64,
    pub millis: i64,
}

impl IsoDuration {
    /// Adds the duration to a unix-ms instant (calendar months and days in UTC+8).
    pub fn after(&self, from_ms: i64) -> Option<i64> {
        let tz = FixedOffset::east_opt(8 * 3600)?;
        let t = tz.timestamp_millis_opt(from_ms).single()?;
        let t = t.checked_add_months(Months::new(self.months))?;
        let t = t.checked_add_signed(Duration::days(self.days))?;
        let t = t.checked_add_signed(Duration::milliseconds(self.millis))?;
        Some(t.timestamp_millis())
    }

    /// The duration in milliseconds, counting a month as 30 days (for cycle intervals).
    pub fn approx_ms(&self) -> i64 {
        (self.months as i64 * 30 + self.days) * 86_400_000 + self.millis
    }
}

/// Parses `PnYnMnWnDTnHnMnS`.
pub fn parse_duration(s: &str) -> Result<IsoDuration, String> {
    let bad = || format!("'{s}' is not an ISO 8601 duration such as PT15M or P1DT2H");
    let rest = s.trim().strip_prefix('P').ok_or_else(bad)?;
    if rest.is_empty() {
        return Err(bad());
    }
    let mut d = IsoDuration::default();
    let mut in_time = false;
    let mut num = String::new();
    let mut any = false;
    for c in rest.chars() {
        match c {
            'T' if !in_time && num.is_empty() => in_time = true,
            '0'..='9' | '.' => num.push(c),
            unit => {
                let n: f64 = num.parse().map_err(|_| bad())?;
                num.clear();
                any = true;
                if !(0.0..1.0e7).contains(&n) {
                    return Err(bad());
                }
                match (in_time, unit) {
                    (false, 'Y') => d.months += (n as u32) * 12,
                    (false, 'M') => d.months += n as u32,
                    (false, 'W') => d.days += (n * 7.0) as i64,
                    (false, 'D') => d.days += n as i64,
                    (true, 'H') => d.millis += (n * 3_600_000.0) as i64,
                    (true, 'M') => d.millis += (n * 60_000.0) as i64,
                    (true, 'S') => d.millis += (n * 1000.0) as i64,
                    _ => return Err(bad()),
                }
            }
        }
    }
    if !num.is_empty() || !any {
        return Err(bad());
    }
    Ok(d)
}

/// Parses a date-time; without an offset it is read as China Standard Time (UTC+8).
pub fn parse_date(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    let tz = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    for fmt in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Ok(n) = NaiveDateTime::parse_from_str(s, fmt)
            && let Some(t) = tz.from_local_datetime(&n).single()
        {
            return Ok(t.timestamp_millis());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let n = d.and_hms_opt(0, 0, 0).expect("midnight");
        return Ok(tz.from_local_datetime(&n).single().expect("fixed offset").timestamp_millis());
    }
    Err(format!("'{s}' is not an ISO 8601 date-time such as 2026-12-01T09:00:00+08:00"))
}

/// A repeating timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// Repetitions left after the first firing; `None` = unbounded.
    pub repetitions: Option<u32>,
    pub first_due: i64,
    /// The interval of an ISO 8601 cycle (0 for a cron cycle).
    pub every_ms: i64,
    /// The expression of a cron cycle: each firing is followed by its next occurrence.
    pub cron: Option<String>,
}

fn parse_cron(s: &str) -> Result<croner::Cron, String> {
    croner::parser::CronParser::builder()
        .year(croner::parser::Year::Disallowed)
        .build()
        .parse(s.trim())
        .map_err(|e| format!("'{s}' is not a cron expression such as 0 0 9 * * MON-FRI: {e}"))
}

/// The first occurrence of a cron expression strictly after `after_ms`, in China Standard Time.
pub fn cron_next(expr: &str, after_ms: i64) -> Result<i64, String> {
    let tz = FixedOffset::east_opt(8 * 3600).expect("offset");
    let from = tz.timestamp_millis_opt(after_ms).single().ok_or_else(|| "time out of range".to_string())?;
    let next =
        parse_cron(expr)?.find_next_occurrence(&from, false).map_err(|e| format!("'{expr}' never fires again: {e}"))?;
    Ok(next.timestamp_millis())
}

/// Parses `R[n]/[start/]duration` or a cron expression relative to `now`.
pub fn parse_cycle(s: &str, now: i64) -> Result<Cycle, String> {
    if !s.trim().starts_with('R') && s.trim().contains(' ') {
        let expr = s.trim().to_string();
        let first_due = cron_next(&expr, now)?;
        let second = cron_next(&expr, first_due)?;
        if second - first_due < 1000 {
            return Err(format!("'{s}': a cycle must repeat at most once a second"));
        }
        return Ok(Cycle { repetitions: None, first_due, every_ms: 0, cron: Some(expr) });
    }
    let bad =
        || format!("'{s}' is not an ISO 8601 cycle such as R3/PT10M, nor a cron expression such as 0 0 9 * * MON-FRI");
    let parts: Vec<&str> = s.trim().split('/').collect();
    let reps = parts.first().and_then(|r| r.strip_prefix('R')).ok_or_else(bad)?;
    let repetitions = if reps.is_empty() { None } else { Some(reps.parse::<u32>().map_err(|_| bad())?) };
    let (start, dur) = match parts.len() {
        2 => (None, parts[1]),
        3 => (Some(parse_date(parts[1])?), parts[2]),
        _ => return Err(bad()),
    };
    let d = parse_duration(dur)?;
    let every_ms = d.approx_ms();
    if every_ms < 1000 {
        return Err(format!("'{s}': a cycle must repeat at most once a second"));
    }
    let first_due = match start {
        Some(st) => st,
        None => d.after(now).ok_or_else(bad)?,
    };
    Ok(Cycle { repetitions: repetitions.map(|r| r.saturating_sub(1)), first_due, every_ms, cron: None })
}

/// A task deadline from a duration (relative to `now`; whole days count working days on `cal`,
/// so `P2D` from a Friday is the Tuesday after) or a date-time.
pub fn deadline(s: &str, now: i64, cal: &kernel::WorkCalendar) -> Result<i64, String> {
    let t = s.trim();
    if !t.starts_with('P') {
        return parse_date(t);
    }
    let d = parse_duration(t)?;
    let after_months = IsoDuration { months: d.months, days: 0, millis: 0 }
        .after(now)
        .ok_or_else(|| format!("'{t}' is out of range"))?;
    Ok(cal.add_working_days(after_months, d.days) + d.millis)
}

/// Formats unix ms as `YYYY-MM-DD HH:MM` in China Standard Time, for messages.
pub fn fmt_local(ms: i64) -> String {
    let tz = FixedOffset::east_opt(8 * 3600).expect("offset");
    tz.timestamp_millis_opt(ms).single().map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_add_on_the_calendar() {
        assert_eq!(parse_duration("PT15M").unwrap().millis, 900_000);
        assert_eq!(parse_duration("P1DT2H").unwrap(), IsoDuration { months: 0, days: 1, millis: 7_200_000 });
        assert_eq!(parse_duration("P2W").unwrap().days, 14);
        assert_eq!(parse_duration("PT0.5S").unwrap().millis, 500);
        for bad in ["", "P", "PT", "15M", "P1H", "PT1D", "P-1D", "PTxM"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        // 2026-01-31 + P1M = 2026-02-28 (end of month clamps)
        let jan31 = parse_date("2026-01-31T10:00:00+08:00").unwrap();
        let feb = parse_duration("P1M").unwrap().after(jan31).unwrap();
        assert_eq!(feb, parse_date("2026-02-28T10:00:00+08:00").unwrap());
    }

    #[test]
    fn dates_without_offset_are_china_time() {
        assert_eq!(parse_date("2026-12-01T09:00:00").unwrap(), parse_date("2026-12-01T01:00:00Z").unwrap());
        assert!(parse_date("tomorrow").is_err());
    }

    #[test]
    fn cycles_count_repetitions() {
        let c = parse_cycle("R3/PT10M", 0).unwrap();
        assert_eq!((c.repetitions, c.first_due, c.every_ms), (Some(2), 600_000, 600_000));
        assert_eq!(parse_cycle("R/PT1H", 0).unwrap().repetitions, None);
        assert!(parse_cycle("R3/PT0.1S", 0).is_err());
        assert!(parse_cycle("R3/PT0.1S", 0).is_err());
    }

    #[test]
    fn cron_cycles_fire_at_their_next_occurrence_in_china_time() {
        // Friday 2026-11-20 10:00 Beijing: weekdays at 09:00 next fire on Monday the 23rd.
        let fri = parse_date("2026-11-20T10:00:00+08:00").unwrap();
        let c = parse_cycle("0 0 9 * * MON-FRI", fri).unwrap();
        assert_eq!(c.first_due, parse_date("2026-11-23T09:00:00+08:00").unwrap());
        assert_eq!(c.cron.as_deref(), Some("0 0 9 * * MON-FRI"));
        assert_eq!(
            cron_next("0 0 9 * * MON-FRI", c.first_due).unwrap(),
            parse_date("2026-11-24T09:00:00+08:00").unwrap()
        );
        // Five fields (no seconds) and Quartz's '?' are accepted.
        assert_eq!(parse_cycle("30 8 * * *", fri).unwrap().first_due, parse_date("2026-11-21T08:30:00+08:00").unwrap());
        assert_eq!(
            parse_cycle("0 0 9 ? * MON", fri).unwrap().first_due,
            parse_date("2026-11-23T09:00:00+08:00").unwrap()
        );
        // Nonsense and dates that never come are named.
        assert!(parse_cycle("0 0 25 * * *", fri).is_err());
        assert!(parse_cycle("0 0 9 31 2 *", fri).is_err());
    }
}
