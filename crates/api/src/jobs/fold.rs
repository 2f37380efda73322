//! The background fold cycle (PostgreSQL): folds the batches appended to
//! `rollup_queue` that no request waited for, that a crash or a restart
//! left, or that another instance appended (see the store's
//! `ingest/fold.rs`).
//!
//! It runs a cycle at start and then every [`EVERY`]. A failed cycle (the
//! database restarting, a connection cut) is logged and tried again with a
//! growing pause, up to [`MAX_PAUSE`]: nothing is lost meanwhile, the rows
//! wait in the queue and `charlie_rollup_lag_seconds` grows.

use charlie_store::{Engine, Store};
use std::time::Duration;

/// How often a cycle runs when all goes well.
const EVERY: Duration = Duration::from_secs(1);

/// The longest pause after failures in a row.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Folds for as long as the server runs (PostgreSQL only; SQLite folds in
/// the ingest transaction).
pub async fn run(store: Store) {
    if store.engine() != Engine::Postgres {
        return;
    }
    let mut pause = EVERY;
    loop {
        match store.fold_pending().await {
            Ok(n) => {
                if n > 0 {
                    tracing::debug!(batches = n, "folded queued batches into the rollups");
                }
                pause = EVERY;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = pause.as_secs(), "folding the rollup queue failed; trying again");
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
        tokio::time::sleep(pause).await;
    }
}
