//! The transactional outbox: messages to deliver to the outside world
//! (usage-alert webhooks), written in the same transaction as the fact they
//! announce, so a committed alert is delivered even if the process dies
//! right after the commit.
//!
//! Delivery is at least once. A worker *claims* due rows: the claim moves
//! `next_attempt_ms` forward by a lease and counts the attempt, and commits
//! at once, so no transaction stays open during the HTTP call. On
//! PostgreSQL the claim selects rows `FOR UPDATE SKIP LOCKED`, so several
//! instances never claim the same row at the same time; on SQLite claims
//! take turns under the store's write lock. A worker that dies mid-delivery
//! leaves the row claimed until the lease ends; then any worker retries it.
//! Receivers dedupe by the payload's stable `id`.

use crate::{
    Engine, Store, StoreResult,
    budgets::{ALERT_TOPIC, Alert},
    sql::{self, placeholders},
};
use charlie_domain::Usd;
use sea_orm::{ConnectionTrait, Value};
use serde::Serialize;
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// One message claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: Uuid,
    pub topic: String,
    /// The id receivers dedupe by (the alert's id).
    pub event_id: Uuid,
    /// The exact body to send.
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i32,
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
        .map_err(|e| crate::StoreError::Internal(format!("amount: {e}")))
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
    serde_json::to_string(&body).map_err(|e| crate::StoreError::Internal(format!("payload: {e}")))
}

/// Queues the webhook of each new alert (inside the alert's transaction).
pub(crate) async fn enqueue_alerts<C: ConnectionTrait>(
    txn: &C,
    alerts: &[Alert],
    now_ms: i64,
) -> StoreResult<()> {
    for chunk in alerts.chunks(500) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (n, a) in chunk.iter().enumerate() {
            tuples.push(format!("({}, 0)", placeholders(6 * n + 1, 6)));
            values.extend([
                Uuid::now_v7().into(),
                ALERT_TOPIC.to_owned().into(),
                a.id.into(),
                alert_payload(a)?.into(),
                now_ms.into(),
                now_ms.into(),
            ]);
        }
        let sql = format!(
            "INSERT INTO outbox (id, topic, event_id, payload, created_at_ms, next_attempt_ms, attempts) VALUES {}",
            tuples.join(", ")
        );
        sql::execute(txn, &sql, values).await?;
    }
    Ok(())
}

impl Store {
    /// Claims up to `limit` due messages of `topic` for `lease_ms`.
    pub async fn claim_outbox(
        &self,
        topic: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        let _guard = self.write_guard().await;
        let lock = match self.engine() {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE outbox SET next_attempt_ms = $1, attempts = attempts + 1 WHERE id IN (\
             SELECT id FROM outbox WHERE topic = $2 AND delivered_at_ms IS NULL AND failed_at_ms IS NULL \
             AND next_attempt_ms <= $3 ORDER BY next_attempt_ms, id LIMIT $4{lock}) \
             RETURNING id, topic, event_id, payload, attempts"
        );
        let rows = sql::query_all(
            self.conn(),
            &sql,
            vec![
                now_ms.saturating_add(lease_ms).into(),
                topic.to_owned().into(),
                now_ms.into(),
                i64::from(limit.max(1)).into(),
            ],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboxMessage {
                    id: r.try_get("", "id")?,
                    topic: r.try_get("", "topic")?,
                    event_id: r.try_get("", "event_id")?,
                    payload: r.try_get("", "payload")?,
                    attempts: r.try_get("", "attempts")?,
                })
            })
            .collect()
    }

    /// Records a delivery.
    pub async fn outbox_delivered(&self, id: Uuid, now_ms: i64) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        sql::execute(
            self.conn(),
            "UPDATE outbox SET delivered_at_ms = $1, last_error = NULL WHERE id = $2",
            vec![now_ms.into(), id.into()],
        )
        .await?;
        Ok(())
    }

    /// Records a failed attempt: retried at `retry_at_ms`, or given up when `None`.
    pub async fn outbox_attempt_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at_ms: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let error: String = error.chars().take(1000).collect();
        match retry_at_ms {
            Some(at) => {
                sql::execute(
                    self.conn(),
                    "UPDATE outbox SET next_attempt_ms = $1, last_error = $2 WHERE id = $3 AND delivered_at_ms IS NULL",
                    vec![at.into(), error.into(), id.into()],
                )
                .await?
            }
            None => {
                sql::execute(
                    self.conn(),
                    "UPDATE outbox SET failed_at_ms = $1, last_error = $2 WHERE id = $3 AND delivered_at_ms IS NULL",
                    vec![now_ms.into(), error.into(), id.into()],
                )
                .await?
            }
        };
        Ok(())
    }
}
