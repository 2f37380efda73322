//! The second stage of the write path: folding batches into the rollups.
//!
//! A batch's raw rows are written by its request (`apply`); what it changes
//! in rows that every batch shares (`conversation_days`, the per-user
//! counters and funnel stamps on `users`, the rollup tables,
//! `user_month_usage` and the budget alerts) is a `Delta`. Where the delta goes depends on the engine:
//!
//! - **SQLite** (one writer at a time, nothing to wait for): folded in the
//!   ingest transaction itself. Rollups are always exact.
//! - **PostgreSQL**: the ingest transaction appends the delta to
//!   `rollup_queue`, split into one row per *shard* (below), and commits. A
//!   *fold transaction* then takes queued rows, merges them into one delta
//!   (one upsert per rollup key for many batches), writes it and deletes
//!   the rows: each batch is counted exactly once, whatever crashes when.
//!   Ingest transactions never wait on those rows at all.
//!
//! **Shards.** What a batch changes in rows keyed by a user (sessions,
//! counters, the per-user rollups, month usage and alerts) goes to the
//! user's shard; what is keyed by a quarter-hour only (platform rows,
//! active users, cohorts) to that bucket's shard. So no two shards write the
//! same row, except `active_user_buckets`, which a user's latest message
//! moves (written in key order, last). A cycle folds a short queue whole,
//! in one transaction holding every shard's lock (fewer, larger statements:
//! what steady traffic needs); when that transaction finds a backlog (a
//! full take), the rest is folded shard by shard in parallel, one
//! transaction per shard, so more than one backend catches up. A cycle
//! whose fold wrote more than [`WIDE_FOLD_ROWS`] keyed rows is followed by
//! cycles that fold shard by shard from the start, until one writes fewer:
//! traffic whose batches share few rollup rows (many users, times spread
//! out) makes one fold backend the bottleneck, and merging its batches into
//! one transaction saves little anyway. A shard's
//! transactions take turns across every instance on the database (a
//! transaction-scoped advisory lock per shard, taken in shard order), so
//! they never wait on each other's row locks. Correctness does not depend on the
//! split: every rollup write is an increment taken in key order, so a row
//! folds exactly in any shard (rows queued before migration 20 are in
//! shard 0 and hold whole batches). Changing [`FOLD_SHARDS`] needs a
//! migration that moves the queued rows of shards that no longer exist.
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

use super::apply::{Batch, Stamp, Stamps, add_stamp, stamp_users};
use crate::{
    Engine, Store, StoreError, StoreResult,
    rollup::Rollups,
    sql::{self, insert_many, read, update_from_values_returning},
};
use sea_orm::{DatabaseTransaction, FromQueryResult, TransactionTrait, Value as DbValue};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// How long a request waits for its batch to be folded by default: long
/// enough for a cycle under load, short enough that a stalled applier never
/// holds a client for long.
pub const DEFAULT_FOLD_WAIT: Duration = Duration::from_secs(2);

/// Queue rows folded per transaction: a shard runs as many transactions as
/// it needs to empty its queue. Bounds a fold's memory (64 whole batches
/// took the server to 256 MiB with random traffic; 16 kept it under 200 MiB;
/// a shard's row holds about a [`FOLD_SHARDS`]th of a batch, and the shards
/// run together, so a cycle holds about as much as one fold of 16 batches
/// did).
const ROWS_PER_FOLD: usize = 16;

/// Keyed rows a cycle's fold may write before the next cycle folds shard
/// by shard in parallel. Steady traffic of conversations writes about 2,000
/// per cycle in `bench ingest` (16 clients), traffic spread over every user
/// and day about ten times that; see BENCHMARKS.md, "Wide folds".
pub const WIDE_FOLD_ROWS: usize = 8_000;

/// How many times a fold transaction is run when it meets a lock conflict.
const MAX_ATTEMPTS: u32 = 8;

/// The shards a batch's delta is split into, folded in parallel.
pub const FOLD_SHARDS: usize = 4;

/// The advisory lock of one shard's fold transactions (the two-key form: its
/// key space is apart from the one-key locks ingestion takes per
/// conversation).
const FOLD_LOCK: &str = "SELECT pg_advisory_xact_lock(1701, CAST($1 AS integer))";

