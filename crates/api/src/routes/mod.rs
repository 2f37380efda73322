//! One module per area; each exposes `configure` to add its routes.

pub mod health;
pub mod ingest;
pub mod metrics;

use actix_web::web;

/// The whole route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    ingest::configure(cfg);
    metrics::configure(cfg);
}
