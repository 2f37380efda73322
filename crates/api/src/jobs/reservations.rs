//! The reservation sweeper: deletes budget reservations a day after they
//! expired.
//!
//! Nothing here decides what a reservation holds: an expired reservation
//! stops counting against a hard limit the moment its `expires_at` passes
//! (the store's `held` condition), whether or not this job has run. The
//! sweeper only keeps `budget_reservations` small. It keeps an expired row
//! for [`KEEP`] so that a client retrying a reserve with the same
//! idempotency key within that time gets the same (expired) reservation back
//! instead of a new one. Several instances may sweep at once: the delete is
//! idempotent.

use charlie_store::Store;
use time::OffsetDateTime;

/// How long an expired reservation (and its idempotency key) is kept.
pub const KEEP: time::Duration = time::Duration::hours(24);

/// How often the sweeper runs.
const EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// One sweep: deletes what expired more than [`KEEP`] before `now`.
pub async fn sweep_once(
    store: &Store,
    now: OffsetDateTime,
) -> Result<u64, charlie_store::StoreError> {
    store.sweep_reservations(now, KEEP.whole_seconds()).await
}

/// Sweeps every five minutes, for as long as the server runs.
pub async fn run(store: Store) {
    loop {
        match sweep_once(&store, OffsetDateTime::now_utc()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(reservations = n, "deleted expired budget reservations"),
            Err(e) => {
                tracing::warn!(error = %e, "sweeping expired budget reservations failed; trying again later")
            }
        }
        tokio::time::sleep(EVERY).await;
    }
}
