//! Background work inside the server: the fold cycle that keeps the
//! rollups up with the raw rows on PostgreSQL (`fold.rs`), the outbox worker that delivers
//! usage-alert webhooks (`webhook.rs`), the one that forwards activity
//! events to PostHog (`posthog.rs`) and the weekly report scheduler
//! (`reports.rs`), the sweeper of expired budget reservations
//! (`reservations.rs`), the daily upkeep of raw data: partitions ahead and
//! retention (`upkeep.rs`), plus their settings (`settings.rs`).

pub mod fold;
pub mod posthog;
pub mod reports;
pub mod reservations;
pub mod settings;
pub mod upkeep;
pub mod webhook;

use crate::AppState;

/// Starts the background workers the settings ask for. Outside a Tokio
/// runtime (nothing to run them on) it starts nothing.
pub fn start(state: &AppState) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(fold::run(state.store.clone()));
    runtime.spawn(crate::otlp::resolve::sweeper(state.clone()));
    runtime.spawn(reservations::run(state.store.clone()));
    runtime.spawn(upkeep::run(
        state.store.clone(),
        state.settings.raw_retention_months,
    ));
    if let Some(webhook) = &state.settings.notify.webhook {
        runtime.spawn(webhook::run(state.store.clone(), webhook.clone()));
    }
    if state.settings.posthog.enabled() {
        runtime.spawn(posthog::run(
            state.store.clone(),
            state.settings.posthog.clone(),
            state.metrics.clone(),
        ));
    }
    if state.settings.notify.reports.enabled {
        runtime.spawn(reports::scheduler(
            state.store.clone(),
            state.settings.notify.reports.clone(),
        ));
    }
}
