//! Charlie Stats of one user: the figures of my-stats and of the admin view
//! of a user, from one dashboard read ([`Store::user_dashboard`]).

use super::ServiceError;
use charlie_store::{
    Store, analytics::DayTotals, calendar::Zone, dashboard::UserDashboard, rollup::Counters,
};
use time::OffsetDateTime;
use uuid::Uuid;

/// A user's stats over `days` local days ending today.
#[derive(Debug, Clone)]
pub struct UserStats {
    /// The period's length in days.
    pub days: u16,
    /// The IANA zone of every day boundary.
    pub timezone: String,
    /// The read: at least 7 days (the week figures need them), the top
    /// workflow over the period, the all-time totals and the user's row.
    pub dashboard: UserDashboard,
    /// The last 7 local days, today included.
    pub week: Counters,
    /// The period.
    pub period: Counters,
    /// All-time messages ÷ conversations, rounded to one decimal; 0
    /// without conversations.
    pub avg_messages_per_conversation: f64,
}

impl UserStats {
    /// The period's days, oldest first, zero-filled.
    pub fn period_days(&self) -> &[DayTotals] {
        self.dashboard.usage.last(usize::from(self.days))
    }
}

/// `messages ÷ conversations` rounded to one decimal, 0 without conversations.
pub fn average_per_conversation(messages: i64, conversations: i64) -> f64 {
    super::rounded_ratio(messages, conversations, 1)
}

/// The stats of `user_id` over `days` local days in `zone` ending at `now`.
pub async fn user_stats(
    store: &Store,
    user_id: Uuid,
    days: u16,
    zone: &Zone,
    now: OffsetDateTime,
) -> Result<UserStats, ServiceError> {
    let local_days = zone
        .days_ending(now, days.max(7))
        .ok_or_else(ServiceError::outside_calendar)?;
    let n = usize::from(days);
    let dashboard = store.user_dashboard(user_id, &local_days, n).await?;
    Ok(UserStats {
        days,
        timezone: zone.name().to_owned(),
        week: dashboard.usage.total_last(7),
        period: dashboard.usage.total_last(n),
        avg_messages_per_conversation: average_per_conversation(
            dashboard.total_messages,
            dashboard.total_conversations,
        ),
        dashboard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_is_rounded_to_one_decimal_and_zero_without_conversations() {
        assert_eq!(average_per_conversation(10, 3), 3.3);
        assert_eq!(average_per_conversation(11, 3), 3.7);
        assert_eq!(average_per_conversation(5, 0), 0.0);
    }
}
