//! Rebuilding rollups from raw rows and checking that they agree
//! (`charlie-stats rollups rebuild|verify`).
//!
//! Both compute the rollups of a UTC date range with the same [`Rollups`]
//! accumulator that ingestion uses, from `messages`, `conversations` and
//! `error_logs`. Rows are streamed, so memory grows with the number of rollup
//! rows, not raw rows.

use crate::{
    Store, StoreResult,
    entity::workflows,
    rollup::{
        BUCKET_SECONDS, BUCKETS_PER_DAY, BucketCounters, COMPONENT_COUNTER_COLS, ComponentCounters,
        Counters, FUNNEL_COHORT_COLS, FunnelPosition, MessageFacts, Milestones, PlatformTotals,
        Rollups, StoredTokens,
    },
    sql,
};
use charlie_domain::MessageRole;
use futures_util::TryStreamExt;
use sea_orm::{ConnectionTrait, FromQueryResult, Statement, StreamTrait, TransactionTrait};
use std::collections::{BTreeMap, BTreeSet};
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

/// A UTC date range, both ends included; `None` ends are open.
#[derive(Debug, Clone, Copy, Default)]
pub struct RollupRange {
    pub from: Option<Date>,
    pub to: Option<Date>,
}

impl RollupRange {
    fn contains(&self, d: Date) -> bool {
        self.from.is_none_or(|f| d >= f) && self.to.is_none_or(|t| d <= t)
    }

    /// Instants to select raw rows by, a day wider on each side: the exact
    /// cut is made on the parsed date, which is immune to how an engine
    /// compares timestamp text.
    fn widened(&self) -> (OffsetDateTime, OffsetDateTime) {
        let lo = self
            .from
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc() - Duration::days(1))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let hi = self
            .to
            .map(|d| d.with_time(Time::MIDNIGHT).assume_utc() + Duration::days(2))
            .unwrap_or_else(|| OffsetDateTime::now_utc() + Duration::days(3650));
        (lo, hi)
    }
}

/// One rollup row that differs between storage and a recount.
#[derive(Debug, Clone, PartialEq)]
pub struct RollupDifference {
    /// `daily_metrics`, `usage_buckets`, `component_buckets`, `platform_buckets`…
    pub table: &'static str,
    /// The row's key, readable: user, workflow or model, and day or bucket start.
    pub key: String,
    pub stored: Option<Counters>,
    pub recounted: Option<Counters>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    /// Stored rows compared, all tables together.
    pub rows: usize,
    pub differences: Vec<RollupDifference>,
    /// Waiting messages whose conversation exists (should never happen).
    pub stuck_pending: Vec<Uuid>,
    /// Set when retention dropped older raw rows: days before it were not
    /// compared (their rollups stay, but there is nothing to recount).
    pub retained_from: Option<Date>,
}

/// A range in the terms of each table: dates and bucket indexes, both ends
/// included, open ends replaced by values every engine can store.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    from: Date,
    to: Date,
    first_bucket: i64,
    last_bucket: i64,
}

