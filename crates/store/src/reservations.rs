//! Budget reservations: the check-reserve-commit protocol that makes hard
//! limits hold (issue #17).
//!
//! **What counts against a hard limit** at any instant is the month-to-date
//! spend of the user's local month (`user_month_usage`, written by ingestion)
//! plus every *held* reservation: a row of `budget_reservations` in state
//! `open` or `committed` whose `expires_at_ms` is still ahead and whose
//! `message_id` (if any) is not counted yet: not ingested, or (PostgreSQL)
//! ingested but its batch still waits in `rollup_queue` to be folded into
//! `user_month_usage` (`counted`).
//!
//! **Spend is counted once, from ingestion.** Committing does not add to
//! `user_month_usage`; it replaces the reservation's held amount by the
//! actual cost and keeps it held ("pending") until the message that carries
//! that cost is ingested (the commit names its `message_id`: from then on the
//! message's cost is in `user_month_usage` and the reservation stops counting
//! in the same snapshot) or until the commit hold ends
//! (`commit_hold_seconds`), after which ingestion must have arrived. A commit
//! without a `message_id` is therefore counted twice for at most the hold
//! window once its message is ingested: a conservative error, never one that
//! lets spend slip past the limit.
//!
//! **Atomicity.** Every write that changes a user's holds (reserve,
//! commit, release) takes the lock of the user's `budget_accounts` row and
//! bumps its `reservations` version before it commits.
//!
//! On PostgreSQL a reservation is normally *one statement* (one round trip,
//! no `BEGIN`/`COMMIT`): `PG_RESERVE` locks the row without waiting
//! (`FOR UPDATE SKIP LOCKED`), reads limits, spend, holds and the
//! idempotency key, and inserts only when the locked version is the one its
//! snapshot saw, i.e. when no holder committed in between, so the snapshot
//! already contains every hold. When the row is locked or changed, it writes
//! nothing, and the reservation runs as a transaction that waits for the
//! lock (`INSERT … ON CONFLICT DO UPDATE`) and then runs the same statement,
//! whose snapshot is taken after the lock. Reservations of one user take
//! turns; other users are not blocked, and ingestion never touches that row.
//!
//! On SQLite the store's single-writer lock serializes the same transaction
//! of several statements. Either way month spend + held reservations never
//! exceed the hard limit because of a reservation.

use crate::{
    Store, StoreError, StoreResult,
    budgets::{LocalMonth, month_of, user_zone},
    entity::{users, workflows},
    rollup::BUCKET_SECONDS,
    sql,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QuerySelect, TransactionTrait, sea_query::Expr,
};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest accepted idempotency key.
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;

/// Which budget decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetScope {
    /// The user's own hard limit.
    User,
    /// The workflow's hard limit.
    Workflow,
    /// The platform-wide default hard limit (users without their own).
    PlatformDefault,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::User => "user",
            BudgetScope::Workflow => "workflow",
            BudgetScope::PlatformDefault => "platform_default",
        }
    }
}

/// A reservation request, already priced.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    pub user_id: Uuid,
    pub workflow_id: Option<Uuid>,
    /// The estimated cost to hold, in nano-USD (≥ 0).
    pub amount_nano_usd: i64,
    pub model: Option<String>,
    pub idempotency_key: String,
    pub ttl_seconds: i64,
}

/// The platform-wide settings reservations apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReservePolicy {
    /// Hard limit of users without their own, in nano-USD.
    pub default_hard_limit_nano_usd: Option<i64>,
    /// How long a committed amount stays held while its message has not
    /// been ingested.
    pub commit_hold_seconds: i64,
}

/// One stored reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct Reservation {
    pub id: Uuid,
    pub user_id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub idempotency_key: String,
    /// `open`, `committed`, `settled` (its message is ingested) or `released`.
    pub state: String,
    /// What the reservation holds while it counts, in nano-USD.
    pub amount_nano_usd: i64,
    pub estimated_nano_usd: i64,
    pub actual_nano_usd: Option<i64>,
    pub message_id: Option<Uuid>,
    pub model: Option<String>,
    /// The user's local month when it was made (`YYYY-MM`).
    pub month: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub closed_at_ms: Option<i64>,
}

/// How a budget stands, in nano-USD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Standing {
    pub scope: BudgetScope,
    pub limit_nano_usd: i64,
    /// Month-to-date spend (ingested messages).
    pub spent_nano_usd: i64,
    /// Held reservations (this one included once allowed).
    pub reserved_nano_usd: i64,
}

impl Standing {
    pub fn remaining_nano_usd(&self) -> i64 {
        self.limit_nano_usd
            .saturating_sub(self.spent_nano_usd)
            .saturating_sub(self.reserved_nano_usd)
    }
}

