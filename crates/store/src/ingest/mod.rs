//! Batch ingestion: checks every item, then writes the whole batch (raw rows,
//! placeholders, funnel milestones and rollups) in one transaction.
//!
//! Guarantees:
//! - A bad item is refused whole and never affects the others.
//! - Re-sending an item writes nothing twice: messages, events and errors are
//!   recorded once per id in `ingested_items`; upserts are idempotent and an
//!   upsert older than the stored version is ignored.
//! - References may arrive out of order: an unknown user, workflow or
//!   component gets a placeholder row that its own upsert later fills; a message whose
//!   conversation is unknown waits in `pending_messages` and is counted when
//!   the conversation arrives.
//! - Rollups change in the same transaction as the raw rows; concurrent
//!   batches conflict on rows, never on counts (increments are atomic), and a
//!   lock conflict re-runs the batch.

mod apply;
pub mod item;
pub mod row;

use crate::{Store, StoreResult, sql};
use charlie_pricing::Catalog;
pub use item::{Item, ItemError, ItemType, parse_item};
use sea_orm::TransactionTrait;
use serde::Serialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

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

/// The result of one item, in batch order.
#[derive(Debug, Clone)]
pub struct ItemResult {
    pub id: Option<Uuid>,
    pub outcome: Outcome,
    pub error: Option<ItemError>,
    pub warnings: Vec<String>,
    /// The item's type, when it named a known one (for metrics).
    pub item_type: Option<ItemType>,
    /// How a `message.create` with usage was priced (for metrics).
    pub pricing: Option<ItemPricing>,
}

/// The model and pricing status of a message that carried usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPricing {
    pub model: Option<String>,
    /// `priced`, `partial` or `unpriced`.
    pub status: String,
}

/// The result of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub results: Vec<ItemResult>,
}

impl BatchReport {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == outcome).count()
    }
}

/// How many times a batch is run when it meets a lock conflict.
const MAX_ATTEMPTS: u32 = 8;

impl Store {
    /// Ingests a batch of raw items (`{"id","type","timestamp","body"}`).
    /// `now` bounds future timestamps. Fails only when the database does;
    /// item problems are reported per item.
    pub async fn ingest(
        &self,
        raw: &[Value],
        catalog: &Catalog,
        now: OffsetDateTime,
    ) -> StoreResult<BatchReport> {
        let parsed: Vec<Result<Item, ItemError>> =
            raw.iter().map(|v| parse_item(v, now, catalog)).collect();
        let mut attempt = 0;
        let results = loop {
            attempt += 1;
            let run = async {
                let _guard = self.write_guard().await;
                let txn = self.conn().begin().await?;
                let results =
                    apply::apply(&txn, &parsed, now, &self.budget_policy, self.posthog_outbox)
                        .await?;
                txn.commit().await?;
                Ok::<_, crate::StoreError>(results)
            };
            match run.await {
                Ok(results) => break results,
                Err(e) if attempt < MAX_ATTEMPTS && sql::is_retriable(&e) => {
                    tracing::debug!(attempt, error = %e, "ingest batch conflicted; running it again");
                    tokio::time::sleep(std::time::Duration::from_millis(
                        5 * u64::from(attempt * attempt),
                    ))
                    .await;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(BatchReport {
            results: raw
                .iter()
                .zip(parsed)
                .zip(results)
                .map(|((raw, parsed), applied)| match parsed {
                    Err(error) => ItemResult {
                        id: item::raw_id(raw),
                        outcome: Outcome::Error,
                        error: Some(error),
                        warnings: Vec::new(),
                        item_type: raw.get("type").and_then(|t| t.as_str()).and_then(|t| {
                            ItemType::ALL.into_iter().find(|known| known.as_str() == t)
                        }),
                        pricing: None,
                    },
                    Ok(item) => {
                        let item_type = Some(item.item_type());
                        let pricing = match &item.body {
                            item::Body::Message(m) if m.usage.is_some() => Some(ItemPricing {
                                model: m.model.clone(),
                                status: m.pricing_status.clone(),
                            }),
                            _ => None,
                        };
                        let mut warnings = item.warnings;
                        warnings.extend(applied.warnings);
                        ItemResult {
                            id: Some(item.id),
                            outcome: applied.outcome,
                            error: applied.error,
                            warnings,
                            item_type,
                            pricing,
                        }
                    }
                })
                .collect(),
        })
    }
}
