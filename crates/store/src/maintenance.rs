//! Rebuilding rollups from raw rows and checking that they agree
//! (`charlie-stats rollups rebuild|verify`).
//!
//! Both compute the rollups of a UTC date range with the same [`Rollups`]
//! accumulator that ingestion uses, from `messages`, `conversations` and
//! `error_logs`. Rows are streamed, so memory grows with the number of rollup
//! rows, not raw rows.

use crate::{
    Store, StoreResult,
    rollup::{BUCKET_SECONDS, Counters, MessageFacts, Rollups},
    sql,
};
use charlie_domain::{MessageRole, TokenUsage};
use futures_util::TryStreamExt;
use sea_orm::{ConnectionTrait, Statement, StreamTrait, TransactionTrait};
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
    /// `daily_metrics` or `usage_buckets`.
    pub table: &'static str,
    pub user_id: Uuid,
    pub workflow_id: Option<Uuid>,
    /// The date (daily) or bucket start (buckets), RFC 3339.
    pub at: String,
    pub stored: Option<Counters>,
    pub recounted: Option<Counters>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub daily_rows: usize,
    pub bucket_rows: usize,
    pub differences: Vec<RollupDifference>,
    /// Waiting messages whose conversation exists (should never happen).
    pub stuck_pending: Vec<Uuid>,
}

impl Store {
    /// Recounts the rollups of `range` from raw rows.
    pub async fn recount_rollups(&self, range: RollupRange) -> StoreResult<Rollups> {
        Ok(recount(self.conn(), range).await?.0)
    }

    /// Replaces the stored rollups of `range` with a recount, in one
    /// transaction. Running it twice gives the same rows.
    pub async fn rebuild_rollups(&self, range: RollupRange) -> StoreResult<(usize, usize)> {
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let (rollups, sessions) = recount(&txn, range).await?;
        let (day_sql, bucket_sql, days_sql, values, bucket_values) = delete_statements(range);
        sql::execute(&txn, &day_sql, values.clone()).await?;
        sql::execute(&txn, &days_sql, values).await?;
        sql::execute(&txn, &bucket_sql, bucket_values).await?;
        rollups.write(&txn, OffsetDateTime::now_utc()).await?;
        // The session ledger follows from messages too.
        write_sessions(&txn, &sessions).await?;
        txn.commit().await?;
        Ok((rollups.day_rows().count(), rollups.bucket_rows().count()))
    }