/// The answer to a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    Allowed {
        reservation: Box<Reservation>,
        /// Every hard limit that applies, after this reservation.
        limits: Vec<Standing>,
        /// Soft limits (alert budgets) that spend + holds have reached.
        soft_reached: Vec<BudgetScope>,
        /// True when the idempotency key named an earlier reservation.
        replayed: bool,
    },
    Denied {
        /// The limit that refused, before this reservation.
        standing: Standing,
        requested_nano_usd: i64,
    },
}

/// The actual usage a commit reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommitRequest {
    pub reservation_id: Uuid,
    /// The actual cost, when the caller knows it (priced by the API).
    pub actual_nano_usd: Option<i64>,
    /// The id of the `message.create` that records the call.
    pub message_id: Option<Uuid>,
}

/// The columns of a [`Reservation`].
const COLUMNS: &str = "id, user_id, workflow_id, idempotency_key, state, amount_nano_usd, estimated_nano_usd, \
     actual_nano_usd, message_id, model, month, created_at_ms, expires_at_ms, closed_at_ms";

/// A held reservation, as a SQL condition on alias `r` (`$now` is the
/// placeholder of the current time in ms).
fn held(now: &str, backend: DbBackend) -> String {
    format!(
        "r.state IN ('open', 'committed') AND r.expires_at_ms > {now} \
         AND (r.message_id IS NULL OR NOT ({}))",
        counted("r.message_id", "r.user_id", backend)
    )
}

/// Whether the message whose id is `id` (a SQL expression) has its cost in
/// `user_month_usage` and `usage_buckets`: it was ingested and, on
/// PostgreSQL, its batch is no longer waiting in `rollup_queue` (the fold
/// deletes the queue row in the transaction that adds the cost, so one
/// snapshot sees the cost either as held here or as spent there, never
/// neither). `user` is the message's user: naming it keeps the check on
/// that user's shard on Citus.
fn counted(id: &str, user: &str, backend: DbBackend) -> String {
    let ingested =
        format!("EXISTS (SELECT 1 FROM messages m WHERE m.id = {id} AND m.user_id = {user})");
    match backend {
        DbBackend::Postgres => format!(
            "{ingested} AND NOT EXISTS (SELECT 1 FROM rollup_queue q WHERE {id} = ANY (q.message_ids))"
        ),
        _ => ingested,
    }
}

fn ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Takes the user's budget lock (see the module doc).
async fn lock_account<C: ConnectionTrait>(txn: &C, user_id: Uuid) -> StoreResult<()> {
    sql::execute(
        txn,
        "INSERT INTO budget_accounts (user_id, reservations) VALUES ($1, 1) \
         ON CONFLICT (user_id) DO UPDATE SET reservations = budget_accounts.reservations + 1",
        vec![user_id.into()],
    )
    .await?;
    Ok(())
}

async fn find<C: ConnectionTrait>(txn: &C, id: Uuid) -> StoreResult<Option<Reservation>> {
    sql::fetch_one(
        txn,
        &format!("SELECT {COLUMNS} FROM budget_reservations WHERE id = $1"),
        vec![id.into()],
    )
    .await
}

/// The user's and workflow's limits and zone.
#[derive(FromQueryResult)]
struct Limits {
    timezone: Option<String>,
    user_soft: Option<i64>,
    user_hard: Option<i64>,
    workflow_soft: Option<i64>,
    workflow_hard: Option<i64>,
}

async fn limits<C: ConnectionTrait>(
    txn: &C,
    user_id: Uuid,
    workflow_id: Option<Uuid>,
) -> StoreResult<Limits> {
    sql::fetch_one(
        txn,
        "SELECT (SELECT timezone FROM users WHERE id = $1) AS timezone, \
         (SELECT monthly_budget_nano_usd FROM users WHERE id = $1) AS user_soft, \
         (SELECT monthly_hard_limit_nano_usd FROM users WHERE id = $1) AS user_hard, \
         (SELECT monthly_budget_nano_usd FROM workflows WHERE id = $2) AS workflow_soft, \
         (SELECT monthly_hard_limit_nano_usd FROM workflows WHERE id = $2) AS workflow_hard",
        vec![user_id.into(), workflow_id.into()],
    )
    .await?
    .ok_or_else(|| StoreError::Internal("no row".into()))
}

/// Spend and holds of a user (and workflow) in one snapshot.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    spent: i64,
    held: i64,
    workflow_spent: i64,
    workflow_held: i64,
}

/// The user's spend and holds in a row.
#[derive(FromQueryResult)]
struct UserSpend {
    spent: i64,
    held: i64,
}

/// The workflow's spend and holds in a row.
#[derive(FromQueryResult)]
struct WorkflowSpend {
    workflow_spent: i64,
    workflow_held: i64,
}

impl Usage {
    fn of(user: UserSpend, workflow: Option<WorkflowSpend>) -> Usage {
        let workflow = workflow.unwrap_or(WorkflowSpend {
            workflow_spent: 0,
            workflow_held: 0,
        });
        Usage {
            spent: user.spent,
            held: user.held,
            workflow_spent: workflow.workflow_spent,
            workflow_held: workflow.workflow_held,
        }
    }
}

