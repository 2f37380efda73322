//! One module per area; each exposes `configure` to add its routes.

pub mod admin;
pub mod analytics;
pub mod budget;
pub mod health;
pub mod ingest;
pub mod me;
pub mod metrics;
pub mod money;
pub mod otlp;
pub mod params;
pub mod reports;
pub mod usage;

use actix_web::web;

/// The whole route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    me::configure(cfg);
    analytics::configure(cfg);
    admin::configure(cfg);
    ingest::configure(cfg);
    metrics::configure(cfg);
    usage::configure(cfg);
    budget::configure(cfg);
    reports::configure(cfg);
    otlp::configure(cfg);
}
