//! Ingestion, whatever the transport: raw wire items are checked
//! (`charlie-wire`), the valid ones written in one store transaction, and
//! every item answered in the order it came. `POST /api/v1/ingest`, the
//! OpenTelemetry receiver and the demo seeder (`charlie-dev demo`) all call [`ingest`].

use charlie_domain::ingest::{Body, Item, ItemError, ItemType};
use charlie_pricing::Catalog;
use charlie_store::{Store, StoreError, StoreResult, ingest::Outcome};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

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

/// Checks every raw item (`{"id","type","timestamp","body"}`), writes the
/// valid ones in one transaction, and reports on each in order. `now`
/// bounds future timestamps and stamps the write. Fails only when the store
/// does; item problems are reported per item.
pub async fn ingest(
    store: &Store,
    raw: &[Value],
    catalog: &Catalog,
    now: OffsetDateTime,
) -> StoreResult<BatchReport> {
    let mut valid: Vec<Item> = Vec::with_capacity(raw.len());
    let mut results: Vec<Option<ItemResult>> = Vec::with_capacity(raw.len());
    for value in raw {
        match charlie_wire::parse_item(value, now, catalog) {
            Ok(item) => {
                valid.push(item);
                results.push(None);
            }
            Err(error) => results.push(Some(ItemResult {
                id: charlie_wire::raw_id(value),
                outcome: Outcome::Error,
                error: Some(error),
                warnings: Vec::new(),
                item_type: charlie_wire::raw_type(value),
                pricing: None,
            })),
        }
    }
    let applied = if valid.is_empty() {
        Vec::new()
    } else {
        store.ingest(&valid, now).await?
    };
    let mut written = valid.into_iter().zip(applied).map(|(item, applied)| {
        let pricing = match &item.body {
            Body::Message(m) if m.usage.is_some() => Some(ItemPricing {
                model: m.model.clone(),
                status: m.pricing_status.clone(),
            }),
            _ => None,
        };
        let item_type = Some(item.item_type());
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
    });
    let mut report = BatchReport {
        results: Vec::with_capacity(results.len()),
    };
    for slot in results {
        match slot.or_else(|| written.next()) {
            Some(result) => report.results.push(result),
            None => {
                return Err(StoreError::Internal(
                    "the store answered fewer items than it was given".into(),
                ));
            }
        }
    }
    Ok(report)
}
