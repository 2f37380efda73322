//! The admin overview: platform figures of today and the week in a zone,
//! the error rate, and the cohort funnel over a period.

use super::ServiceError;
use charlie_store::{
    Store,
    analytics::FunnelCounts,
    calendar::Zone,
    dashboard::{OverviewFigures, OverviewWindow},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// The overview as one admin sees it.
#[derive(Debug, Clone)]
pub struct Overview {
    pub figures: OverviewFigures,
    /// Errors today ÷ messages today, rounded to 4 decimals; 0 without
    /// messages today.
    pub error_rate: f64,
    /// The funnel's period in days.
    pub days: u16,
    /// The IANA zone of "today" and "week".
    pub timezone: String,
}

/// `errors ÷ messages` rounded to 4 decimals, 0 without messages.
pub fn error_rate(errors: i64, messages: i64) -> f64 {
    super::rounded_ratio(errors, messages, 4)
}

/// The overview in `zone` at `now`, with the funnel over `days` local
/// days, read together with the row of the admin `admin_id`.
pub async fn overview(
    store: &Store,
    admin_id: Uuid,
    days: u16,
    zone: &Zone,
    now: OffsetDateTime,
) -> Result<Overview, ServiceError> {
    let week = zone
        .days_ending(now, 7)
        .ok_or_else(ServiceError::outside_calendar)?;
    let period = zone
        .days_ending(now, days)
        .ok_or_else(ServiceError::outside_calendar)?;
    let (Some(week_start), Some(today), Some(first)) = (week.first(), week.last(), period.first())
    else {
        return Err(ServiceError::outside_calendar());
    };
    let figures = store
        .platform_overview(
            OverviewWindow {
                today: today.first_bucket,
                week: week_start.first_bucket,
                end: today.end_bucket,
                funnel_from: first.first_bucket,
            },
            admin_id,
        )
        .await?;
    Ok(Overview {
        error_rate: error_rate(figures.errors_today, figures.today.message_count),
        figures,
        days,
        timezone: zone.name().to_owned(),
    })
}

/// The cohort funnel of users who signed up in the last `days` local days
/// of `zone` at `now`.
pub async fn funnel(
    store: &Store,
    zone: &Zone,
    days: u16,
    now: OffsetDateTime,
) -> Result<FunnelCounts, ServiceError> {
    let period = zone
        .days_ending(now, days)
        .ok_or_else(ServiceError::outside_calendar)?;
    let first = period.first().ok_or_else(ServiceError::outside_calendar)?;
    Ok(store.funnel(first.first_bucket).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_error_rate_has_four_decimals() {
        assert_eq!(error_rate(1, 3), 0.3333);
        assert_eq!(error_rate(2, 0), 0.0);
        assert_eq!(error_rate(0, 10), 0.0);
    }
}
