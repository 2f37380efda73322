//! Rollup counters and how they are written.
//!
//! These tables are kept, always together and in the same transaction as the
//! raw rows they count:
//! - `daily_metrics`: per user × workflow-or-none × UTC day (the plan's table);
//! - `usage_buckets`: per user × workflow-or-none × quarter-hour, from which
//!   any time zone's days are exact sums;
//! - `user_buckets`: the same per user × quarter-hour, without the workflow
//!   (derived from the `usage_buckets` deltas when written), so a user's days
//!   read at most 96 rows each;
//! - `user_days`: the same per user × UTC day (day number since 1970), so a
//!   user's month reads ~31 day rows plus the partial days at its local
//!   midnights (see `analytics::Store::user_usage`);
//! - `platform_buckets`: per quarter-hour × model, all users together;
//! - `component_buckets`: per user × workflow-or-none × component ×
//!   quarter-hour, the message, token and cost counters of the messages that
//!   name a component (others have no row).
//!
//! Besides those, [`Rollups`] carries the batch's changes of three all-time
//! counters that follow from `users` and `workflows` rather than from
//! messages: `active_user_buckets` (users by the quarter-hour of their latest
//! own message), `funnel_cohorts` (users by sign-up quarter-hour, and how many
//! of them reached each funnel step) and `platform_totals` (users and
//! workflows). A rebuild recomputes those from `users` and `workflows`.
//!
//! Ingestion adds deltas (`col = col + excluded.col`); a rebuild computes the
//! same deltas from raw rows and writes them over an emptied range. Both go
//! through [`Rollups`], so the two cannot disagree on what a counter means.

use crate::{
    StoreResult,
    sql::{increment, increments, insert_many},
};
use charlie_domain::{MessageRole, TokenUsage};
use sea_orm::{
    ConnectionTrait, DbErr, FromQueryResult, QueryResult,
    sea_query::{Alias, Expr, OnConflict, SimpleExpr},
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// Seconds in one `usage_buckets` bucket.
pub const BUCKET_SECONDS: i64 = 900;

/// Buckets in one UTC day: `user_days.day` is `bucket.div_euclid(BUCKETS_PER_DAY)`.
pub const BUCKETS_PER_DAY: i64 = 86_400 / BUCKET_SECONDS;

/// The bucket index of an instant.
pub fn bucket_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp().div_euclid(BUCKET_SECONDS)
}

/// Counters shared by both grains. `unique_sessions` is only meaningful per day.
///
/// Serialized (in the fold queue, see `ingest::fold`) as an array of the 14
/// counters in declaration order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "[i64; 14]", from = "[i64; 14]")]
pub struct Counters {
    pub message_count: i64,
    pub user_message_count: i64,
    pub assistant_message_count: i64,
    pub conversations_started: i64,
    pub unique_sessions: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nano_usd: i64,
    pub unpriced_message_count: i64,
    /// Input + output tokens of messages whose model has no price.
    pub unpriced_tokens: i64,
    pub error_count: i64,
}

impl From<Counters> for [i64; 14] {
    fn from(c: Counters) -> [i64; 14] {
        [
            c.message_count,
            c.user_message_count,
            c.assistant_message_count,
            c.conversations_started,
            c.unique_sessions,
            c.input_tokens,
            c.output_tokens,
            c.cache_read_tokens,
            c.cache_write_tokens,
            c.reasoning_tokens,
            c.cost_nano_usd,
            c.unpriced_message_count,
            c.unpriced_tokens,
            c.error_count,
        ]
    }
}

impl From<[i64; 14]> for Counters {
    fn from(v: [i64; 14]) -> Counters {
        Counters {
            message_count: v[0],
            user_message_count: v[1],
            assistant_message_count: v[2],
            conversations_started: v[3],
            unique_sessions: v[4],
            input_tokens: v[5],
            output_tokens: v[6],
            cache_read_tokens: v[7],
            cache_write_tokens: v[8],
            reasoning_tokens: v[9],
            cost_nano_usd: v[10],
            unpriced_message_count: v[11],
            unpriced_tokens: v[12],
            error_count: v[13],
        }
    }
}

impl Counters {
    /// Adds every counter of `o`.
    pub fn add(&mut self, o: &Counters) {
        self.add_times(o, 1);
    }

    /// Subtracts every counter of `o`.
    pub fn sub(&mut self, o: &Counters) {
        self.add_times(o, -1);
    }