impl Bounds {
    fn of(range: RollupRange) -> Bounds {
        let start = |d: Date| {
            d.with_time(Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp()
                .div_euclid(BUCKET_SECONDS)
        };
        Bounds {
            from: range.from.unwrap_or(time::macros::date!(1900 - 01 - 01)),
            to: range.to.unwrap_or(time::macros::date!(9999 - 12 - 31)),
            first_bucket: range.from.map(start).unwrap_or(i64::MIN),
            last_bucket: range
                .to
                .and_then(|d| d.next_day())
                .map(|d| start(d) - 1)
                .unwrap_or(i64::MAX),
        }
    }

    fn dates(&self) -> Vec<sea_orm::Value> {
        vec![self.from.into(), self.to.into()]
    }

    fn buckets(&self) -> Vec<sea_orm::Value> {
        vec![self.first_bucket.into(), self.last_bucket.into()]
    }

    /// The range as `user_days.day` numbers (the bounds are whole UTC days).
    fn days(&self) -> Vec<sea_orm::Value> {
        vec![
            self.first_bucket.div_euclid(BUCKETS_PER_DAY).into(),
            self.last_bucket.div_euclid(BUCKETS_PER_DAY).into(),
        ]
    }
}

impl Store {
    /// Replaces the stored rollups of `range` with a recount, in one
    /// transaction. Running it twice gives the same rows. Returns how many
    /// rows were written.
    ///
    /// Batches waiting in `rollup_queue` are folded first: a recount from
    /// raw rows counts them, so they must not be folded again afterwards.
    ///
    /// Only the retained range is rebuilt (see [`Store::retained`]): the
    /// rollups of days whose raw rows retention dropped are kept as they are.
    pub async fn rebuild_rollups(&self, range: RollupRange) -> StoreResult<usize> {
        self.fold_pending().await?;
        let (range, kept_from) = self.retained(range).await?;
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let (rollups, sessions) = recount(&txn, range).await?;
        let b = Bounds::of(range);
        sql::execute(
            &txn,
            "DELETE FROM daily_metrics WHERE date >= $1 AND date <= $2",
            b.dates(),
        )
        .await?;
        sql::execute(
            &txn,
            "DELETE FROM conversation_days WHERE date >= $1 AND date <= $2",
            b.dates(),
        )
        .await?;
        sql::execute(
            &txn,
            "DELETE FROM usage_buckets WHERE bucket >= $1 AND bucket <= $2",
            b.buckets(),
        )
        .await?;
        sql::execute(
            &txn,
            "DELETE FROM component_buckets WHERE bucket >= $1 AND bucket <= $2",
            b.buckets(),
        )
        .await?;
        sql::execute(
            &txn,
            "DELETE FROM user_buckets WHERE bucket >= $1 AND bucket <= $2",
            b.buckets(),
        )
        .await?;
        sql::execute(
            &txn,
            "DELETE FROM user_days WHERE day >= $1 AND day <= $2",
            b.days(),
        )
        .await?;
        sql::execute(
            &txn,
            "DELETE FROM platform_buckets WHERE bucket >= $1 AND bucket <= $2",
            b.buckets(),
        )
        .await?;
        rollups.write(&txn, OffsetDateTime::now_utc()).await?;
        // The session ledger follows from messages too.
        write_sessions(&txn, &sessions).await?;
        // Month-to-date budget counters follow from the buckets (all months).
        let months = crate::budgets::rebuild_month_usage(&txn).await?;
        // So do the per-user counters and milestone times (all time).
        sql::execute(&txn, USER_TOTALS_FROM_ROLLUPS, vec![]).await?;
        // A milestone reached before retention's horizon keeps its stored
        // time: the event that set it is gone.
        for (column, event) in MILESTONE_COLUMNS {
            let (keep_older, values) = match kept_from {
                Some(k) => (
                    format!(
                        " WHERE {column} IS NULL OR {}",
                        sql::instant_cmp(self.backend(), column, ">=", 1)
                    ),
                    vec![k.into()],
                ),
                None => (String::new(), vec![]),
            };
            sql::execute(
                &txn,
                // First times computed once, then read per user (Citus
                // updates a reference table only from such a result).
                &format!(
                    "WITH f AS MATERIALIZED (SELECT user_id, MIN(created_at) AS at \
                     FROM user_activity_events WHERE event_type = '{event}' GROUP BY user_id) \
                     UPDATE users SET {column} = (SELECT f.at FROM f WHERE f.user_id = users.id){keep_older}"
                ),
                values,
            )
            .await?;
        }
        // The all-time counters follow from those columns (all time).
        for table in ["active_user_buckets", "funnel_cohorts", "platform_totals"] {
            sql::execute(&txn, &format!("DELETE FROM {table}"), vec![]).await?;
        }
        let all_time = recount_all_time(&txn).await?;
        all_time.write_all_time(&txn).await?;
        txn.commit().await?;
        Ok(keyed(&rollups).len() + keyed(&all_time).len() + months)
    }