/// A row of [`PG_RESERVE`]: the snapshot, what the statement did, and the
/// reservation the idempotency key names, if any.
#[derive(FromQueryResult)]
struct PgReserveRow {
    #[sea_orm(nested)]
    lim: Limits,
    fresh: bool,
    zone_ok: bool,
    #[sea_orm(nested)]
    user: UserSpend,
    #[sea_orm(nested)]
    workflow: WorkflowSpend,
    inserted: bool,
    #[sea_orm(nested)]
    existing: Option<Reservation>,
}

async fn usage<C: ConnectionTrait>(
    txn: &C,
    user_id: Uuid,
    workflow: Option<(Uuid, i64, i64)>,
    month: &str,
    now_ms: i64,
) -> StoreResult<Usage> {
    let held = held("$3", txn.get_database_backend());
    let (wf_sql, mut values) = (
        match workflow {
            Some(_) => format!(
                ", COALESCE((SELECT CAST(SUM(cost_nano_usd) AS BIGINT) FROM usage_buckets \
                 WHERE user_id = $1 AND workflow_key = $4 AND bucket >= $5 AND bucket < $6), 0) AS workflow_spent, \
                 COALESCE((SELECT CAST(SUM(r.amount_nano_usd) AS BIGINT) FROM budget_reservations r \
                 WHERE r.user_id = $1 AND r.workflow_id = $4 AND {held}), 0) AS workflow_held"
            ),
            None => String::new(),
        },
        vec![user_id.into(), month.to_owned().into(), now_ms.into()],
    );
    if let Some((wf, first, end)) = workflow {
        values.extend([wf.into(), first.into(), end.into()]);
    }
    let sql = format!(
        "SELECT COALESCE((SELECT cost_nano_usd FROM user_month_usage WHERE user_id = $1 AND month = $2), 0) AS spent, \
         COALESCE((SELECT CAST(SUM(r.amount_nano_usd) AS BIGINT) FROM budget_reservations r \
         WHERE r.user_id = $1 AND {held}), 0) AS held{wf_sql}"
    );
    let r = sql::query_one(txn, &sql, values)
        .await?
        .ok_or_else(|| StoreError::Internal("no row".into()))?;
    let workflow = match workflow {
        Some(_) => Some(WorkflowSpend::from_query_result(&r, "")?),
        None => None,
    };
    Ok(Usage::of(UserSpend::from_query_result(&r, "")?, workflow))
}

/// What a decision rests on: the limits, spend and holds of one snapshot.
struct Facts<'a> {
    req: &'a ReserveRequest,
    policy: &'a ReservePolicy,
    lim: &'a Limits,
    u: Usage,
    /// Whether the workflow has limits of its own (its sums were read).
    workflow: bool,
}

impl Facts<'_> {
    /// Every hard limit that applies, with `extra` added to the holds.
    fn standing(&self, extra: i64) -> Vec<Standing> {
        let mut out = Vec::new();
        let user_limit = match (self.lim.user_hard, self.policy.default_hard_limit_nano_usd) {
            (Some(l), _) => Some((BudgetScope::User, l)),
            (None, Some(l)) => Some((BudgetScope::PlatformDefault, l)),
            (None, None) => None,
        };
        if let Some((scope, l)) = user_limit {
            out.push(Standing {
                scope,
                limit_nano_usd: l,
                spent_nano_usd: self.u.spent,
                reserved_nano_usd: self.u.held.saturating_add(extra),
            });
        }
        if let (Some(l), true) = (self.lim.workflow_hard, self.workflow) {
            out.push(Standing {
                scope: BudgetScope::Workflow,
                limit_nano_usd: l,
                spent_nano_usd: self.u.workflow_spent,
                reserved_nano_usd: self.u.workflow_held.saturating_add(extra),
            });
        }
        out
    }

    /// Soft limits that spend + holds (+ `extra`) have reached.
    fn soft(&self, extra: i64) -> Vec<BudgetScope> {
        let mut out = Vec::new();
        let total = self
            .u
            .spent
            .saturating_add(self.u.held)
            .saturating_add(extra);
        if self.lim.user_soft.is_some_and(|s| total >= s) {
            out.push(BudgetScope::User);
        }
        let wf_total = self
            .u
            .workflow_spent
            .saturating_add(self.u.workflow_held)
            .saturating_add(extra);
        if self.workflow && self.lim.workflow_soft.is_some_and(|s| wf_total >= s) {
            out.push(BudgetScope::Workflow);
        }
        out
    }

    /// The first hard limit the request would exceed.
    fn denial(&self) -> Option<Standing> {
        self.standing(0).into_iter().find(|s| {
            i128::from(s.spent_nano_usd)
                + i128::from(s.reserved_nano_usd)
                + i128::from(self.req.amount_nano_usd)
                > i128::from(s.limit_nano_usd)
        })
    }

    fn replay(&self, reservation: Reservation) -> ReserveOutcome {
        ReserveOutcome::Allowed {
            reservation: Box::new(reservation),
            limits: self.standing(0),
            soft_reached: self.soft(0),
            replayed: true,
        }
    }

    fn denied(&self, standing: Standing) -> ReserveOutcome {
        ReserveOutcome::Denied {
            standing,
            requested_nano_usd: self.req.amount_nano_usd,
        }
    }

    fn allowed(&self, reservation: Reservation) -> ReserveOutcome {
        ReserveOutcome::Allowed {
            limits: self.standing(self.req.amount_nano_usd),
            soft_reached: self.soft(self.req.amount_nano_usd),
            reservation: Box::new(reservation),
            replayed: false,
        }
    }
}

