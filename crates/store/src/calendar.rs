//! Local calendar days in any IANA time zone, as ranges of rollup buckets.
//!
//! A day in zone Z is `[local midnight, next local midnight)`, which is 23,
//! 24 or 25 hours around DST changes. Every offset in use today is a whole
//! number of quarter-hours (+05:30, +05:45, −09:30…), and so is every DST
//! transition, so each local day is an exact range of `usage_buckets`
//! buckets and daily figures are exact sums.

use crate::rollup::BUCKET_SECONDS;
use jiff::{Timestamp, civil, tz::TimeZone};
use time::{Date, Month, OffsetDateTime};

/// One local day and its buckets `[first_bucket, end_bucket)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalDay {
    pub date: Date,
    pub first_bucket: i64,
    pub end_bucket: i64,
}

/// An unknown time zone name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IANA time zone name")]
pub struct UnknownTimeZone(pub String);

/// A time zone from the bundled IANA database.
#[derive(Debug, Clone)]
pub struct Zone {
    name: String,
    tz: TimeZone,
}

impl Zone {
    pub fn get(name: &str) -> Result<Zone, UnknownTimeZone> {
        TimeZone::get(name)
            .map(|tz| Zone {
                name: name.to_owned(),
                tz,
            })
            .map_err(|_| UnknownTimeZone(name.to_owned()))
    }

    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            tz: TimeZone::UTC,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local date of an instant.
    pub fn date_of(&self, at: OffsetDateTime) -> Date {
        Timestamp::from_second(at.unix_timestamp())
            .ok()
            .map(|ts| ts.to_zoned_datetime(self.tz.clone()).date())
            .and_then(to_time_date)
            .unwrap_or(at.date())
    }

    /// The instant (Unix seconds) local `date` starts at. Where midnight does
    /// not exist (a DST jump at 00:00), the day starts at the first instant
    /// that does.
    pub fn start_of(&self, date: Date) -> Option<i64> {
        let d = civil::Date::new(date.year() as i16, date.month() as i8, date.day() as i8).ok()?;
        let zoned = d.to_zoned_datetime(self.tz.clone()).ok()?;
        Some(zoned.timestamp().as_second())
    }

    /// `date` as a bucket range.
    pub fn day(&self, date: Date) -> Option<LocalDay> {
        let start = self.start_of(date)?;
        let end = self.start_of(date.next_day()?)?;
        Some(LocalDay {
            date,
            first_bucket: start.div_euclid(BUCKET_SECONDS),
            end_bucket: end.div_euclid(BUCKET_SECONDS),
        })
    }

    /// The `days` local days ending with the day that contains `now`, oldest first.
    pub fn days_ending(&self, now: OffsetDateTime, days: u16) -> Option<Vec<LocalDay>> {
        let today = self.date_of(now);
        let mut out = Vec::with_capacity(usize::from(days));
        let mut d = today.checked_sub(time::Duration::days(i64::from(days) - 1))?;
        while d <= today {
            out.push(self.day(d)?);
            d = d.next_day()?;
        }
        Some(out)
    }
}

fn to_time_date(d: civil::Date) -> Option<Date> {
    let month = Month::try_from(d.month() as u8).ok()?;
    Date::from_calendar_date(i32::from(d.year()), month, d.day() as u8).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn zone(name: &str) -> Zone {
        Zone::get(name).unwrap_or_else(|e| panic!("{e}"))
    }

    fn hours(d: &LocalDay) -> f64 {
        (d.end_bucket - d.first_bucket) as f64 / 4.0
    }

    #[test]
    fn days_have_23_24_or_25_hours_across_dst() {
        let ny = zone("America/New_York");
        assert_eq!(ny.day(date!(2026 - 03 - 08)).map(|d| hours(&d)), Some(23.0));
        assert_eq!(ny.day(date!(2026 - 11 - 01)).map(|d| hours(&d)), Some(25.0));
        assert_eq!(ny.day(date!(2026 - 06 - 01)).map(|d| hours(&d)), Some(24.0));
    }

    #[test]
    fn half_and_quarter_hour_offsets_start_days_on_bucket_edges() {
        // Kolkata is UTC+05:30, Kathmandu UTC+05:45: midnight is 18:30 / 18:15 UTC the day before.
        let kolkata = zone("Asia/Kolkata").start_of(date!(2026 - 01 - 10));
        assert_eq!(
            kolkata,
            Some(datetime!(2026-01-09 18:30 UTC).unix_timestamp())
        );
        let kathmandu = zone("Asia/Kathmandu").start_of(date!(2026 - 01 - 10));
        assert_eq!(
            kathmandu,
            Some(datetime!(2026-01-09 18:15 UTC).unix_timestamp())
        );
        assert_eq!(kathmandu.map(|s| s % BUCKET_SECONDS), Some(0));
    }

    #[test]
    fn consecutive_days_tile_time_without_gaps() {
        let z = zone("Asia/Kathmandu");
        let days = z
            .days_ending(datetime!(2026-01-10 00:00 UTC), 30)
            .unwrap_or_default();
        assert_eq!(days.len(), 30);
        assert!(
            days.windows(2)
                .all(|w| w[0].end_bucket == w[1].first_bucket)
        );
        assert_eq!(days.last().map(|d| d.date), Some(date!(2026 - 01 - 10)));
        assert!(Zone::get("Mars/Olympus").is_err());
    }

    #[test]
    fn local_dates_follow_the_zone() {
        let instant = datetime!(2026-01-09 18:20 UTC);
        assert_eq!(
            zone("Asia/Kathmandu").date_of(instant),
            date!(2026 - 01 - 10)
        );
        assert_eq!(zone("Asia/Kolkata").date_of(instant), date!(2026 - 01 - 09));
        assert_eq!(Zone::utc().date_of(instant), date!(2026 - 01 - 09));
    }
}
