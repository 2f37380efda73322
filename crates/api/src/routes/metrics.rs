//! `GET /metrics`: Prometheus text format, behind `METRICS_TOKEN` when set.

use crate::{ApiError, AppState, auth::bearer_token};
use actix_web::{HttpRequest, HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(metrics);
}

/// Compares in time that depends only on the lengths.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Prometheus metrics.
///
/// Text exposition format 0.0.4:
/// - `http_requests_total` and `http_request_duration_seconds` (histogram),
///   by `method`, `route` (the route template, `unmatched` for unknown
///   paths) and `status`;
/// - `charlie_ingest_items_total` by item `type` and `outcome`;
/// - `charlie_usages_total` by `model` and `pricing_status` (`priced`,
///   `partial`, `unpriced`): a growing `unpriced` series means a model has
///   no price;
/// - `charlie_rollup_lag_seconds`: how long ago the oldest batch still
///   waiting to be folded into the rollups was acknowledged (0 when none:
///   the rollups count everything acknowledged), and
///   `charlie_rollup_queue_rows`, how many queue rows wait (a batch appends
///   one per fold shard it changes). Read from the
///   database at each scrape; left out when it cannot be read.
///
/// When `METRICS_TOKEN` is set, the token is required as a bearer token.
#[utoipa::path(
    tag = "Observability",
    security((), ("metrics_token" = [])),
    responses(
        (status = 200, description = "Metrics in Prometheus text format", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "METRICS_TOKEN is set and the request does not carry it", body = crate::ErrorBody),
    )
)]
#[get("/metrics")]
pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(token) = &state.settings.metrics_token {
        let given = bearer_token(&req).unwrap_or_default();
        if !same_secret(given.as_bytes(), token.expose().as_bytes()) {
            return Err(ApiError::Unauthorized(
                "send the metrics token: `Authorization: Bearer <METRICS_TOKEN>`".into(),
            ));
        }
    }
    let mut body = state.metrics.render();
    match state.store.rollup_lag().await {
        Ok(lag) => crate::observability::metrics::render_rollup_lag(&mut body, &lag),
        Err(e) => tracing::warn!(error = %e, "cannot read the rollup lag for /metrics"),
    }
    if let Some(up) = state.store.reading_from_replica() {
        crate::observability::metrics::render_replica(&mut body, up);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body))
}

#[cfg(test)]
mod tests {
    use super::same_secret;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
        assert!(!same_secret(b"", b"a"));
    }
}