    /// Compares stored rollups of `range` with a recount.
    ///
    /// Batches waiting in `rollup_queue` are folded first, so what was
    /// acknowledged before the call is compared whole.
    ///
    /// Only the retained range is compared; the report says from when.
    pub async fn verify_rollups(&self, range: RollupRange) -> StoreResult<VerifyReport> {
        self.fold_pending().await?;
        let (range, kept_from) = self.retained(range).await?;
        let (recounted, _) = recount(self.conn(), range).await?;
        let mut fresh = keyed(&recounted);
        fresh.extend(keyed(&recount_all_time(self.conn()).await?));
        let mut stored = stored_rollups(self.conn(), range).await?;
        stored.extend(stored_all_time(self.conn()).await?);
        let mut report = VerifyReport {
            rows: stored.len(),
            retained_from: kept_from.map(OffsetDateTime::date),
            ..VerifyReport::default()
        };
        let keys: BTreeSet<&(&'static str, String)> = stored.keys().chain(fresh.keys()).collect();
        let zero = Counters::default();
        for key in keys {
            let a = stored.get(key).filter(|c| **c != zero);
            let b = fresh.get(key).filter(|c| **c != zero);
            if a != b {
                report.differences.push(RollupDifference {
                    table: key.0,
                    key: key.1.clone(),
                    stored: a.copied(),
                    recounted: b.copied(),
                });
            }
        }
        let (month_rows, month_differences) = self.verify_month_usage().await?;
        report.rows += month_rows;
        report.differences.extend(
            month_differences
                .into_iter()
                .map(|(key, stored, recounted)| RollupDifference {
                    table: "user_month_usage",
                    key,
                    stored,
                    recounted,
                }),
        );
        for row in
            sql::fetch_all::<TotalsMismatch, _>(self.conn(), USER_TOTALS_MISMATCHES, vec![]).await?
        {
            let user = row.id;
            let stored = Counters {
                message_count: row.total_messages,
                conversations_started: row.total_conversations,
                ..Counters::default()
            };
            let recounted = Counters {
                message_count: row.m,
                conversations_started: row.c,
                ..Counters::default()
            };
            report.differences.push(RollupDifference {
                table: "users",
                key: format!("user {user} (total_messages, total_conversations)"),
                stored: Some(stored),
                recounted: Some(recounted),
            });
        }
        for row in sql::query_all(
            self.conn(),
            "SELECT p.id FROM pending_messages p JOIN conversations c ON c.id = p.conversation_id",
            vec![],
        )
        .await?
        {
            report.stuck_pending.push(row.try_get("", "id")?);
        }
        Ok(report)
    }
}

type Keyed = BTreeMap<(&'static str, String), Counters>;

impl Store {
    /// `range` narrowed to the days whose raw rows retention keeps, and
    /// from when they are kept (`None`: everything is).
    pub async fn retained(
        &self,
        range: RollupRange,
    ) -> StoreResult<(RollupRange, Option<OffsetDateTime>)> {
        let kept_from = self.raw_kept_from().await?;
        let Some(kept) = kept_from else {
            return Ok((range, None));
        };
        let from = range.from.map_or(kept.date(), |f| f.max(kept.date()));
        Ok((
            RollupRange {
                from: Some(from),
                to: range.to,
            },
            kept_from,
        ))
    }
}

/// Recomputes the per-user counters of `users` from the rollups: one grouped
/// pass per rollup, joined to the users on their id. (On Citus every join is
/// on the distribution column of co-located tables, so each shard group
/// updates itself; a correlated subquery or a CTE would be planned as an
/// intermediate result, which Citus refuses inside `COALESCE`.)
const USER_TOTALS_FROM_ROLLUPS: &str = "UPDATE users SET \
     total_messages = t.m, total_conversations = t.c, last_message_bucket = t.last \
     FROM (SELECT x.id, COALESCE(d.m, 0) AS m, COALESCE(d.c, 0) AS c, b.last FROM users x \
       LEFT JOIN (SELECT user_id, SUM(message_count) AS m, SUM(conversation_count) AS c \
         FROM daily_metrics GROUP BY user_id) d ON d.user_id = x.id \
       LEFT JOIN (SELECT user_id, MAX(bucket) AS last FROM usage_buckets \
         WHERE user_message_count > 0 GROUP BY user_id) b ON b.user_id = x.id) t \
     WHERE t.id = users.id";

/// A row of [`USER_TOTALS_MISMATCHES`]: the stored counters and the recount
/// (`m` messages, `c` conversations).
#[derive(FromQueryResult)]
struct TotalsMismatch {
    id: Uuid,
    total_messages: i64,
    total_conversations: i64,
    m: i64,
    c: i64,
}

/// Users whose counters disagree with the rollups.
/// (A join with one grouped pass on the users' id, not a correlated subquery
/// per user: on Citus it runs in each shard group.)
const USER_TOTALS_MISMATCHES: &str = "SELECT id, total_messages, total_conversations, m, c FROM ( \
     SELECT u.id, u.total_messages, u.total_conversations, \
     CAST(COALESCE(d.m, 0) AS BIGINT) AS m, CAST(COALESCE(d.c, 0) AS BIGINT) AS c \
     FROM users u LEFT JOIN (SELECT user_id, SUM(message_count) AS m, SUM(conversation_count) AS c \
       FROM daily_metrics GROUP BY user_id) d ON d.user_id = u.id) t \
     WHERE total_messages <> m OR total_conversations <> c";

/// The `users` columns holding when a user first reached each milestone.
const MILESTONE_COLUMNS: [(&str, &str); 4] = [
    ("signed_up_at", "user_signed_up"),
    ("first_component_at", "component_created"),
    ("first_workflow_at", "workflow_created"),
    ("first_message_at", "message_sent"),
];

fn bucket_text(b: i64) -> String {
    OffsetDateTime::from_unix_timestamp(b.saturating_mul(BUCKET_SECONDS))
        .map(|t| t.to_string())
        .unwrap_or_else(|_| b.to_string())
}

/// A `user_days.day` as its UTC date.
fn day_text(d: i64) -> String {
    bucket_text(d.saturating_mul(BUCKETS_PER_DAY))
}

fn user_key(user: Uuid, workflow: Option<Uuid>, at: String) -> String {
    let workflow = workflow.map_or_else(|| "-".to_owned(), |w| w.to_string());
    format!("user {user} workflow {workflow} at {at}")
}

/// Every row of every rollup table under one comparable key.
fn keyed(r: &Rollups) -> Keyed {
    let mut out = Keyed::new();
    for (u, w, d, c) in r.day_rows() {
        out.insert(("daily_metrics", user_key(u, w, d.to_string())), *c);
    }
    for (u, w, b, c) in r.bucket_rows() {
        out.insert(("usage_buckets", user_key(u, w, bucket_text(b))), *c);
    }
    for (u, w, component, b, c) in r.component_rows() {
        out.insert(("component_buckets", component_key(u, w, component, b)), *c);
    }
    for (u, b, c) in r.user_bucket_rows_iter() {
        out.insert(("user_buckets", user_key(u, None, bucket_text(b))), c);
    }
    for (u, d, c) in r.user_day_rows_iter() {
        out.insert(("user_days", user_key(u, None, day_text(d))), c);
    }
    for (b, n) in r.active_rows() {
        out.insert(("active_user_buckets", active_key(b)), one_number(n));
    }
    for (b, d) in r.cohort_rows() {
        for (column, n) in [
            ("signed_up", d.signed_up),
            ("created_component", d.created_component),
            ("created_workflow", d.created_workflow),
            ("sent_message", d.sent_message),
        ] {
            out.insert(("funnel_cohorts", cohort_key(b, column)), one_number(n));
        }
    }
    let (users, workflows) = r.totals();
    out.insert(("platform_totals", "users".to_owned()), one_number(users));
    out.insert(
        ("platform_totals", "workflows".to_owned()),
        one_number(workflows),
    );
    for (b, m, c) in r.platform_rows() {
        out.insert(
            (
                "platform_buckets",
                format!("model `{m}` at {}", bucket_text(b)),
            ),
            *c,
        );
    }
    out
}

fn component_key(user: Uuid, workflow: Option<Uuid>, component: Uuid, bucket: i64) -> String {
    let workflow = workflow.map_or_else(|| "-".to_owned(), |w| w.to_string());
    format!(
        "user {user} workflow {workflow} component {component} at {}",
        bucket_text(bucket)
    )
}

/// A stored `daily_metrics` row (its counters under the bucket tables' names).
#[derive(FromQueryResult)]
struct StoredDay {
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    date: Date,
    unique_sessions: i64,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// A stored `usage_buckets` row.
#[derive(FromQueryResult)]
struct StoredBucket {
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    bucket: i64,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// A stored `component_buckets` row.
#[derive(FromQueryResult)]
struct StoredComponentBucket {
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    component_id: Uuid,
    bucket: i64,
    #[sea_orm(nested)]
    counters: ComponentCounters,
}

/// A stored `user_buckets` or `user_days` row: its bucket or day is `at`.
#[derive(FromQueryResult)]
struct StoredUserRow {
    user_id: Uuid,
    at: i64,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

/// A stored `platform_buckets` row.
#[derive(FromQueryResult)]
struct StoredPlatformBucket {
    bucket: i64,
    model: String,
    #[sea_orm(nested)]
    counters: BucketCounters,
}

const COUNTER_SELECT: &str = "message_count, user_message_count, assistant_message_count, input_tokens, output_tokens, \
     cache_read_tokens, cache_write_tokens, reasoning_tokens, unpriced_message_count, unpriced_tokens, error_count";

async fn stored_rollups<C: ConnectionTrait>(conn: &C, range: RollupRange) -> StoreResult<Keyed> {
    let b = Bounds::of(range);
    let mut out = Keyed::new();
    let sql = format!(
        "SELECT user_id, workflow_id, date, {COUNTER_SELECT}, conversation_count AS conversations_started, \
         unique_sessions, estimated_cost_nano_usd AS cost_nano_usd FROM daily_metrics WHERE date >= $1 AND date <= $2"
    );
    for row in sql::fetch_all::<StoredDay, _>(conn, &sql, b.dates()).await? {
        let key = user_key(row.user_id, row.workflow_id, row.date.to_string());
        let counters = Counters {
            unique_sessions: row.unique_sessions,
            ..row.counters.0
        };
        out.insert(("daily_metrics", key), counters);
    }
    let sql = format!(
        "SELECT user_id, workflow_id, bucket, {COUNTER_SELECT}, conversations_started, cost_nano_usd \
         FROM usage_buckets WHERE bucket >= $1 AND bucket <= $2"
    );
    for row in sql::fetch_all::<StoredBucket, _>(conn, &sql, b.buckets()).await? {
        let key = user_key(row.user_id, row.workflow_id, bucket_text(row.bucket));
        out.insert(("usage_buckets", key), row.counters.0);
    }
    let sql = format!(
        "SELECT user_id, workflow_id, component_id, bucket, {} FROM component_buckets \
         WHERE bucket >= $1 AND bucket <= $2",
        COMPONENT_COUNTER_COLS.join(", ")
    );
    for row in sql::fetch_all::<StoredComponentBucket, _>(conn, &sql, b.buckets()).await? {
        let key = component_key(row.user_id, row.workflow_id, row.component_id, row.bucket);
        out.insert(("component_buckets", key), row.counters.0);
    }
    for (table, key, range, text) in [
        (
            "user_buckets",
            "bucket",
            b.buckets(),
            bucket_text as fn(i64) -> String,
        ),
        ("user_days", "day", b.days(), day_text),
    ] {
        let sql = format!(
            "SELECT user_id, {key} AS at, {COUNTER_SELECT}, conversations_started, cost_nano_usd \
             FROM {table} WHERE {key} >= $1 AND {key} <= $2"
        );
        for row in sql::fetch_all::<StoredUserRow, _>(conn, &sql, range).await? {
            let k = user_key(row.user_id, None, text(row.at));
            out.insert((table, k), row.counters.0);
        }
    }
    let sql = format!(
        "SELECT bucket, model, {COUNTER_SELECT}, conversations_started, cost_nano_usd \
         FROM platform_buckets WHERE bucket >= $1 AND bucket <= $2"
    );
    for row in sql::fetch_all::<StoredPlatformBucket, _>(conn, &sql, b.buckets()).await? {
        let key = format!("model `{}` at {}", row.model, bucket_text(row.bucket));
        out.insert(("platform_buckets", key), row.counters.0);
    }
    Ok(out)
}

/// A one-number counter (`active_user_buckets`, `funnel_cohorts`,
/// `platform_totals`) in a [`RollupDifference`]: the number is `message_count`.
fn one_number(n: i64) -> Counters {
    Counters {
        message_count: n,
        ..Counters::default()
    }
}

fn active_key(bucket: i64) -> String {
    format!(
        "users whose latest own message is at {}",
        bucket_text(bucket)
    )
}

fn cohort_key(bucket: i64, column: &str) -> String {
    format!(
        "{column} of the users who signed up at {}",
        bucket_text(bucket)
    )
}

/// Where a user stands: their latest own message's bucket and milestones.
#[derive(FromQueryResult)]
struct UserPosition {
    last_message_bucket: Option<i64>,
    #[sea_orm(nested)]
    milestones: Milestones,
}

/// A stored `active_user_buckets` row.
#[derive(FromQueryResult)]
struct ActiveUsers {
    bucket: i64,
    users: i64,
}

/// The all-time counters as they should be, from `users` and `workflows`:
/// every user moves from nowhere to where they stand, as ingestion moves
/// them.
async fn recount_all_time<C: ConnectionTrait + StreamTrait>(conn: &C) -> StoreResult<Rollups> {
    let backend = ConnectionTrait::get_database_backend(conn);
    let mut all = Rollups::default();
    let stmt = Statement::from_string(
        backend,
        "SELECT last_message_bucket, signed_up_at, first_component_at, first_workflow_at, first_message_at \
         FROM users",
    );
    let mut users = 0;
    {
        let mut rows = std::pin::pin!(conn.stream_raw(stmt).await?);
        while let Some(row) = rows.try_next().await? {
            let row: UserPosition = sql::read(&row)?;
            users += 1;
            if let Some(b) = row.last_message_bucket {
                all.move_active_user(None, b);
            }
            all.move_funnel_position(&FunnelPosition::default(), &row.milestones.into());
        }
    }
    let workflows = {
        use sea_orm::{
            EntityTrait, QuerySelect,
            sea_query::{Asterisk, Expr, ExprTrait as _},
        };
        workflows::Entity::find()
            .select_only()
            .column_as(Expr::col(Asterisk).count(), "n")
            .into_tuple::<i64>()
            .one(conn)
            .await?
            .unwrap_or(0)
    };
    all.count_created(users, workflows);
    Ok(all)
}

/// The stored all-time counters, keyed as [`keyed`] keys them.
async fn stored_all_time<C: ConnectionTrait>(conn: &C) -> StoreResult<Keyed> {
    let mut out = Keyed::new();
    for row in sql::fetch_all::<ActiveUsers, _>(
        conn,
        "SELECT bucket, users FROM active_user_buckets",
        vec![],
    )
    .await?
    {
        out.insert(
            ("active_user_buckets", active_key(row.bucket)),
            one_number(row.users),
        );
    }
    let sql = format!(
        "SELECT {} FROM funnel_cohorts",
        FUNNEL_COHORT_COLS.join(", ")
    );
    for row in sql::query_all(conn, &sql, vec![]).await? {
        let bucket: i64 = row.try_get("", "bucket")?;
        for column in &FUNNEL_COHORT_COLS[1..] {
            out.insert(
                ("funnel_cohorts", cohort_key(bucket, column)),
                one_number(row.try_get("", column)?),
            );
        }
    }
    for row in sql::fetch_all::<PlatformTotals, _>(
        conn,
        "SELECT users, workflows FROM platform_totals",
        vec![],
    )
    .await?
    {
        for (column, n) in [("users", row.users), ("workflows", row.workflows)] {
            out.insert(("platform_totals", column.to_owned()), one_number(n));
        }
    }
    Ok(out)
}

async fn write_sessions<C: ConnectionTrait>(conn: &C, sessions: &Sessions) -> StoreResult<()> {
    let rows: Vec<_> = sessions.iter().collect();
    for chunk in rows.chunks(500) {
        let mut values = Vec::with_capacity(chunk.len() * 3);
        for ((conversation, date), (user, _)) in chunk {
            values.push((*conversation).into());
            values.push((*date).into());
            values.push((*user).into());
        }
        let tuples: Vec<String> = (0..chunk.len())
            .map(|n| format!("({})", sql::placeholders(3 * n + 1, 3)))
            .collect();
        sql::execute(
            conn,
            &format!(
                "INSERT INTO conversation_days (conversation_id, date, user_id) VALUES {}",
                tuples.join(", ")
            ),
            values,
        )
        .await?;
    }
    Ok(())
}

/// Which conversation had a message on which UTC day: `(conversation, day) -> (user, workflow)`.
type Sessions = BTreeMap<(Uuid, Date), (Uuid, Option<Uuid>)>;

/// A `messages` row, as a recount reads it.
#[derive(FromQueryResult)]
struct StoredMessage {
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    conversation_id: Uuid,
    created_at: OffsetDateTime,
    role: String,
    has_usage: bool,
    #[sea_orm(nested)]
    tokens: StoredTokens,
    cost_nano_usd: Option<i64>,
    pricing_status: String,
    model: Option<String>,
    component_id: Option<Uuid>,
}

/// A started conversation, as a recount reads it.
#[derive(FromQueryResult)]
struct Started {
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    created_at: OffsetDateTime,
}

/// An error the platform reported, as a recount reads it (no user: the
/// platform's).
#[derive(FromQueryResult)]
struct ReportedError {
    user_id: Option<Uuid>,
    workflow_id: Option<Uuid>,
    created_at: OffsetDateTime,
}

async fn recount<C: ConnectionTrait + StreamTrait>(
    conn: &C,
    range: RollupRange,
) -> StoreResult<(Rollups, Sessions)> {
    let (lo, hi) = range.widened();
    let backend = ConnectionTrait::get_database_backend(conn);
    let mut rollups = Rollups::default();

    let stmt = Statement::from_sql_and_values(
        backend,
        "SELECT user_id, workflow_id, conversation_id, created_at, role, has_usage, input_tokens, output_tokens, \
         cache_read_tokens, cache_write_tokens, cache_write1h_tokens, reasoning_tokens, cost_nano_usd, pricing_status, model, \
         component_id FROM messages WHERE created_at >= $1 AND created_at < $2",
        [lo.into(), hi.into()],
    );
    let mut sessions = Sessions::new();
    {
        let mut rows = std::pin::pin!(conn.stream_raw(stmt).await?);
        while let Some(row) = rows.try_next().await? {
            let m: StoredMessage = sql::read(&row)?;
            let at = m.created_at;
            if !range.contains(at.date()) {
                continue;
            }
            let (user, workflow) = (m.user_id, m.workflow_id);
            let role: MessageRole = m
                .role
                .parse()
                .map_err(|e| crate::StoreError::Corrupt(format!("stored role: {e}")))?;
            let usage = m.tokens.usage();
            let facts = MessageFacts {
                role,
                usage: m.has_usage.then_some(&usage),
                cost_nano_usd: m.cost_nano_usd,
                pricing_status: &m.pricing_status,
            };
            let counters = Counters::for_message(&facts);
            rollups.add(user, workflow, m.model.as_deref(), at, &counters);
            if let Some(component) = m.component_id {
                rollups.add_component(user, workflow, component, at, &counters);
            }
            sessions
                .entry((m.conversation_id, at.date()))
                .or_insert((user, workflow));
        }
    }
    for ((_, date), (user, workflow)) in &sessions {
        rollups.add_session(*user, *workflow, *date);
    }

    let stmt = Statement::from_sql_and_values(
        backend,
        "SELECT user_id, workflow_id, created_at FROM conversations WHERE created_at >= $1 AND created_at < $2",
        [lo.into(), hi.into()],
    );
    {
        let mut rows = std::pin::pin!(conn.stream_raw(stmt).await?);
        while let Some(row) = rows.try_next().await? {
            let row: Started = sql::read(&row)?;
            let at = row.created_at;
            if range.contains(at.date()) {
                let started = Counters {
                    conversations_started: 1,
                    ..Counters::default()
                };
                rollups.add(row.user_id, row.workflow_id, None, at, &started);
            }
        }
    }

    let stmt = Statement::from_sql_and_values(
        backend,
        // Rollups count the errors the platform reported (those in the
        // ingestion ledger), not the service's own 5xx rows.
        "SELECT e.user_id, e.workflow_id, e.created_at FROM error_logs e JOIN ingested_items i ON i.id = e.id \
         WHERE e.created_at >= $1 AND e.created_at < $2",
        [lo.into(), hi.into()],
    );
    {
        let mut rows = std::pin::pin!(conn.stream_raw(stmt).await?);
        while let Some(row) = rows.try_next().await? {
            let row: ReportedError = sql::read(&row)?;
            let at = row.created_at;
            if range.contains(at.date()) {
                let error = Counters {
                    error_count: 1,
                    ..Counters::default()
                };
                match row.user_id {
                    Some(user) => rollups.add(user, row.workflow_id, None, at, &error),
                    None => rollups.add_platform(None, at, &error),
                }
            }
        }
    }
    Ok((rollups, sessions))
}