    fn add_times(&mut self, o: &Counters, k: i64) {
        self.message_count += k * o.message_count;
        self.user_message_count += k * o.user_message_count;
        self.assistant_message_count += k * o.assistant_message_count;
        self.conversations_started += k * o.conversations_started;
        self.unique_sessions += k * o.unique_sessions;
        self.input_tokens += k * o.input_tokens;
        self.output_tokens += k * o.output_tokens;
        self.cache_read_tokens += k * o.cache_read_tokens;
        self.cache_write_tokens += k * o.cache_write_tokens;
        self.reasoning_tokens += k * o.reasoning_tokens;
        self.cost_nano_usd += k * o.cost_nano_usd;
        self.unpriced_message_count += k * o.unpriced_message_count;
        self.unpriced_tokens += k * o.unpriced_tokens;
        self.error_count += k * o.error_count;
    }

    /// The counter a rollup column holds (`unique_sessions` included), or
    /// `None` for a column that is not a counter.
    fn slot(&mut self, column: &str) -> Option<&mut i64> {
        Some(match column {
            "message_count" => &mut self.message_count,
            "user_message_count" => &mut self.user_message_count,
            "assistant_message_count" => &mut self.assistant_message_count,
            "conversations_started" => &mut self.conversations_started,
            "unique_sessions" => &mut self.unique_sessions,
            "input_tokens" => &mut self.input_tokens,
            "output_tokens" => &mut self.output_tokens,
            "cache_read_tokens" => &mut self.cache_read_tokens,
            "cache_write_tokens" => &mut self.cache_write_tokens,
            "reasoning_tokens" => &mut self.reasoning_tokens,
            "cost_nano_usd" => &mut self.cost_nano_usd,
            "unpriced_message_count" => &mut self.unpriced_message_count,
            "unpriced_tokens" => &mut self.unpriced_tokens,
            "error_count" => &mut self.error_count,
            _ => return None,
        })
    }

    /// The values of `columns` (a `*_COUNTER_COLS` list), in that order.
    pub(crate) fn fields(&self, columns: &[&str]) -> Vec<i64> {
        let mut copy = *self;
        columns
            .iter()
            .map(|c| copy.slot(c).map_or(0, |v| *v))
            .collect()
    }

    /// The counters `columns` name, read from a row by those names (with
    /// prefix `pre`; each a `BIGINT`; NULL, as an empty `SUM` gives, is 0);
    /// the others are 0.
    fn read(row: &QueryResult, pre: &str, columns: &[&str]) -> Result<Counters, DbErr> {
        let mut c = Counters::default();
        for column in columns {
            let value = row.try_get::<Option<i64>>(pre, column)?.unwrap_or(0);
            let slot = c
                .slot(column)
                .ok_or_else(|| DbErr::Custom(format!("`{column}` is not a rollup counter")))?;
            *slot = value;
        }
        Ok(c)
    }

    /// Only the counters `component_buckets` keeps; the others are zero.
    pub fn component_part(&self) -> Counters {
        Counters {
            message_count: self.message_count,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cache_read_tokens,
            cache_write_tokens: self.cache_write_tokens,
            reasoning_tokens: self.reasoning_tokens,
            cost_nano_usd: self.cost_nano_usd,
            unpriced_message_count: self.unpriced_message_count,
            unpriced_tokens: self.unpriced_tokens,
            ..Counters::default()
        }
    }

    /// `message_count / unique_sessions`, 0 without sessions.
    pub fn avg_messages_per_session(&self) -> f64 {
        if self.unique_sessions > 0 {
            self.message_count as f64 / self.unique_sessions as f64
        } else {
            0.0
        }
    }
}

/// The counters of [`BUCKET_COUNTER_COLS`] in a row, read by those names
/// (NULL is 0): nested (`#[sea_orm(nested)]`) in the row structs of
/// rollup reads, so the counter columns are listed once, in that constant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct BucketCounters(pub(crate) Counters);

impl FromQueryResult for BucketCounters {
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Counters::read(row, pre, BUCKET_COUNTER_COLS).map(BucketCounters)
    }
}

/// The counters of [`COMPONENT_COUNTER_COLS`] in a row (the others are 0),
/// as [`BucketCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ComponentCounters(pub(crate) Counters);

impl FromQueryResult for ComponentCounters {
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Counters::read(row, pre, COMPONENT_COUNTER_COLS).map(ComponentCounters)
    }
}

/// The one row of `platform_totals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub(crate) struct PlatformTotals {
    pub users: i64,
    pub workflows: i64,
}

/// The stored token counts of a `messages` row, read by column name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub(crate) struct StoredTokens {
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write1h_tokens: i64,
    pub reasoning_tokens: i64,
}

