//! Repricing: recompute stored message costs from their stored usage with
//! today's catalog (each message priced at its own instant, so dated prices
//! apply), and keep every rollup equal to a recount.
//!
//! Each UTC day of the range is one transaction: the day's changed messages
//! are updated and the cost difference of each (and of its unpriced
//! counters, when a model gains or loses its price) is added to the rollups
//! through the same `Rollups::write` ingestion uses, and to
//! `user_month_usage`. A run interrupted between days leaves whole days
//! repriced; running it again changes only what is still different. The run
//! ends with one `reprice_runs` row (who, when, range, model filter, old and
//! new totals of the messages it changed).
//!
//! Alerts are not touched: those already raised stay (and their webhooks are
//! not sent again); a threshold that a higher price now reaches raises its
//! alert with the user's next ingested usage, as after a lowered budget.
//!
//! A message whose payload held calls to several models is repriced as one
//! call of its stored model (the stored usage is the sum).

use crate::{
    Store, StoreError, StoreResult,
    budgets::{month_key, user_zones},
    rollup::{Counters, Rollups, StoredTokens, tokens_i64},
    sql,
};
use charlie_pricing::Catalog;
use sea_orm::{FromQueryResult, TransactionTrait};
use serde::Serialize;
use std::collections::BTreeMap;
use time::{Date, OffsetDateTime, Time};
use uuid::Uuid;

/// What to reprice.
#[derive(Debug, Clone)]
pub struct RepriceRequest {
    /// First and last UTC day, both included.
    pub from: Date,
    pub to: Date,
    /// Only messages of this model (as stored).
    pub model: Option<String>,
    /// Compute and record the run, change nothing.
    pub dry_run: bool,
    /// Who ran it.
    pub actor: String,
}

/// One repricing run (the audit row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromQueryResult)]
pub struct RepriceRun {
    pub id: Uuid,
    pub actor: String,
    pub created_at: OffsetDateTime,
    pub from_date: Date,
    pub to_date: Date,
    pub model: Option<String>,
    pub dry_run: bool,
    pub messages_scanned: i64,
    pub messages_changed: i64,
    /// Cost of the changed messages before and after, in nano-USD.
    pub old_total_nano_usd: i64,
    pub new_total_nano_usd: i64,
}

/// The change of one model's cost in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ModelChange {
    pub messages: i64,
    pub old_nano_usd: i64,
    pub new_nano_usd: i64,
}

/// A run and its changes per model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepriceReport {
    pub run: RepriceRun,
    pub by_model: BTreeMap<String, ModelChange>,
}

fn midnight(d: Date) -> OffsetDateTime {
    d.with_time(Time::MIDNIGHT).assume_utc()
}

/// A priced `messages` row, as repricing reads it.
#[derive(FromQueryResult)]
struct PricedMessage {
    id: Uuid,
    created_at: OffsetDateTime,
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    component_id: Option<Uuid>,
    model: Option<String>,
    #[sea_orm(nested)]
    tokens: StoredTokens,
    cost_nano_usd: Option<i64>,
    pricing_status: String,
    price_ref: Option<String>,
}

/// Our cost of one model in one bucket.
#[derive(FromQueryResult)]
struct ModelCost {
    bucket: i64,
    model: String,
    cost_nano_usd: i64,
}

