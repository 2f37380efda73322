//! Read queries of the analytics API. Every figure comes from the rollups
//! (`user_days`, `user_buckets`, `usage_buckets`, `platform_buckets`,
//! `component_buckets`, `daily_metrics`),
//! the all-time counters kept with them (`active_user_buckets`,
//! `funnel_cohorts`, `platform_totals`, per-user totals on `users`) or small
//! indexed ranges of raw tables (errors), never from a scan of `messages`
//! and never from a count of `users`: a read touches a number of rows bounded
//! by the period asked for, not by the size of the platform.

use crate::{
    Store, StoreResult,
    calendar::LocalDay,
    entity::{agent_components, conversations, error_logs, users, workflows},
    rollup::{
        BUCKET_SECONDS, BUCKETS_PER_DAY, BucketCounters, COMPONENT_COUNTER_COLS, ComponentCounters,
        Counters, PlatformTotals,
    },
    sql,
};
use sea_orm::{
    ColumnTrait, DbBackend, DerivePartialModel, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Value,
    sea_query::{Asterisk, Expr},
};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use uuid::Uuid;

/// Counters of one local day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTotals {
    pub date: time::Date,
    pub counters: Counters,
}

/// A user's (or the platform's) usage over a list of consecutive local days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// One entry per requested day, zero-filled, in order.
    pub days: Vec<DayTotals>,
}

impl Usage {
    fn zeroed(days: &[LocalDay]) -> Usage {
        Usage {
            days: days
                .iter()
                .map(|d| DayTotals {
                    date: d.date,
                    counters: Counters::default(),
                })
                .collect(),
        }
    }

    /// The last `n` days (all of them when there are fewer).
    pub fn last(&self, n: usize) -> &[DayTotals] {
        &self.days[self.days.len().saturating_sub(n)..]
    }

    /// The sum over the last `n` days.
    pub fn total_last(&self, n: usize) -> Counters {
        let mut t = Counters::default();
        for d in self.last(n) {
            t.add(&d.counters);
        }
        t
    }
}

/// SQL numbering the local day (0-based index into `days`, which are
/// consecutive and sorted) that holds bucket `column`, and its parameters
/// from `$param` on. Buckets before the first day get 0 and after the last
/// the last index: callers bound `column` to the days' range.
///
/// PostgreSQL gets the day starts as one `bigint[]` for `width_bucket`,
/// cast from text once per execution by a sub-select: a bare `$n::bigint[]`
/// is re-parsed for every row under a generic (prepared) plan, which made a
/// heavy user's month 13 ms instead of 2.5 ms. SQLite, which has no such
/// function, gets a `CASE` over integer literals (our own numbers, never
/// input text).
fn day_number(
    backend: DbBackend,
    column: &str,
    days: &[LocalDay],
    param: usize,
) -> (String, Vec<Value>) {
    if backend == DbBackend::Postgres {
        let starts = days
            .iter()
            .map(|d| d.first_bucket.to_string())
            .collect::<Vec<_>>()
            .join(",");
        (
            format!(
                "CAST(GREATEST(width_bucket({column}, (SELECT CAST(${param} AS bigint[]))), 1) - 1 AS BIGINT)"
            ),
            vec![format!("{{{starts}}}").into()],
        )
    } else if days.len() <= 1 {
        // One day: every row is day 0 (a CASE needs at least one WHEN).
        ("0".to_owned(), Vec::new())
    } else {
        let mut case = String::from("CASE");
        for (i, d) in days.iter().enumerate().skip(1) {
            case.push_str(&format!(
                " WHEN {column} < {} THEN {}",
                d.first_bucket,
                i - 1
            ));
        }
        case.push_str(&format!(" ELSE {} END", days.len().saturating_sub(1)));
        (case, Vec::new())
    }
}

