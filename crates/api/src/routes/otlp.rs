//! OTLP/HTTP receiver (`POST /v1/traces`, `POST /v1/metrics`, with a service
//! key as bearer token) and the Langfuse-compatible endpoints Langflow's
//! Langfuse tracer talks to (`POST /api/public/otel/v1/traces`,
//! `GET /api/public/projects`, with Basic auth: `pk-lf-…` public key and the
//! service key as secret).
//!
//! Errors follow OTLP: a `google.rpc.Status` in the request's encoding, 400
//! for bad data (not retried by exporters), 413 for a body over the limit,
//! 415 for an unknown type or compression, 503 when the database fails
//! (retried). Missing or wrong credentials are a 401 with the usual JSON
//! error body.

use crate::{
    AppState,
    auth::{LangfuseKey, ServiceKey},
    error::ErrorBody,
    otlp::{
        decode::{self, Encoding, OtlpError},
        resolve, spans,
    },
};
use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::{
    metrics::v1::ExportMetricsServiceResponse,
    trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse},
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

/// Body size limit for one export, before and after decompression: four
/// times `INGEST_MAX_BYTES` (OTLP batches are verbose protobuf).
fn limit(state: &AppState) -> usize {
    state.settings.ingest_max_bytes.saturating_mul(4)
}

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Reads, decompresses and checks the body's encoding.
async fn body(
    req: &HttpRequest,
    state: &AppState,
    mut payload: web::Payload,
) -> Result<(Vec<u8>, Encoding), OtlpError> {
    let encoding = Encoding::of(header_str(req, header::CONTENT_TYPE))?;
    let limit = limit(state);
    let mut raw = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| OtlpError::bad(encoding, format!("cannot read the body: {e}")))?;
        if raw.len() + chunk.len() > limit {
            return Err(OtlpError::new(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                encoding,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        raw.extend_from_slice(&chunk);
    }
    let bytes = decode::decompress(
        &raw,
        header_str(req, header::CONTENT_ENCODING),
        limit,
        encoding,
    )?;
    Ok((bytes, encoding))
}

async fn receive_traces(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OtlpError> {
    let (bytes, encoding) = body(&req, &state, payload).await?;
    let request = decode::traces(&bytes, encoding)?;
    let staged = spans::stage(&request);
    state.metrics.observe_otel_received(&staged);
    let now = time::OffsetDateTime::now_utc();
    let fail = |e: charlie_store::StoreError| {
        tracing::error!(error = %e, "staging OpenTelemetry spans failed");
        OtlpError::unavailable(encoding)
    };
    state
        .store
        .otel_stage(&staged.spans, &staged.contexts, now)
        .await
        .map_err(fail)?;
    let trace_ids: Vec<String> = staged.contexts.iter().map(|c| c.trace_id.clone()).collect();
    // Traces whose context is complete are counted now; the others when
    // their root arrives or the wait runs out (the sweeper). The spans are
    // staged already, so a failure here loses nothing.
    if let Err(e) = resolve::resolve(&state, &trace_ids, now).await {
        tracing::warn!(error = %e, "resolving OpenTelemetry traces failed; the sweeper retries");
    }
    let partial_success = (!staged.rejected.is_empty()).then(|| ExportTracePartialSuccess {
        rejected_spans: staged.rejected.len() as i64,
        error_message: staged
            .rejected
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("; "),
    });
    Ok(decode::respond(
        &ExportTraceServiceResponse { partial_success },
        encoding,
    ))
}

/// Receive OpenTelemetry traces (OTLP/HTTP).
///
/// An `ExportTraceServiceRequest` as protobuf (`application/x-protobuf`) or
/// OTLP/JSON (`application/json`), optionally gzip- or deflate-compressed.
/// LLM spans with token usage become messages with exact cost (GenAI
/// semantic conventions, their older names, OpenInference, Langfuse);
/// Langflow's ids give the user, conversation (session), workflow (flow)
/// and component. A span exported twice counts once. Spans that cannot be
/// read are reported in `partialSuccess`; the others are kept.
#[utoipa::path(
    tag = "OpenTelemetry",
    operation_id = "otlp_traces",
    request_body(content(
        (Vec<u8> = "application/x-protobuf"),
        (Object = "application/json"),
    ), description = "An OTLP ExportTraceServiceRequest"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Accepted (an ExportTraceServiceResponse in the request's encoding; `partialSuccess` counts the spans refused)", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpExportResponse = "application/json"),
        )),
        (status = 400, description = "Not an OTLP request (a `google.rpc.Status`)"),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 413, description = "The body, or the body decompressed, is over the limit"),
        (status = 415, description = "Unknown Content-Type or Content-Encoding"),
        (status = 503, description = "The database is unavailable; retry (a `google.rpc.Status`)"),
    )
)]
#[post("/v1/traces")]
pub async fn traces(
    _key: ServiceKey,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OtlpError> {
    receive_traces(req, state, payload).await
}

/// Receive OpenTelemetry metrics (OTLP/HTTP); accepted and not stored.
///
/// Exporters such as Traceloop's send metrics beside traces; token counts
/// come from the traces, so the metrics are checked and acknowledged only.
#[utoipa::path(
    tag = "OpenTelemetry",
    operation_id = "otlp_metrics",
    request_body(content(
        (Vec<u8> = "application/x-protobuf"),
        (Object = "application/json"),
    ), description = "An OTLP ExportMetricsServiceRequest"),
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Accepted (an empty ExportMetricsServiceResponse in the request's encoding)", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpExportResponse = "application/json"),
        )),
        (status = 400, description = "Not an OTLP request"),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 413, description = "The body is over the limit"),
        (status = 415, description = "Unknown Content-Type or Content-Encoding"),
    )
)]
#[post("/v1/metrics")]
pub async fn metrics(
    _key: ServiceKey,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OtlpError> {
    let (bytes, encoding) = body(&req, &state, payload).await?;
    decode::metrics(&bytes, encoding)?;
    Ok(decode::respond(
        &ExportMetricsServiceResponse {
            partial_success: None,
        },
        encoding,
    ))
}

/// Receive traces from Langfuse's SDK (Langflow's Langfuse tracer).
///
/// The same as `POST /v1/traces`, authenticated as Langfuse's SDK does:
/// Basic auth with the public key and secret key that `charlie-stats keys
/// create --langfuse` prints.
#[utoipa::path(
    tag = "OpenTelemetry",
    operation_id = "langfuse_otel_traces",
    request_body(content(
        (Vec<u8> = "application/x-protobuf"),
        (Object = "application/json"),
    ), description = "An OTLP ExportTraceServiceRequest"),
    security(("langfuse_basic" = [])),
    responses(
        (status = 200, description = "Accepted (an ExportTraceServiceResponse in the request's encoding)", content(
            (Vec<u8> = "application/x-protobuf"),
            (OtlpExportResponse = "application/json"),
        )),
        (status = 400, description = "Not an OTLP request"),
        (status = 401, description = "Missing or wrong Langfuse keys", body = ErrorBody),
        (status = 413, description = "The body is over the limit"),
        (status = 415, description = "Unknown Content-Type or Content-Encoding"),
        (status = 503, description = "The database is unavailable; retry"),
    )
)]
#[post("/api/public/otel/v1/traces")]
pub async fn langfuse_traces(
    _key: LangfuseKey,
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, OtlpError> {
    receive_traces(req, state, payload).await
}

/// OTLP's `ExportTraceServiceResponse` (or `ExportMetricsServiceResponse`)
/// as OTLP/JSON: empty when everything was accepted.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpExportResponse {
    /// Traces only: present when some spans were refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub partial_success: Option<OtlpPartialSuccess>,
}

