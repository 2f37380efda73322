//! Monthly budgets and usage alerts.
//!
//! A user's month is a calendar month in their time zone (`users.timezone`,
//! UTC when unset), named `YYYY-MM`. The fold (`ingest/fold.rs`: the
//! ingest transaction on SQLite, a fold transaction of one or several
//! batches on PostgreSQL) adds usage to `user_month_usage` in the same
//! transaction as the other rollups ([`record_month_usage`]), reads the new
//! totals back (`RETURNING`) and inserts an alert for every threshold the
//! total has reached. An alert's `cost_nano_usd` is that total: at least its
//! threshold, and more when the fold that crossed it carried more than the
//! crossing message (several batches folded together, or one batch crossing
//! two thresholds). `alerts` has a unique key on user × month × threshold
//! and alerts are inserted with `ON CONFLICT DO NOTHING`, so each is raised
//! once.
//! A new alert writes its webhook message to the `outbox` in that same
//! transaction (see `outbox.rs`).
//!
//! `user_month_usage` follows from `usage_buckets` (a local month is an exact
//! range of quarter-hour buckets): `rollups rebuild` recomputes it whole and
//! `rollups verify` compares it, both from the stored buckets.

use crate::{
    Store, StoreError, StoreResult,
    calendar::Zone,
    entity::{alerts, users},
    rollup::{BUCKET_SECONDS, Counters, Rollups},
    sql::{self, placeholders},
};
use charlie_domain::Usd;
use sea_orm::{
    ColIdx, ColumnTrait, ConnectionTrait, DerivePartialModel, EntityTrait, FromQueryResult,
    QueryFilter, QueryResult, QuerySelect, TryGetError, TryGetable, Value, sea_query::Expr,
};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// The webhook topic of usage alerts (also the payload's `type`).
pub const ALERT_TOPIC: &str = "usage.alert";

/// What ingestion needs to raise alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetPolicy {
    /// The budget of users without one of their own, in nano-USD.
    pub default_budget_nano_usd: Option<i64>,
    /// Percentages of the budget that raise an alert, ascending.
    pub thresholds_percent: Vec<u32>,
    /// Whether new alerts are queued for the webhook.
    pub webhook: bool,
}

impl Default for BudgetPolicy {
    fn default() -> Self {
        BudgetPolicy {
            default_budget_nano_usd: None,
            thresholds_percent: vec![80, 100],
            webhook: false,
        }
    }
}

/// `warning` below 100 %, `exceeded` from 100 %.
pub fn level_of(threshold_percent: u32) -> &'static str {
    if threshold_percent >= 100 {
        "exceeded"
    } else {
        "warning"
    }
}

/// `YYYY-MM` of a date.
pub fn month_key(date: Date) -> String {
    format!("{:04}-{:02}", date.year(), u8::from(date.month()))
}

/// The zone of a stored time zone name (UTC when unset or unknown).
pub fn user_zone(timezone: Option<&str>) -> Zone {
    timezone
        .and_then(|t| Zone::get(t).ok())
        .unwrap_or_else(Zone::utc)
}

/// A local month: its name and its instants `[start, end)` in Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMonth {
    pub month: String,
    pub first_day: Date,
    pub start: i64,
    pub end: i64,
}

/// The local month of `zone` that contains `at`.
pub fn month_of(zone: &Zone, at: OffsetDateTime) -> Option<LocalMonth> {
    let today = zone.date_of(at);
    let first_day = today.replace_day(1).ok()?;
    let next = if first_day.month() == time::Month::December {
        Date::from_calendar_date(first_day.year() + 1, time::Month::January, 1).ok()?
    } else {
        Date::from_calendar_date(first_day.year(), first_day.month().next(), 1).ok()?
    };
    Some(LocalMonth {
        month: month_key(first_day),
        first_day,
        start: zone.start_of(first_day)?,
        end: zone.start_of(next)?,
    })
}

/// One stored alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub id: Uuid,
    pub user_id: Uuid,
    pub month: String,
    pub threshold_percent: u32,
    pub level: String,
    /// The month's cost when the alert was raised.
    pub cost_nano_usd: i64,
    /// The budget it was compared with.
    pub budget_nano_usd: i64,
    pub created_at: OffsetDateTime,
    /// Webhook delivery, when the alert was queued for one.
    pub delivery: Option<AlertDelivery>,
}