/// A row of counter sums keyed by a day (a `user_days.day`, or an index
/// into the days asked for).
#[derive(FromQueryResult)]
struct DaySums {
    day: i64,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// A row of counter sums of one partial range (`i`: its index).
#[derive(FromQueryResult)]
struct RangeSums {
    i: i64,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// Messages of one workflow (`None`: no workflow); NULL is 0.
#[derive(FromQueryResult)]
struct WorkflowMessages {
    workflow_id: Option<Uuid>,
    n: Option<i64>,
}

/// The `component_buckets` sums of one workflow × component.
#[derive(FromQueryResult)]
struct ComponentSums {
    workflow_id: Option<Uuid>,
    component_id: Uuid,
    #[sea_orm(nested)]
    counters: ComponentCounters,
}

/// A cost report group's key (text or id, see [`Store::cost_report`]) and sums.
#[derive(FromQueryResult)]
struct KeyedSums<K: sea_orm::TryGetable> {
    k: K,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// Platform sums over a period (the overview's figures); NULL is 0. Read
/// with the period's prefix (`today_`, `week_`).
#[derive(FromQueryResult)]
struct PeriodSums {
    message_count: Option<i64>,
    cost_nano_usd: Option<i64>,
    unpriced_message_count: Option<i64>,
}

impl From<PeriodSums> for Counters {
    fn from(p: PeriodSums) -> Counters {
        Counters {
            message_count: p.message_count.unwrap_or(0),
            cost_nano_usd: p.cost_nano_usd.unwrap_or(0),
            unpriced_message_count: p.unpriced_message_count.unwrap_or(0),
            ..Counters::default()
        }
    }
}

/// A count; NULL (an empty `SUM`) is 0.
#[derive(FromQueryResult)]
struct Count {
    n: Option<i64>,
}

/// The funnel's sums; NULL (no cohorts) is 0.
#[derive(FromQueryResult)]
struct FunnelSums {
    signed_up: Option<i64>,
    created_component: Option<i64>,
    created_workflow: Option<i64>,
    sent_message: Option<i64>,
}

impl From<FunnelSums> for FunnelCounts {
    fn from(f: FunnelSums) -> FunnelCounts {
        FunnelCounts {
            signed_up: f.signed_up.unwrap_or(0),
            created_component: f.created_component.unwrap_or(0),
            created_workflow: f.created_workflow.unwrap_or(0),
            sent_message: f.sent_message.unwrap_or(0),
        }
    }
}

/// `SUM(...)` of every `component_buckets` counter, cast so both engines
/// return BIGINT.
fn component_sums() -> String {
    COMPONENT_COUNTER_COLS
        .iter()
        .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How a list of consecutive local days is read from per-UTC-day totals
/// (`user_days`) and quarter-hours (`user_buckets`), exactly.
///
/// With `P(b)` the part of bucket `b`'s UTC day before `b`, the buckets
/// `[s, e)` sum to the whole UTC days from `s`'s day up to (not including)
/// `e`'s day, minus `P(s)`, plus `P(e)`. `P(b)` is read as the head of the
/// day `[day start, b)`, or, past midday, as the day's total minus its tail
/// `[b, next day start)`: at most 48 quarter-hours per local midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DayPlan {
    /// The local midnights: `days[0].first_bucket`, then each day's end.
    bounds: Vec<i64>,
    /// `user_days` to read, inclusive.
    pub(crate) first_day: i64,
    pub(crate) last_day: i64,
    /// The partial UTC days to read (bounds on a UTC midnight need none).
    pub(crate) partials: Vec<Partial>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Partial {
    /// Index into `bounds`.
    bound: usize,
    /// Buckets `[lo, hi)`.
    pub(crate) lo: i64,
    pub(crate) hi: i64,
    /// `P(b)` is the day's total minus this range (a tail), not the range.
    tail: bool,
}

/// The UTC day (`user_days.day`) of a bucket.
fn utc_day(bucket: i64) -> i64 {
    bucket.div_euclid(BUCKETS_PER_DAY)
}

impl DayPlan {
    pub(crate) fn of(days: &[LocalDay]) -> Option<DayPlan> {
        let first = days.first()?;
        let bounds: Vec<i64> = std::iter::once(first.first_bucket)
            .chain(days.iter().map(|d| d.end_bucket))
            .collect();
        let partials = bounds
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| {
                let start = utc_day(b) * BUCKETS_PER_DAY;
                match b - start {
                    0 => None,
                    r if r <= BUCKETS_PER_DAY / 2 => Some(Partial {
                        bound: i,
                        lo: start,
                        hi: b,
                        tail: false,
                    }),
                    _ => Some(Partial {
                        bound: i,
                        lo: b,
                        hi: start + BUCKETS_PER_DAY,
                        tail: true,
                    }),
                }
            })
            .collect();
        Some(DayPlan {
            first_day: utc_day(bounds[0]),
            last_day: utc_day(*bounds.last()?),
            bounds,
            partials,
        })
    }

    /// The days' counters from the day totals and the partial sums (in
    /// `partials` order; missing rows are zero).
    pub(crate) fn assemble(
        &self,
        days: &[LocalDay],
        totals: &BTreeMap<i64, Counters>,
        partial: &[Counters],
    ) -> Usage {
        let mut prefix = vec![Counters::default(); self.bounds.len()];
        for (p, sum) in self.partials.iter().zip(partial) {
            let slot = &mut prefix[p.bound];
            if p.tail {
                if let Some(t) = totals.get(&utc_day(p.lo)) {
                    slot.add(t);
                }
                slot.sub(sum);
            } else {
                slot.add(sum);
            }
        }
        let mut usage = Usage::zeroed(days);
        for (i, day) in usage.days.iter_mut().enumerate() {
            let (s, e) = (self.bounds[i], self.bounds[i + 1]);
            let c = &mut day.counters;
            for (_, t) in totals.range(utc_day(s)..utc_day(e)) {
                c.add(t);
            }
            c.add(&prefix[i + 1]);
            c.sub(&prefix[i]);
        }
        usage
    }
}

/// How a user's messages per workflow over consecutive local days are read:
/// whole UTC days `[day_start, day_end)` from `daily_metrics` (one row per
/// workflow and day), the partial UTC days at either edge, `[start,
/// day_start)` and `[day_end, end)`, from `usage_buckets`. All in buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkflowSpan {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) day_start: i64,
    pub(crate) day_end: i64,
}

impl WorkflowSpan {
    pub(crate) fn of(days: &[LocalDay]) -> Option<WorkflowSpan> {
        let (start, end) = (days.first()?.first_bucket, days.last()?.end_bucket);
        let day_start = start.div_euclid(BUCKETS_PER_DAY) * BUCKETS_PER_DAY
            + if start.rem_euclid(BUCKETS_PER_DAY) == 0 {
                0
            } else {
                BUCKETS_PER_DAY
            };
        let day_end = end.div_euclid(BUCKETS_PER_DAY) * BUCKETS_PER_DAY;
        let (day_start, day_end) = if day_start < day_end {
            (day_start, day_end)
        } else {
            // No whole UTC day: all of it from the buckets.
            (end, end)
        };
        Some(WorkflowSpan {
            start,
            end,
            day_start,
            day_end,
        })
    }

