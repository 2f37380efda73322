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
    analytics::{DayPlan, FunnelCounts, Usage, WorkflowSpan, bucket_counters, sums},
    calendar::LocalDay,
    rollup::{BUCKET_COUNTER_COLS, Counters},
    sql,
};
use sea_orm::{DbBackend, QueryResult, Value};
use std::{collections::BTreeMap, sync::LazyLock};
use time::OffsetDateTime;
use uuid::Uuid;

/// A user row as stored now: what a cached identity is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
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

fn opt_i64(row: &QueryResult, col: &str) -> StoreResult<i64> {
    Ok(row.try_get::<Option<i64>>("", col)?.unwrap_or(0))
}

fn stored_user(row: &QueryResult, cols: [&str; 3]) -> StoreResult<StoredUser> {
    Ok(StoredUser {
        external_id: row.try_get("", cols[0])?,
        email: row.try_get("", cols[1])?,
        timezone: row.try_get("", cols[2])?,
    })
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
        let rows = sql::query_all(self.dashboard(), &USER_DASHBOARD_PG, values).await?;
        let mut totals: BTreeMap<i64, Counters> = BTreeMap::new();
        let mut partial = vec![Counters::default(); plan.partials.len()];
        let mut out = UserDashboard {
            usage: Usage::default(),
            total_messages: 0,
            total_conversations: 0,
            top_workflow: None,
            user: None,
        };
        for row in &rows {
            let kind: String = row.try_get("", "kind")?;
            match kind.as_str() {
                "d" => {
                    totals.insert(row.try_get("", "k")?, bucket_counters(row)?);
                }
                "p" => {
                    let i: i64 = row.try_get("", "k")?;
                    let slot = usize::try_from(i - 1)
                        .ok()
                        .and_then(|i| partial.get_mut(i))
                        .ok_or_else(|| StoreError::Corrupt(format!("range {i} unknown")))?;
                    *slot = bucket_counters(row)?;
                }
                "w" => {
                    out.top_workflow = Some(TopWorkflow {
                        id: row.try_get("", "ref")?,
                        name: row.try_get::<Option<String>>("", "t1")?.unwrap_or_default(),
                        message_count: opt_i64(row, "message_count")?,
                    });
                }
                "u" => {
                    out.total_messages = opt_i64(row, "message_count")?;
                    out.total_conversations = opt_i64(row, "conversations_started")?;
                    out.user = Some(stored_user(row, ["t1", "t2", "t3"])?);
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
        let row = sql::query_one(
            self.reads(),
            "SELECT external_id, email, timezone, total_messages, total_conversations FROM users WHERE id = $1",
            vec![user_id.into()],
        )
        .await?;
        let (total_messages, total_conversations, user) = match row {
            Some(r) => (
                opt_i64(&r, "total_messages")?,
                opt_i64(&r, "total_conversations")?,
                Some(stored_user(&r, ["external_id", "email", "timezone"])?),
            ),
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
        let row = sql::query_one(
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
        let found: bool = row.try_get("", "user_found")?;
        let counters = |m: &str, c: &str, u: &str| -> StoreResult<Counters> {
            Ok(Counters {
                message_count: opt_i64(&row, m)?,
                cost_nano_usd: opt_i64(&row, c)?,
                unpriced_message_count: opt_i64(&row, u)?,
                ..Counters::default()
            })
        };
        Ok(OverviewFigures {
            today: counters("today_messages", "today_cost", "today_unpriced")?,
            week: counters("week_messages", "week_cost", "week_unpriced")?,
            errors_today: opt_i64(&row, "errors_today")?,
            total_users: opt_i64(&row, "total_users")?,
            total_workflows: opt_i64(&row, "total_workflows")?,
            active_users_today: opt_i64(&row, "active_today")?,
            active_users_week: opt_i64(&row, "active_week")?,
            funnel: FunnelCounts {
                signed_up: opt_i64(&row, "signed_up")?,
                created_component: opt_i64(&row, "created_component")?,
                created_workflow: opt_i64(&row, "created_workflow")?,
                sent_message: opt_i64(&row, "sent_message")?,
            },
            user: if found {
                Some(stored_user(&row, ["external_id", "email", "timezone"])?)
            } else {
                None
            },
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
        let user = sql::query_one(
            self.reads(),
            "SELECT external_id, email, timezone FROM users WHERE id = $1",
            vec![admin_id.into()],
        )
        .await?
        .map(|r| stored_user(&r, ["external_id", "email", "timezone"]))
        .transpose()?;
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