/// Every shard's fold lock, in shard order (shards `0..=$1`).
const FOLD_LOCK_ALL: &str = "SELECT pg_advisory_xact_lock(1701, s) \
     FROM generate_series(0, CAST($1 AS integer)) AS s ORDER BY s";

/// What one fold transaction takes from the queue.
#[derive(Debug, Clone, Copy)]
enum Scope {
    /// The oldest rows of every shard, under every shard's lock.
    All,
    /// The oldest rows of one shard, under its lock.
    Shard(usize),
}

/// The fold shard of what is keyed by `user` (`rand_b` of a v7 id, or any id's
/// low bits).
pub fn user_shard(user: Uuid) -> usize {
    (user.as_u128() % FOLD_SHARDS as u128) as usize
}

/// The shard of what is keyed by a quarter-hour `bucket` only.
fn bucket_shard(bucket: i64) -> usize {
    bucket.rem_euclid(FOLD_SHARDS as i64) as usize
}

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
    /// The funnel columns of `users` that new milestones stamp, with the
    /// earliest time of each.
    pub stamps: Stamps,
}

/// [`Delta`] as stored in `rollup_queue.payload` (JSON maps need string keys).
#[derive(Serialize, Deserialize)]
struct DeltaWire {
    rollups: Rollups,
    sessions: Vec<(Uuid, Date, Uuid, Option<Uuid>)>,
    last_active: Vec<(Uuid, i64)>,
    /// `(user, column, time)`; absent from rows queued before stamps moved
    /// into the fold (those batches stamped their users themselves).
    #[serde(default)]
    stamps: Vec<(Uuid, Stamp, OffsetDateTime)>,
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
            stamps: d
                .stamps
                .into_iter()
                .map(|((user, stamp), at)| (user, stamp, at))
                .collect(),
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
            stamps: w
                .stamps
                .into_iter()
                .map(|(user, stamp, at)| ((user, stamp), at))
                .collect(),
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
            stamps: std::mem::take(&mut batch.stamps),
        }
    }

    fn is_empty(&self) -> bool {
        self.rollups.is_empty()
            && self.sessions.is_empty()
            && self.last_active.is_empty()
            && self.stamps.is_empty()
    }

    /// Keyed rows the delta writes (see [`Rollups::rows`]), sessions and
    /// users included.
    fn rows(&self) -> usize {
        self.rollups.rows() + self.sessions.len() + self.last_active.len() + self.stamps.len()
    }

    /// Splits the delta into its [`FOLD_SHARDS`] shards (see the module
    /// doc); their merge is the whole.
    fn split(self) -> Vec<Delta> {
        let mut out: Vec<Delta> = self
            .rollups
            .split(FOLD_SHARDS, user_shard, bucket_shard)
            .into_iter()
            .map(|rollups| Delta {
                rollups,
                ..Delta::default()
            })
            .collect();
        for (key, value) in self.sessions {
            out[user_shard(value.0)].sessions.insert(key, value);
        }
        for (user, bucket) in self.last_active {
            out[user_shard(user)].last_active.insert(user, bucket);
        }
        for ((user, stamp), at) in self.stamps {
            out[user_shard(user)].stamps.insert((user, stamp), at);
        }
        out
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
        for (key, at) in other.stamps {
            add_stamp(&mut self.stamps, key, at);
        }
    }
}

/// Writes a delta: sessions, then the users (locked once, in id order,
/// before their funnel stamps and counters move), then the per-user rollups, then
/// month-to-date usage and the alerts it raises, then the platform-wide
/// rows (shared with other shards: last, so their locks are held only until
/// the commit). Used by SQLite's ingest transaction and by PostgreSQL's
/// fold transactions alike.
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
    users.extend(delta.stamps.keys().map(|(user, _)| *user));
    sql::lock_users(txn, users).await?;
    stamp_users(txn, &delta.stamps, &mut delta.rollups).await?;
    update_users(txn, &mut delta).await?;
    delta.rollups.write_user_tables(txn, now).await?;
    crate::budgets::record_month_usage(txn, &delta.rollups, budgets, now).await?;
    delta.rollups.write_shared(txn).await
}