/// A workflow and its bucket window `[first, end)` in the user's month.
type WorkflowWindow = Option<(Uuid, i64, i64)>;

/// The user's local month, and the workflow's bucket window in it when the
/// workflow has limits.
fn month_window(
    req: &ReserveRequest,
    timezone: Option<&str>,
    workflow_limited: bool,
    now: OffsetDateTime,
) -> StoreResult<(LocalMonth, WorkflowWindow)> {
    let month = month_of(&user_zone(timezone), now)
        .ok_or_else(|| StoreError::Invalid("month outside the calendar".into()))?;
    let workflow = req.workflow_id.filter(|_| workflow_limited).map(|w| {
        (
            w,
            month.start.div_euclid(BUCKET_SECONDS),
            month.end.div_euclid(BUCKET_SECONDS),
        )
    });
    Ok((month, workflow))
}

fn new_reservation(req: &ReserveRequest, id: Uuid, month: &str, now_ms: i64) -> Reservation {
    Reservation {
        id,
        user_id: req.user_id,
        workflow_id: req.workflow_id,
        idempotency_key: req.idempotency_key.clone(),
        state: "open".into(),
        amount_nano_usd: req.amount_nano_usd,
        estimated_nano_usd: req.amount_nano_usd,
        actual_nano_usd: None,
        message_id: None,
        model: req.model.clone(),
        month: month.to_owned(),
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(req.ttl_seconds.saturating_mul(1000)),
        closed_at_ms: None,
    }
}

/// What the last PostgreSQL reservation of a user saw, per user: hints
/// that save round trips, never a source of truth.
///
/// - `zone`: the user's time zone. The statement needs the user's month
///   before it reads the zone, so it is computed from this guess, and the
///   statement inserts only when the zone it reads is the guessed one (a
///   wrong guess costs one more statement, never a wrong month).
/// - `contended`: when the one-statement path last found the user's lock
///   taken. For [`CONTENDED_FOR`] after that, reservations of that user go
///   straight to the transaction that waits for the lock instead of trying
///   a statement that would find it taken again.
#[derive(Debug, Clone, Default)]
struct Hint {
    zone: Option<String>,
    contended: Option<Instant>,
}

static HINTS: LazyLock<Mutex<HashMap<Uuid, Hint>>> = LazyLock::new(Mutex::default);
const HINTS_MAX: usize = 100_000;
const CONTENDED_FOR: Duration = Duration::from_millis(500);

fn hint(user_id: Uuid) -> Hint {
    HINTS
        .lock()
        .ok()
        .and_then(|m| m.get(&user_id).cloned())
        .unwrap_or_default()
}

fn remember(user_id: Uuid, update: impl FnOnce(&mut Hint)) {
    if let Ok(mut m) = HINTS.lock() {
        if m.len() >= HINTS_MAX && !m.contains_key(&user_id) {
            m.clear();
        }
        update(m.entry(user_id).or_default());
    }
}

