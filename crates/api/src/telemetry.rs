//! Logging and error-tracking set-up.
//!
//! Logs: human-readable lines in development, JSON lines in production
//! (`APP_ENV`); the level comes from `RUST_LOG` (default `info`). Every line
//! written while a request is served carries that request's span: its id,
//! method and route template. Nothing here logs headers or bodies, so
//! tokens, keys and e-mail addresses stay out of the logs.

use crate::{Settings, config::AppEnv, observability};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber once; later calls are ignored (tests).
pub fn init(app_env: AppEnv) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match app_env {
        AppEnv::Production => registry
            .with(
                fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        AppEnv::Development => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    // A second initialisation (several apps in one test process) is harmless.
    drop(result);
}

/// Starts the process-wide Sentry client when `SENTRY_DSN` is set; without
/// it, says so in one line and returns `None`. Keep the guard for the whole
/// life of the server: dropping it flushes and stops the client.
pub fn init_sentry(settings: &Settings) -> Option<sentry::ClientInitGuard> {
    match observability::reporting::sentry_options(settings) {
        Some(options) => {
            let guard = sentry::init(options);
            tracing::info!(
                environment = %settings.sentry.environment,
                release = observability::RELEASE,
                traces_sample_rate = settings.sentry.traces_sample_rate,
                "Sentry error tracking is on"
            );
            Some(guard)
        }
        None => {
            tracing::info!("Sentry error tracking is off (SENTRY_DSN is not set)");
            None
        }
    }
}