    /// Compares stored rollups of `range` with a recount.
    pub async fn verify_rollups(&self, range: RollupRange) -> StoreResult<VerifyReport> {
        let (recounted, _) = recount(self.conn(), range).await?;
        let stored = stored_rollups(self.conn(), range).await?;
        let mut report = VerifyReport {
            daily_rows: stored.daily.len(),
            bucket_rows: stored.buckets.len(),
            ..VerifyReport::default()
        };
        let mut fresh_days: BTreeMap<(Uuid, Option<Uuid>, Date), Counters> = BTreeMap::new();
        for (u, w, d, c) in recounted.day_rows() {
            fresh_days.insert((u, w, d), *c);
        }
        let mut fresh_buckets: BTreeMap<(Uuid, Option<Uuid>, i64), Counters> = BTreeMap::new();
        for (u, w, b, c) in recounted.bucket_rows() {
            fresh_buckets.insert((u, w, b), *c);
        }
        diff(
            &stored.daily,
            &fresh_days,
            "daily_metrics",
            |d| d.to_string(),
            &mut report.differences,
        );
        diff(
            &stored.buckets,
            &fresh_buckets,
            "usage_buckets",
            |b| {
                OffsetDateTime::from_unix_timestamp(b * BUCKET_SECONDS)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|_| b.to_string())
            },
            &mut report.differences,
        );
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

fn diff<K: Ord + Copy>(
    stored: &BTreeMap<(Uuid, Option<Uuid>, K), Counters>,
    fresh: &BTreeMap<(Uuid, Option<Uuid>, K), Counters>,
    table: &'static str,
    show: impl Fn(K) -> String,
    out: &mut Vec<RollupDifference>,
) {
    let keys: BTreeSet<_> = stored.keys().chain(fresh.keys()).copied().collect();
    for key in keys {
        let (a, b) = (
            stored.get(&key).filter(|c| **c != Counters::default()),
            fresh.get(&key),
        );
        let b = b.filter(|c| **c != Counters::default());
        if a != b {
            out.push(RollupDifference {
                table,
                user_id: key.0,
                workflow_id: key.1,
                at: show(key.2),
                stored: a.copied(),
                recounted: b.copied(),
            });
        }
    }
}

type DeleteStatements = (
    String,
    String,
    String,
    Vec<sea_orm::Value>,
    Vec<sea_orm::Value>,
);

fn delete_statements(range: RollupRange) -> DeleteStatements {
    // Open ends become dates every engine can store (PostgreSQL's range is
    // narrower than `time`'s).
    let from = range.from.unwrap_or(time::macros::date!(1900 - 01 - 01));
    let to = range.to.unwrap_or(time::macros::date!(9999 - 12 - 31));
    let b_lo = range
        .from
        .map(|d| {
            d.with_time(Time::MIDNIGHT)
                .assume_utc()
                .unix_timestamp()
                .div_euclid(BUCKET_SECONDS)
        })
        .unwrap_or(i64::MIN);
    let b_hi = range
        .to
        .map(|d| {
            (d.with_time(Time::MIDNIGHT).assume_utc() + Duration::days(1))
                .unix_timestamp()
                .div_euclid(BUCKET_SECONDS)
                - 1
        })
        .unwrap_or(i64::MAX);
    (
        "DELETE FROM daily_metrics WHERE date >= $1 AND date <= $2".into(),
        "DELETE FROM usage_buckets WHERE bucket >= $1 AND bucket <= $2".into(),
        "DELETE FROM conversation_days WHERE date >= $1 AND date <= $2".into(),
        vec![from.into(), to.into()],
        vec![b_lo.into(), b_hi.into()],
    )
}

struct Stored {
    daily: BTreeMap<(Uuid, Option<Uuid>, Date), Counters>,
    buckets: BTreeMap<(Uuid, Option<Uuid>, i64), Counters>,
}

async fn stored_rollups<C: ConnectionTrait + StreamTrait>(
    conn: &C,
    range: RollupRange,
) -> StoreResult<Stored> {
    let (_, _, _, day_values, bucket_values) = delete_statements(range);
    let mut daily = BTreeMap::new();
    for row in sql::query_all(
        conn,
        "SELECT user_id, workflow_id, date, message_count, user_message_count, assistant_message_count, \
         conversation_count, unique_sessions, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
         reasoning_tokens, estimated_cost_nano_usd, unpriced_message_count, error_count \
         FROM daily_metrics WHERE date >= $1 AND date <= $2",
        day_values,
    )
    .await?
    {
        let c = Counters {
            message_count: row.try_get("", "message_count")?,
            user_message_count: row.try_get("", "user_message_count")?,
            assistant_message_count: row.try_get("", "assistant_message_count")?,
            conversations_started: row.try_get("", "conversation_count")?,
            unique_sessions: row.try_get("", "unique_sessions")?,
            input_tokens: row.try_get("", "input_tokens")?,
            output_tokens: row.try_get("", "output_tokens")?,
            cache_read_tokens: row.try_get("", "cache_read_tokens")?,
            cache_write_tokens: row.try_get("", "cache_write_tokens")?,
            reasoning_tokens: row.try_get("", "reasoning_tokens")?,
            cost_nano_usd: row.try_get("", "estimated_cost_nano_usd")?,
            unpriced_message_count: row.try_get("", "unpriced_message_count")?,
            error_count: row.try_get("", "error_count")?,
        };
        daily.insert((row.try_get("", "user_id")?, row.try_get("", "workflow_id")?, row.try_get("", "date")?), c);
    }
    let mut buckets = BTreeMap::new();
    for row in sql::query_all(
        conn,
        "SELECT user_id, workflow_id, bucket, message_count, user_message_count, assistant_message_count, \
         conversations_started, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
         reasoning_tokens, cost_nano_usd, unpriced_message_count, error_count \
         FROM usage_buckets WHERE bucket >= $1 AND bucket <= $2",
        bucket_values,
    )
    .await?
    {
        let c = Counters {
            message_count: row.try_get("", "message_count")?,
            user_message_count: row.try_get("", "user_message_count")?,
            assistant_message_count: row.try_get("", "assistant_message_count")?,
            conversations_started: row.try_get("", "conversations_started")?,
            unique_sessions: 0,
            input_tokens: row.try_get("", "input_tokens")?,
            output_tokens: row.try_get("", "output_tokens")?,
            cache_read_tokens: row.try_get("", "cache_read_tokens")?,
            cache_write_tokens: row.try_get("", "cache_write_tokens")?,
            reasoning_tokens: row.try_get("", "reasoning_tokens")?,
            cost_nano_usd: row.try_get("", "cost_nano_usd")?,
            unpriced_message_count: row.try_get("", "unpriced_message_count")?,
            error_count: row.try_get("", "error_count")?,
        };
        buckets.insert((row.try_get("", "user_id")?, row.try_get("", "workflow_id")?, row.try_get("", "bucket")?), c);
    }
    Ok(Stored { daily, buckets })
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
         cache_read_tokens, cache_write_tokens, cache_write1h_tokens, reasoning_tokens, cost_nano_usd, pricing_status \
         FROM messages WHERE created_at >= $1 AND created_at < $2",
        [lo.into(), hi.into()],
    );
    let mut sessions = Sessions::new();
    {
        let mut rows = std::pin::pin!(conn.stream_raw(stmt).await?);
        while let Some(row) = rows.try_next().await? {
            let at: OffsetDateTime = row.try_get("", "created_at")?;
            if !range.contains(at.date()) {
                continue;
            }
            let user: Uuid = row.try_get("", "user_id")?;
            let workflow: Option<Uuid> = row.try_get("", "workflow_id")?;
            let role: String = row.try_get("", "role")?;
            let role: MessageRole = role
                .parse()
                .map_err(|e| crate::StoreError::Invalid(format!("stored role: {e}")))?;
            let has_usage: bool = row.try_get("", "has_usage")?;
            let count = |c: &str| -> StoreResult<u64> {
                let v: i64 = row.try_get("", c)?;
                Ok(u64::try_from(v).unwrap_or(0))
            };
            let usage = TokenUsage {
                input_tokens: count("input_tokens")?,
                output_tokens: count("output_tokens")?,
                cache_read_input_tokens: count("cache_read_tokens")?,
                cache_creation_input_tokens: count("cache_write_tokens")?,
                cache_creation_1h_input_tokens: count("cache_write1h_tokens")?,
                reasoning_tokens: count("reasoning_tokens")?,
            };
            let status: String = row.try_get("", "pricing_status")?;
            let facts = MessageFacts {
                role,
                usage: has_usage.then_some(&usage),
                cost_nano_usd: row.try_get("", "cost_nano_usd")?,
                pricing_status: &status,
            };
            rollups.add(user, workflow, at, &Counters::for_message(&facts));
            sessions
                .entry((row.try_get("", "conversation_id")?, at.date()))
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
            let at: OffsetDateTime = row.try_get("", "created_at")?;
            if range.contains(at.date()) {
                let started = Counters {
                    conversations_started: 1,
                    ..Counters::default()
                };
                rollups.add(
                    row.try_get("", "user_id")?,
                    row.try_get("", "workflow_id")?,
                    at,
                    &started,
                );
            }
        }
    }

    let stmt = Statement::from_sql_and_values(
        backend,
        "SELECT user_id, workflow_id, created_at FROM error_logs \
         WHERE user_id IS NOT NULL AND created_at >= $1 AND created_at < $2",
        [lo.into(), hi.into()],
    );
    {
        let mut rows = std::pin::pin!(conn.stream_raw(stmt).await?);
        while let Some(row) = rows.try_next().await? {
            let at: OffsetDateTime = row.try_get("", "created_at")?;
            if range.contains(at.date()) {
                let error = Counters {
                    error_count: 1,
                    ..Counters::default()
                };
                let user: Option<Uuid> = row.try_get("", "user_id")?;
                if let Some(user) = user {
                    rollups.add(user, row.try_get("", "workflow_id")?, at, &error);
                }
            }
        }
    }
    Ok((rollups, sessions))
}
