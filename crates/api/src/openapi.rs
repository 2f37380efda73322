//! The OpenAPI document, generated from the handlers' annotations.
//! `openapi/openapi.json` is this document, committed; a test keeps it equal.

use crate::{error::ErrorBody, routes};
use utoipa::OpenApi;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Charlie Stats",
        description = "Reporting and analytics for the Teach Charlie agent platform: ingestion, Charlie Stats for users, and the admin dashboard API.",
    ),
    paths(routes::health::health, routes::health::ready),
    components(schemas(ErrorBody, routes::health::HealthBody)),
    tags((name = "Health", description = "Liveness and readiness probes")),
)]
pub struct ApiDoc;

/// The document as pretty JSON with a trailing newline, as committed.
pub fn spec_json() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