/// The spans an export refused, and why.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OtlpPartialSuccess {
    /// How many spans were refused (the others were kept).
    pub rejected_spans: i64,
    /// The first few reasons, `; `-separated.
    pub error_message: String,
}

/// A Langfuse project, as Langfuse's SDK reads it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LangfuseProject {
    /// The service key's id.
    pub id: String,
    /// The service key's name.
    pub name: String,
    pub organization: LangfuseOrganization,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// The organization of a [`LangfuseProject`]: always Charlie Stats itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct LangfuseOrganization {
    pub id: String,
    pub name: String,
}

/// `GET /api/public/projects`' body.
#[derive(Debug, Serialize, ToSchema)]
pub struct LangfuseProjects {
    /// One project: the one the keys belong to.
    pub data: Vec<LangfuseProject>,
}

/// The project of a Langfuse key pair (Langfuse's SDK checks its keys here
/// before it sends traces).
#[utoipa::path(
    tag = "OpenTelemetry",
    operation_id = "langfuse_projects",
    security(("langfuse_basic" = [])),
    responses(
        (status = 200, description = "The keys' project", body = LangfuseProjects),
        (status = 401, description = "Missing or wrong Langfuse keys", body = ErrorBody),
    )
)]
#[get("/api/public/projects")]
pub async fn langfuse_projects(key: LangfuseKey) -> web::Json<LangfuseProjects> {
    web::Json(LangfuseProjects {
        data: vec![LangfuseProject {
            id: key.0.id.to_string(),
            name: key.0.name.clone(),
            organization: LangfuseOrganization {
                id: "charlie-stats".into(),
                name: "Charlie Stats".into(),
            },
            metadata: serde_json::json!({}),
        }],
    })
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(traces)
        .service(metrics)
        .service(langfuse_traces)
        .service(langfuse_projects);
}
