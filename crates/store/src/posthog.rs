//! The PostHog outbox (`posthog_outbox`) and the reads that forwarding and
//! its backfill need.
//!
//! While forwarding is on ([`Store::with_posthog_outbox`]), the ingest
//! transaction queues one row per `user_activity_events` row it writes
//! (explicit `event.track` items and derived funnel milestones alike), so a
//! committed event is forwarded even if the process dies right after the
//! commit. A row only names its event: the payload is read from the event
//! and its user when it is sent.
//!
//! Delivery is at least once, as for the alert outbox (`outbox.rs`): a
//! worker claims due rows by moving `next_attempt_ms` forward by a lease
//! and counting the attempt, in one statement that commits at once (on
//! PostgreSQL with `FOR UPDATE SKIP LOCKED`, so instances never claim the
//! same row together). A delivered row is deleted; a row PostHog refused
//! for good keeps `failed_at_ms` and `last_error`. PostHog dedupes a resend
//! by the event's `uuid` (our event id).

use crate::{
    Engine, Store, StoreResult,
    sql::{self, uuid_in},
};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Value};
use std::collections::BTreeMap;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

/// One activity event as forwarded, with what its user's row says.
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct ForwardedEvent {
    pub id: Uuid,
    pub at: OffsetDateTime,
    pub user_id: Uuid,
    /// `None` for a placeholder user the platform has not described yet.
    pub external_id: Option<String>,
    pub email: Option<String>,
    pub timezone: Option<String>,
    pub event_type: String,
    pub event_category: String,
    pub workflow_id: Option<Uuid>,
    pub component_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub metadata: serde_json::Value,
    /// Delivery attempts so far, this one included (0 outside the outbox).
    #[sea_orm(skip)]
    pub attempts: i32,
}

/// What the outbox holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PosthogBacklog {
    /// Rows waiting for (another) attempt.
    pub pending: u64,
    /// Rows PostHog refused for good (or that ran out of attempts).
    pub failed: u64,
}

/// One row given up on.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct PosthogFailure {
    pub event_id: Uuid,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// The columns of a [`ForwardedEvent`] (all but `attempts`), from
/// `user_activity_events e JOIN users u`.
const EVENT_COLUMNS: &str = "e.id, e.created_at AS at, e.user_id, u.external_id, u.email, u.timezone, \
     e.event_type, e.event_category, e.workflow_id, e.component_id, e.conversation_id, e.metadata";

/// A claimed outbox row.
#[derive(FromQueryResult)]
struct Claimed {
    event_id: Uuid,
    attempts: i32,
}

/// The outbox's counts.
#[derive(FromQueryResult)]
struct BacklogCounts {
    pending: i64,
    failed: i64,
}

/// The first and the last stored activity event (NULL: none).
#[derive(FromQueryResult)]
struct EventSpan {
    first: Option<OffsetDateTime>,
    last: Option<OffsetDateTime>,
}

