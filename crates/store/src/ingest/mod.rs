//! Batch ingestion: writes a batch of checked items (`charlie_domain::ingest`)
//! whole (raw rows, placeholders, funnel milestones and rollups) in one
//! transaction. Checking an item's content is the transport edge's work
//! (`charlie-wire`); what is checked here is what needs the database.
//!
//! Guarantees:
//! - An item that conflicts with what is stored is refused whole and never
//!   affects the others.
//! - Re-sending an item writes nothing twice: messages, events and errors are
//!   recorded once per id in `ingested_items`; upserts are idempotent and an
//!   upsert older than the stored version is ignored.
//! - References may arrive out of order: an unknown user, workflow or
//!   component gets a placeholder row that its own upsert later fills; a message whose
//!   conversation is unknown waits in `pending_messages` and is counted when
//!   the conversation arrives.
//! - What a batch changes in rows shared with other batches (sessions,
//!   per-user counters, rollups, month usage, alerts) is folded in by
//!   `fold`: in the same transaction on SQLite, through `rollup_queue` and a
//!   fold cycle on PostgreSQL (see `fold.rs`); either way exactly once. A
//!   lock conflict re-runs the batch.

mod apply;
pub mod fold;
pub mod row;

use crate::{Store, StoreResult, sql};
pub use apply::Applied;
use charlie_domain::ingest::Item;
use sea_orm::TransactionTrait;
use serde::Serialize;
use time::OffsetDateTime;

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new row (or a placeholder filled by its own upsert).
    Created,
    /// An existing entity changed.
    Updated,
    /// Already recorded (a retry, an identical or older upsert, a milestone
    /// already reached): nothing was written.
    Duplicate,
    /// Refused; see `error`. Nothing was written for it.
    Error,
}

/// How many times a batch is run when it meets a lock conflict.
const MAX_ATTEMPTS: u32 = 8;

impl Store {
    /// Writes a batch of checked items in one transaction and says what
    /// happened to each, in order. The items come typed from the transport
    /// edge (`charlie-wire` for the HTTP format); `now` stamps the ledger and
    /// the rollups. Fails only when the database does; conflicts with what
    /// is stored (an id reused for other content, a component of another
    /// user) are reported per item.
    pub async fn ingest(&self, items: &[Item], now: OffsetDateTime) -> StoreResult<Vec<Applied>> {
        // Every row lands in its month's partition, made here if missing,
        // never in a DEFAULT partition (see `retention.rs`).
        self.ensure_partitions(items.iter().map(|i| i.at).chain([now]))
            .await?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let run = async {
                let _guard = self.write_guard().await;
                let txn = self.conn().begin().await?;
                let (results, mut batch) =
                    apply::apply(&txn, items, now, self.posthog_outbox).await?;
                let delta = fold::Delta::of(&mut batch);
                let queued = match self.engine() {
                    crate::Engine::Sqlite => {
                        fold::write_delta(&txn, delta, &self.budget_policy, now).await?;
                        false
                    }
                    crate::Engine::Postgres => {
                        fold::enqueue(&txn, delta, &batch.messages_written, now).await?
                    }
                };
                txn.commit().await?;
                Ok::<_, crate::StoreError>((results, queued))
            };
            match run.await {
                Ok((results, queued)) => {
                    if queued {
                        self.settle().await;
                    }
                    return Ok(results);
                }
                Err(e) if attempt < MAX_ATTEMPTS && sql::is_retriable(&e) => {
                    tracing::debug!(attempt, error = %e, "ingest batch conflicted; running it again");
                    tokio::time::sleep(std::time::Duration::from_millis(
                        5 * u64::from(attempt * attempt),
                    ))
                    .await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