/// The PostgreSQL reservation: one statement that reads the snapshot's
/// version of the user's `budget_accounts` row and locks its latest version
/// without waiting (`SKIP LOCKED`; a user's first reservation creates the
/// row instead), reads limits, spend, holds and the idempotency key, and
/// inserts when every hard limit allows, bumping the row's version.
///
/// The snapshot is *fresh* when the locked version is the one the snapshot
/// saw (or the statement created the row): every write that changes a
/// user's holds (reserve, commit, release) bumps that version under the
/// row's lock before it commits, so a fresh snapshot already sees all of
/// them and nobody can add one until this statement commits. When the row
/// is locked by another transaction or changed after the snapshot, the
/// statement writes nothing and says so (`fresh` false); the caller then
/// takes the lock in a transaction of its own and runs the statement again
/// (where it is fresh by construction).
const PG_RESERVE: &str = "WITH snap AS MATERIALIZED ( \
   SELECT reservations FROM budget_accounts WHERE user_id = $1 \
 ), lk AS MATERIALIZED ( \
   SELECT reservations FROM budget_accounts WHERE user_id = $1 FOR UPDATE SKIP LOCKED \
 ), created AS ( \
   INSERT INTO budget_accounts (user_id, reservations) \
   SELECT $1, 1 WHERE NOT EXISTS (SELECT 1 FROM snap) \
   ON CONFLICT (user_id) DO NOTHING RETURNING reservations \
 ), lim AS MATERIALIZED ( \
   SELECT u.timezone, u.monthly_budget_nano_usd AS user_soft, u.monthly_hard_limit_nano_usd AS user_hard, \
   w.monthly_budget_nano_usd AS workflow_soft, w.monthly_hard_limit_nano_usd AS workflow_hard \
   FROM (SELECT 1) AS one LEFT JOIN users u ON u.id = $1 LEFT JOIN workflows w ON w.id = $2 \
 ), st AS MATERIALIZED ( \
   SELECT lim.*, \
   CASE WHEN EXISTS (SELECT 1 FROM snap) \
     THEN COALESCE((SELECT reservations FROM lk) = (SELECT reservations FROM snap), FALSE) \
     ELSE EXISTS (SELECT 1 FROM created) END AS fresh, \
   lim.timezone IS NOT DISTINCT FROM $6 AS zone_ok, \
   COALESCE((SELECT cost_nano_usd FROM user_month_usage WHERE user_id = $1 AND month = $7), 0) AS spent, \
   COALESCE((SELECT CAST(SUM(r.amount_nano_usd) AS BIGINT) FROM budget_reservations r \
     WHERE r.user_id = $1 AND r.state IN ('open', 'committed') AND r.expires_at_ms > $5 \
     AND (r.message_id IS NULL OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = r.message_id AND m.user_id = r.user_id) \
     OR EXISTS (SELECT 1 FROM rollup_queue q WHERE r.message_id = ANY (q.message_ids)))), 0) AS held, \
   CASE WHEN lim.workflow_soft IS NULL AND lim.workflow_hard IS NULL THEN 0 ELSE \
     COALESCE((SELECT CAST(SUM(cost_nano_usd) AS BIGINT) FROM usage_buckets \
     WHERE user_id = $1 AND workflow_key = $2 AND bucket >= $8 AND bucket < $9), 0) END AS workflow_spent, \
   CASE WHEN lim.workflow_soft IS NULL AND lim.workflow_hard IS NULL THEN 0 ELSE \
     COALESCE((SELECT CAST(SUM(r.amount_nano_usd) AS BIGINT) FROM budget_reservations r \
     WHERE r.user_id = $1 AND r.workflow_id = $2 AND r.state IN ('open', 'committed') AND r.expires_at_ms > $5 \
     AND (r.message_id IS NULL OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = r.message_id AND m.user_id = r.user_id) \
     OR EXISTS (SELECT 1 FROM rollup_queue q WHERE r.message_id = ANY (q.message_ids)))), 0) END AS workflow_held \
   FROM lim \
 ), ex AS MATERIALIZED ( \
   SELECT id, user_id, workflow_id, idempotency_key, state, amount_nano_usd, estimated_nano_usd, \
   actual_nano_usd, message_id, model, month, created_at_ms, expires_at_ms, closed_at_ms \
   FROM budget_reservations WHERE user_id = $1 AND idempotency_key = $4 \
 ), ins AS ( \
   INSERT INTO budget_reservations (id, user_id, workflow_id, idempotency_key, state, amount_nano_usd, \
   estimated_nano_usd, actual_nano_usd, message_id, model, month, created_at_ms, expires_at_ms, closed_at_ms) \
   SELECT $11, $1, $2, $4, 'open', $3, $3, CAST(NULL AS BIGINT), CAST(NULL AS UUID), $12, $7, $5, $13, CAST(NULL AS BIGINT) \
   FROM st WHERE st.fresh AND st.zone_ok AND NOT EXISTS (SELECT 1 FROM ex) \
   AND (COALESCE(st.user_hard, $10) IS NULL \
     OR CAST(st.spent AS NUMERIC) + st.held + $3 <= COALESCE(st.user_hard, $10)) \
   AND (st.workflow_hard IS NULL \
     OR CAST(st.workflow_spent AS NUMERIC) + st.workflow_held + $3 <= st.workflow_hard) \
   RETURNING id \
 ), bump AS ( \
   UPDATE budget_accounts SET reservations = reservations + 1 \
   WHERE user_id = $1 AND EXISTS (SELECT 1 FROM ins) AND EXISTS (SELECT 1 FROM snap) \
   RETURNING reservations \
 ) \
 SELECT st.*, EXISTS (SELECT 1 FROM ins) AS inserted, (SELECT COUNT(*) FROM bump) AS bumped, ex.* \
 FROM st LEFT JOIN ex ON TRUE";

/// What one run of `PG_RESERVE` found.
enum PgAttempt {
    /// Not fresh (see `PG_RESERVE`): nothing was written.
    Stale,
    /// The zone guess was wrong: nothing was written; the user's zone.
    Zone(Option<String>),
    Done(ReserveOutcome),
}