/// Queues events for PostHog (inside their ingest transaction).
pub(crate) async fn enqueue<C: ConnectionTrait>(
    txn: &C,
    events: &[(Uuid, OffsetDateTime)],
    now: OffsetDateTime,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let now_ms = unix_ms(now);
    let rows = events
        .iter()
        .map(|(id, at)| {
            vec![
                (*id).into(),
                (*at).into(),
                now_ms.into(),
                now_ms.into(),
                0i32.into(),
            ]
        })
        .collect();
    sql::insert_many(
        txn,
        "posthog_outbox",
        &[
            "event_id",
            "event_at",
            "enqueued_at_ms",
            "next_attempt_ms",
            "attempts",
        ],
        rows,
        Some(sql::ignore_conflicts(&["event_id"])),
        &[],
    )
    .await?;
    Ok(())
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// `column >= $a AND column < $b`, exact on both engines (SQLite keeps
/// timestamps as text whose fraction has no fixed width).
fn within(backend: DbBackend, column: &str, a: usize, b: usize) -> String {
    format!(
        "{} AND {}",
        sql::instant_cmp(backend, column, ">=", a),
        sql::instant_cmp(backend, column, "<", b)
    )
}

impl Store {
    /// Turns queuing events for PostHog on or off (off by default).
    pub fn with_posthog_outbox(mut self, enabled: bool) -> Store {
        self.posthog_outbox = enabled;
        self
    }

    /// Claims up to `limit` due rows for `lease_ms` and returns their events,
    /// oldest due first. A row whose event is gone is dropped.
    pub async fn claim_posthog(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<ForwardedEvent>> {
        let claimed = {
            let _guard = self.write_guard().await;
            let lock = match self.engine() {
                Engine::Postgres => " FOR UPDATE SKIP LOCKED",
                Engine::Sqlite => "",
            };
            let sql = format!(
                "UPDATE posthog_outbox SET next_attempt_ms = $1, attempts = attempts + 1 WHERE event_id IN (\
                 SELECT event_id FROM posthog_outbox WHERE failed_at_ms IS NULL AND next_attempt_ms <= $2 \
                 ORDER BY next_attempt_ms, event_id LIMIT $3{lock}) RETURNING event_id, attempts"
            );
            sql::fetch_all::<Claimed, _>(
                self.conn(),
                &sql,
                vec![
                    now_ms.saturating_add(lease_ms).into(),
                    now_ms.into(),
                    i64::from(limit.max(1)).into(),
                ],
            )
            .await?
        };
        let mut attempts: BTreeMap<Uuid, i32> = claimed
            .into_iter()
            .map(|c| (c.event_id, c.attempts))
            .collect();
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = attempts.keys().copied().collect();
        let (filter, values) = uuid_in("e.id", &ids, 1, self.backend());
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM user_activity_events e JOIN users u ON u.id = e.user_id \
             WHERE {filter} ORDER BY e.created_at, e.id"
        );
        let mut events = Vec::with_capacity(ids.len());
        for mut event in sql::fetch_all::<ForwardedEvent, _>(self.conn(), &sql, values).await? {
            event.attempts = attempts.remove(&event.id).unwrap_or(1);
            events.push(event);
        }
        // Whatever is left has no event row (it cannot be sent).
        let orphans: Vec<Uuid> = attempts.into_keys().collect();
        if !orphans.is_empty() {
            tracing::warn!(
                count = orphans.len(),
                "PostHog outbox rows without their event dropped"
            );
            self.posthog_delivered(&orphans).await?;
        }
        Ok(events)
    }

    /// Removes delivered rows.
    pub async fn posthog_delivered(&self, ids: &[Uuid]) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        for chunk in ids.chunks(500) {
            let (filter, values) = uuid_in("event_id", chunk, 1, self.backend());
            sql::execute(
                self.conn(),
                &format!("DELETE FROM posthog_outbox WHERE {filter}"),
                values,
            )
            .await?;
        }
        Ok(())
    }

    /// Records a failed attempt of `ids`: retried at `retry_at_ms`, or given
    /// up on (kept with its error) when `None`.
    pub async fn posthog_attempt_failed(
        &self,
        ids: &[Uuid],
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let error: String = error.chars().take(1000).collect();
        for chunk in ids.chunks(500) {
            let (filter, mut values) = uuid_in("event_id", chunk, 3, self.backend());
            let (set, first) = match retry_at_ms {
                Some(at) => ("next_attempt_ms", at),
                None => ("failed_at_ms", now_ms),
            };
            let sql =
                format!("UPDATE posthog_outbox SET {set} = $1, last_error = $2 WHERE {filter}");
            values.splice(0..0, [Value::from(first), error.clone().into()]);
            sql::execute(self.conn(), &sql, values).await?;
        }
        Ok(())
    }

    /// How many rows wait and how many were given up on.
    pub async fn posthog_backlog(&self) -> StoreResult<PosthogBacklog> {
        let row: Option<BacklogCounts> = sql::fetch_one(
            self.conn(),
            "SELECT CAST(COUNT(*) - COUNT(failed_at_ms) AS BIGINT) AS pending, \
             CAST(COUNT(failed_at_ms) AS BIGINT) AS failed FROM posthog_outbox",
            vec![],
        )
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(
            row.map_or_else(PosthogBacklog::default, |r| PosthogBacklog {
                pending: count(r.pending),
                failed: count(r.failed),
            }),
        )
    }

    /// The rows given up on, most recent first.
    pub async fn posthog_failures(&self, limit: u32) -> StoreResult<Vec<PosthogFailure>> {
        sql::fetch_all(
            self.conn(),
            "SELECT event_id, attempts, last_error FROM posthog_outbox WHERE failed_at_ms IS NOT NULL \
             ORDER BY failed_at_ms DESC, event_id LIMIT $1",
            vec![i64::from(limit).into()],
        )
        .await
    }

    /// The UTC days of the first and the last stored activity event.
    pub async fn activity_event_days(&self) -> StoreResult<Option<(Date, Date)>> {
        let row: Option<EventSpan> = sql::fetch_one(
            self.conn(),
            "SELECT MIN(created_at) AS first, MAX(created_at) AS last FROM user_activity_events",
            vec![],
        )
        .await?;
        let Some(EventSpan { first, last }) = row else {
            return Ok(None);
        };
        Ok(first.zip(last).map(|(a, b)| {
            (
                a.to_offset(time::UtcOffset::UTC).date(),
                b.to_offset(time::UtcOffset::UTC).date(),
            )
        }))
    }

    /// How many activity events one UTC day holds.
    pub async fn count_activity_events(&self, day: Date) -> StoreResult<u64> {
        let (start, end) = day_bounds(day);
        let sql = format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM user_activity_events WHERE {}",
            within(self.backend(), "created_at", 1, 2)
        );
        let row = sql::query_one(self.conn(), &sql, vec![start.into(), end.into()]).await?;
        let n: i64 = match row {
            Some(r) => r.try_get("", "n")?,
            None => 0,
        };
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Up to `limit` activity events of one UTC day with ids after `after`,
    /// in id order (page through a day by passing the last id back).
    pub async fn activity_events_of_day(
        &self,
        day: Date,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<ForwardedEvent>> {
        let (start, end) = day_bounds(day);
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM user_activity_events e JOIN users u ON u.id = e.user_id \
             WHERE {} AND e.id > $3 ORDER BY e.id LIMIT $4",
            within(self.backend(), "e.created_at", 1, 2)
        );
        sql::fetch_all(
            self.conn(),
            &sql,
            vec![
                start.into(),
                end.into(),
                after.unwrap_or(Uuid::nil()).into(),
                i64::from(limit.max(1)).into(),
            ],
        )
        .await
    }
}

fn day_bounds(day: Date) -> (OffsetDateTime, OffsetDateTime) {
    let start = day.with_time(Time::MIDNIGHT).assume_utc();
    (start, start + time::Duration::days(1))
}