/// Appends a batch's delta to `rollup_queue` (PostgreSQL): one row per
/// shard it changes, each with the ids of that shard's messages (given as
/// `(message, user)`). Nothing is appended for a batch that changes nothing.
pub(super) async fn enqueue(
    txn: &DatabaseTransaction,
    delta: Delta,
    messages: &[(Uuid, Uuid)],
    now: OffsetDateTime,
) -> StoreResult<bool> {
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); FOLD_SHARDS];
    for (message, user) in messages {
        ids[user_shard(*user)].push(message.to_string());
    }
    let mut values = Vec::new();
    let mut rows = Vec::new();
    for (shard, (part, ids)) in delta.split().into_iter().zip(ids).enumerate() {
        if part.is_empty() && ids.is_empty() {
            continue;
        }
        let payload =
            serde_json::to_string(&part).map_err(|e| StoreError::Internal(e.to_string()))?;
        let n = values.len();
        rows.push(format!(
            "($1, ${}, CAST(${} AS uuid[]), ${})",
            n + 2,
            n + 3,
            n + 4
        ));
        values.push(DbValue::from(i16::try_from(shard).unwrap_or(0)));
        values.push(format!("{{{}}}", ids.join(",")).into());
        values.push(payload.into());
    }
    if rows.is_empty() {
        return Ok(false);
    }
    values.insert(0, now.into());
    sql::execute(
        txn,
        &format!(
            "INSERT INTO rollup_queue (enqueued_at, shard, message_ids, payload) VALUES {}",
            rows.join(", ")
        ),
        values,
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
    /// The last cycle wrote more than [`WIDE_FOLD_ROWS`] rows: the next one
    /// folds shard by shard from the start.
    wide: AtomicBool,
    /// Fold transactions run, whole-queue and per shard ([`Store::fold_counts`]).
    whole_folds: AtomicU64,
    shard_folds: AtomicU64,
}

/// What fold transactions did: queue rows taken, keyed rows written.
#[derive(Debug, Default, Clone, Copy)]
struct Folded {
    taken: usize,
    rows: usize,
}

impl Folded {
    fn add(&mut self, other: Folded) {
        self.taken += other.taken;
        self.rows += other.rows;
    }
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
    rows: i64,
}

