//! The second stage of the write path: folding batches into the rollups.
//!
//! A batch's raw rows are written by its request (`apply`); what it changes
//! in rows that every batch shares (`conversation_days`, the per-user
//! counters on `users`, the rollup tables, `user_month_usage` and the
//! budget alerts) is a `Delta`. Where the delta goes depends on the engine:
//!
//! - **SQLite** (one writer at a time, nothing to wait for): folded in the
//!   ingest transaction itself. Rollups are always exact.
//! - **PostgreSQL**: the ingest transaction appends the delta to
//!   `rollup_queue` (one row per batch) and commits. A *fold cycle* then
//!   takes the queue's rows, merges them into one delta (one upsert per
//!   rollup key for many batches), writes it and deletes the rows, in one
//!   transaction: each batch is counted exactly once, whatever crashes when.
//!   Fold transactions take turns across every instance on the database (a
//!   transaction-scoped advisory lock), so no two of them wait on each
//!   other's row locks, and ingest transactions never wait on those rows at
//!   all.
//!
//! Who runs a fold cycle: the request that appended a batch, after its
//! commit, runs one unless a cycle that started after its commit has
//! already finished (group commit: one cycle serves every request that
//! waited for it); it waits at most the store's fold wait, then answers
//! anyway (its items are durable; the rollups trail). The server also runs a
//! cycle every second (`charlie-api`'s `jobs::fold`), which folds what a
//! request did not wait for, what a crash left and other instances' batches.
//!
//! **As of.** A cycle that began at `t` and finished has folded every batch
//! committed before `t`: [`Store::rollups_as_of`] is the start of the last
//! finished cycle, so an analytics read counts every item acknowledged
//! before it. [`Store::rollup_lag`] is how old the oldest unfolded batch is.