/// The webhook delivery state of an alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AlertDelivery {
    /// `pending`, `delivered` or `failed`.
    pub status: &'static str,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// Month-to-date counters of one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult)]
pub struct MonthTotals {
    pub message_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nano_usd: i64,
}

/// What budgets and reports need to know about a user.
#[derive(Debug, Clone, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "users::Entity")]
pub struct BudgetProfile {
    pub id: Uuid,
    pub email: Option<String>,
    pub timezone: Option<String>,
    pub monthly_budget_nano_usd: Option<i64>,
    pub weekly_report_opt_out: bool,
}

/// Filters of the admin alert list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub user_id: Option<Uuid>,
    pub month: Option<String>,
    pub limit: u32,
}

/// The id of the alert of user × month × threshold: the same whoever raises it.
pub fn alert_id(user_id: Uuid, month: &str, threshold_percent: u32) -> Uuid {
    Uuid::new_v5(
        &user_id,
        format!("charlie-stats/usage.alert/{month}/{threshold_percent}").as_bytes(),
    )
}

/// Rows per multi-row statement (7 values a row: well under both engines' limits).
const CHUNK: usize = 500;

#[derive(Debug, Default, Clone, Copy)]
struct Delta {
    messages: i64,
    input: i64,
    output: i64,
    cost: i64,
}

/// A user's zone and own budget, as ingestion reads them.
#[derive(FromQueryResult)]
struct UserBudget {
    id: Uuid,
    timezone: Option<String>,
    monthly_budget_nano_usd: Option<i64>,
}

/// A `user_month_usage` total after ingestion's increment.
#[derive(FromQueryResult)]
struct MonthCost {
    user_id: Uuid,
    month: String,
    cost_nano_usd: i64,
}

/// A stored `user_month_usage` row.
#[derive(FromQueryResult)]
struct StoredMonth {
    user_id: Uuid,
    month: String,
    #[sea_orm(nested)]
    totals: MonthTotals,
}

/// A `SUM` of `BIGINT`s: `BIGINT` on SQLite, `NUMERIC` on PostgreSQL.
struct Sum(i64);

impl TryGetable for Sum {
    fn try_get_by<I: ColIdx>(res: &QueryResult, index: I) -> Result<Self, TryGetError> {
        match i64::try_get_by(res, index) {
            Ok(v) => Ok(Sum(v)),
            Err(_) => {
                let d = rust_decimal::Decimal::try_get_by(res, index)?;
                i64::try_from(d).map(Sum).map_err(|e| {
                    TryGetError::DbErr(sea_orm::DbErr::Custom(format!("{index:?}: {e}")))
                })
            }
        }
    }
}

/// One user's usage in one bucket, summed over workflows.
#[derive(FromQueryResult)]
struct BucketUsage {
    user_id: Uuid,
    bucket: i64,
    m: Sum,
    i: Sum,
    o: Sum,
    c: Sum,
}

/// An alert row with its webhook delivery, if it was queued for one.
#[derive(FromQueryResult)]
struct AlertWithDelivery {
    #[sea_orm(nested)]
    alert: alerts::Model,
    outbox_id: Option<Uuid>,
    attempts: Option<i32>,
    last_error: Option<String>,
    delivered_at_ms: Option<i64>,
    failed_at_ms: Option<i64>,
}

