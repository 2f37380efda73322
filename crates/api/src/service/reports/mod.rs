//! Weekly reports: ISO-week maths in a zone, a user's figures for a week,
//! and the e-mail they are rendered to (`email`). Sending and scheduling
//! are in `crate::jobs::reports`; the preview route is
//! `crate::routes::reports`.

pub mod email;

pub use email::{ReportData, ReportDay};

use super::ServiceError;
use charlie_store::{Store, calendar::Zone};
use time::{Date, OffsetDateTime, Weekday};
use uuid::Uuid;

/// `YYYY-Www` of the ISO week that holds `monday`.
pub fn week_label(monday: Date) -> String {
    let (year, week, _) = monday.to_iso_week_date();
    format!("{year:04}-W{week:02}")
}

/// The Monday of ISO week `YYYY-Www`.
pub fn parse_week(s: &str) -> Result<Date, String> {
    let bad = || format!("`{s}` is not an ISO week such as 2026-W05");
    let (year, week) = s.trim().split_once("-W").ok_or_else(bad)?;
    if year.len() != 4 || week.len() != 2 {
        return Err(bad());
    }
    let year: i32 = year.parse().map_err(|_| bad())?;
    let week: u8 = week.parse().map_err(|_| bad())?;
    Date::from_iso_week_date(year, week, Weekday::Monday).map_err(|_| bad())
}

fn monday_of(d: Date) -> Date {
    d - time::Duration::days(i64::from(d.weekday().number_days_from_monday()))
}

/// The Monday of the last complete week at `now` in `zone`.
pub fn last_complete_week(zone: &Zone, now: OffsetDateTime) -> Date {
    monday_of(zone.date_of(now)) - time::Duration::days(7)
}

/// The Monday of the week due at `now`: the previous week once this week's
/// `weekday` `hour` has passed, else the one before it (so a server that was
/// down at the scheduled time catches up).
pub fn due_week(zone: &Zone, now: OffsetDateTime, weekday: Weekday, hour: u8) -> Option<Date> {
    let this_monday = monday_of(zone.date_of(now));
    let scheduled_day =
        this_monday + time::Duration::days(i64::from(weekday.number_days_from_monday()));
    let scheduled = zone.start_of(scheduled_day)? + i64::from(hour) * 3600;
    let weeks_back = if now.unix_timestamp() >= scheduled {
        7
    } else {
        14
    };
    Some(this_monday - time::Duration::days(weeks_back))
}

/// The figures of `user_id`'s week starting `monday`, in `zone`.
pub async fn report_data(
    store: &Store,
    user_id: Uuid,
    monday: Date,
    zone: &Zone,
) -> Result<ReportData, ServiceError> {
    let previous = monday - time::Duration::days(7);
    let days = (0..14)
        .map(|i| zone.day(previous + time::Duration::days(i)))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(ServiceError::outside_calendar)?;
    // Fourteen days; the top workflow over the last seven (this week).
    let dash = store.user_dashboard(user_id, &days, 7).await?;
    let usage = dash.usage;
    let this = usage.total_last(7);
    let mut before = charlie_store::rollup::Counters::default();
    for d in &usage.days[..7.min(usage.days.len())] {
        before.add(&d.counters);
    }
    let top_workflow = dash.top_workflow.map(|w| (w.name, w.message_count));
    Ok(ReportData {
        week: week_label(monday),
        first_day: monday,
        last_day: monday + time::Duration::days(6),
        timezone: zone.name().to_owned(),
        messages: this.message_count,
        previous_messages: before.message_count,
        conversations: this.conversations_started,
        previous_conversations: before.conversations_started,
        top_workflow,
        input_tokens: this.input_tokens,
        output_tokens: this.output_tokens,
        cost_nano_usd: this.cost_nano_usd,
        unpriced_messages: this.unpriced_message_count,
        days: usage
            .last(7)
            .iter()
            .map(|d| ReportDay {
                date: d.date,
                messages: d.counters.message_count,
            })
            .collect(),
    })
}

/// The buckets `[first, end)` of week `monday` in `zone`.
pub fn week_buckets(zone: &Zone, monday: Date) -> Result<(i64, i64), ServiceError> {
    let first = zone.day(monday);
    let last = zone.day(monday + time::Duration::days(6));
    match (first, last) {
        (Some(f), Some(l)) => Ok((f.first_bucket, l.end_bucket)),
        _ => Err(ServiceError::outside_calendar()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn iso_weeks_parse_and_print() {
        assert_eq!(parse_week("2026-W02"), Ok(date!(2026 - 01 - 05)));
        assert_eq!(parse_week("2027-W01"), Ok(date!(2027 - 01 - 04)));
        assert_eq!(week_label(date!(2024 - 12 - 30)), "2025-W01");
        for bad in ["2026-W54", "2026W02", "2026-02", "26-W02", "2026-W2"] {
            assert!(parse_week(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_previous_week_is_due_once_the_scheduled_hour_has_passed() {
        let utc = Zone::utc();
        // Wednesday 2026-01-14; reports on Mondays at 08:00.
        let now = datetime!(2026-01-14 12:00 UTC);
        assert_eq!(
            due_week(&utc, now, Weekday::Monday, 8),
            Some(date!(2026 - 01 - 05))
        );
        // Reports on Fridays: last week's is not due yet, the one before is.
        assert_eq!(
            due_week(&utc, now, Weekday::Friday, 8),
            Some(date!(2025 - 12 - 29))
        );
        // Monday 07:59 vs 08:00.
        assert_eq!(
            due_week(&utc, datetime!(2026-01-12 07:59 UTC), Weekday::Monday, 8),
            Some(date!(2025 - 12 - 29))
        );
        assert_eq!(
            due_week(&utc, datetime!(2026-01-12 08:00 UTC), Weekday::Monday, 8),
            Some(date!(2026 - 01 - 05))
        );
        // In Tokyo, Sunday 23:30 UTC is already Monday 08:30.
        let tokyo = Zone::get("Asia/Tokyo").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            due_week(&tokyo, datetime!(2026-01-11 23:30 UTC), Weekday::Monday, 8),
            Some(date!(2026 - 01 - 05))
        );
        assert_eq!(last_complete_week(&utc, now), date!(2026 - 01 - 05));
    }
}