impl StoredTokens {
    /// The usage these counts record (a negative count, never stored by
    /// ingestion, reads as 0).
    pub(crate) fn usage(&self) -> TokenUsage {
        let count = |v: i64| u64::try_from(v).unwrap_or(0);
        TokenUsage {
            input_tokens: count(self.input_tokens),
            output_tokens: count(self.output_tokens),
            cache_read_input_tokens: count(self.cache_read_tokens),
            cache_creation_input_tokens: count(self.cache_write_tokens),
            cache_creation_1h_input_tokens: count(self.cache_write1h_tokens),
            reasoning_tokens: count(self.reasoning_tokens),
        }
    }
}

/// What one message contributes to the rollups.
#[derive(Debug, Clone, Copy)]
pub struct MessageFacts<'a> {
    pub role: MessageRole,
    pub usage: Option<&'a TokenUsage>,
    pub cost_nano_usd: Option<i64>,
    pub pricing_status: &'a str,
}

/// Converts a token count for storage (BIGINT). Ingestion refuses larger counts.
pub fn tokens_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Counters {
    pub fn for_message(m: &MessageFacts<'_>) -> Counters {
        let u = m.usage.copied().unwrap_or_default();
        let unpriced = m.pricing_status == "unpriced";
        Counters {
            message_count: 1,
            user_message_count: i64::from(m.role == MessageRole::User),
            assistant_message_count: i64::from(m.role == MessageRole::Assistant),
            input_tokens: tokens_i64(u.input_tokens),
            output_tokens: tokens_i64(u.output_tokens),
            cache_read_tokens: tokens_i64(u.cache_read_input_tokens),
            cache_write_tokens: tokens_i64(u.cache_creation_input_tokens),
            reasoning_tokens: tokens_i64(u.reasoning_tokens),
            cost_nano_usd: m.cost_nano_usd.unwrap_or(0),
            unpriced_message_count: i64::from(unpriced),
            unpriced_tokens: if unpriced {
                tokens_i64(u.input_tokens).saturating_add(tokens_i64(u.output_tokens))
            } else {
                0
            },
            ..Counters::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct DayKey {
    user_id: Uuid,
    workflow_key: Uuid,
    date: Date,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct BucketKey {
    user_id: Uuid,
    bucket: i64,
    workflow_key: Uuid,
}

/// A `component_buckets` key, in the order of its primary key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct ComponentKey {
    user_id: Uuid,
    bucket: i64,
    workflow_key: Uuid,
    component_id: Uuid,
}

/// Where a user stands in the funnel: the quarter-hour of their sign-up
/// (`None`: not signed up, in no cohort) and which steps they reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FunnelPosition {
    pub signup_bucket: Option<i64>,
    pub created_component: bool,
    pub created_workflow: bool,
    pub sent_message: bool,
}

/// Changes of one `funnel_cohorts` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CohortDelta {
    pub signed_up: i64,
    pub created_component: i64,
    pub created_workflow: i64,
    pub sent_message: i64,
}

/// The milestone times of a `users` row, read by column name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult)]
pub(crate) struct Milestones {
    pub signed_up_at: Option<OffsetDateTime>,
    pub first_component_at: Option<OffsetDateTime>,
    pub first_workflow_at: Option<OffsetDateTime>,
    pub first_message_at: Option<OffsetDateTime>,
}

impl From<Milestones> for FunnelPosition {
    fn from(m: Milestones) -> FunnelPosition {
        FunnelPosition {
            signup_bucket: m.signed_up_at.map(bucket_of),
            created_component: m.first_component_at.is_some(),
            created_workflow: m.first_workflow_at.is_some(),
            sent_message: m.first_message_at.is_some(),
        }
    }
}

impl CohortDelta {
    fn add(&mut self, sign: i64, p: &FunnelPosition) {
        self.signed_up += sign;
        self.created_component += sign * i64::from(p.created_component);
        self.created_workflow += sign * i64::from(p.created_workflow);
        self.sent_message += sign * i64::from(p.sent_message);
    }

    fn add_delta(&mut self, o: &CohortDelta) {
        self.signed_up += o.signed_up;
        self.created_component += o.created_component;
        self.created_workflow += o.created_workflow;
        self.sent_message += o.sent_message;
    }

    fn is_zero(&self) -> bool {
        *self == CohortDelta::default()
    }
}

/// Accumulated rollup deltas, keyed and sorted (a fixed lock order keeps
/// concurrent writers from deadlocking). Serialized (the fold queue's
/// payload) with its maps as lists of `(key, value)` pairs.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(into = "RollupsWire", from = "RollupsWire")]
pub struct Rollups {
    days: BTreeMap<DayKey, Counters>,
    buckets: BTreeMap<BucketKey, Counters>,
    /// `component_buckets`: only the [`COMPONENT_COUNTER_COLS`] counters.
    components: BTreeMap<ComponentKey, Counters>,
    /// `(bucket, model or "")`.
    platform: BTreeMap<(i64, String), Counters>,
    /// `active_user_buckets`: bucket → change of the users counted there.
    active: BTreeMap<i64, i64>,
    /// `funnel_cohorts`: sign-up bucket → changes.
    cohorts: BTreeMap<i64, CohortDelta>,
    /// `platform_totals`: change of the numbers of users and of workflows.
    totals: (i64, i64),
}

/// [`Rollups`] as serialized: JSON maps need string keys, so each map is a
/// list of pairs.
#[derive(Serialize, Deserialize)]
struct RollupsWire {
    days: Vec<(DayKey, Counters)>,
    buckets: Vec<(BucketKey, Counters)>,
    components: Vec<(ComponentKey, Counters)>,
    platform: Vec<((i64, String), Counters)>,
    active: Vec<(i64, i64)>,
    cohorts: Vec<(i64, CohortDelta)>,
    totals: (i64, i64),
}

impl From<Rollups> for RollupsWire {
    fn from(r: Rollups) -> RollupsWire {
        RollupsWire {
            days: r.days.into_iter().collect(),
            buckets: r.buckets.into_iter().collect(),
            components: r.components.into_iter().collect(),
            platform: r.platform.into_iter().collect(),
            active: r.active.into_iter().collect(),
            cohorts: r.cohorts.into_iter().collect(),
            totals: r.totals,
        }
    }
}

impl From<RollupsWire> for Rollups {
    fn from(w: RollupsWire) -> Rollups {
        Rollups {
            days: w.days.into_iter().collect(),
            buckets: w.buckets.into_iter().collect(),
            components: w.components.into_iter().collect(),
            platform: w.platform.into_iter().collect(),
            active: w.active.into_iter().collect(),
            cohorts: w.cohorts.into_iter().collect(),
            totals: w.totals,
        }
    }
}

fn key_of(workflow_id: Option<Uuid>) -> Uuid {
    workflow_id.unwrap_or(Uuid::nil())
}

fn workflow_of(key: Uuid) -> Option<Uuid> {
    (!key.is_nil()).then_some(key)
}

impl Rollups {
    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
            && self.buckets.is_empty()
            && self.components.is_empty()
            && self.platform.is_empty()
            && self.active.is_empty()
            && self.cohorts.is_empty()
            && self.totals == (0, 0)
    }

    /// How many keyed deltas these are (one per row of each table they
    /// write; `user_buckets` and `user_days` follow from the bucket rows and
    /// are not counted again): the size of the fold's write.
    pub(crate) fn rows(&self) -> usize {
        self.days.len()
            + self.buckets.len()
            + self.components.len()
            + self.platform.len()
            + self.active.len()
            + self.cohorts.len()
            + usize::from(self.totals != (0, 0))
    }

    /// Adds every delta of `other` (several batches folded into one write).
    pub fn merge(&mut self, other: Rollups) {
        for (k, c) in other.days {
            self.days.entry(k).or_default().add(&c);
        }
        for (k, c) in other.buckets {
            self.buckets.entry(k).or_default().add(&c);
        }
        for (k, c) in other.components {
            self.components.entry(k).or_default().add(&c);
        }
        for (k, c) in other.platform {
            self.platform.entry(k).or_default().add(&c);
        }
        for (b, n) in other.active {
            *self.active.entry(b).or_default() += n;
        }
        for (b, d) in other.cohorts {
            self.cohorts.entry(b).or_default().add_delta(&d);
        }
        self.totals.0 += other.totals.0;
        self.totals.1 += other.totals.1;
    }

    /// Splits these deltas into `parts` parts whose sum is the whole: what
    /// is keyed by a user goes to part `user_part(user)`, what is keyed by
    /// a quarter-hour (platform rows, active users, cohorts) to part
    /// `bucket_part(bucket)`, the platform totals to part 0. The same key
    /// always goes to the same part, so writers of different parts never
    /// write the same row (see `ingest::fold`).
    pub(crate) fn split(
        self,
        parts: usize,
        user_part: impl Fn(Uuid) -> usize,
        bucket_part: impl Fn(i64) -> usize,
    ) -> Vec<Rollups> {
        let parts = parts.max(1);
        let mut out = vec![Rollups::default(); parts];
        let at = |p: usize| p.min(parts - 1);
        for (k, c) in self.days {
            out[at(user_part(k.user_id))].days.insert(k, c);
        }
        for (k, c) in self.buckets {
            out[at(user_part(k.user_id))].buckets.insert(k, c);
        }
        for (k, c) in self.components {
            out[at(user_part(k.user_id))].components.insert(k, c);
        }
        for (k, c) in self.platform {
            out[at(bucket_part(k.0))].platform.insert(k, c);
        }
        for (b, n) in self.active {
            out[at(bucket_part(b))].active.insert(b, n);
        }
        for (b, d) in self.cohorts {
            out[at(bucket_part(b))].cohorts.insert(b, d);
        }
        out[0].totals = self.totals;
        out
    }

    /// A user's latest own message moved from bucket `from` (none before)
    /// to bucket `to`.
    pub fn move_active_user(&mut self, from: Option<i64>, to: i64) {
        if from == Some(to) {
            return;
        }
        if let Some(f) = from {
            *self.active.entry(f).or_default() -= 1;
        }
        *self.active.entry(to).or_default() += 1;
    }

    /// A user's funnel position changed from `before` to `after`.
    pub fn move_funnel_position(&mut self, before: &FunnelPosition, after: &FunnelPosition) {
        if before == after {
            return;
        }
        if let Some(b) = before.signup_bucket {
            self.cohorts.entry(b).or_default().add(-1, before);
        }
        if let Some(b) = after.signup_bucket {
            self.cohorts.entry(b).or_default().add(1, after);
        }
    }

    /// `users` users and `workflows` workflows were created (negative:
    /// deleted).
    pub fn count_created(&mut self, users: i64, workflows: i64) {
        self.totals.0 += users;
        self.totals.1 += workflows;
    }

    /// `active_user_buckets` changes as `(bucket, users)`.
    pub fn active_rows(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.active.iter().map(|(b, n)| (*b, *n))
    }

    /// `funnel_cohorts` changes as `(sign-up bucket, changes)`.
    pub fn cohort_rows(&self) -> impl Iterator<Item = (i64, CohortDelta)> + '_ {
        self.cohorts.iter().map(|(b, d)| (*b, *d))
    }

    /// `platform_totals` changes: `(users, workflows)`.
    pub fn totals(&self) -> (i64, i64) {
        self.totals
    }

    /// The `user_buckets` rows: the bucket deltas summed over workflows.
    fn user_bucket_rows(&self) -> BTreeMap<(Uuid, i64), Counters> {
        let mut out: BTreeMap<(Uuid, i64), Counters> = BTreeMap::new();
        for (k, c) in &self.buckets {
            out.entry((k.user_id, k.bucket)).or_default().add(c);
        }
        out
    }

    /// Every `user_days` row as `(user_id, day, counters)`.
    pub fn user_day_rows_iter(&self) -> impl Iterator<Item = (Uuid, i64, Counters)> {
        per_utc_day(&self.user_bucket_rows())
            .into_iter()
            .map(|((u, d), c)| (u, d, c))
    }

    /// Every `user_buckets` row as `(user_id, bucket, counters)`.
    pub fn user_bucket_rows_iter(&self) -> impl Iterator<Item = (Uuid, i64, Counters)> {
        self.user_bucket_rows()
            .into_iter()
            .map(|((u, b), c)| (u, b, c))
    }

    /// Adds `delta` at instant `at` to the platform-wide counters only (for
    /// facts without a user, such as an error reported with no user).
    pub fn add_platform(&mut self, model: Option<&str>, at: OffsetDateTime, delta: &Counters) {
        let mut d = *delta;
        d.unique_sessions = 0;
        self.platform
            .entry((bucket_of(at), model.unwrap_or_default().to_owned()))
            .or_default()
            .add(&d);
    }

    /// Adds `delta` at instant `at` to every table.
    pub fn add(
        &mut self,
        user_id: Uuid,
        workflow_id: Option<Uuid>,
        model: Option<&str>,
        at: OffsetDateTime,
        delta: &Counters,
    ) {
        self.add_platform(model, at, delta);
        let workflow_key = key_of(workflow_id);
        self.days
            .entry(DayKey {
                user_id,
                workflow_key,
                date: at.date(),
            })
            .or_default()
            .add(delta);
        let mut bucket_delta = *delta;
        bucket_delta.unique_sessions = 0;
        self.buckets
            .entry(BucketKey {
                user_id,
                bucket: bucket_of(at),
                workflow_key,
            })
            .or_default()
            .add(&bucket_delta);
    }

    /// Adds a message's `delta` at instant `at` to `component_buckets`
    /// (call it besides [`Rollups::add`] for messages that name a
    /// component). Only the counters that table keeps are kept, so a recount
    /// compares equal to the stored rows.
    pub fn add_component(
        &mut self,
        user_id: Uuid,
        workflow_id: Option<Uuid>,
        component_id: Uuid,
        at: OffsetDateTime,
        delta: &Counters,
    ) {
        self.components
            .entry(ComponentKey {
                user_id,
                bucket: bucket_of(at),
                workflow_key: key_of(workflow_id),
                component_id,
            })
            .or_default()
            .add(&delta.component_part());
    }

    /// Adds one session (a conversation's first message of a UTC day).
    pub fn add_session(&mut self, user_id: Uuid, workflow_id: Option<Uuid>, date: Date) {
        self.days
            .entry(DayKey {
                user_id,
                workflow_key: key_of(workflow_id),
                date,
            })
            .or_default()
            .unique_sessions += 1;
    }

    /// Every day row as `(user_id, workflow_id, date, counters)`.
    pub fn day_rows(&self) -> impl Iterator<Item = (Uuid, Option<Uuid>, Date, &Counters)> {
        self.days
            .iter()
            .map(|(k, c)| (k.user_id, workflow_of(k.workflow_key), k.date, c))
    }

    /// Every platform row as `(bucket, model, counters)`.
    pub fn platform_rows(&self) -> impl Iterator<Item = (i64, &str, &Counters)> {
        self.platform.iter().map(|((b, m), c)| (*b, m.as_str(), c))
    }

    /// Every bucket row as `(user_id, workflow_id, bucket, counters)`.
    pub fn bucket_rows(&self) -> impl Iterator<Item = (Uuid, Option<Uuid>, i64, &Counters)> {
        self.buckets
            .iter()
            .map(|(k, c)| (k.user_id, workflow_of(k.workflow_key), k.bucket, c))
    }

    /// Every component row as `(user_id, workflow_id, component_id, bucket, counters)`.
    pub fn component_rows(
        &self,
    ) -> impl Iterator<Item = (Uuid, Option<Uuid>, Uuid, i64, &Counters)> {
        self.components.iter().map(|(k, c)| {
            (
                k.user_id,
                workflow_of(k.workflow_key),
                k.component_id,
                k.bucket,
                c,
            )
        })
    }

    /// Adds these deltas to the stored rollups (insert or increment).
    pub async fn write<C: ConnectionTrait>(
        &self,
        conn: &C,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        self.write_user_tables(conn, now).await?;
        self.write_shared(conn).await
    }

    /// Adds the deltas of the tables keyed by user (`daily_metrics`,
    /// `usage_buckets`, `component_buckets`, `user_buckets`, `user_days`).
    pub(crate) async fn write_user_tables<C: ConnectionTrait>(
        &self,
        conn: &C,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let days = self
            .days
            .iter()
            .map(|(k, c)| {
                let mut row: Vec<SimpleExpr> = vec![
                    Uuid::now_v7().into(),
                    k.user_id.into(),
                    workflow_of(k.workflow_key).into(),
                    k.workflow_key.into(),
                    k.date.into(),
                    now.into(),
                    now.into(),
                ];
                row.extend(daily_values(c));
                row
            })
            .collect();
        let mut on = OnConflict::columns(["user_id", "workflow_key", "date"].map(Alias::new));
        for col in DAILY_COUNTER_COLS {
            if *col != "avg_messages_per_session" {
                on.value(Alias::new(*col), increment("daily_metrics", col));
            }
        }
        on.value(
            Alias::new("avg_messages_per_session"),
            Expr::cust(
                "CASE WHEN daily_metrics.unique_sessions + excluded.unique_sessions > 0 \
                 THEN CAST(daily_metrics.message_count + excluded.message_count AS DOUBLE PRECISION) \
                 / (daily_metrics.unique_sessions + excluded.unique_sessions) ELSE 0 END",
            ),
        );
        on.value(
            Alias::new("updated_at"),
            Expr::col((Alias::new("excluded"), Alias::new("updated_at"))),
        );
        let columns: Vec<&str> = DAILY_KEY_COLS
            .iter()
            .chain(DAILY_COUNTER_COLS)
            .copied()
            .collect();
        insert_many(conn, "daily_metrics", &columns, days, Some(on), &[]).await?;

        let buckets = self
            .buckets
            .iter()
            .map(|(k, c)| {
                let mut row: Vec<SimpleExpr> = vec![
                    k.user_id.into(),
                    k.workflow_key.into(),
                    k.bucket.into(),
                    workflow_of(k.workflow_key).into(),
                ];
                row.extend(bucket_values(c));
                row
            })
            .collect();
        let columns: Vec<&str> = BUCKET_KEY_COLS
            .iter()
            .chain(BUCKET_COUNTER_COLS)
            .copied()
            .collect();
        let on = increments(
            "usage_buckets",
            &["user_id", "bucket", "workflow_key"],
            BUCKET_COUNTER_COLS,
        );
        insert_many(conn, "usage_buckets", &columns, buckets, Some(on), &[]).await?;

        let components = self
            .components
            .iter()
            .map(|(k, c)| {
                let mut row: Vec<SimpleExpr> = vec![
                    k.user_id.into(),
                    k.bucket.into(),
                    k.workflow_key.into(),
                    k.component_id.into(),
                    workflow_of(k.workflow_key).into(),
                ];
                row.extend(
                    c.fields(COMPONENT_COUNTER_COLS)
                        .into_iter()
                        .map(SimpleExpr::from),
                );
                row
            })
            .collect();
        let columns: Vec<&str> = COMPONENT_KEY_COLS
            .iter()
            .chain(COMPONENT_COUNTER_COLS)
            .copied()
            .collect();
        let on = increments(
            "component_buckets",
            &COMPONENT_KEY_COLS[..4],
            COMPONENT_COUNTER_COLS,
        );
        insert_many(
            conn,
            "component_buckets",
            &columns,
            components,
            Some(on),
            &[],
        )
        .await?;

        let user_buckets = self.user_bucket_rows();
        let user_days = per_utc_day(&user_buckets);
        write_per_user(conn, "user_buckets", "bucket", user_buckets).await?;
        write_per_user(conn, "user_days", "day", user_days).await
    }

    /// Adds the deltas of the platform-wide tables (`platform_buckets` and
    /// the all-time counters). These rows are shared by every writer: they
    /// go last, in key order, so their row locks are held only until the
    /// commit.
    pub(crate) async fn write_shared<C: ConnectionTrait>(&self, conn: &C) -> StoreResult<()> {
        let platform = self
            .platform
            .iter()
            .map(|((bucket, model), c)| {
                let mut row: Vec<SimpleExpr> = vec![(*bucket).into(), model.clone().into()];
                row.extend(bucket_values(c));
                row
            })
            .collect();
        let columns: Vec<&str> = ["bucket", "model"]
            .iter()
            .chain(BUCKET_COUNTER_COLS)
            .copied()
            .collect();
        let on = increments(
            "platform_buckets",
            &["bucket", "model"],
            BUCKET_COUNTER_COLS,
        );
        insert_many(conn, "platform_buckets", &columns, platform, Some(on), &[]).await?;
        self.write_all_time(conn).await
    }

    /// The all-time counters, shared by every writer like the platform rows:
    /// written last, in key order, and only when they change.
    pub(crate) async fn write_all_time<C: ConnectionTrait>(&self, conn: &C) -> StoreResult<()> {
        let active = self
            .active
            .iter()
            .filter(|(_, n)| **n != 0)
            .map(|(b, n)| vec![(*b).into(), (*n).into()])
            .collect();
        let on = increments("active_user_buckets", &["bucket"], &["users"]);
        insert_many(
            conn,
            "active_user_buckets",
            &["bucket", "users"],
            active,
            Some(on),
            &[],
        )
        .await?;

        let cohorts = self
            .cohorts
            .iter()
            .filter(|(_, d)| !d.is_zero())
            .map(|(b, d)| {
                vec![
                    (*b).into(),
                    d.signed_up.into(),
                    d.created_component.into(),
                    d.created_workflow.into(),
                    d.sent_message.into(),
                ]
            })
            .collect();
        let on = increments("funnel_cohorts", &["bucket"], &FUNNEL_COHORT_COLS[1..]);
        insert_many(
            conn,
            "funnel_cohorts",
            FUNNEL_COHORT_COLS,
            cohorts,
            Some(on),
            &[],
        )
        .await?;

        if self.totals != (0, 0) {
            let on = increments("platform_totals", &["id"], &["users", "workflows"]);
            insert_many(
                conn,
                "platform_totals",
                &["id", "users", "workflows"],
                vec![vec![1.into(), self.totals.0.into(), self.totals.1.into()]],
                Some(on),
                &[],
            )
            .await?;
        }
        Ok(())
    }
}

