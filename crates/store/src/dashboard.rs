//! The two reads a dashboard makes on every visit, my-stats and the admin
//! overview, each as **one statement** on PostgreSQL: one round trip, whose
//! text never changes with the input (day lists travel as array parameters),
//! so every connection prepares it once and reuses it. SQLite, in process,
//! runs the same figures as several statements of [`crate::analytics`].
//!
//! Both also return the caller's stored user row ([`StoredUser`]), so that
//! an API that identified the caller from a cache can confirm, in the same
//! round trip, that the cached row is still the stored one.

use crate::{
    Store, StoreError, StoreResult,
    analytics::{DayPlan, FunnelCounts, Usage, WorkflowSpan, sums},
    calendar::LocalDay,
    entity::users,
    rollup::{BUCKET_COUNTER_COLS, BucketCounters, Counters},
    sql,
};
use sea_orm::{DbBackend, DerivePartialModel, EntityTrait, FromQueryResult, Value};
use std::{collections::BTreeMap, sync::LazyLock};
use time::OffsetDateTime;
use uuid::Uuid;

/// A user row as stored now: what a cached identity is checked against.
#[derive(Debug, Clone, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "users::Entity")]
pub struct StoredUser {
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub timezone: Option<String>,
}

/// The workflow with the most messages of a period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopWorkflow {
    pub id: Uuid,
    /// Empty while only its id is known.
    pub name: String,
    pub message_count: i64,
}

/// Everything my-stats shows of one user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDashboard {
    /// One entry per requested local day, zero-filled, in order.
    pub usage: Usage,
    /// All-time counts kept on `users` by ingestion (0 for an unknown user).
    pub total_messages: i64,
    pub total_conversations: i64,
    /// Over the last `period` days: the most messages, ties to the smaller id.
    pub top_workflow: Option<TopWorkflow>,
    /// The user's row; `None` when there is none (any more).
    pub user: Option<StoredUser>,
}

/// The admin overview's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct OverviewFigures {
    /// Messages, cost and unpriced messages since today's local midnight.
    pub today: Counters,
    /// The same since the week's first local midnight.
    pub week: Counters,
    /// Error rows created since today's local midnight.
    pub errors_today: i64,
    pub total_users: i64,
    pub total_workflows: i64,
    pub active_users_today: i64,
    pub active_users_week: i64,
    pub funnel: FunnelCounts,
    /// The admin's row; `None` when there is none (any more).
    pub user: Option<StoredUser>,
}

/// The instants an overview is read for, in buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverviewWindow {
    /// Today's first bucket.
    pub today: i64,
    /// The week's first bucket (`<= today`).
    pub week: i64,
    /// The end of today (exclusive).
    pub end: i64,
    /// The funnel's cohorts start here.
    pub funnel_from: i64,
}

impl OverviewWindow {
    /// Today's local midnight as an instant.
    fn today_start(&self) -> StoreResult<OffsetDateTime> {
        OffsetDateTime::from_unix_timestamp(self.today * crate::rollup::BUCKET_SECONDS)
            .map_err(|e| StoreError::Invalid(e.to_string()))
    }
}

/// Postgres array literal of integers (`{1,2,3}`): our own numbers, sent as a
/// text parameter and cast once per execution.
fn int_array(values: impl Iterator<Item = i64>) -> String {
    let items: Vec<String> = values.map(|v| v.to_string()).collect();
    format!("{{{}}}", items.join(","))
}

