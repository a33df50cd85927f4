//! Day partitions and when they close.
//!
//! A [`Day`] is what Iceberg's `day(event_time)` transform stores: days since 1970-01-01 (UTC).
//! It prints and serialises as `YYYY-MM-DD`. A day is *closed* once the watermark (newest event
//! time − `[event_time] allowed_lateness`) has passed its end: no more on-time records can land
//! in it, so its row count is final and the partition gate may judge it.
//!
//! ```text
//!   day D                 D+1 00:00        + allowed_lateness
//! ──[──────────────────────)──────────────────────┤ newest event time ≥ here ⇒ D closed
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::QualityError;

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A UTC calendar day, as days since 1970-01-01 (Iceberg's `day` partition value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Day(pub i32);

impl Day {
    /// The day `YYYY-MM-DD`, if it is a valid calendar date.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Day> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        i32::try_from(days_from_civil(i64::from(year), month, day))
            .ok()
            .map(Day)
    }

    /// `(year, month, day)`.
    pub fn ymd(self) -> (i32, u32, u32) {
        civil_from_days(i64::from(self.0))
    }

    /// The day holding the instant `micros` (µs since the epoch, UTC; Iceberg `timestamptz`).
    pub fn of_micros(micros: i64) -> Day {
        // Clamped: no timestamp Arrow can hold is outside i32 days.
        let days = micros.div_euclid(MICROS_PER_DAY);
        Day(days.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
    }

    /// The first instant of the day, µs since the epoch.
    pub fn start_micros(self) -> i64 {
        i64::from(self.0) * MICROS_PER_DAY
    }

    /// The first instant of the next day (the day is `[start, end)`), µs since the epoch.
    pub fn end_micros(self) -> i64 {
        self.start_micros() + MICROS_PER_DAY
    }

    /// The day `n` days before this one.
    pub fn minus(self, n: u32) -> Day {
        Day(self.0.saturating_sub_unsigned(n))
    }

    /// The next day.
    pub fn next(self) -> Day {
        Day(self.0.saturating_add(1))
    }
}

/// Whether `day` is closed: the watermark — `newest_event_time` (µs) minus `allowed_lateness`,
/// as `[event_time]` defines it — is at or past the day's end.
pub fn day_closed(day: Day, newest_event_time: i64, allowed_lateness: Duration) -> bool {
    watermark(newest_event_time, allowed_lateness) >= day.end_micros()
}

/// The days that closed when the newest event time moved from `before` (`None`: nothing seen
/// yet) to `after`, oldest first. With no `before`, only the days since the oldest event time in
/// `first_seen` count (a pipeline does not judge days it never saw).
pub fn days_closed_between(
    before: Option<i64>,
    after: i64,
    first_seen: i64,
    allowed_lateness: Duration,
) -> Vec<Day> {
    let end = watermark(after, allowed_lateness);
    let first = match before {
        Some(before) => {
            // The first day still open at `before`.
            let mark = watermark(before, allowed_lateness);
            Day::of_micros(mark)
        }
        None => Day::of_micros(first_seen),
    };
    let mut days = Vec::new();
    let mut day = first;
    while day.end_micros() <= end {
        days.push(day);
        let next = day.next();
        if next == day {
            break;
        }
        day = next;
    }
    days
}

fn watermark(newest_event_time: i64, allowed_lateness: Duration) -> i64 {
    let lateness = i64::try_from(allowed_lateness.as_micros()).unwrap_or(i64::MAX);
    newest_event_time.saturating_sub(lateness)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year as i32, month, day)
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

impl FromStr for Day {
    type Err = QualityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || QualityError::invalid("day", format!("{s:?} is not a date; expected YYYY-MM-DD"));
        let mut parts = s.trim().splitn(3, '-');
        let mut next = || parts.next().ok_or_else(bad);
        let (y, m, d) = (next()?, next()?, next()?);
        let year = y.parse::<i32>().map_err(|_| bad())?;
        let month = m.parse::<u32>().map_err(|_| bad())?;
        let day = d.parse::<u32>().map_err(|_| bad())?;
        Day::from_ymd(year, month, day).ok_or_else(bad)
    }
}

impl Serialize for Day {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Day {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const HOUR: i64 = 3_600_000_000;

    #[test]
    fn days_print_and_parse_as_dates() {
        assert_eq!(Day(0).to_string(), "1970-01-01");
        assert_eq!(Day(-1).to_string(), "1969-12-31");
        let d = Day::from_ymd(2026, 11, 30).unwrap();
        assert_eq!(d.to_string(), "2026-11-30");
        assert_eq!("2026-11-30".parse::<Day>().unwrap(), d);
        assert_eq!(
            Day::from_ymd(2024, 2, 29).unwrap().next().to_string(),
            "2024-03-01"
        );
        assert!(Day::from_ymd(2026, 2, 29).is_none());
        let err = "2026-13-01".parse::<Day>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "day: \"2026-13-01\" is not a date; expected YYYY-MM-DD"
        );
        assert!("yesterday".parse::<Day>().is_err());
    }

    #[test]
    fn a_day_closes_when_the_watermark_passes_its_end() {
        let day = Day::from_ymd(2026, 11, 30).unwrap();
        let lateness = Duration::from_secs(3600);
        // 00:59 next day: watermark 23:59 of the day itself: open.
        assert!(!day_closed(
            day,
            day.end_micros() + HOUR - 60_000_000,
            lateness
        ));
        // 01:00 next day: watermark at the day's end: closed.
        assert!(day_closed(day, day.end_micros() + HOUR, lateness));
        assert!(day_closed(day, day.end_micros(), Duration::ZERO));
        assert!(!day_closed(day, day.end_micros() - 1, Duration::ZERO));
    }

    #[test]
    fn days_closed_between_lists_each_day_once() {
        let d = Day::from_ymd(2026, 11, 28).unwrap();
        let lateness = Duration::from_secs(3600);
        let first = d.start_micros() + 5 * HOUR;
        // Newest event at D+2 01:00: D and D+1 closed.
        let after = d.minus(0).next().next().start_micros() + HOUR;
        let closed = days_closed_between(None, after, first, lateness);
        assert_eq!(closed, vec![d, d.next()]);
        // Moving on to D+3 02:00 closes D+2 only.
        let later = d.next().next().next().start_micros() + 2 * HOUR;
        assert_eq!(
            days_closed_between(Some(after), later, first, lateness),
            vec![d.next().next()]
        );
        // No progress: nothing closes.
        assert!(days_closed_between(Some(later), later, first, lateness).is_empty());
    }

    proptest! {
        #[test]
        fn civil_dates_round_trip(days in -1_000_000i32..1_000_000) {
            let day = Day(days);
            let (y, m, d) = day.ymd();
            prop_assert_eq!(Day::from_ymd(y, m, d), Some(day));
            prop_assert_eq!(day.to_string().parse::<Day>().ok(), (y >= 0).then_some(day));
            prop_assert!(day.start_micros() < day.end_micros());
            prop_assert_eq!(Day::of_micros(day.start_micros()), day);
            prop_assert_eq!(Day::of_micros(day.end_micros() - 1), day);
        }
    }
}