/// The columns of `funnel_cohorts`, key first.
pub(crate) const FUNNEL_COHORT_COLS: &[&str] = &[
    "bucket",
    "signed_up",
    "created_component",
    "created_workflow",
    "sent_message",
];

const DAILY_KEY_COLS: &[&str] = &[
    "id",
    "user_id",
    "workflow_id",
    "workflow_key",
    "date",
    "created_at",
    "updated_at",
];
pub(crate) const DAILY_COUNTER_COLS: &[&str] = &[
    "message_count",
    "user_message_count",
    "assistant_message_count",
    "conversation_count",
    "unique_sessions",
    "avg_messages_per_session",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "estimated_cost_nano_usd",
    "unpriced_message_count",
    "unpriced_tokens",
    "error_count",
];

/// `user_days` rows: `user_buckets` rows summed per UTC day.
fn per_utc_day(buckets: &BTreeMap<(Uuid, i64), Counters>) -> BTreeMap<(Uuid, i64), Counters> {
    let mut out: BTreeMap<(Uuid, i64), Counters> = BTreeMap::new();
    for ((user, bucket), c) in buckets {
        out.entry((*user, bucket.div_euclid(BUCKETS_PER_DAY)))
            .or_default()
            .add(c);
    }
    out
}

/// Adds per-user counter rows keyed `(user_id, {key})` to `table`
/// (`user_buckets`, `user_days`).
async fn write_per_user<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    key: &str,
    rows: BTreeMap<(Uuid, i64), Counters>,
) -> StoreResult<()> {
    let rows = rows
        .into_iter()
        .map(|((user, at), c)| {
            let mut row: Vec<SimpleExpr> = vec![user.into(), at.into()];
            row.extend(bucket_values(&c));
            row
        })
        .collect();
    let columns: Vec<&str> = ["user_id", key]
        .iter()
        .chain(BUCKET_COUNTER_COLS)
        .copied()
        .collect();
    let on = increments(table, &["user_id", key], BUCKET_COUNTER_COLS);
    insert_many(conn, table, &columns, rows, Some(on), &[]).await?;
    Ok(())
}

