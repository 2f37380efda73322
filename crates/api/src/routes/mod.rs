//! One module per area; each exposes `configure` to add its routes, and
//! `admin_routes` for those of the admin scope.
//!
//! A route and its OpenAPI entry are registered together, here: the
//! `ServiceConfig` of `utoipa-actix-web` takes only handlers that carry a
//! `#[utoipa::path]`, and collects their paths and schemas into the spec
//! (`crate::openapi::openapi`). A handler cannot be served undocumented.

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

use utoipa_actix_web::{scope::scope, service_config::ServiceConfig};

/// The prefix of every admin dashboard route. Each handler of the scope
/// checks the admin session itself (`DashboardAdmin`): 401 without a valid
/// token, 403 for a user who is not an admin.
pub const ADMIN_SCOPE: &str = "/api/v1/analytics/admin";

/// The whole route table.
pub fn configure(cfg: &mut ServiceConfig) {
    health::configure(cfg);
    me::configure(cfg);
    analytics::configure(cfg);
    cfg.service(
        scope(ADMIN_SCOPE)
            .configure(admin::admin_routes)
            .configure(usage::admin_routes)
            .configure(budget::admin_routes)
            .configure(reports::admin_routes),
    );
    ingest::configure(cfg);
    metrics::configure(cfg);
    usage::configure(cfg);
    budget::configure(cfg);
    otlp::configure(cfg);
}