fn now_ms(now: OffsetDateTime) -> i64 {
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Adds a batch's usage to `user_month_usage` and raises the alerts whose
/// threshold the new totals reach. Runs inside the ingest transaction.
pub(crate) async fn record_month_usage<C: ConnectionTrait>(
    txn: &C,
    rollups: &Rollups,
    policy: &BudgetPolicy,
    now: OffsetDateTime,
) -> StoreResult<()> {
    let mut per_user: BTreeMap<Uuid, Vec<(i64, Counters)>> = BTreeMap::new();
    for (user, _, bucket, c) in rollups.bucket_rows() {
        if c.message_count == 0
            && c.cost_nano_usd == 0
            && c.input_tokens == 0
            && c.output_tokens == 0
        {
            continue;
        }
        per_user.entry(user).or_default().push((bucket, *c));
    }
    if per_user.is_empty() {
        return Ok(());
    }
    let users: Vec<Uuid> = per_user.keys().copied().collect();
    let mut profile: HashMap<Uuid, (Option<String>, Option<i64>)> = HashMap::new();
    for chunk in users.chunks(CHUNK) {
        let (filter, values) = sql::uuid_in("id", chunk, 1, txn.get_database_backend());
        let sql = format!("SELECT id, timezone, monthly_budget_nano_usd FROM users WHERE {filter}");
        for row in sql::fetch_all::<UserBudget, _>(txn, &sql, values).await? {
            profile.insert(row.id, (row.timezone, row.monthly_budget_nano_usd));
        }
    }
    let mut zones: HashMap<Option<String>, Zone> = HashMap::new();
    let mut deltas: BTreeMap<(Uuid, String), Delta> = BTreeMap::new();
    for (user, rows) in &per_user {
        let tz = profile.get(user).and_then(|p| p.0.clone());
        let zone = zones
            .entry(tz.clone())
            .or_insert_with(|| user_zone(tz.as_deref()));
        for (bucket, c) in rows {
            let at = OffsetDateTime::from_unix_timestamp(bucket.saturating_mul(BUCKET_SECONDS))
                .map_err(|e| StoreError::Internal(format!("bucket {bucket}: {e}")))?;
            let d = deltas
                .entry((*user, month_key(zone.date_of(at))))
                .or_default();
            d.messages += c.message_count;
            d.input += c.input_tokens;
            d.output += c.output_tokens;
            d.cost += c.cost_nano_usd;
        }
    }

    // Add, in key order (a fixed lock order), and read the totals back.
    let rows: Vec<_> = deltas.into_iter().collect();
    let mut totals: Vec<(Uuid, String, i64)> = Vec::with_capacity(rows.len());
    let columns = [
        "user_id",
        "month",
        "message_count",
        "input_tokens",
        "output_tokens",
        "cost_nano_usd",
    ];
    let values = rows
        .into_iter()
        .map(|((user, month), d)| {
            vec![
                user.into(),
                month.into(),
                d.messages.into(),
                d.input.into(),
                d.output.into(),
                d.cost.into(),
            ]
        })
        .collect();
    let on = sql::increments("user_month_usage", &["user_id", "month"], &columns[2..]);
    for row in sql::insert_many(
        txn,
        "user_month_usage",
        &columns,
        values,
        Some(on),
        &["user_id", "month", "cost_nano_usd"],
    )
    .await?
    {
        let row: MonthCost = sql::read(&row)?;
        totals.push((row.user_id, row.month, row.cost_nano_usd));
    }

    // Alerts for every threshold reached (already raised ones are skipped by
    // the unique key).
    let mut candidates: Vec<(Uuid, String, u32, i64, i64)> = Vec::new();
    for (user, month, cost) in totals {
        let budget = profile
            .get(&user)
            .and_then(|p| p.1)
            .or(policy.default_budget_nano_usd);
        let Some(budget) = budget.filter(|b| *b > 0) else {
            continue;
        };
        for t in &policy.thresholds_percent {
            if i128::from(cost) * 100 >= i128::from(budget) * i128::from(*t) {
                candidates.push((user, month.clone(), *t, cost, budget));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(());
    }
    candidates.sort();
    let mut raised: Vec<Alert> = Vec::new();
    for chunk in candidates.chunks(CHUNK) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 8);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (n, (user, month, t, cost, budget)) in chunk.iter().enumerate() {
            tuples.push(format!("({})", placeholders(8 * n + 1, 8)));
            values.extend([
                alert_id(*user, month, *t).into(),
                (*user).into(),
                month.clone().into(),
                i32::try_from(*t).unwrap_or(i32::MAX).into(),
                level_of(*t).to_owned().into(),
                (*cost).into(),
                (*budget).into(),
                now.into(),
            ]);
        }
        let sql = format!(
            "INSERT INTO alerts (id, user_id, month, threshold_percent, level, cost_nano_usd, budget_nano_usd, created_at) \
             VALUES {} ON CONFLICT (user_id, month, threshold_percent) DO NOTHING \
             RETURNING id, user_id, month, threshold_percent, level, cost_nano_usd, budget_nano_usd, created_at",
            tuples.join(", ")
        );
        for row in sql::fetch_all::<alerts::Model, _>(txn, &sql, values).await? {
            raised.push(row.into());
        }
    }
    if policy.webhook && !raised.is_empty() {
        let messages = raised
            .iter()
            .map(|a| {
                Ok(crate::outbox::NewMessage {
                    topic: ALERT_TOPIC,
                    event_id: a.id,
                    payload: alert_payload(a)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        crate::outbox::enqueue(txn, &messages, now_ms(now)).await?;
    }
    Ok(())
}

impl From<alerts::Model> for Alert {
    fn from(m: alerts::Model) -> Alert {
        Alert {
            id: m.id,
            user_id: m.user_id,
            month: m.month,
            threshold_percent: u32::try_from(m.threshold_percent).unwrap_or(0),
            level: m.level,
            cost_nano_usd: m.cost_nano_usd,
            budget_nano_usd: m.budget_nano_usd,
            created_at: m.created_at,
            delivery: None,
        }
    }
}

const ALERT_SELECT: &str = "SELECT a.id, a.user_id, a.month, a.threshold_percent, a.level, a.cost_nano_usd, \
     a.budget_nano_usd, a.created_at, o.attempts, o.last_error, o.delivered_at_ms, o.failed_at_ms, o.id AS outbox_id \
     FROM alerts a LEFT JOIN outbox o ON o.event_id = a.id AND o.topic = 'usage.alert'";

impl AlertWithDelivery {
    fn into_alert(self) -> StoreResult<Alert> {
        let mut alert = Alert::from(self.alert);
        if self.outbox_id.is_some() {
            alert.delivery = Some(AlertDelivery {
                status: if self.delivered_at_ms.is_some() {
                    "delivered"
                } else if self.failed_at_ms.is_some() {
                    "failed"
                } else {
                    "pending"
                },
                attempts: self
                    .attempts
                    .ok_or_else(|| StoreError::Corrupt("an outbox row without attempts".into()))?,
                last_error: self.last_error,
            });
        }
        Ok(alert)
    }
}

impl Store {
    /// This store with the budget policy ingestion applies.
    pub fn with_budget_policy(mut self, policy: BudgetPolicy) -> Store {
        self.budget_policy = Arc::new(policy);
        self
    }

    pub fn budget_policy(&self) -> &BudgetPolicy {
        &self.budget_policy
    }

    /// A user's budget, zone, e-mail and report preference.
    pub async fn budget_profile(&self, user_id: Uuid) -> StoreResult<Option<BudgetProfile>> {
        Ok(users::Entity::find_by_id(user_id)
            .into_partial_model::<BudgetProfile>()
            .one(self.conn())
            .await?)
    }

    /// Sets (or clears, with `None`) a user's own monthly budget. It does not
    /// touch `updated_at`, so it does not decide which `user.upsert` is newer.
    pub async fn set_monthly_budget(
        &self,
        user_id: Uuid,
        nano_usd: Option<i64>,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let n = users::Entity::update_many()
            .col_expr(users::Column::MonthlyBudgetNanoUsd, Expr::value(nano_usd))
            .filter(users::Column::Id.eq(user_id))
            .exec(self.conn())
            .await?
            .rows_affected;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// Sets whether a user receives the weekly report.
    pub async fn set_weekly_report_opt_out(&self, user_id: Uuid, opt_out: bool) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let n = users::Entity::update_many()
            .col_expr(users::Column::WeeklyReportOptOut, Expr::value(opt_out))
            .filter(users::Column::Id.eq(user_id))
            .exec(self.conn())
            .await?
            .rows_affected;
        if n == 0 {
            return Err(StoreError::NotFound(format!("user {user_id}")));
        }
        Ok(())
    }

    /// Month-to-date counters of `user_id` for local month `month` (`YYYY-MM`).
    pub async fn month_totals(&self, user_id: Uuid, month: &str) -> StoreResult<MonthTotals> {
        Ok(sql::fetch_one(
            self.conn(),
            "SELECT message_count, input_tokens, output_tokens, cost_nano_usd FROM user_month_usage \
             WHERE user_id = $1 AND month = $2",
            vec![user_id.into(), month.to_owned().into()],
        )
        .await?
        .unwrap_or_default())
    }

    /// Alerts, newest first.
    pub async fn alerts(&self, filter: &AlertFilter) -> StoreResult<Vec<Alert>> {
        let mut conditions = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if let Some(user) = filter.user_id {
            values.push(user.into());
            conditions.push(format!("a.user_id = ${}", values.len()));
        }
        if let Some(month) = &filter.month {
            values.push(month.clone().into());
            conditions.push(format!("a.month = ${}", values.len()));
        }
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        values.push(i64::from(filter.limit.max(1)).into());
        let sql = format!(
            "{ALERT_SELECT}{filter_sql} ORDER BY a.created_at DESC, a.threshold_percent DESC LIMIT ${}",
            values.len()
        );
        sql::fetch_all::<AlertWithDelivery, _>(self.conn(), &sql, values)
            .await?
            .into_iter()
            .map(AlertWithDelivery::into_alert)
            .collect()
    }

    /// Stored `user_month_usage` rows that differ from a recount from
    /// `usage_buckets`: `(key, stored, recounted)`, and how many rows were compared.
    pub(crate) async fn verify_month_usage(
        &self,
    ) -> StoreResult<(usize, Vec<(String, Option<Counters>, Option<Counters>)>)> {
        let fresh = recount_month_usage(self.conn()).await?;
        let mut stored: BTreeMap<(Uuid, String), MonthTotals> = BTreeMap::new();
        for r in sql::fetch_all::<StoredMonth, _>(
            self.conn(),
            "SELECT user_id, month, message_count, input_tokens, output_tokens, cost_nano_usd FROM user_month_usage",
            vec![],
        )
        .await?
        {
            stored.insert((r.user_id, r.month), r.totals);
        }
        let zero = MonthTotals::default();
        let as_counters = |t: &MonthTotals| Counters {
            message_count: t.message_count,
            input_tokens: t.input_tokens,
            output_tokens: t.output_tokens,
            cost_nano_usd: t.cost_nano_usd,
            ..Counters::default()
        };
        let keys: BTreeSet<&(Uuid, String)> = stored.keys().chain(fresh.keys()).collect();
        let mut out = Vec::new();
        for key in keys {
            let a = stored.get(key).filter(|t| **t != zero);
            let b = fresh.get(key).filter(|t| **t != zero);
            if a != b {
                out.push((
                    format!("user {} month {}", key.0, key.1),
                    a.map(as_counters),
                    b.map(as_counters),
                ));
            }
        }
        Ok((stored.len(), out))
    }
}

/// Recomputes `user_month_usage` whole from `usage_buckets` (inside the
/// rebuild transaction, after the buckets are rebuilt).
pub(crate) async fn rebuild_month_usage<C: ConnectionTrait>(txn: &C) -> StoreResult<usize> {
    let fresh = recount_month_usage(txn).await?;
    sql::execute(txn, "DELETE FROM user_month_usage", vec![]).await?;
    let rows: Vec<_> = fresh.into_iter().collect();
    for chunk in rows.chunks(CHUNK) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (n, ((user, month), t)) in chunk.iter().enumerate() {
            tuples.push(format!("({})", placeholders(6 * n + 1, 6)));
            values.extend([
                (*user).into(),
                month.clone().into(),
                t.message_count.into(),
                t.input_tokens.into(),
                t.output_tokens.into(),
                t.cost_nano_usd.into(),
            ]);
        }
        let sql = format!(
            "INSERT INTO user_month_usage (user_id, month, message_count, input_tokens, output_tokens, cost_nano_usd) VALUES {}",
            tuples.join(", ")
        );
        sql::execute(txn, &sql, values).await?;
    }
    Ok(rows.len())
}

/// Month totals per user × local month, summed from `usage_buckets` with each
/// user's current time zone.
async fn recount_month_usage<C: ConnectionTrait>(
    conn: &C,
) -> StoreResult<BTreeMap<(Uuid, String), MonthTotals>> {
    let zones = user_zones(conn).await?;
    let mut out: BTreeMap<(Uuid, String), MonthTotals> = BTreeMap::new();
    let rows = sql::fetch_all::<BucketUsage, _>(
        conn,
        "SELECT user_id, bucket, SUM(message_count) AS m, SUM(input_tokens) AS i, SUM(output_tokens) AS o, \
         SUM(cost_nano_usd) AS c FROM usage_buckets GROUP BY user_id, bucket",
        vec![],
    )
    .await?;
    let utc = Zone::utc();
    for r in rows {
        let (user, bucket) = (r.user_id, r.bucket);
        let (m, i, o, c) = (r.m.0, r.i.0, r.o.0, r.c.0);
        if m == 0 && i == 0 && o == 0 && c == 0 {
            continue;
        }
        let at = OffsetDateTime::from_unix_timestamp(bucket.saturating_mul(BUCKET_SECONDS))
            .map_err(|e| StoreError::Internal(format!("bucket {bucket}: {e}")))?;
        let zone = zones.get(&user).unwrap_or(&utc);
        let t = out.entry((user, month_key(zone.date_of(at)))).or_default();
        t.message_count += m;
        t.input_tokens += i;
        t.output_tokens += o;
        t.cost_nano_usd += c;
    }
    Ok(out)
}

/// Every user's zone (UTC when unset or unknown).
pub(crate) async fn user_zones<C: ConnectionTrait>(conn: &C) -> StoreResult<HashMap<Uuid, Zone>> {
    Ok(users::Entity::find()
        .select_only()
        .columns([users::Column::Id, users::Column::Timezone])
        .into_tuple::<(Uuid, Option<String>)>()
        .all(conn)
        .await?
        .into_iter()
        .map(|(id, tz)| (id, user_zone(tz.as_deref())))
        .collect())
}

/// The webhook body of a usage alert.
#[derive(Debug, Serialize)]
struct AlertPayload<'a> {
    id: Uuid,
    #[serde(rename = "type")]
    kind: &'static str,
    user_id: Uuid,
    threshold_percent: u32,
    level: &'a str,
    month: &'a str,
    cost_usd: Box<RawValue>,
    budget_usd: Box<RawValue>,
    created_at: String,
}

fn usd_number(nanos: i64) -> StoreResult<Box<RawValue>> {
    RawValue::from_string(Usd::from_nanos(nanos).to_string())
        .map_err(|e| StoreError::Internal(format!("amount: {e}")))
}

/// The webhook body of `alert`, as sent.
pub fn alert_payload(alert: &Alert) -> StoreResult<String> {
    let body = AlertPayload {
        id: alert.id,
        kind: ALERT_TOPIC,
        user_id: alert.user_id,
        threshold_percent: alert.threshold_percent,
        level: &alert.level,
        month: &alert.month,
        cost_usd: usd_number(alert.cost_nano_usd)?,
        budget_usd: usd_number(alert.budget_nano_usd)?,
        created_at: alert.created_at.format(&Rfc3339).unwrap_or_default(),
    };
    serde_json::to_string(&body).map_err(|e| StoreError::Internal(format!("payload: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn months_follow_the_zone_and_levels_the_threshold() {
        let tokyo = Zone::get("Asia/Tokyo").unwrap_or_else(|e| panic!("{e}"));
        let m = month_of(&tokyo, datetime!(2026-01-31 16:00 UTC));
        assert_eq!(m.as_ref().map(|m| m.month.as_str()), Some("2026-02"));
        assert_eq!(m.map(|m| m.first_day), Some(date!(2026 - 02 - 01)));
        let dec = month_of(&Zone::utc(), datetime!(2026-12-15 00:00 UTC));
        assert_eq!(dec.map(|m| (m.end - m.start) / 86_400), Some(31));
        assert_eq!(level_of(80), "warning");
        assert_eq!(level_of(100), "exceeded");
        assert_eq!(level_of(150), "exceeded");
        let u = Uuid::now_v7();
        assert_eq!(alert_id(u, "2026-01", 80), alert_id(u, "2026-01", 80));
        assert_ne!(alert_id(u, "2026-01", 80), alert_id(u, "2026-01", 100));
    }
}
