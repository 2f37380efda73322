//! Month-to-date usage against a budget: how much of the budget is used,
//! where the month is heading, the alerts raised, and what is reserved.

use super::ServiceError;
use charlie_store::{
    Store,
    budgets::{self, Alert, AlertFilter, LocalMonth, MonthTotals},
    reservations::Reservation,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// The platform defaults a user without their own figures gets.
#[derive(Debug, Clone, Copy, Default)]
pub struct Defaults {
    /// `DEFAULT_MONTHLY_BUDGET_USD`, in nano-dollars.
    pub monthly_budget_nano_usd: Option<i64>,
    /// `BUDGET_DEFAULT_HARD_LIMIT_USD`, in nano-dollars.
    pub hard_limit_nano_usd: Option<i64>,
}

/// Where a budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// The user's own (admin API or `user.upsert`).
    User,
    /// The platform default.
    Default,
}

impl BudgetSource {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetSource::User => "user",
            BudgetSource::Default => "default",
        }
    }
}

/// A user's current local month.
#[derive(Debug, Clone)]
pub struct MonthUsage {
    /// The IANA zone of the month's boundaries (the user's, else UTC).
    pub timezone: String,
    pub month: LocalMonth,
    pub totals: MonthTotals,
    /// The soft budget and where it comes from.
    pub budget: Option<(i64, BudgetSource)>,
    /// Cost ÷ budget in percent, truncated to hundredths; `None` without a
    /// positive budget.
    pub percent_used: Option<f64>,
    /// See [`projected_nanos`].
    pub projected_nano_usd: i64,
    /// This month's alerts, highest threshold first.
    pub alerts: Vec<Alert>,
    pub hard_limit_nano_usd: Option<i64>,
    /// Reservations that count against the hard limit now, and their sum.
    pub held: Vec<Reservation>,
    pub reserved_nano_usd: i64,
}

/// The projected month-end cost: `cost × (end − start) ÷ (now − start)`,
/// truncated; elapsed time counts at least one second.
pub fn projected_nanos(cost_nanos: i64, start: i64, end: i64, now: i64) -> i64 {
    let total = i128::from((end - start).max(1));
    let elapsed = i128::from((now - start).clamp(1, end - start));
    i64::try_from(i128::from(cost_nanos) * total / elapsed).unwrap_or(i64::MAX)
}

/// `cost ÷ budget` in percent, truncated to hundredths; `None` unless the
/// budget is positive.
pub fn percent_used(cost_nanos: i64, budget_nanos: i64) -> Option<f64> {
    (budget_nanos > 0).then(|| {
        let hundredths = i128::from(cost_nanos) * 10_000 / i128::from(budget_nanos);
        hundredths as f64 / 100.0
    })
}

/// `user_id`'s month at `now`.
pub async fn month_usage(
    store: &Store,
    defaults: Defaults,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<MonthUsage, ServiceError> {
    let profile = store
        .budget_profile(user_id)
        .await?
        .ok_or_else(|| ServiceError::NotFound(format!("user {user_id}")))?;
    let zone = budgets::user_zone(profile.timezone.as_deref());
    let month = budgets::month_of(&zone, now).ok_or_else(ServiceError::outside_calendar)?;
    let totals = store.month_totals(user_id, &month.month).await?;
    let budget = match (
        profile.monthly_budget_nano_usd,
        defaults.monthly_budget_nano_usd,
    ) {
        (Some(b), _) => Some((b, BudgetSource::User)),
        (None, Some(b)) => Some((b, BudgetSource::Default)),
        (None, None) => None,
    };
    let mut alerts = store
        .alerts(&AlertFilter {
            user_id: Some(user_id),
            month: Some(month.month.clone()),
            limit: 100,
        })
        .await?;
    alerts.sort_by_key(|a| std::cmp::Reverse(a.threshold_percent));
    let held = store.held_reservations(user_id, now).await?;
    let hard_limit_nano_usd = store
        .hard_limit(user_id)
        .await?
        .or(defaults.hard_limit_nano_usd);
    Ok(MonthUsage {
        timezone: zone.name().to_owned(),
        percent_used: budget.and_then(|(b, _)| percent_used(totals.cost_nano_usd, b)),
        projected_nano_usd: projected_nanos(
            totals.cost_nano_usd,
            month.start,
            month.end,
            now.unix_timestamp(),
        ),
        reserved_nano_usd: held.iter().map(|r| r.amount_nano_usd).sum(),
        month,
        totals,
        budget,
        alerts,
        hard_limit_nano_usd,
        held,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_extrapolates_the_month_so_far() {
        let day = 86_400;
        // A 30-day month, 10 days in, $1 spent: $3 projected.
        assert_eq!(
            projected_nanos(1_000_000_000, 0, 30 * day, 10 * day),
            3_000_000_000
        );
        assert_eq!(projected_nanos(1, 0, 3, 2), 1);
        // At (or past) the end, the projection is the cost.
        assert_eq!(projected_nanos(5, 0, 100, 500), 5);
        assert_eq!(projected_nanos(0, 0, 100, 0), 0);
    }

    #[test]
    fn percent_used_is_truncated_to_hundredths() {
        assert_eq!(percent_used(1, 3), Some(33.33));
        assert_eq!(percent_used(2, 3), Some(66.66));
        assert_eq!(percent_used(5, 0), None);
        assert_eq!(percent_used(250, 100), Some(250.0));
    }
}
