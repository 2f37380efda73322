//! Charlie Stats of one user: the figures of my-stats and of the admin view
//! of a user, from one dashboard read ([`Store::user_dashboard`]), and the
//! per-component breakdown of my-stats/components.

use super::ServiceError;
use charlie_store::{
    Store, analytics::DayTotals, calendar::Zone, dashboard::UserDashboard, rollup::Counters,
};
use std::collections::{BTreeMap, HashMap};
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

/// One workflow of a component breakdown (`None`: conversations without
/// a workflow): its sum and its components, largest cost first.
#[derive(Debug, Clone)]
pub struct WorkflowComponents {
    pub workflow_id: Option<Uuid>,
    pub total: Counters,
    pub components: Vec<(Uuid, Counters)>,
}

/// A user's usage per workflow and component over a period.
#[derive(Debug, Clone)]
pub struct UserComponents {
    pub days: u16,
    pub timezone: String,
    /// First and last local day, inclusive.
    pub from: time::Date,
    pub to: time::Date,
    /// Largest cost first, then most messages, then the smaller id (no
    /// workflow before any id).
    pub workflows: Vec<WorkflowComponents>,
    pub totals: Counters,
    /// Names by id; an id without a record has none.
    pub workflow_names: HashMap<Uuid, String>,
    pub component_names: HashMap<Uuid, String>,
}

/// A workflow's sum and its components' sums, while the breakdown is built.
type Sums = (Counters, Vec<(Uuid, Counters)>);

/// Largest cost first, then most messages, then the smaller key.
fn by_cost<K: Ord>(a: &(K, Counters), b: &(K, Counters)) -> std::cmp::Ordering {
    b.1.cost_nano_usd
        .cmp(&a.1.cost_nano_usd)
        .then(b.1.message_count.cmp(&a.1.message_count))
        .then(a.0.cmp(&b.0))
}

/// The per-component breakdown of `user_id` over `days` local days of
/// `zone` ending at `now`, from `component_buckets` (exact in any zone).
pub async fn component_breakdown(
    store: &Store,
    user_id: Uuid,
    days: u16,
    zone: &Zone,
    now: OffsetDateTime,
) -> Result<UserComponents, ServiceError> {
    let local_days = zone
        .days_ending(now, days)
        .ok_or_else(ServiceError::outside_calendar)?;
    let (Some(first), Some(last)) = (local_days.first(), local_days.last()) else {
        return Err(ServiceError::outside_calendar());
    };
    let rows = store.user_component_usage(user_id, &local_days).await?;
    let mut by_workflow: BTreeMap<Option<Uuid>, Sums> = BTreeMap::new();
    let mut totals = Counters::default();
    for r in &rows {
        let slot = by_workflow.entry(r.workflow_id).or_default();
        slot.0.add(&r.counters);
        slot.1.push((r.component_id, r.counters));
        totals.add(&r.counters);
    }
    let workflow_ids: Vec<Uuid> = by_workflow.keys().filter_map(|w| *w).collect();
    let component_ids: Vec<Uuid> = rows.iter().map(|r| r.component_id).collect();
    let mut ordered: Vec<(Option<Uuid>, Sums)> = by_workflow.into_iter().collect();
    // `None` (no workflow) sorts before any id on a tie, like the smaller id.
    ordered.sort_by(|a, b| by_cost(&(a.0, a.1.0), &(b.0, b.1.0)));
    Ok(UserComponents {
        days,
        timezone: zone.name().to_owned(),
        from: first.date,
        to: last.date,
        workflows: ordered
            .into_iter()
            .map(|(workflow_id, (total, mut components))| {
                components.sort_by(by_cost);
                WorkflowComponents {
                    workflow_id,
                    total,
                    components,
                }
            })
            .collect(),
        totals,
        workflow_names: store.workflow_names(&workflow_ids).await?,
        component_names: store.component_names(&component_ids).await?,
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