/// What [`Store::rollup_lag`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RollupLag {
    /// Queue rows appended and not folded yet (a batch appends one per
    /// shard it changes).
    pub rows: i64,
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

    /// The body of a cycle; the caller holds `turn`. Folds the whole queue
    /// in one transaction when it is short; a backlog is then folded shard
    /// by shard in parallel, and so is everything after a cycle that wrote
    /// more than [`WIDE_FOLD_ROWS`] rows. Counts as finished only when every
    /// shard is empty.
    async fn fold_cycle(&self) -> StoreResult<usize> {
        let n = self.folder.started.fetch_add(1, Ordering::SeqCst) + 1;
        let began = OffsetDateTime::now_utc();
        let mut folded = Folded::default();
        if self.engine() == Engine::Postgres {
            // A short queue is folded whole, in one transaction (fewer,
            // larger statements); a backlog, or a queue of wide batches,
            // shard by shard in parallel.
            let by_shard = if self.folder.wide.load(Ordering::SeqCst) {
                true
            } else {
                folded = self.fold_once(Scope::All).await?;
                folded.taken >= ROWS_PER_FOLD * FOLD_SHARDS
            };
            if by_shard {
                folded.add(self.fold_every_shard().await?);
            }
            self.folder
                .wide
                .store(folded.rows > WIDE_FOLD_ROWS, Ordering::SeqCst);
        }
        self.finish_cycle(n, began, folded.taken)
    }

    /// Fold transactions this process has run: `(whole-queue, per shard)`.
    pub fn fold_counts(&self) -> (u64, u64) {
        (
            self.folder.whole_folds.load(Ordering::SeqCst),
            self.folder.shard_folds.load(Ordering::SeqCst),
        )
    }

    /// Records that cycle `n`, begun at `began`, has finished.
    fn finish_cycle(&self, n: u64, began: OffsetDateTime, folded: usize) -> StoreResult<usize> {
        self.folder.finished.store(n, Ordering::SeqCst);
        if let Ok(mut as_of) = self.folder.as_of.lock() {
            *as_of = Some(as_of.map_or(began, |t| t.max(began)));
        }
        Ok(folded)
    }

    /// Folds every shard until its queue is empty, one task per shard (the
    /// merging is CPU work).
    async fn fold_every_shard(&self) -> StoreResult<Folded> {
        let mut shards = tokio::task::JoinSet::new();
        for shard in 0..FOLD_SHARDS {
            let store = self.clone();
            shards.spawn(async move { store.fold_shard(shard).await });
        }
        let mut folded = Folded::default();
        let mut failed = None;
        while let Some(done) = shards.join_next().await {
            match done {
                Ok(Ok(shard)) => folded.add(shard),
                Ok(Err(e)) => failed = Some(e),
                Err(e) => failed = Some(StoreError::Internal(format!("fold task: {e}"))),
            }
        }
        failed.map_or(Ok(folded), Err)
    }

    /// Folds one shard until its queue is empty.
    async fn fold_shard(&self, shard: usize) -> StoreResult<Folded> {
        let mut folded = Folded::default();
        loop {
            let once = self.fold_once(Scope::Shard(shard)).await?;
            folded.add(once);
            if once.taken < ROWS_PER_FOLD {
                return Ok(folded);
            }
        }
    }

    /// One fold transaction: takes up to [`ROWS_PER_FOLD`] queue rows of a
    /// shard (or that many per shard of the whole queue), writes their
    /// merged delta and deletes them, retried on a lock conflict.
    async fn fold_once(&self, scope: Scope) -> StoreResult<Folded> {
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let (lock, read) = match scope {
            Scope::All => (
                (FOLD_LOCK_ALL, vec![DbValue::from(count(FOLD_SHARDS - 1))]),
                (
                    "SELECT seq, payload FROM rollup_queue ORDER BY seq LIMIT $1",
                    vec![DbValue::from(count(ROWS_PER_FOLD * FOLD_SHARDS))],
                ),
            ),
            Scope::Shard(shard) => (
                (FOLD_LOCK, vec![DbValue::from(count(shard))]),
                (
                    "SELECT seq, payload FROM rollup_queue WHERE shard = $1 ORDER BY seq LIMIT $2",
                    vec![DbValue::from(count(shard)), count(ROWS_PER_FOLD).into()],
                ),
            ),
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = async {
                let txn = self.conn().begin().await?;
                sql::execute(&txn, lock.0, lock.1.clone()).await?;
                // Read first, delete last: the delete is the fold's only
                // write that batches wait for (Citus serializes a delete
                // from a reference table with every insert into it), so it
                // comes when the fold needs nothing more but its commit.
                // The shards' fold locks keep these rows to this
                // transaction.
                let rows: Vec<Queued> = sql::fetch_all(&txn, read.0, read.1.clone()).await?;
                let taken = rows.len();
                let mut delta = Delta::default();
                let mut written = 0;
                let mut seqs = Vec::with_capacity(taken);
                for row in rows {
                    let d: Delta = serde_json::from_str(&row.payload)
                        .map_err(|e| StoreError::Corrupt(format!("rollup_queue payload: {e}")))?;
                    delta.merge(d);
                    seqs.push(row.seq.to_string());
                }
                if taken > 0 {
                    written = delta.rows();
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
                Ok::<_, StoreError>(Folded {
                    taken,
                    rows: written,
                })
            };
            match run.await {
                Ok(folded) => {
                    let counter = match scope {
                        Scope::All => &self.folder.whole_folds,
                        Scope::Shard(_) => &self.folder.shard_folds,
                    };
                    counter.fetch_add(1, Ordering::SeqCst);
                    return Ok(folded);
                }
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

    /// How far the rollups trail the raw rows: the queue rows waiting in
    /// `rollup_queue` and the age of the oldest (none on SQLite).
    pub async fn rollup_lag(&self) -> StoreResult<RollupLag> {
        let oldest: Oldest = sql::fetch_one(
            self.conn(),
            "SELECT (SELECT enqueued_at FROM rollup_queue ORDER BY seq LIMIT 1) AS enqueued_at, \
             (SELECT COUNT(*) FROM rollup_queue) AS rows",
            vec![],
        )
        .await?
        .ok_or_else(|| StoreError::Internal("no row".into()))?;
        let seconds = oldest.enqueued_at.map_or(0.0, |t| {
            ((OffsetDateTime::now_utc() - t).as_seconds_f64()).max(0.0)
        });
        Ok(RollupLag {
            rows: oldest.rows,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollup::{Counters, FunnelPosition, bucket_of};

    /// A delta over many users, buckets and models, as batches make them.
    fn sample() -> Delta {
        let mut delta = Delta::default();
        let start = OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_780_000_000);
        for n in 0..40i64 {
            let user = Uuid::from_u128(0x1000 + n as u128 * 7);
            let workflow = (n % 3 != 0).then(|| Uuid::from_u128(0x9000 + n as u128 % 5));
            let at = start + time::Duration::minutes(n * 17);
            let c = Counters {
                message_count: 1,
                input_tokens: n + 10,
                cost_nano_usd: 1_000 + n,
                conversations_started: i64::from(n % 4 == 0),
                ..Counters::default()
            };
            let model = if n % 2 == 0 {
                "gpt-4o"
            } else {
                "claude-sonnet-4"
            };
            delta.rollups.add(user, workflow, Some(model), at, &c);
            delta.rollups.add_component(
                user,
                workflow,
                Uuid::from_u128(0x5000 + n as u128),
                at,
                &c,
            );
            delta.rollups.add_session(user, workflow, at.date());
            delta.rollups.move_active_user(None, bucket_of(at));
            delta.rollups.move_funnel_position(
                &FunnelPosition::default(),
                &FunnelPosition {
                    signup_bucket: Some(bucket_of(at)),
                    sent_message: true,
                    ..FunnelPosition::default()
                },
            );
            delta.sessions.insert(
                (Uuid::from_u128(0x7000 + n as u128), at.date()),
                (user, workflow),
            );
            delta.last_active.insert(user, bucket_of(at));
            add_stamp(&mut delta.stamps, (user, Stamp::FirstMessage), at);
        }
        delta.rollups.count_created(3, 2);
        delta
    }

    #[test]
    fn a_split_delta_adds_up_to_the_whole_and_keeps_each_key_in_its_shard()
    -> Result<(), serde_json::Error> {
        let whole = sample();
        let parts = whole.clone().split();
        assert_eq!(parts.len(), FOLD_SHARDS);
        assert!(
            parts.iter().filter(|p| !p.is_empty()).count() > 1,
            "the sample spreads over several shards"
        );
        for (shard, part) in parts.iter().enumerate() {
            assert!(part.rollups.day_rows().all(|r| user_shard(r.0) == shard));
            assert!(part.rollups.bucket_rows().all(|r| user_shard(r.0) == shard));
            assert!(
                part.rollups
                    .component_rows()
                    .all(|r| user_shard(r.0) == shard)
            );
            assert!(
                part.rollups
                    .platform_rows()
                    .all(|r| bucket_shard(r.0) == shard)
            );
            assert!(
                part.rollups
                    .active_rows()
                    .all(|r| bucket_shard(r.0) == shard)
            );
            assert!(
                part.rollups
                    .cohort_rows()
                    .all(|r| bucket_shard(r.0) == shard)
            );
            assert!(part.sessions.values().all(|v| user_shard(v.0) == shard));
            assert!(part.last_active.keys().all(|u| user_shard(*u) == shard));
            assert!(part.stamps.keys().all(|(u, _)| user_shard(*u) == shard));
            if shard != 0 {
                assert_eq!(part.rollups.totals(), (0, 0));
            }
        }
        let mut merged = Delta::default();
        for part in parts {
            merged.merge(part);
        }
        assert_eq!(
            serde_json::to_value(&merged)?,
            serde_json::to_value(&whole)?
        );
        Ok(())
    }

    #[test]
    fn shards_cover_every_number_and_negative_buckets() {
        let mut seen = BTreeSet::new();
        for n in 0..64i64 {
            seen.insert(user_shard(Uuid::from_u128(n as u128)));
            seen.insert(bucket_shard(n - 32));
        }
        assert_eq!(seen, (0..FOLD_SHARDS).collect());
    }
}