/// The counter columns of one branch of the my-stats union: `given` names
/// the columns this branch fills, the others are NULL.
fn counter_list(given: &[(&str, &str)]) -> String {
    BUCKET_COUNTER_COLS
        .iter()
        .map(|c| match given.iter().find(|(col, _)| col == c) {
            Some((_, expr)) => format!("{expr} AS {c}"),
            None => format!("NULL AS {c}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// my-stats on PostgreSQL. Parameters: `$1` user id; `$2`, `$3` the
/// `user_days` range; `$4`, `$5` the partial ranges' lower and upper
/// buckets (text arrays); `$6`, `$7` the whole UTC days of the workflow
/// period (`daily_metrics.date`, `[$6, $7)`); `$8`–`$11` its edge buckets.
/// Rows: `d` (a UTC day's totals, `k` = day), `p` (a partial range's sums,
/// `k` = 1-based index), `w` (the top workflow: `ref`, `t1` = name,
/// `message_count`), `u` (the user: `t1`–`t3`, lifetime totals in
/// `message_count` / `conversations_started`).
static USER_DASHBOARD_PG: LazyLock<String> = LazyLock::new(|| {
    let cols = BUCKET_COUNTER_COLS.join(", ");
    let d_cols = BUCKET_COUNTER_COLS
        .iter()
        .map(|c| format!("d.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let p_cols = BUCKET_COUNTER_COLS
        .iter()
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "WITH d AS (SELECT day, {cols} FROM user_days WHERE user_id = $1 AND day >= $2 AND day <= $3), \
         p AS (SELECT r.i, s.* FROM unnest(CAST($4 AS bigint[]), CAST($5 AS bigint[])) WITH ORDINALITY AS r(lo, hi, i) \
           CROSS JOIN LATERAL (SELECT {sums} FROM user_buckets b \
           WHERE b.user_id = $1 AND b.bucket >= r.lo AND b.bucket < r.hi) s), \
         w AS (SELECT x.workflow_id, CAST(SUM(x.n) AS BIGINT) AS n FROM ( \
           SELECT workflow_id, SUM(message_count) AS n FROM daily_metrics \
           WHERE user_id = $1 AND date >= $6 AND date < $7 AND workflow_id IS NOT NULL GROUP BY workflow_id \
           UNION ALL \
           SELECT workflow_id, SUM(message_count) AS n FROM usage_buckets \
           WHERE user_id = $1 AND workflow_id IS NOT NULL \
           AND ((bucket >= $8 AND bucket < $9) OR (bucket >= $10 AND bucket < $11)) GROUP BY workflow_id \
         ) x GROUP BY x.workflow_id HAVING SUM(x.n) > 0 ORDER BY SUM(x.n) DESC, x.workflow_id LIMIT 1) \
         SELECT 'd' AS kind, d.day AS k, CAST(NULL AS uuid) AS ref, CAST(NULL AS text) AS t1, \
           CAST(NULL AS text) AS t2, CAST(NULL AS text) AS t3, {d_cols} FROM d \
         UNION ALL SELECT 'p', p.i, NULL, NULL, NULL, NULL, {p_cols} FROM p \
         UNION ALL SELECT 'w', NULL, w.workflow_id, wf.name, NULL, NULL, {w_cols} \
           FROM w LEFT JOIN workflows wf ON wf.id = w.workflow_id \
         UNION ALL SELECT 'u', NULL, NULL, u.external_id, u.email, u.timezone, {u_cols} \
           FROM users u WHERE u.id = $1",
        sums = sums("b."),
        w_cols = counter_list(&[("message_count", "w.n")]),
        u_cols = counter_list(&[
            ("message_count", "u.total_messages"),
            ("conversations_started", "u.total_conversations"),
        ]),
    )
});

/// The admin overview on PostgreSQL: one row. Parameters: `$1` today's
/// first bucket, `$2` the week's, `$3` the end of today, `$4` today's
/// local midnight as an instant, `$5` the funnel's first bucket, `$6` the
/// admin's id.
const OVERVIEW_PG: &str = "WITH pb AS (SELECT \
     CAST(SUM(CASE WHEN bucket >= $1 THEN message_count ELSE 0 END) AS BIGINT) AS today_messages, \
     CAST(SUM(CASE WHEN bucket >= $1 THEN cost_nano_usd ELSE 0 END) AS BIGINT) AS today_cost, \
     CAST(SUM(CASE WHEN bucket >= $1 THEN unpriced_message_count ELSE 0 END) AS BIGINT) AS today_unpriced, \
     CAST(SUM(message_count) AS BIGINT) AS week_messages, \
     CAST(SUM(cost_nano_usd) AS BIGINT) AS week_cost, \
     CAST(SUM(unpriced_message_count) AS BIGINT) AS week_unpriced \
     FROM platform_buckets WHERE bucket >= $2 AND bucket < $3), \
   f AS (SELECT CAST(SUM(signed_up) AS BIGINT) AS signed_up, \
     CAST(SUM(created_component) AS BIGINT) AS created_component, \
     CAST(SUM(created_workflow) AS BIGINT) AS created_workflow, \
     CAST(SUM(sent_message) AS BIGINT) AS sent_message \
     FROM funnel_cohorts WHERE bucket >= $5) \
 SELECT pb.*, f.*, \
   (SELECT COUNT(*) FROM error_logs WHERE created_at >= $4) AS errors_today, \
   (SELECT users FROM platform_totals WHERE id = 1) AS total_users, \
   (SELECT workflows FROM platform_totals WHERE id = 1) AS total_workflows, \
   (SELECT CAST(SUM(users) AS BIGINT) FROM active_user_buckets WHERE bucket >= $1) AS active_today, \
   (SELECT CAST(SUM(users) AS BIGINT) FROM active_user_buckets WHERE bucket >= $2) AS active_week, \
   u.id IS NOT NULL AS user_found, u.external_id, u.email, u.timezone \
 FROM pb CROSS JOIN f LEFT JOIN users u ON u.id = $6";

/// A row of [`USER_DASHBOARD_PG`]: which `kind`, its key `k`, its id
/// `ref`, its texts `t1`–`t3` and its counters.
#[derive(FromQueryResult)]
struct DashboardRow {
    kind: String,
    k: Option<i64>,
    r#ref: Option<Uuid>,
    t1: Option<String>,
    t2: Option<String>,
    t3: Option<String>,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// The row of [`OVERVIEW_PG`]; NULL sums are 0.
#[derive(FromQueryResult)]
struct OverviewRow {
    today_messages: Option<i64>,
    today_cost: Option<i64>,
    today_unpriced: Option<i64>,
    week_messages: Option<i64>,
    week_cost: Option<i64>,
    week_unpriced: Option<i64>,
    signed_up: Option<i64>,
    created_component: Option<i64>,
    created_workflow: Option<i64>,
    sent_message: Option<i64>,
    errors_today: Option<i64>,
    total_users: Option<i64>,
    total_workflows: Option<i64>,
    active_today: Option<i64>,
    active_week: Option<i64>,
    user_found: bool,
    #[sea_orm(nested)]
    user: StoredUser,
}

/// The user's row with the lifetime totals my-stats shows.
#[derive(DerivePartialModel)]
#[sea_orm(entity = "users::Entity")]
struct UserWithTotals {
    total_messages: i64,
    total_conversations: i64,
    #[sea_orm(nested)]
    user: StoredUser,
}

/// A dashboard figure: NULL (an empty sum) is 0.
fn n(v: Option<i64>) -> i64 {
    v.unwrap_or(0)
}

impl Store {
    /// my-stats of `user_id` over `days` (consecutive local days), the top
    /// workflow over the last `period` of them, the all-time totals and the
    /// user's row. One statement on PostgreSQL.
    pub async fn user_dashboard(
        &self,
        user_id: Uuid,
        days: &[LocalDay],
        period: usize,
    ) -> StoreResult<UserDashboard> {
        let period_days = &days[days.len().saturating_sub(period)..];
        let (DbBackend::Postgres, Some(plan), Some(span)) = (
            self.backend(),
            DayPlan::of(days),
            WorkflowSpan::of(period_days),
        ) else {
            return self.user_dashboard_by_steps(user_id, days, period).await;
        };
        let values: Vec<Value> = vec![
            user_id.into(),
            plan.first_day.into(),
            plan.last_day.into(),
            int_array(plan.partials.iter().map(|p| p.lo)).into(),
            int_array(plan.partials.iter().map(|p| p.hi)).into(),
            span.first_date()?.into(),
            span.end_date()?.into(),
            span.start.into(),
            span.day_start.min(span.end).into(),
            span.day_end.max(span.start).into(),
            span.end.into(),
        ];
        let rows: Vec<DashboardRow> =
            sql::fetch_all(self.dashboard(), &USER_DASHBOARD_PG, values).await?;
        let mut totals: BTreeMap<i64, Counters> = BTreeMap::new();
        let mut partial = vec![Counters::default(); plan.partials.len()];
        let mut out = UserDashboard {
            usage: Usage::default(),
            total_messages: 0,
            total_conversations: 0,
            top_workflow: None,
            user: None,
        };
        let missing = |what: &str| StoreError::Corrupt(format!("a `{what}` row without its key"));
        for row in rows {
            let counters = row.counters.0;
            match row.kind.as_str() {
                "d" => {
                    totals.insert(row.k.ok_or_else(|| missing("d"))?, counters);
                }
                "p" => {
                    let i = row.k.ok_or_else(|| missing("p"))?;
                    let slot = usize::try_from(i - 1)
                        .ok()
                        .and_then(|i| partial.get_mut(i))
                        .ok_or_else(|| StoreError::Corrupt(format!("range {i} unknown")))?;
                    *slot = counters;
                }
                "w" => {
                    out.top_workflow = Some(TopWorkflow {
                        id: row.r#ref.ok_or_else(|| missing("w"))?,
                        name: row.t1.unwrap_or_default(),
                        message_count: counters.message_count,
                    });
                }
                "u" => {
                    out.total_messages = counters.message_count;
                    out.total_conversations = counters.conversations_started;
                    out.user = Some(StoredUser {
                        external_id: row.t1,
                        email: row.t2,
                        timezone: row.t3,
                    });
                }
                other => return Err(StoreError::Corrupt(format!("row kind `{other}`"))),
            }
        }
        out.usage = plan.assemble(days, &totals, &partial);
        Ok(out)
    }

    /// [`Store::user_dashboard`] as several statements of
    /// [`crate::analytics`]: what SQLite runs, and the reference the one
    /// statement is tested against on PostgreSQL.
    pub async fn user_dashboard_by_steps(
        &self,
        user_id: Uuid,
        days: &[LocalDay],
        period: usize,
    ) -> StoreResult<UserDashboard> {
        let period_days = &days[days.len().saturating_sub(period)..];
        let usage = self.user_usage(user_id, days).await?;
        let top = self
            .user_messages_by_workflow(user_id, period_days)
            .await?
            .into_iter()
            .filter_map(|(w, m)| w.map(|w| (w, m)))
            .filter(|(_, m)| *m > 0)
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        let top_workflow = match top {
            Some((id, message_count)) => Some(TopWorkflow {
                id,
                name: self
                    .workflow_names(&[id])
                    .await?
                    .remove(&id)
                    .unwrap_or_default(),
                message_count,
            }),
            None => None,
        };
        let row = users::Entity::find_by_id(user_id)
            .into_partial_model::<UserWithTotals>()
            .one(self.reads())
            .await?;
        let (total_messages, total_conversations, user) = match row {
            Some(r) => (r.total_messages, r.total_conversations, Some(r.user)),
            None => (0, 0, None),
        };
        Ok(UserDashboard {
            usage,
            total_messages,
            total_conversations,
            top_workflow,
            user,
        })
    }

    /// The admin overview's figures for `window`, and the row of the admin
    /// `admin_id`. One statement on PostgreSQL.
    pub async fn platform_overview(
        &self,
        window: OverviewWindow,
        admin_id: Uuid,
    ) -> StoreResult<OverviewFigures> {
        if self.backend() != DbBackend::Postgres {
            return self.platform_overview_by_steps(window, admin_id).await;
        }
        let row: OverviewRow = sql::fetch_one(
            self.dashboard(),
            OVERVIEW_PG,
            vec![
                window.today.into(),
                window.week.into(),
                window.end.into(),
                window.today_start()?.into(),
                window.funnel_from.into(),
                admin_id.into(),
            ],
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("the overview returned no row".into()))?;
        let counters = |m: Option<i64>, c: Option<i64>, u: Option<i64>| Counters {
            message_count: n(m),
            cost_nano_usd: n(c),
            unpriced_message_count: n(u),
            ..Counters::default()
        };
        Ok(OverviewFigures {
            today: counters(row.today_messages, row.today_cost, row.today_unpriced),
            week: counters(row.week_messages, row.week_cost, row.week_unpriced),
            errors_today: n(row.errors_today),
            total_users: n(row.total_users),
            total_workflows: n(row.total_workflows),
            active_users_today: n(row.active_today),
            active_users_week: n(row.active_week),
            funnel: FunnelCounts {
                signed_up: n(row.signed_up),
                created_component: n(row.created_component),
                created_workflow: n(row.created_workflow),
                sent_message: n(row.sent_message),
            },
            user: row.user_found.then_some(row.user),
        })
    }

    /// [`Store::platform_overview`] as several statements of
    /// [`crate::analytics`]: what SQLite runs, and the reference the one
    /// statement is tested against on PostgreSQL.
    pub async fn platform_overview_by_steps(
        &self,
        window: OverviewWindow,
        admin_id: Uuid,
    ) -> StoreResult<OverviewFigures> {
        let (today, week) = self
            .platform_today_and_week(window.today, window.week, window.end)
            .await?;
        let (total_users, total_workflows) = self.count_users_and_workflows().await?;
        let errors_today = self.count_errors_since(window.today_start()?).await?;
        let user = users::Entity::find_by_id(admin_id)
            .into_partial_model::<StoredUser>()
            .one(self.reads())
            .await?;
        Ok(OverviewFigures {
            today,
            week,
            errors_today,
            total_users,
            total_workflows,
            active_users_today: self.count_active_users_since(window.today).await?,
            active_users_week: self.count_active_users_since(window.week).await?,
            funnel: self.funnel(window.funnel_from).await?,
            user,
        })
    }
}