    fn date_of(bucket: i64) -> StoreResult<time::Date> {
        Ok(OffsetDateTime::from_unix_timestamp(bucket * BUCKET_SECONDS)
            .map_err(|e| crate::StoreError::Invalid(e.to_string()))?
            .date())
    }

    /// The first whole UTC day (`daily_metrics.date`, inclusive).
    pub(crate) fn first_date(&self) -> StoreResult<time::Date> {
        Self::date_of(self.day_start)
    }

    /// The day after the last whole UTC day (exclusive).
    pub(crate) fn end_date(&self) -> StoreResult<time::Date> {
        Self::date_of(self.day_end)
    }
}

/// `SUM(...)` of every counter column, cast so both engines return BIGINT.
pub(crate) fn sums(prefix: &str) -> String {
    crate::rollup::BUCKET_COUNTER_COLS
        .iter()
        .map(|c| format!("CAST(SUM({prefix}{c}) AS BIGINT) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A time comparison `column >= $n` that is exact on both engines (SQLite
/// stores timestamps as text whose fraction has no fixed width).
fn at_or_after(backend: DbBackend, column: &str, param: usize) -> String {
    match backend {
        DbBackend::Sqlite => format!("julianday({column}) >= julianday(${param})"),
        _ => format!("{column} >= ${param}"),
    }
}

/// One error row for the admin list.
#[derive(Debug, Clone, PartialEq, DerivePartialModel)]
#[sea_orm(entity = "error_logs::Entity")]
pub struct ErrorRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub user_id: Option<Uuid>,
    pub service: String,
    pub error_type: String,
    pub error_message: String,
    pub error_code: Option<String>,
    pub workflow_id: Option<Uuid>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    pub sentry_event_id: Option<String>,
}

/// Users who reached each funnel step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunnelCounts {
    pub signed_up: i64,
    pub created_component: i64,
    pub created_workflow: i64,
    pub sent_message: i64,
}

/// A stored user, as the read API needs it.
#[derive(Debug, Clone, PartialEq, DerivePartialModel)]
#[sea_orm(entity = "users::Entity")]
pub struct UserSummary {
    pub id: Uuid,
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub timezone: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A conversation of a user, for the admin view of that user.
#[derive(Debug, Clone, PartialEq, DerivePartialModel)]
#[sea_orm(entity = "conversations::Entity")]
pub struct ConversationSummary {
    pub id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub langflow_session_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// A group of the cost report.
#[derive(Debug, Clone, PartialEq)]
pub struct CostGroup {
    /// The day (`YYYY-MM-DD`), model, user id, workflow id or component id;
    /// empty for none.
    pub key: String,
    /// By component: the workflow all of the component's messages of the
    /// period belong to; `None` when they belong to none or to several.
    pub workflow_id: Option<Uuid>,
    pub counters: Counters,
}

/// A user's usage of one component under one workflow (`None`: messages in
/// conversations without a workflow).
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentUsage {
    pub workflow_id: Option<Uuid>,
    pub component_id: Uuid,
    /// Only the counters `component_buckets` keeps.
    pub counters: Counters,
}

/// How to group the cost report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostGrouping {
    Day,
    Model,
    User,
    Workflow,
    Component,
}

impl Store {
    /// A user's usage on each of `days` (consecutive local days), from
    /// `user_days` and the partial UTC days at each local midnight (see
    /// [`DayPlan`]): ~31 day rows for a month, plus at most 48 quarter-hours
    /// per local midnight (none in UTC), however active the user is.
    pub async fn user_usage(&self, user_id: Uuid, days: &[LocalDay]) -> StoreResult<Usage> {
        let Some(plan) = DayPlan::of(days) else {
            return Ok(Usage::default());
        };
        let mut totals: BTreeMap<i64, Counters> = BTreeMap::new();
        let sql = format!(
            "SELECT day, {} FROM user_days WHERE user_id = $1 AND day >= $2 AND day <= $3",
            crate::rollup::BUCKET_COUNTER_COLS.join(", ")
        );
        let values = vec![user_id.into(), plan.first_day.into(), plan.last_day.into()];
        for row in sql::fetch_all::<DaySums, _>(self.reads(), &sql, values).await? {
            totals.insert(row.day, row.counters.0);
        }
        let mut partial = vec![Counters::default(); plan.partials.len()];
        if !plan.partials.is_empty() {
            // One index range per local midnight, summed by the database.
            let mut values: Vec<Value> = vec![user_id.into()];
            let ranges = plan
                .partials
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let n = values.len();
                    values.extend([(i as i64).into(), p.lo.into(), p.hi.into()]);
                    format!("(${}, ${}, ${})", n + 1, n + 2, n + 3)
                })
                .collect::<Vec<_>>()
                .join(", ");
            // PostgreSQL is told to sum each range on its own (LATERAL):
            // as a join it scans all the user's buckets once per range.
            // SQLite has no LATERAL, and loops over the ranges anyway.
            let sql = if self.backend() == DbBackend::Postgres {
                format!(
                    "WITH r(i, lo, hi) AS (VALUES {ranges}) SELECT r.i AS i, s.* FROM r \
                     CROSS JOIN LATERAL (SELECT {} FROM user_buckets b \
                     WHERE b.user_id = $1 AND b.bucket >= r.lo AND b.bucket < r.hi) s",
                    sums("b.")
                )
            } else {
                format!(
                    "WITH r(i, lo, hi) AS (VALUES {ranges}) \
                     SELECT r.i AS i, {} FROM r JOIN user_buckets b \
                     ON b.user_id = $1 AND b.bucket >= r.lo AND b.bucket < r.hi GROUP BY r.i",
                    sums("b.")
                )
            };
            for row in sql::fetch_all::<RangeSums, _>(self.reads(), &sql, values).await? {
                let i = row.i;
                let slot = usize::try_from(i)
                    .ok()
                    .and_then(|i| partial.get_mut(i))
                    .ok_or_else(|| crate::StoreError::Corrupt(format!("range {i} unknown")))?;
                *slot = row.counters.0;
            }
        }
        Ok(plan.assemble(days, &totals, &partial))
    }

    /// A user's messages per workflow (`None` = no workflow) over `days`
    /// (consecutive local days). Whole UTC days inside the range come from
    /// `daily_metrics` (one row per workflow and day); the partial UTC days
    /// at either edge from `usage_buckets`, so the sums are exact in any
    /// zone while the rows read stay near one per workflow and day.
    pub async fn user_messages_by_workflow(
        &self,
        user_id: Uuid,
        days: &[LocalDay],
    ) -> StoreResult<HashMap<Option<Uuid>, i64>> {
        let Some(span) = WorkflowSpan::of(days) else {
            return Ok(HashMap::new());
        };
        // Two statements, not one UNION ALL: PostgreSQL would run the
        // union as a Parallel Append, whose worker start-up costs ten times
        // the scans themselves.
        let mut out: HashMap<Option<Uuid>, i64> = HashMap::new();
        let mut add = |rows: Vec<WorkflowMessages>| {
            for row in rows {
                *out.entry(row.workflow_id).or_default() += row.n.unwrap_or(0);
            }
        };
        if span.day_start < span.day_end {
            add(sql::fetch_all(
                self.reads(),
                "SELECT workflow_id, CAST(SUM(message_count) AS BIGINT) AS n FROM daily_metrics \
                 WHERE user_id = $1 AND date >= $2 AND date < $3 GROUP BY workflow_id",
                vec![
                    user_id.into(),
                    span.first_date()?.into(),
                    span.end_date()?.into(),
                ],
            )
            .await?);
        }
        add(sql::fetch_all(
            self.reads(),
            "SELECT workflow_id, CAST(SUM(message_count) AS BIGINT) AS n FROM usage_buckets \
             WHERE user_id = $1 AND ((bucket >= $2 AND bucket < $3) OR (bucket >= $4 AND bucket < $5)) \
             GROUP BY workflow_id",
            vec![
                user_id.into(),
                span.start.into(),
                span.day_start.min(span.end).into(),
                span.day_end.max(span.start).into(),
                span.end.into(),
            ],
        )
        .await?);
        out.retain(|_, n| *n != 0);
        Ok(out)
    }

    /// The platform's usage on each of `days`, summed per local day by the
    /// database.
    pub async fn platform_usage(&self, days: &[LocalDay]) -> StoreResult<Usage> {
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return Ok(Usage::default());
        };
        let (day, day_values) = day_number(self.backend(), "bucket", days, 3);
        let mut values: Vec<Value> = vec![first.first_bucket.into(), last.end_bucket.into()];
        values.extend(day_values);
        let sql = format!(
            "SELECT {day} AS day, {} FROM platform_buckets WHERE bucket >= $1 AND bucket < $2 GROUP BY 1",
            sums("")
        );
        let mut usage = Usage::zeroed(days);
        for row in sql::fetch_all::<DaySums, _>(self.reads(), &sql, values).await? {
            let day = row.day;
            let slot = usize::try_from(day)
                .ok()
                .and_then(|i| usage.days.get_mut(i))
                .ok_or_else(|| {
                    crate::StoreError::Corrupt(format!("day {day} outside the period"))
                })?;
            slot.counters.add(&row.counters.0);
        }
        Ok(usage)
    }