async fn pg_attempt<C: ConnectionTrait>(
    conn: &C,
    req: &ReserveRequest,
    policy: &ReservePolicy,
    zone_guess: Option<String>,
    now: OffsetDateTime,
) -> StoreResult<PgAttempt> {
    let now_ms = ms(now);
    let (month, window) = month_window(req, zone_guess.as_deref(), true, now)?;
    let (_, first, end) = window.unwrap_or((Uuid::nil(), 0, 0));
    let id = Uuid::now_v7();
    let expires = now_ms.saturating_add(req.ttl_seconds.saturating_mul(1000));
    let r: PgReserveRow = sql::fetch_one(
        conn,
        PG_RESERVE,
        vec![
            req.user_id.into(),
            req.workflow_id.into(),
            req.amount_nano_usd.into(),
            req.idempotency_key.clone().into(),
            now_ms.into(),
            zone_guess.clone().into(),
            month.month.clone().into(),
            first.into(),
            end.into(),
            policy.default_hard_limit_nano_usd.into(),
            id.into(),
            req.model.clone().into(),
            expires.into(),
        ],
    )
    .await?
    .ok_or_else(|| StoreError::Internal("no row".into()))?;
    let lim = r.lim;
    remember(req.user_id, |h| h.zone.clone_from(&lim.timezone));
    if !r.fresh {
        return Ok(PgAttempt::Stale);
    }
    if !r.zone_ok {
        return Ok(PgAttempt::Zone(lim.timezone));
    }
    let facts = Facts {
        req,
        policy,
        lim: &lim,
        u: Usage::of(r.user, Some(r.workflow)),
        workflow: req.workflow_id.is_some()
            && (lim.workflow_hard.is_some() || lim.workflow_soft.is_some()),
    };
    if let Some(existing) = r.existing {
        return Ok(PgAttempt::Done(facts.replay(existing)));
    }
    if r.inserted {
        return Ok(PgAttempt::Done(facts.allowed(new_reservation(
            req,
            id,
            &month.month,
            now_ms,
        ))));
    }
    match facts.denial() {
        Some(s) => Ok(PgAttempt::Done(facts.denied(s))),
        None => Err(StoreError::Internal(
            "reservation neither inserted nor denied".into(),
        )),
    }
}