fn daily_values(c: &Counters) -> Vec<SimpleExpr> {
    vec![
        c.message_count.into(),
        c.user_message_count.into(),
        c.assistant_message_count.into(),
        c.conversations_started.into(),
        c.unique_sessions.into(),
        c.avg_messages_per_session().into(),
        c.input_tokens.into(),
        c.output_tokens.into(),
        c.cache_read_tokens.into(),
        c.cache_write_tokens.into(),
        c.reasoning_tokens.into(),
        (c.input_tokens + c.output_tokens).into(),
        c.cost_nano_usd.into(),
        c.unpriced_message_count.into(),
        c.unpriced_tokens.into(),
        c.error_count.into(),
    ]
}

const BUCKET_KEY_COLS: &[&str] = &["user_id", "workflow_key", "bucket", "workflow_id"];
pub(crate) const BUCKET_COUNTER_COLS: &[&str] = &[
    "message_count",
    "user_message_count",
    "assistant_message_count",
    "conversations_started",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "unpriced_message_count",
    "unpriced_tokens",
    "error_count",
];

const COMPONENT_KEY_COLS: &[&str] = &[
    "user_id",
    "bucket",
    "workflow_key",
    "component_id",
    "workflow_id",
];
/// The counters of `component_buckets`: those of the bucket tables that describe LLM calls.
pub(crate) const COMPONENT_COUNTER_COLS: &[&str] = &[
    "message_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "unpriced_message_count",
    "unpriced_tokens",
];

fn bucket_values(c: &Counters) -> Vec<SimpleExpr> {
    c.fields(BUCKET_COUNTER_COLS)
        .into_iter()
        .map(Into::into)
        .collect()
}

/// Where each of `users` stands in the funnel (users not found are left
/// out). The caller holds their locks (`sql::lock_users`), so the positions
/// stay true until its transaction ends.
pub(crate) async fn funnel_positions<C: ConnectionTrait>(
    conn: &C,
    users: &std::collections::BTreeSet<Uuid>,
) -> StoreResult<BTreeMap<Uuid, FunnelPosition>> {
    let ids: Vec<Uuid> = users.iter().copied().collect();
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(500) {
        let (filter, values) = crate::sql::uuid_in("id", chunk, 1, conn.get_database_backend());
        let sql = format!(
            "SELECT id, signed_up_at, first_component_at, first_workflow_at, first_message_at \
             FROM users WHERE {filter}"
        );
        #[derive(FromQueryResult)]
        struct Row {
            id: Uuid,
            #[sea_orm(nested)]
            milestones: Milestones,
        }
        for row in crate::sql::fetch_all::<Row, _>(conn, &sql, values).await? {
            out.insert(row.id, row.milestones.into());
        }
    }
    Ok(out)
}
