//! Liveness and readiness probes.

use crate::{AppState, ErrorBody};
use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// Body of a successful probe.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    /// Always `ok` on success.
    pub status: &'static str,
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(health).service(ready);
}

/// Liveness: the process answers. Touches nothing else.
#[utoipa::path(
    tag = "Health",
    responses((status = 200, description = "The process is alive", body = HealthBody))
)]
#[get("/health")]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(HealthBody { status: "ok" })
}

/// Readiness: the database answers a query.
#[utoipa::path(
    tag = "Health",
    responses(
        (status = 200, description = "Ready to serve", body = HealthBody),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    )
)]
#[get("/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.store.ping().await {
        Ok(()) => HttpResponse::Ok().json(HealthBody { status: "ok" }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(ErrorBody {
                code: crate::error::ErrorCode::DatabaseUnavailable.as_str().into(),
                message: "the database is not reachable".into(),
            })
        }
    }
}