impl Store {
    /// Reserves `req.amount_nano_usd` against the user's (and workflow's)
    /// hard limits, atomically (see the module doc). A retry with the same
    /// idempotency key returns the first reservation and reserves nothing.
    pub async fn reserve_budget(
        &self,
        req: &ReserveRequest,
        policy: &ReservePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<ReserveOutcome> {
        if req.amount_nano_usd < 0 {
            return Err(StoreError::Invalid(
                "the amount must not be negative".into(),
            ));
        }
        if self.backend() != DbBackend::Postgres {
            return self.reserve_serialized(req, policy, now).await;
        }
        // One statement, one round trip, when the user's lock is free.
        let Hint {
            mut zone,
            contended,
        } = hint(req.user_id);
        if contended.is_none_or(|at| at.elapsed() > CONTENDED_FOR) {
            for _ in 0..3 {
                match pg_attempt(self.conn(), req, policy, zone.clone(), now).await? {
                    PgAttempt::Done(out) => return Ok(out),
                    PgAttempt::Zone(z) => zone = z,
                    PgAttempt::Stale => {
                        remember(req.user_id, |h| h.contended = Some(Instant::now()));
                        break;
                    }
                }
            }
        }
        // Contended (or the zone keeps changing): wait for the lock in a
        // transaction, where the same statement is fresh by construction.
        let txn = self.conn().begin().await?;
        lock_account(&txn, req.user_id).await?;
        for _ in 0..3 {
            match pg_attempt(&txn, req, policy, zone.clone(), now).await? {
                PgAttempt::Done(out) => {
                    txn.commit().await?;
                    return Ok(out);
                }
                PgAttempt::Zone(z) => zone = z,
                PgAttempt::Stale => {
                    return Err(StoreError::Internal(format!(
                        "the budget lock of user {} was not held",
                        req.user_id
                    )));
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "the time zone of user {} keeps changing",
            req.user_id
        )))
    }

    /// The reservation as a transaction of several statements, serialized
    /// by the user's lock row (SQLite: by the store's single writer).
    async fn reserve_serialized(
        &self,
        req: &ReserveRequest,
        policy: &ReservePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<ReserveOutcome> {
        let now_ms = ms(now);
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        lock_account(&txn, req.user_id).await?;
        let lim = limits(&txn, req.user_id, req.workflow_id).await?;
        let limited = lim.workflow_hard.is_some() || lim.workflow_soft.is_some();
        let (month, workflow) = month_window(req, lim.timezone.as_deref(), limited, now)?;
        let existing: Option<Reservation> = sql::fetch_one(
            &txn,
            &format!(
                "SELECT {COLUMNS} FROM budget_reservations WHERE user_id = $1 AND idempotency_key = $2"
            ),
            vec![req.user_id.into(), req.idempotency_key.clone().into()],
        )
        .await?;
        let facts = Facts {
            req,
            policy,
            lim: &lim,
            u: usage(&txn, req.user_id, workflow, &month.month, now_ms).await?,
            workflow: workflow.is_some(),
        };
        if let Some(reservation) = existing {
            txn.commit().await?;
            return Ok(facts.replay(reservation));
        }
        if let Some(s) = facts.denial() {
            txn.commit().await?;
            return Ok(facts.denied(s));
        }
        let reservation = new_reservation(req, Uuid::now_v7(), &month.month, now_ms);
        sql::execute(
            &txn,
            &format!(
                "INSERT INTO budget_reservations ({COLUMNS}) VALUES ({})",
                sql::placeholders(1, 14)
            ),
            vec![
                reservation.id.into(),
                reservation.user_id.into(),
                reservation.workflow_id.into(),
                reservation.idempotency_key.clone().into(),
                reservation.state.clone().into(),
                reservation.amount_nano_usd.into(),
                reservation.estimated_nano_usd.into(),
                reservation.actual_nano_usd.into(),
                reservation.message_id.into(),
                reservation.model.clone().into(),
                reservation.month.clone().into(),
                reservation.created_at_ms.into(),
                reservation.expires_at_ms.into(),
                reservation.closed_at_ms.into(),
            ],
        )
        .await?;
        txn.commit().await?;
        Ok(facts.allowed(reservation))
    }

    /// Commits a reservation with its actual usage (see the module doc for
    /// how it relates to ingestion). Committing again returns the stored
    /// reservation unchanged; a released one is a conflict.
    pub async fn commit_reservation(
        &self,
        req: &CommitRequest,
        policy: &ReservePolicy,
        now: OffsetDateTime,
    ) -> StoreResult<Reservation> {
        let now_ms = ms(now);
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let Some(first) = find(&txn, req.reservation_id).await? else {
            return Err(StoreError::NotFound(format!(
                "reservation {}",
                req.reservation_id
            )));
        };
        lock_account(&txn, first.user_id).await?;
        let Some(current) = find(&txn, req.reservation_id).await? else {
            return Err(StoreError::NotFound(format!(
                "reservation {}",
                req.reservation_id
            )));
        };
        match current.state.as_str() {
            "committed" | "settled" => {
                txn.commit().await?;
                return Ok(current);
            }
            "released" => {
                return Err(StoreError::Conflict(format!(
                    "reservation {} was released",
                    current.id
                )));
            }
            _ => {}
        }
        // The message's cost when ingestion already recorded it.
        let ingested: Option<Option<i64>> = match req.message_id {
            Some(m) => sql::query_one(
                &txn,
                &format!(
                    "SELECT cost_nano_usd FROM messages WHERE id = $1 AND user_id = $2 AND {}",
                    counted("$1", "$2", txn.get_database_backend())
                ),
                vec![m.into(), current.user_id.into()],
            )
            .await?
            .map(|r| r.try_get::<Option<i64>>("", "cost_nano_usd"))
            .transpose()?,
            None => None,
        };
        let (state, actual) = match ingested {
            Some(cost) => ("settled", cost.or(req.actual_nano_usd).unwrap_or(0)),
            None => (
                "committed",
                req.actual_nano_usd.unwrap_or(current.estimated_nano_usd),
            ),
        };
        let expires = if state == "committed" {
            now_ms.saturating_add(policy.commit_hold_seconds.saturating_mul(1000))
        } else {
            current.expires_at_ms
        };
        sql::execute(
            &txn,
            "UPDATE budget_reservations SET state = $1, amount_nano_usd = $2, actual_nano_usd = $3, \
             message_id = $4, expires_at_ms = $5, closed_at_ms = $6 WHERE id = $7",
            vec![
                state.into(),
                actual.into(),
                actual.into(),
                req.message_id.into(),
                expires.into(),
                now_ms.into(),
                current.id.into(),
            ],
        )
        .await?;
        let out = find(&txn, current.id).await?;
        txn.commit().await?;
        out.ok_or_else(|| StoreError::NotFound(format!("reservation {}", req.reservation_id)))
    }

    /// Releases an open reservation (the call did not happen). Releasing
    /// again is a no-op; a committed reservation is a conflict.
    pub async fn release_reservation(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<Reservation> {
        let now_ms = ms(now);
        if self.backend() == DbBackend::Postgres {
            // One statement: the user's lock and version bump (before the
            // row's, as everywhere), then the row if it is still open.
            let released: Option<Reservation> = sql::fetch_one(
                self.conn(),
                &format!(
                    "WITH r AS MATERIALIZED (SELECT user_id FROM budget_reservations WHERE id = $2), \
                     lk AS (INSERT INTO budget_accounts (user_id, reservations) SELECT user_id, 1 FROM r \
                     ON CONFLICT (user_id) DO UPDATE SET reservations = budget_accounts.reservations + 1 \
                     RETURNING reservations) \
                     UPDATE budget_reservations SET state = 'released', closed_at_ms = $1 \
                     WHERE id = $2 AND state = 'open' AND EXISTS (SELECT 1 FROM lk) RETURNING {COLUMNS}"
                ),
                vec![now_ms.into(), id.into()],
            )
            .await?;
            if let Some(r) = released {
                return Ok(r);
            }
            return match find(self.conn(), id).await? {
                None => Err(StoreError::NotFound(format!("reservation {id}"))),
                Some(r) if r.state == "released" => Ok(r),
                Some(r) => Err(StoreError::Conflict(format!(
                    "reservation {id} is {}; only an open reservation can be released",
                    r.state
                ))),
            };
        }
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let Some(first) = find(&txn, id).await? else {
            return Err(StoreError::NotFound(format!("reservation {id}")));
        };
        lock_account(&txn, first.user_id).await?;
        sql::execute(
            &txn,
            "UPDATE budget_reservations SET state = 'released', closed_at_ms = $1 WHERE id = $2 AND state = 'open'",
            vec![now_ms.into(), id.into()],
        )
        .await?;
        let out = find(&txn, id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("reservation {id}")))?;
        if out.state != "released" {
            return Err(StoreError::Conflict(format!(
                "reservation {id} is {}; only an open reservation can be released",
                out.state
            )));
        }
        txn.commit().await?;
        Ok(out)
    }

    /// The user's reservations that count against their limits now.
    pub async fn held_reservations(
        &self,
        user_id: Uuid,
        now: OffsetDateTime,
    ) -> StoreResult<Vec<Reservation>> {
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        sql::fetch_all(
            self.conn(),
            &format!(
                "SELECT {cols} FROM budget_reservations r WHERE r.user_id = $1 AND {} \
                 ORDER BY r.created_at_ms",
                held("$2", self.backend())
            ),
            vec![user_id.into(), ms(now).into()],
        )
        .await
    }

    /// Deletes reservations that expired more than `keep_seconds` ago (their
    /// idempotency keys can then be reused). Returns how many.
    pub async fn sweep_reservations(
        &self,
        now: OffsetDateTime,
        keep_seconds: i64,
    ) -> StoreResult<u64> {
        let _guard = self.write_guard().await;
        sql::execute(
            self.conn(),
            "DELETE FROM budget_reservations WHERE expires_at_ms < $1",
            vec![
                ms(now)
                    .saturating_sub(keep_seconds.saturating_mul(1000))
                    .into(),
            ],
        )
        .await
    }

    /// Sets (or clears) a user's monthly hard limit.
    pub async fn set_hard_limit(&self, user_id: Uuid, nano_usd: Option<i64>) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let n = users::Entity::update_many()
            .col_expr(
                users::Column::MonthlyHardLimitNanoUsd,
                Expr::value(nano_usd),
            )
            .filter(users::Column::Id.eq(user_id))
            .exec(self.conn())
            .await?
            .rows_affected;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// A user's monthly hard limit.
    pub async fn hard_limit(&self, user_id: Uuid) -> StoreResult<Option<i64>> {
        Ok(users::Entity::find_by_id(user_id)
            .select_only()
            .column(users::Column::MonthlyHardLimitNanoUsd)
            .into_tuple::<Option<i64>>()
            .one(self.conn())
            .await?
            .flatten())
    }

    /// Sets a workflow's soft and hard monthly limits (`None` leaves one as
    /// it is, `Some(None)` clears it). Returns both after the change.
    pub async fn set_workflow_limits(
        &self,
        workflow_id: Uuid,
        soft: Option<Option<i64>>,
        hard: Option<Option<i64>>,
    ) -> StoreResult<(Option<i64>, Option<i64>)> {
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let Some((stored_soft, stored_hard)) = workflows::Entity::find_by_id(workflow_id)
            .select_only()
            .columns([
                workflows::Column::MonthlyBudgetNanoUsd,
                workflows::Column::MonthlyHardLimitNanoUsd,
            ])
            .into_tuple::<(Option<i64>, Option<i64>)>()
            .one(&txn)
            .await?
        else {
            return Err(StoreError::NotFound(format!("workflow {workflow_id}")));
        };
        let soft = soft.unwrap_or(stored_soft);
        let hard = hard.unwrap_or(stored_hard);
        workflows::Entity::update_many()
            .col_expr(workflows::Column::MonthlyBudgetNanoUsd, Expr::value(soft))
            .col_expr(
                workflows::Column::MonthlyHardLimitNanoUsd,
                Expr::value(hard),
            )
            .filter(workflows::Column::Id.eq(workflow_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok((soft, hard))
    }
}