    /// Platform messages, cost and unpriced messages in buckets
    /// `[today, end)` and `[week, end)` (`week <= today`): the overview's
    /// figures as one row, without sending every bucket × model row.
    pub async fn platform_today_and_week(
        &self,
        today: i64,
        week: i64,
        end: i64,
    ) -> StoreResult<(Counters, Counters)> {
        let cols = ["message_count", "cost_nano_usd", "unpriced_message_count"];
        let select = cols
            .iter()
            .map(|c| {
                format!(
                    "CAST(SUM(CASE WHEN bucket >= $1 THEN {c} ELSE 0 END) AS BIGINT) AS today_{c}, \
                     CAST(SUM({c}) AS BIGINT) AS week_{c}"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let row = sql::query_one(
            self.reads(),
            &format!("SELECT {select} FROM platform_buckets WHERE bucket >= $2 AND bucket < $3"),
            vec![today.into(), week.into(), end.into()],
        )
        .await?;
        let Some(row) = row else {
            return Ok((Counters::default(), Counters::default()));
        };
        Ok((
            PeriodSums::from_query_result(&row, "today_")?.into(),
            PeriodSums::from_query_result(&row, "week_")?.into(),
        ))
    }

    /// A user's usage per workflow and component over `days` (consecutive
    /// local days): one range of `component_buckets`' key, summed by the
    /// database; exact in any zone since a local day is a range of buckets.
    /// Messages without a component are not in it.
    pub async fn user_component_usage(
        &self,
        user_id: Uuid,
        days: &[LocalDay],
    ) -> StoreResult<Vec<ComponentUsage>> {
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return Ok(Vec::new());
        };
        let sql = format!(
            "SELECT workflow_id, component_id, {} FROM component_buckets \
             WHERE user_id = $1 AND bucket >= $2 AND bucket < $3 GROUP BY workflow_id, component_id",
            component_sums()
        );
        let values = vec![
            user_id.into(),
            first.first_bucket.into(),
            last.end_bucket.into(),
        ];
        Ok(
            sql::fetch_all::<ComponentSums, _>(self.reads(), &sql, values)
                .await?
                .into_iter()
                .map(|r| ComponentUsage {
                    workflow_id: r.workflow_id,
                    component_id: r.component_id,
                    counters: r.counters.0,
                })
                .collect(),
        )
    }

    /// Names of components by id (unknown ids are left out; a placeholder's
    /// name is empty until its own upsert arrives).
    pub async fn component_names(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, String>> {
        self.names::<agent_components::Entity>(
            agent_components::Column::Id,
            agent_components::Column::Name,
            ids,
        )
        .await
    }

    /// Names of workflows by id (unknown ids are left out).
    pub async fn workflow_names(&self, ids: &[Uuid]) -> StoreResult<HashMap<Uuid, String>> {
        self.names::<workflows::Entity>(workflows::Column::Id, workflows::Column::Name, ids)
            .await
    }

    /// `name` by `id` of the rows of `E` with those ids, 500 ids a statement.
    async fn names<E: EntityTrait>(
        &self,
        id: E::Column,
        name: E::Column,
        ids: &[Uuid],
    ) -> StoreResult<HashMap<Uuid, String>> {
        let mut out = HashMap::new();
        for chunk in ids.chunks(500) {
            let rows = E::find()
                .select_only()
                .columns([id, name])
                .filter(id.is_in(chunk.iter().copied()))
                .into_tuple::<(Uuid, String)>()
                .all(self.reads())
                .await?;
            out.extend(rows);
        }
        Ok(out)
    }

    /// The user with this id.
    pub async fn user_summary(&self, user_id: Uuid) -> StoreResult<Option<UserSummary>> {
        Ok(users::Entity::find_by_id(user_id)
            .into_partial_model::<UserSummary>()
            .one(self.reads())
            .await?)
    }

    /// A user's most recent conversations, newest first.
    pub async fn recent_conversations(
        &self,
        user_id: Uuid,
        limit: u32,
    ) -> StoreResult<Vec<ConversationSummary>> {
        Ok(conversations::Entity::find()
            .filter(conversations::Column::UserId.eq(user_id))
            .order_by_desc(conversations::Column::CreatedAt)
            .order_by_desc(conversations::Column::Id)
            .limit(u64::from(limit))
            .into_partial_model::<ConversationSummary>()
            .all(self.reads())
            .await?)
    }

    async fn count(&self, sql: &str, values: Vec<Value>) -> StoreResult<i64> {
        let row = sql::fetch_one::<Count, _>(self.reads(), sql, values).await?;
        Ok(row.and_then(|c| c.n).unwrap_or(0))
    }

    /// Every user the service knows (placeholders included: they are real
    /// users whose own record has not arrived yet), and every workflow: the
    /// one row of `platform_totals`.
    pub async fn count_users_and_workflows(&self) -> StoreResult<(i64, i64)> {
        let row = sql::fetch_one::<PlatformTotals, _>(
            self.reads(),
            "SELECT users, workflows FROM platform_totals WHERE id = 1",
            vec![],
        )
        .await?;
        Ok(row.map_or((0, 0), |t| (t.users, t.workflows)))
    }

    /// Users whose latest own message is in a bucket at or after `bucket`:
    /// a sum over the histogram `active_user_buckets` (one row per
    /// quarter-hour at most), so it grows with the window, not the users.
    pub async fn count_active_users_since(&self, bucket: i64) -> StoreResult<i64> {
        self.count(
            "SELECT CAST(SUM(users) AS BIGINT) AS n FROM active_user_buckets WHERE bucket >= $1",
            vec![bucket.into()],
        )
        .await
    }

    /// Errors (reported by the platform or raised by this service) at or after `since`.
    pub async fn count_errors_since(&self, since: OffsetDateTime) -> StoreResult<i64> {
        let cond = at_or_after(self.backend(), "created_at", 1);
        self.count(
            &format!("SELECT COUNT(*) AS n FROM error_logs WHERE {cond}"),
            vec![since.into()],
        )
        .await
    }

    /// The most recent errors, optionally of one service, newest first, and
    /// how many match in all.
    pub async fn recent_errors(
        &self,
        limit: u32,
        service: Option<&str>,
    ) -> StoreResult<(Vec<ErrorRow>, i64)> {
        use sea_orm::sea_query::ExprTrait as _;
        let errors = || {
            error_logs::Entity::find()
                .apply_if(service, |q, s| q.filter(error_logs::Column::Service.eq(s)))
        };
        let total = errors()
            .select_only()
            .column_as(Expr::col(Asterisk).count(), "n")
            .into_tuple::<i64>()
            .one(self.reads())
            .await?
            .unwrap_or(0);
        let rows = errors()
            .order_by_desc(error_logs::Column::CreatedAt)
            .order_by_desc(error_logs::Column::Id)
            .limit(u64::from(limit))
            .into_partial_model::<ErrorRow>()
            .all(self.reads())
            .await?;
        Ok((rows, total))
    }

    /// The cohort funnel: users whose `user_signed_up` milestone is in
    /// `bucket` or later, and how many of them have (ever) created a
    /// component, created a workflow and sent a message. A sum over
    /// `funnel_cohorts` (one row per sign-up quarter-hour at most), which
    /// ingestion keeps with the users' milestone times.
    pub async fn funnel(&self, bucket: i64) -> StoreResult<FunnelCounts> {
        let row = sql::fetch_one::<FunnelSums, _>(
            self.reads(),
            "SELECT CAST(SUM(signed_up) AS BIGINT) AS signed_up, \
             CAST(SUM(created_component) AS BIGINT) AS created_component, \
             CAST(SUM(created_workflow) AS BIGINT) AS created_workflow, \
             CAST(SUM(sent_message) AS BIGINT) AS sent_message \
             FROM funnel_cohorts WHERE bucket >= $1",
            vec![bucket.into()],
        )
        .await?;
        Ok(row.map(FunnelCounts::from).unwrap_or_default())
    }

    /// Cost and tokens over `days`, grouped. Groups by user, workflow or
    /// component are the `limit` largest by cost, then by messages.
    pub async fn cost_report(
        &self,
        days: &[LocalDay],
        grouping: CostGrouping,
        limit: u32,
    ) -> StoreResult<Vec<CostGroup>> {
        let (Some(first), Some(last)) = (days.first(), days.last()) else {
            return Ok(Vec::new());
        };
        let range = vec![first.first_bucket.into(), last.end_bucket.into()];
        match grouping {
            CostGrouping::Day => {
                let usage = self.platform_usage(days).await?;
                Ok(usage
                    .days
                    .into_iter()
                    .map(|d| CostGroup {
                        key: d.date.to_string(),
                        workflow_id: None,
                        counters: d.counters,
                    })
                    .collect())
            }
            CostGrouping::Model => {
                let sql = format!(
                    "SELECT model AS k, {} FROM platform_buckets WHERE bucket >= $1 AND bucket < $2 \
                     GROUP BY model ORDER BY cost_nano_usd DESC, message_count DESC, model",
                    sums("")
                );
                self.cost_groups::<String>(&sql, range, |k| k).await
            }
            CostGrouping::User | CostGrouping::Workflow => {
                let column = if grouping == CostGrouping::User {
                    "user_id"
                } else {
                    "workflow_id"
                };
                let sql = format!(
                    "SELECT {column} AS k, {} FROM usage_buckets WHERE bucket >= $1 AND bucket < $2 \
                     GROUP BY {column} ORDER BY cost_nano_usd DESC, message_count DESC LIMIT {}",
                    sums(""),
                    limit
                );
                self.cost_groups::<Option<Uuid>>(&sql, range, |k| {
                    k.map(|u| u.to_string()).unwrap_or_default()
                })
                .await
            }
            CostGrouping::Component => self.component_costs(range, limit).await,
        }
    }

    /// Cost per component over buckets `range`, with the workflow when all
    /// of a component's messages are in one. Summed per component and
    /// workflow by the database (nearly always one workflow per component:
    /// a Langflow component lives in one flow), folded per component here.
    async fn component_costs(&self, range: Vec<Value>, limit: u32) -> StoreResult<Vec<CostGroup>> {
        let sql = format!(
            "SELECT component_id, workflow_id, {} FROM component_buckets \
             WHERE bucket >= $1 AND bucket < $2 GROUP BY component_id, workflow_id",
            component_sums()
        );
        // Per component: counters and its workflows (`None` = no workflow).
        let mut by_component: BTreeMap<Uuid, (Counters, Vec<Option<Uuid>>)> = BTreeMap::new();
        for r in sql::fetch_all::<ComponentSums, _>(self.reads(), &sql, range).await? {
            let slot = by_component.entry(r.component_id).or_default();
            slot.0.add(&r.counters.0);
            slot.1.push(r.workflow_id);
        }
        let mut groups: Vec<(Uuid, CostGroup)> = by_component
            .into_iter()
            .map(|(id, (counters, workflows))| {
                let workflow_id = match workflows.as_slice() {
                    [one] => *one,
                    _ => None,
                };
                (
                    id,
                    CostGroup {
                        key: id.to_string(),
                        workflow_id,
                        counters,
                    },
                )
            })
            .collect();
        groups.sort_by(|(a, x), (b, y)| {
            y.counters
                .cost_nano_usd
                .cmp(&x.counters.cost_nano_usd)
                .then(y.counters.message_count.cmp(&x.counters.message_count))
                .then(a.cmp(b))
        });
        groups.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(groups.into_iter().map(|(_, g)| g).collect())
    }

    /// Groups of a statement selecting `k` and the counter sums, with the
    /// key `k` turned into text by `key`.
    async fn cost_groups<K: sea_orm::TryGetable>(
        &self,
        sql: &str,
        values: Vec<Value>,
        key: impl Fn(K) -> String,
    ) -> StoreResult<Vec<CostGroup>> {
        Ok(sql::fetch_all::<KeyedSums<K>, _>(self.reads(), sql, values)
            .await?
            .into_iter()
            .map(|r| CostGroup {
                key: key(r.k),
                workflow_id: None,
                counters: r.counters.0,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn sqlite_day_numbers_split_at_each_day_start() {
        let day = |d, first_bucket, end_bucket| LocalDay {
            date: d,
            first_bucket,
            end_bucket,
        };
        let days = [
            day(date!(2026 - 01 - 01), 10, 14),
            day(date!(2026 - 01 - 02), 14, 18),
            day(date!(2026 - 01 - 03), 18, 23),
        ];
        let (sql, values) = day_number(DbBackend::Sqlite, "b", &days, 1);
        assert_eq!(sql, "CASE WHEN b < 14 THEN 0 WHEN b < 18 THEN 1 ELSE 2 END");
        assert!(values.is_empty());
        let (sql, values) = day_number(DbBackend::Postgres, "b", &days, 4);
        assert_eq!(
            sql,
            "CAST(GREATEST(width_bucket(b, (SELECT CAST($4 AS bigint[]))), 1) - 1 AS BIGINT)"
        );
        assert_eq!(values, vec![Value::from("{10,14,18}")]);
        // One day is day 0: a CASE without a WHEN is not SQL.
        let (sql, values) = day_number(DbBackend::Sqlite, "b", &days[..1], 1);
        assert_eq!((sql.as_str(), values.len()), ("0", 0));
    }

    /// Reading days from day totals and partial days gives exactly the sums
    /// of their quarter-hours, in zones whose midnights fall anywhere in
    /// the UTC day (heads and tails), and across DST changes.
    #[test]
    fn day_plans_sum_exactly_what_the_buckets_hold() {
        use crate::calendar::Zone;
        use time::macros::datetime;
        let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let zones = [
            "UTC",
            "Asia/Kathmandu",
            "Asia/Kolkata",
            "America/New_York",
            "America/St_Johns",
            "Pacific/Chatham",
            "Pacific/Kiritimati",
            "Pacific/Pago_Pago",
        ];
        let instants = [
            datetime!(2026-03-09 12:00 UTC),
            datetime!(2026-11-02 03:00 UTC),
            datetime!(2026-04-06 23:59 UTC),
        ];
        let (mut heads, mut tails) = (0, 0);
        for name in zones {
            let zone = Zone::get(name).map_err(|e| e.to_string());
            let Ok(zone) = zone else {
                panic!("{name} is a zone");
            };
            for now in instants {
                for n in [1_u16, 7, 31] {
                    let days = zone.days_ending(now, n).unwrap_or_default();
                    let (Some(first), Some(last)) = (days.first(), days.last()) else {
                        panic!("{name}: no days");
                    };
                    let mut buckets: BTreeMap<i64, Counters> = BTreeMap::new();
                    for b in first.first_bucket - 150..last.end_bucket + 150 {
                        let r = next();
                        if r % 3 != 0 {
                            buckets.insert(
                                b,
                                Counters {
                                    message_count: (r % 7) as i64,
                                    cost_nano_usd: (r % 1_000_003) as i64,
                                    ..Counters::default()
                                },
                            );
                        }
                    }
                    let sum = |lo: i64, hi: i64| {
                        let mut c = Counters::default();
                        for (_, x) in buckets.range(lo..hi) {
                            c.add(x);
                        }
                        c
                    };
                    let mut totals: BTreeMap<i64, Counters> = BTreeMap::new();
                    for (b, c) in &buckets {
                        totals
                            .entry(b.div_euclid(BUCKETS_PER_DAY))
                            .or_default()
                            .add(c);
                    }
                    let Some(plan) = DayPlan::of(&days) else {
                        panic!("{name}: no plan");
                    };
                    assert!(plan.partials.iter().all(|p| p.hi - p.lo <= 48));
                    if name == "UTC" {
                        assert!(plan.partials.is_empty());
                    }
                    tails += plan.partials.iter().filter(|p| p.tail).count();
                    heads += plan.partials.iter().filter(|p| !p.tail).count();
                    let partial: Vec<Counters> =
                        plan.partials.iter().map(|p| sum(p.lo, p.hi)).collect();
                    let got = plan.assemble(&days, &totals, &partial);
                    for (d, g) in days.iter().zip(&got.days) {
                        assert_eq!(g.date, d.date);
                        assert_eq!(
                            g.counters,
                            sum(d.first_bucket, d.end_bucket),
                            "{name} {} ({n} days to {now})",
                            d.date
                        );
                    }
                }
            }
        }
        assert!(
            heads > 0 && tails > 0,
            "both ways of reading a partial day ran"
        );
    }
}
