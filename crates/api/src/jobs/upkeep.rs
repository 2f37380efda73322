//! The daily upkeep of raw data: makes the coming months' partitions
//! (PostgreSQL) and, when `RAW_RETENTION_MONTHS` is set, applies retention.
//!
//! It runs at start and then once a day. Several instances may run it at
//! once: making a partition takes a lock in the database and checks again,
//! retention only ever moves its horizon forward and drops what is there.

use charlie_store::Store;
use time::OffsetDateTime;

/// How often the upkeep runs after the first time.
const EVERY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// After a failure, the next try.
const RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// One upkeep: partitions ahead, then retention if asked.
pub async fn once(
    store: &Store,
    retention_months: Option<u32>,
    now: OffsetDateTime,
) -> Result<(), charlie_store::StoreError> {
    let created = store.keep_partitions(now).await?;
    if !created.is_empty() {
        tracing::info!(partitions = ?created, "created partitions ahead");
    }
    if let Some(months) = retention_months {
        let report = store.apply_retention(months, now, false).await?;
        if !report.partitions.is_empty() || report.rows > 0 || report.ledger_rows > 0 {
            tracing::info!(
                kept_from = ?report.kept_from,
                partitions = ?report.partitions,
                rows = report.rows,
                ledger_rows = report.ledger_rows,
                "retention dropped raw data"
            );
        }
    }
    Ok(())
}

/// Runs [`once`] now and every day, for as long as the server runs.
pub async fn run(store: Store, retention_months: Option<u32>) {
    loop {
        let wait = match once(&store, retention_months, OffsetDateTime::now_utc()).await {
            Ok(()) => EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "raw-data upkeep failed; trying again in five minutes");
                RETRY
            }
        };
        tokio::time::sleep(wait).await;
    }
}
