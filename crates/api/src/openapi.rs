//! The OpenAPI document, generated from the handlers' annotations.
//! `openapi/openapi.json` is this document, committed; a test keeps it equal.

use crate::{error::ErrorBody, routes};
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Charlie Stats",
        description = "Reporting and analytics for the Teach Charlie agent platform: ingestion, Charlie Stats for users, and the admin dashboard API.",
    ),
    paths(routes::health::health, routes::health::ready, routes::ingest::ingest, routes::me::me, routes::metrics::metrics,
        routes::analytics::my_stats, routes::analytics::my_components, routes::admin::overview, routes::admin::errors, routes::admin::costs,
        routes::admin::funnel, routes::admin::user_stats_route, routes::admin::user_components_route,
        routes::usage::my_usage, routes::usage::my_preferences, routes::usage::set_budget, routes::usage::list_alerts,
        routes::reports::preview,
        routes::budget::reserve, routes::budget::commit, routes::budget::release,
        routes::budget::set_workflow_budget, routes::budget::reprice_runs,
        routes::otlp::traces, routes::otlp::metrics, routes::otlp::langfuse_traces, routes::otlp::langfuse_projects),
    components(schemas(
        ErrorBody,
        routes::health::HealthBody,
        routes::ingest::IngestItem,
        routes::ingest::IngestRequest,
        routes::ingest::IngestItemResult,
        routes::ingest::IngestResponse,
        routes::me::MeResponse,
        routes::analytics::UserStatsResponse,
        routes::analytics::DailyBreakdown,
        routes::analytics::MostActiveWorkflow,
        routes::analytics::UserComponentsResponse,
        routes::analytics::WorkflowBreakdown,
        routes::analytics::ComponentBreakdown,
        routes::analytics::UsageFigures,
        routes::admin::AdminOverviewResponse,
        routes::admin::FunnelData,
        routes::admin::RecentErrorsResponse,
        routes::admin::ErrorLogItem,
        routes::admin::CostsResponse,
        routes::admin::CostGroupItem,
        routes::admin::FunnelResponse,
        routes::admin::FunnelStep,
        routes::admin::AdminUserStatsResponse,
        routes::admin::AdminUserInfo,
        routes::admin::AdminConversation,
        routes::usage::AlertItem,
        routes::usage::MyUsageResponse,
        routes::usage::PreferencesBody,
        routes::usage::BudgetRequest,
        routes::usage::BudgetResponse,
        routes::usage::AlertsResponse,
        routes::budget::TokenCounts,
        routes::budget::ReserveBody,
        routes::budget::ReserveResponse,
        routes::budget::LimitStanding,
        routes::budget::ReservationItem,
        routes::budget::CommitBody,
        routes::budget::ReleaseBody,
        routes::budget::WorkflowBudgetRequest,
        routes::budget::WorkflowBudgetResponse,
        routes::budget::RepriceRunItem,
        routes::budget::RepriceRunsResponse,
        routes::otlp::LangfuseProjects,
        routes::otlp::OtlpExportResponse,
        routes::otlp::OtlpPartialSuccess,
        routes::otlp::LangfuseProject,
        routes::otlp::LangfuseOrganization,
    )),
    modifiers(&SecuritySchemes, &CommonErrors),
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

/// The document as pretty JSON with a trailing newline, as committed.
pub fn spec_json() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}
