//! The OpenAPI document, generated from the handlers' annotations.
//! `openapi/openapi.json` is this document, committed; a test keeps it equal.
//!
//! The paths are not listed here: [`openapi`] collects them from the route
//! table (`routes::configure`), where each handler is registered once with
//! its `#[utoipa::path]`, and the schemas those paths name come with them.
//! `ApiDoc` holds the rest: info and tags.

use crate::routes;
use std::sync::OnceLock;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_actix_web::AppExt;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Charlie Stats",
        description = "Reporting and analytics for the Teach Charlie agent platform: ingestion, Charlie Stats for users, and the admin dashboard API.",
    ),
    tags(
        (name = "Health", description = "Liveness and readiness probes"),
        (name = "Ingestion", description = "The platform pushes users, workflows, components, conversations, messages, events and errors"),
        (name = "Observability", description = "Prometheus metrics"),
        (name = "Budget", description = "Reserve, commit and release budget around LLM calls: hard limits that hold under concurrency"),
        (name = "Analytics", description = "Charlie Stats for the signed-in user"),
        (name = "Admin", description = "The admin dashboard: overview, errors, costs, funnel, any user's stats"),
        (name = "OpenTelemetry", description = "OTLP/HTTP trace receiver (Langflow's tracers, OpenLLMetry, OpenInference, Langfuse's SDK): LLM spans become messages with exact cost"),
    ),
)]
pub struct ApiDoc;

/// The two ways to authenticate: a service API key (ingestion) and an end
/// user's session JWT (analytics).
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("cs_… service API key")
                    .description(Some(
                        "A service API key created with `charlie-stats keys create`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "user_jwt",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A Clerk-compatible RS256 session token (also accepted from the `__session` cookie)."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "langfuse_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "Langfuse's SDK credentials: the `pk-lf-…` public key as user name and the service key as password (`charlie-stats keys create --langfuse`).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "metrics_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`METRICS_TOKEN`, when the service is configured with one.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The answers every authenticated operation may give whatever its handler
/// does, declared here once rather than on each handler: 429 when the
/// caller's token bucket is empty (`ratelimit.rs` checks it in the
/// extractor, before the handler runs) and 503 when the database is
/// unavailable (`error.rs`). Both carry `Retry-After`.
#[derive(Debug)]
struct CommonErrors;

/// The security schemes whose callers have a token bucket.
const RATE_LIMITED_SCHEMES: [&str; 3] = ["api_key", "user_jwt", "langfuse_basic"];

fn retry_after_response(description: &str) -> utoipa::openapi::Response {
    use utoipa::openapi::{
        ContentBuilder, HeaderBuilder, ObjectBuilder, Ref, ResponseBuilder, schema::Type,
    };
    ResponseBuilder::new()
        .description(description)
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                ))
                .description(Some("Seconds to wait before retrying"))
                .build(),
        )
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let common = [
            (
                "429",
                "RateLimited",
                retry_after_response(
                    "Rate limited: the caller's token bucket is empty (`code` = `rate_limited`). \
                     Nothing was read or written; retry after `Retry-After` seconds.",
                ),
            ),
            (
                "503",
                "Unavailable",
                retry_after_response(
                    "The database is unavailable or too slow (`code` = `unavailable`). \
                     Nothing acknowledged is lost; retry after `Retry-After` seconds.",
                ),
            ),
        ];
        let components = openapi.components.get_or_insert_with(Default::default);
        for (_, name, response) in &common {
            components
                .responses
                .insert((*name).to_owned(), response.clone().into());
        }
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let authenticated = operation.security.iter().flatten().any(|requirement| {
                    serde_json::to_value(requirement)
                        .ok()
                        .and_then(|v| v.as_object().cloned())
                        .is_some_and(|o| {
                            o.keys().any(|k| RATE_LIMITED_SCHEMES.contains(&k.as_str()))
                        })
                });
                if !authenticated {
                    continue;
                }
                for (status, name, _) in &common {
                    operation
                        .responses
                        .responses
                        .entry((*status).to_owned())
                        .or_insert_with(|| {
                            utoipa::openapi::RefOr::Ref(utoipa::openapi::Ref::from_response_name(
                                *name,
                            ))
                        });
                }
            }
        }
    }
}

/// The `Rollups-As-Of` header of the analytics reads' successful answers
/// (`observability::as_of`).
#[derive(Debug)]
struct RollupsAsOf;

impl Modify for RollupsAsOf {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use crate::observability::as_of::{ANALYTICS_PREFIX, ROLLUPS_AS_OF_HEADER};
        use utoipa::openapi::{HeaderBuilder, ObjectBuilder, RefOr, schema::Type};
        let header = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String).format(
                Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                )),
            )))
            .description(Some(
                "Every item acknowledged before this instant is counted in this answer \
                 (RFC 3339). Left out while the server has not yet folded its first batch.",
            ))
            .build();
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with(ANALYTICS_PREFIX) {
                continue;
            }
            let Some(get) = item.get.as_mut() else {
                continue;
            };
            for (status, response) in get.responses.responses.iter_mut() {
                if !status.starts_with('2') {
                    continue;
                }
                if let RefOr::T(response) = response {
                    response
                        .headers
                        .insert(ROLLUPS_AS_OF_HEADER.to_owned(), RefOr::T(header.clone()));
                }
            }
        }
    }
}

/// The whole document: `ApiDoc`, the paths and schemas of every route that
/// `routes::configure` registers (under their scopes), the security schemes,
/// then the common error responses of authenticated operations. Built once.
pub fn openapi() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(|| {
        let (_, mut doc) = actix_web::App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .configure(routes::configure)
            .split_for_parts();
        SecuritySchemes.modify(&mut doc);
        RollupsAsOf.modify(&mut doc);
        CommonErrors.modify(&mut doc);
        doc
    })
}

/// The document as pretty JSON with a trailing newline, as committed.
pub fn spec_json() -> String {
    let mut json = openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
