//! Logging set-up: human-readable lines in development, JSON lines in
//! production; the level comes from `RUST_LOG` (default `info`).

use crate::config::AppEnv;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Installs the global subscriber once; later calls are ignored (tests).
pub fn init(app_env: AppEnv) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match app_env {
        AppEnv::Production => registry
            .with(fmt::layer().json().with_current_span(false))
            .try_init(),
        AppEnv::Development => registry.with(fmt::layer().with_target(false)).try_init(),
    };
    // A second initialisation (several apps in one test process) is harmless.
    drop(result);
}