use super::apply::Batch;
use crate::{
    Engine, Store, StoreError, StoreResult,
    rollup::Rollups,
    sql::{self, insert_many, read, update_from_values_returning},
};
use sea_orm::{DatabaseTransaction, FromQueryResult, TransactionTrait, Value as DbValue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// How long a request waits for its batch to be folded by default: long
/// enough for a cycle under load, short enough that a stalled applier never
/// holds a client for long.
pub const DEFAULT_FOLD_WAIT: Duration = Duration::from_secs(2);

/// Queue rows folded per transaction: a cycle runs as many transactions as
/// it needs to empty the queue. Bounds a fold's memory (64 took the server
/// to 256 MiB with random traffic; 16 keeps it under 200 MiB).
const ROWS_PER_FOLD: i64 = 16;

/// How many times a fold transaction is run when it meets a lock conflict.
const MAX_ATTEMPTS: u32 = 8;

/// The advisory lock of fold transactions (the two-key form: its key space
/// is apart from the one-key locks ingestion takes per conversation).
const FOLD_LOCK: &str = "SELECT pg_advisory_xact_lock(1700, 15)";

/// What a batch changes in rows that other batches change too.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(into = "DeltaWire", from = "DeltaWire")]
pub(crate) struct Delta {
    pub rollups: Rollups,
    /// `(conversation, UTC day) -> (user, workflow)` of the batch's messages:
    /// a conversation's first message of a day adds a session.
    pub sessions: BTreeMap<(Uuid, Date), (Uuid, Option<Uuid>)>,
    /// The latest own-message bucket of each user who sent one.
    pub last_active: BTreeMap<Uuid, i64>,
}

/// [`Delta`] as stored in `rollup_queue.payload` (JSON maps need string keys).
#[derive(Serialize, Deserialize)]
struct DeltaWire {
    rollups: Rollups,
    sessions: Vec<(Uuid, Date, Uuid, Option<Uuid>)>,
    last_active: Vec<(Uuid, i64)>,
}

impl From<Delta> for DeltaWire {
    fn from(d: Delta) -> DeltaWire {
        DeltaWire {
            rollups: d.rollups,
            sessions: d
                .sessions
                .into_iter()
                .map(|((c, day), (u, w))| (c, day, u, w))
                .collect(),
            last_active: d.last_active.into_iter().collect(),
        }
    }
}

impl From<DeltaWire> for Delta {
    fn from(w: DeltaWire) -> Delta {
        Delta {
            rollups: w.rollups,
            sessions: w
                .sessions
                .into_iter()
                .map(|(c, day, u, wf)| ((c, day), (u, wf)))
                .collect(),
            last_active: w.last_active.into_iter().collect(),
        }
    }
}

impl Delta {
    /// Takes the shared-row changes a batch collected.
    pub(super) fn of(batch: &mut Batch) -> Delta {
        Delta {
            rollups: std::mem::take(&mut batch.rollups),
            sessions: std::mem::take(&mut batch.sessions),
            last_active: std::mem::take(&mut batch.last_active),
        }
    }

    fn is_empty(&self) -> bool {
        self.rollups.is_empty() && self.sessions.is_empty() && self.last_active.is_empty()
    }

    /// Adds another batch's changes (its sessions and latest buckets too).
    fn merge(&mut self, other: Delta) {
        self.rollups.merge(other.rollups);
        for (k, v) in other.sessions {
            self.sessions.entry(k).or_insert(v);
        }
        for (user, bucket) in other.last_active {
            let b = self.last_active.entry(user).or_insert(bucket);
            *b = (*b).max(bucket);
        }
    }
}

/// Writes a delta: sessions, then the users (locked once, in id order,
/// before their counters move), then the rollups, then month-to-date usage
/// and the alerts it raises. Used by SQLite's ingest transaction and by
/// PostgreSQL's fold transactions alike.
pub(super) async fn write_delta(
    txn: &DatabaseTransaction,
    mut delta: Delta,
    budgets: &crate::budgets::BudgetPolicy,
    now: OffsetDateTime,
) -> StoreResult<()> {
    write_sessions(txn, &mut delta).await?;
    let mut users: BTreeSet<Uuid> = delta
        .rollups
        .day_rows()
        .map(|(user, _, _, _)| user)
        .collect();
    users.extend(delta.last_active.keys().copied());
    sql::lock_users(txn, users).await?;
    update_users(txn, &mut delta).await?;
    delta.rollups.write(txn, now).await?;
    crate::budgets::record_month_usage(txn, &delta.rollups, budgets, now).await
}

/// Appends a batch's delta to `rollup_queue` (PostgreSQL), with the ids of
/// its messages. Nothing is appended for a batch that changes nothing.
pub(super) async fn enqueue(
    txn: &DatabaseTransaction,
    delta: &Delta,
    message_ids: &[Uuid],
    now: OffsetDateTime,
) -> StoreResult<bool> {
    if delta.is_empty() && message_ids.is_empty() {
        return Ok(false);
    }
    let payload = serde_json::to_string(delta).map_err(|e| StoreError::Internal(e.to_string()))?;
    let ids = message_ids
        .iter()
        .map(Uuid::to_string)
        .collect::<Vec<_>>()
        .join(",");
    sql::execute(
        txn,
        "INSERT INTO rollup_queue (enqueued_at, message_ids, payload) VALUES ($1, CAST($2 AS uuid[]), $3)",
        vec![now.into(), format!("{{{ids}}}").into(), payload.into()],
    )
    .await?;
    Ok(true)
}

/// A conversation's first message of a day (`conversation_days` row inserted).
#[derive(FromQueryResult)]
struct FirstOfDay {
    conversation_id: Uuid,
    date: Date,
}

/// Records which conversations had a message on which UTC day; a
/// conversation's first message of a day adds a session to the rollups.
async fn write_sessions(txn: &DatabaseTransaction, delta: &mut Delta) -> StoreResult<()> {
    let rows = delta
        .sessions
        .iter()
        .map(|((conversation, date), (user, _))| {
            vec![(*conversation).into(), (*date).into(), (*user).into()]
        })
        .collect();
    let first_of_day = insert_many(
        txn,
        "conversation_days",
        &["conversation_id", "date", "user_id"],
        rows,
        Some(sql::ignore_conflicts(&[
            "user_id",
            "conversation_id",
            "date",
        ])),
        &["conversation_id", "date"],
    )
    .await?;
    for row in &first_of_day {
        let FirstOfDay {
            conversation_id,
            date,
        } = read(row)?;
        if let Some(&(user, workflow)) = delta.sessions.get(&(conversation_id, date)) {
            delta.rollups.add_session(user, workflow, date);
        }
    }
    Ok(())
}

/// Where an updated user's latest bucket was and is.
#[derive(FromQueryResult)]
struct MovedBucket {
    previous_message_bucket: Option<i64>,
    last_message_bucket: Option<i64>,
}

/// Adds the delta to the per-user counters (`total_messages`,
/// `total_conversations`) and moves `last_message_bucket` forward (never
/// back), in id order. Where a user's latest bucket moved goes to the
/// rollups (`active_user_buckets`).
async fn update_users(txn: &DatabaseTransaction, delta: &mut Delta) -> StoreResult<()> {
    let mut per_user: BTreeMap<Uuid, (i64, i64, Option<i64>)> = BTreeMap::new();
    for (user, _, _, c) in delta.rollups.day_rows() {
        let e = per_user.entry(user).or_default();
        e.0 += c.message_count;
        e.1 += c.conversations_started;
    }
    for (user, bucket) in &delta.last_active {
        per_user.entry(*user).or_default().2 = Some(*bucket);
    }
    per_user.retain(|_, (m, c, b)| *m != 0 || *c != 0 || b.is_some());
    let rows = per_user
        .into_iter()
        .map(|(u, (m, c, b))| vec![DbValue::from(u), m.into(), c.into(), b.into()])
        .collect();
    let updated = update_from_values_returning(
        txn,
        "users",
        &[
            ("u", "uuid"),
            ("m", "bigint"),
            ("c", "bigint"),
            ("b", "bigint"),
        ],
        "total_messages = users.total_messages + v.m, \
         total_conversations = users.total_conversations + v.c, \
         previous_message_bucket = users.last_message_bucket, \
         last_message_bucket = CASE WHEN v.b IS NOT NULL AND (users.last_message_bucket IS NULL \
         OR users.last_message_bucket < v.b) THEN v.b ELSE users.last_message_bucket END",
        None,
        rows,
        &["previous_message_bucket", "last_message_bucket"],
    )
    .await?;
    for row in &updated {
        let moved: MovedBucket = read(row)?;
        if let Some(after) = moved.last_message_bucket {
            delta
                .rollups
                .move_active_user(moved.previous_message_bucket, after);
        }
    }
    Ok(())
}

/// Who folds, and how far folding has got (one per [`Store`] and its clones).
#[derive(Debug, Default)]
pub(crate) struct Folder {
    /// Held by whoever runs a fold cycle in this process.
    turn: tokio::sync::Mutex<()>,
    /// Cycles started / finished in this process (numbered from 1).
    started: AtomicU64,
    finished: AtomicU64,
    /// When the last finished cycle began (see the module doc).
    as_of: std::sync::Mutex<Option<OffsetDateTime>>,
}

/// A queue row taken by a fold transaction.
#[derive(FromQueryResult)]
struct Queued {
    seq: i64,
    payload: String,
}

/// The oldest unfolded batch.
#[derive(FromQueryResult)]
struct Oldest {
    enqueued_at: Option<OffsetDateTime>,
    batches: i64,
}

/// What [`Store::rollup_lag`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupLag {
    /// Batches appended and not folded yet.
    pub batches: i64,
    /// Seconds since the oldest of them was appended (0 when none).
    pub seconds: f64,
}