impl Store {
    /// Reprices the messages of `req`'s range with `catalog` (see the module doc).
    pub async fn reprice(
        &self,
        req: &RepriceRequest,
        catalog: &Catalog,
        now: OffsetDateTime,
    ) -> StoreResult<RepriceReport> {
        if req.from > req.to {
            return Err(StoreError::Invalid(format!(
                "--from {} is after --to {}",
                req.from, req.to
            )));
        }
        let zones = user_zones(self.conn()).await?;
        let utc = crate::calendar::Zone::utc();
        let mut by_model: BTreeMap<String, ModelChange> = BTreeMap::new();
        let (mut scanned, mut changed, mut old_total, mut new_total) = (0i64, 0i64, 0i64, 0i64);
        let mut day = req.from;
        loop {
            let _guard = self.write_guard().await;
            let txn = self.conn().begin().await?;
            let mut values = vec![midnight(day).into()];
            values.push(
                day.next_day()
                    .map(midnight)
                    .unwrap_or_else(|| midnight(day) + time::Duration::DAY)
                    .into(),
            );
            let model_filter = match &req.model {
                Some(m) => {
                    values.push(m.clone().into());
                    " AND model = $3"
                }
                None => "",
            };
            let rows = sql::fetch_all::<PricedMessage, _>(
                &txn,
                &format!(
                    "SELECT id, created_at, user_id, workflow_id, component_id, model, input_tokens, output_tokens, \
                     cache_read_tokens, cache_write_tokens, cache_write1h_tokens, reasoning_tokens, cost_nano_usd, \
                     pricing_status, price_ref FROM messages \
                     WHERE created_at >= $1 AND created_at < $2 AND has_usage = {}{model_filter}",
                    if self.backend() == sea_orm::DbBackend::Sqlite { "1" } else { "TRUE" }
                ),
                values,
            )
            .await?;
            let mut rollups = Rollups::default();
            let mut months: BTreeMap<(Uuid, String), i64> = BTreeMap::new();
            for row in rows {
                scanned += 1;
                let at = row.created_at;
                let usage = row.tokens.usage();
                let model = row.model;
                let old_cost = row.cost_nano_usd;
                let old_status = row.pricing_status;
                let old_ref = row.price_ref;
                let cost = catalog.price(model.as_deref(), &usage, at);
                let new_cost = cost
                    .total_usd
                    .map(|u| u.to_nanos())
                    .transpose()
                    .map_err(|e| StoreError::Invalid(format!("cost out of range: {e}")))?;
                let new_status = cost.status.as_str();
                if new_cost == old_cost && new_status == old_status && cost.price_id == old_ref {
                    continue;
                }
                changed += 1;
                let (o, n) = (old_cost.unwrap_or(0), new_cost.unwrap_or(0));
                old_total = old_total.saturating_add(o);
                new_total = new_total.saturating_add(n);
                let entry = by_model
                    .entry(model.clone().unwrap_or_default())
                    .or_default();
                entry.messages += 1;
                entry.old_nano_usd = entry.old_nano_usd.saturating_add(o);
                entry.new_nano_usd = entry.new_nano_usd.saturating_add(n);
                if req.dry_run {
                    continue;
                }
                let id = row.id;
                sql::execute(
                    &txn,
                    "UPDATE messages SET cost_nano_usd = $1, pricing_status = $2, price_ref = $3 \
                     WHERE id = $4 AND created_at = $5",
                    vec![
                        new_cost.into(),
                        new_status.into(),
                        cost.price_id.clone().into(),
                        id.into(),
                        at.into(),
                    ],
                )
                .await?;
                let tokens =
                    tokens_i64(usage.input_tokens).saturating_add(tokens_i64(usage.output_tokens));
                let unpriced = |s: &str| i64::from(s == "unpriced");
                let delta = Counters {
                    cost_nano_usd: n - o,
                    unpriced_message_count: unpriced(new_status) - unpriced(&old_status),
                    unpriced_tokens: (unpriced(new_status) - unpriced(&old_status)) * tokens,
                    ..Counters::default()
                };
                let (user, workflow) = (row.user_id, row.workflow_id);
                rollups.add(user, workflow, model.as_deref(), at, &delta);
                if let Some(component) = row.component_id {
                    rollups.add_component(user, workflow, component, at, &delta);
                }
                let zone = zones.get(&user).unwrap_or(&utc);
                *months
                    .entry((user, month_key(zone.date_of(at))))
                    .or_default() += n - o;
            }
            if !rollups.is_empty() {
                rollups.write(&txn, now).await?;
            }
            for ((user, month), delta) in months {
                if delta != 0 {
                    sql::execute(
                        &txn,
                        "UPDATE user_month_usage SET cost_nano_usd = cost_nano_usd + $1 WHERE user_id = $2 AND month = $3",
                        vec![delta.into(), user.into(), month.into()],
                    )
                    .await?;
                }
            }
            txn.commit().await?;
            match day.next_day() {
                Some(next) if next <= req.to => day = next,
                _ => break,
            }
        }
        let run = RepriceRun {
            id: Uuid::now_v7(),
            actor: req.actor.chars().take(255).collect(),
            created_at: now,
            from_date: req.from,
            to_date: req.to,
            model: req.model.clone(),
            dry_run: req.dry_run,
            messages_scanned: scanned,
            messages_changed: changed,
            old_total_nano_usd: old_total,
            new_total_nano_usd: new_total,
        };
        let _guard = self.write_guard().await;
        sql::execute(
            self.conn(),
            "INSERT INTO reprice_runs (id, actor, created_at, from_date, to_date, model, dry_run, messages_scanned, \
             messages_changed, old_total_nano_usd, new_total_nano_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            vec![
                run.id.into(),
                run.actor.clone().into(),
                run.created_at.into(),
                run.from_date.into(),
                run.to_date.into(),
                run.model.clone().into(),
                run.dry_run.into(),
                run.messages_scanned.into(),
                run.messages_changed.into(),
                run.old_total_nano_usd.into(),
                run.new_total_nano_usd.into(),
            ],
        )
        .await?;
        Ok(RepriceReport { run, by_model })
    }

    /// Our cost per UTC day and model (as stored) over `[from, to]`, in
    /// nano-USD, from `platform_buckets`.
    pub async fn cost_by_day_and_model(
        &self,
        from: Date,
        to: Date,
    ) -> StoreResult<BTreeMap<(Date, String), i64>> {
        let first = midnight(from)
            .unix_timestamp()
            .div_euclid(crate::rollup::BUCKET_SECONDS);
        let end = to
            .next_day()
            .map(midnight)
            .unwrap_or_else(|| midnight(to))
            .unix_timestamp()
            .div_euclid(crate::rollup::BUCKET_SECONDS);
        let mut out: BTreeMap<(Date, String), i64> = BTreeMap::new();
        for r in sql::fetch_all::<ModelCost, _>(
            self.conn(),
            "SELECT bucket, model, cost_nano_usd FROM platform_buckets WHERE bucket >= $1 AND bucket < $2",
            vec![first.into(), end.into()],
        )
        .await?
        {
            let (bucket, model, cost) = (r.bucket, r.model, r.cost_nano_usd);
            let at = OffsetDateTime::from_unix_timestamp(bucket.saturating_mul(crate::rollup::BUCKET_SECONDS))
                .map_err(|e| StoreError::Internal(format!("bucket {bucket}: {e}")))?;
            *out.entry((at.date(), model)).or_default() += cost;
        }
        Ok(out)
    }

    /// Repricing runs, newest first.
    pub async fn reprice_runs(&self, limit: u32) -> StoreResult<Vec<RepriceRun>> {
        sql::fetch_all(
            self.conn(),
            "SELECT id, actor, created_at, from_date, to_date, model, dry_run, messages_scanned, messages_changed, \
             old_total_nano_usd, new_total_nano_usd FROM reprice_runs ORDER BY created_at DESC LIMIT $1",
            vec![i64::from(limit.max(1)).into()],
        )
        .await
    }
}
