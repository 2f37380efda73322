//! The transactional outbox: messages to deliver to the outside world
//! (usage-alert webhooks, whose bodies `budgets.rs` writes), written in the same transaction as the fact they
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
    sql::{self, placeholders},
};
use sea_orm::{ConnectionTrait, FromQueryResult, Value};
use uuid::Uuid;

/// One message claimed for delivery.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
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

/// A message to queue: its topic, the id receivers dedupe by, and the
/// exact body to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewMessage {
    pub topic: &'static str,
    pub event_id: Uuid,
    pub payload: String,
}

/// Queues `messages` (inside the transaction of the facts they announce).
pub(crate) async fn enqueue<C: ConnectionTrait>(
    txn: &C,
    messages: &[NewMessage],
    now_ms: i64,
) -> StoreResult<()> {
    for chunk in messages.chunks(500) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 6);
        let mut tuples = Vec::with_capacity(chunk.len());
        for (n, m) in chunk.iter().enumerate() {
            tuples.push(format!("({}, 0)", placeholders(6 * n + 1, 6)));
            values.extend([
                Uuid::now_v7().into(),
                m.topic.to_owned().into(),
                m.event_id.into(),
                m.payload.clone().into(),
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
        sql::fetch_all(
            self.conn(),
            &sql,
            vec![
                now_ms.saturating_add(lease_ms).into(),
                topic.to_owned().into(),
                now_ms.into(),
                i64::from(limit.max(1)).into(),
            ],
        )
        .await
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