impl Store {
    /// Settles a batch this store appended: waits (at most the fold wait)
    /// until a fold cycle that began after its commit has finished,
    /// running that cycle itself when no one else is. Failures are logged:
    /// the batch is durable and the next cycle folds it.
    pub(super) async fn settle(&self) {
        if self.fold_wait.is_zero() {
            return;
        }
        let ticket = self.folder.started.load(Ordering::SeqCst) + 1;
        let store = self.clone();
        // The cycle runs in a task of its own, so that a caller that stops
        // waiting (timeout, client gone) never abandons a fold half-way.
        let cycle = tokio::spawn(async move { store.fold_through(ticket).await });
        match tokio::time::timeout(self.fold_wait, cycle).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "fold cycle failed; the rollups trail until the next one")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "fold task failed"),
            Err(_) => tracing::debug!("answered before the batch was folded; the rollups trail"),
        }
    }

    async fn fold_through(&self, ticket: u64) -> StoreResult<()> {
        let _turn = self.folder.turn.lock().await;
        if self.folder.finished.load(Ordering::SeqCst) >= ticket {
            return Ok(());
        }
        self.fold_cycle().await.map(|_| ())
    }

    /// Runs one fold cycle: folds every batch committed before it began,
    /// from every instance, and returns how many it folded. Safe to call
    /// at any time from any number of tasks and instances.
    pub async fn fold_pending(&self) -> StoreResult<usize> {
        let _turn = self.folder.turn.lock().await;
        self.fold_cycle().await
    }

    /// The body of a cycle; the caller holds `turn`.
    async fn fold_cycle(&self) -> StoreResult<usize> {
        let n = self.folder.started.fetch_add(1, Ordering::SeqCst) + 1;
        let began = OffsetDateTime::now_utc();
        let mut folded = 0;
        if self.engine() == Engine::Postgres {
            loop {
                let taken = self.fold_once().await?;
                folded += taken;
                if i64::try_from(taken).unwrap_or(i64::MAX) < ROWS_PER_FOLD {
                    break;
                }
            }
        }
        self.folder.finished.store(n, Ordering::SeqCst);
        if let Ok(mut as_of) = self.folder.as_of.lock() {
            *as_of = Some(as_of.map_or(began, |t| t.max(began)));
        }
        Ok(folded)
    }

    /// One fold transaction: takes up to [`ROWS_PER_FOLD`] queue rows,
    /// writes their merged delta and deletes them, retried on a lock conflict.
    async fn fold_once(&self) -> StoreResult<usize> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = async {
                let txn = self.conn().begin().await?;
                sql::execute(&txn, FOLD_LOCK, vec![]).await?;
                // Read first, delete last: the delete is the fold's only
                // write that batches wait for (Citus serializes a delete
                // from a reference table with every insert into it), so it
                // comes when the fold needs nothing more but its commit.
                // The fold lock keeps these rows to this transaction.
                let rows: Vec<Queued> = sql::fetch_all(
                    &txn,
                    "SELECT seq, payload FROM rollup_queue ORDER BY seq LIMIT $1",
                    vec![ROWS_PER_FOLD.into()],
                )
                .await?;
                let taken = rows.len();
                let mut delta = Delta::default();
                let mut seqs = Vec::with_capacity(taken);
                for row in rows {
                    let d: Delta = serde_json::from_str(&row.payload)
                        .map_err(|e| StoreError::Corrupt(format!("rollup_queue payload: {e}")))?;
                    delta.merge(d);
                    seqs.push(row.seq.to_string());
                }
                if taken > 0 {
                    write_delta(&txn, delta, &self.budget_policy, OffsetDateTime::now_utc())
                        .await?;
                    let deleted = sql::execute(
                        &txn,
                        "DELETE FROM rollup_queue WHERE seq = ANY (CAST($1 AS bigint[]))",
                        vec![format!("{{{}}}", seqs.join(",")).into()],
                    )
                    .await?;
                    if deleted != taken as u64 {
                        return Err(StoreError::Internal(format!(
                            "the fold read {taken} queued batches but deleted {deleted}"
                        )));
                    }
                }
                txn.commit().await?;
                Ok::<_, StoreError>(taken)
            };
            match run.await {
                Ok(taken) => return Ok(taken),
                Err(e) if attempt < MAX_ATTEMPTS && sql::is_retriable(&e) => {
                    tracing::debug!(attempt, error = %e, "fold conflicted; running it again");
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt * attempt)))
                        .await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Every item acknowledged before this instant is in the rollups (see
    /// the module doc). `None` on PostgreSQL until this process has
    /// finished a fold cycle. On SQLite: now (rollups are always exact).
    pub fn rollups_as_of(&self) -> Option<OffsetDateTime> {
        match self.engine() {
            Engine::Sqlite => Some(OffsetDateTime::now_utc()),
            Engine::Postgres => self.folder.as_of.lock().ok().and_then(|t| *t),
        }
    }

    /// How far the rollups trail the raw rows: the batches waiting in
    /// `rollup_queue` and the age of the oldest (none on SQLite).
    pub async fn rollup_lag(&self) -> StoreResult<RollupLag> {
        let oldest: Oldest = sql::fetch_one(
            self.conn(),
            "SELECT (SELECT enqueued_at FROM rollup_queue ORDER BY seq LIMIT 1) AS enqueued_at, \
             (SELECT COUNT(*) FROM rollup_queue) AS batches",
            vec![],
        )
        .await?
        .ok_or_else(|| StoreError::Internal("no row".into()))?;
        let seconds = oldest.enqueued_at.map_or(0.0, |t| {
            ((OffsetDateTime::now_utc() - t).as_seconds_f64()).max(0.0)
        });
        Ok(RollupLag {
            batches: oldest.batches,
            seconds,
        })
    }

    /// How long a request waits for its batch to be folded (PostgreSQL).
    /// Zero answers at once and leaves folding to whoever calls
    /// [`Store::fold_pending`] (the server's background cycle).
    pub fn with_fold_wait(mut self, wait: Duration) -> Store {
        self.fold_wait = wait;
        self
    }
}
