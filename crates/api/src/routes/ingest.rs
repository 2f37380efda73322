//! `POST /api/v1/ingest`: the platform pushes what happened.

use crate::error::ErrorCode;
use crate::service::{self, ingest::ItemResult};
use crate::{ApiError, AppState, ErrorBody, auth::ServiceKey};
use actix_web::{HttpResponse, http::StatusCode, post, web};
use charlie_store::ingest::Outcome;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(ingest);
}

/// One item of a batch.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0192f0c4-5a1e-7c3b-9d2e-1f2a3b4c5d6e",
    "type": "message.create",
    "timestamp": "2026-01-09T12:00:00Z",
    "body": {"conversation_id": "0192f0c4-0000-7000-8000-000000000001", "role": "assistant",
             "llm_response": {"model": "gpt-4o", "usage": {"prompt_tokens": 1200, "completion_tokens": 300}}}
}))]
pub struct IngestItem {
    /// The entity's id for `*.upsert` types; the row's id for `message.create`,
    /// `event.track` and `error.log`. Re-sending the same id never counts twice.
    pub id: String,
    /// `user.upsert`, `workflow.upsert`, `component.upsert`, `conversation.upsert`,
    /// `message.create`, `event.track` or `error.log`.
    #[serde(rename = "type")]
    pub item_type: String,
    /// When it happened (RFC 3339). At most a day in the future.
    pub timestamp: String,
    /// The type's fields; see the description of this operation.
    #[schema(schema_with = item_body_schema)]
    pub body: serde_json::Value,
}

/// `body` is a JSON object whose fields depend on `type`: declared free-form
/// (`additionalProperties: true`) so that generated clients accept any fields.
fn item_body_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(true)))
        .description(Some(
            "The type's fields; see the description of this operation.",
        ))
        .build()
}

/// A batch of items.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct IngestRequest {
    pub batch: Vec<IngestItem>,
}

/// The outcome of one item.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestItemResult {
    /// The item's id, or null when it had no valid id.
    #[schema(required = true)]
    pub id: Option<String>,
    /// HTTP-style status of the item: 201 created, 200 updated or duplicate,
    /// 400 invalid, 409 conflicting with stored data.
    pub status: u16,
    /// `created`, `updated`, `duplicate` (nothing written: a retry, an
    /// identical or older upsert, a milestone already recorded) or `error`.
    pub outcome: String,
    /// Present when `outcome` is `error`.
    #[schema(required = true)]
    pub error: Option<ErrorBody>,
    /// Things accepted but worth knowing (unknown vocabulary, truncation,
    /// a message waiting for its conversation, unpriced models).
    pub warnings: Vec<String>,
}

/// The outcome of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestResponse {
    /// One entry per item, in the order sent.
    pub results: Vec<IngestItemResult>,
    /// Items with outcome `created`.
    pub created: usize,
    /// Items with outcome `updated`.
    pub updated: usize,
    /// Items with outcome `duplicate`.
    pub duplicates: usize,
    /// Items with outcome `error`.
    pub errors: usize,
}

fn item_result(r: ItemResult) -> IngestItemResult {
    let status = match (&r.outcome, &r.error) {
        (Outcome::Created, _) => 201,
        (Outcome::Updated | Outcome::Duplicate, _) => 200,
        (Outcome::Error, Some(e))
            if matches!(e.code, ErrorCode::Conflict | ErrorCode::IdReused) =>
        {
            409
        }
        (Outcome::Error, _) => 400,
    };
    IngestItemResult {
        id: r.id.map(|id| id.to_string()),
        status,
        outcome: match r.outcome {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Duplicate => "duplicate",
            Outcome::Error => "error",
        }
        .to_owned(),
        error: r.error.map(|e| ErrorBody {
            code: e.code.as_str().to_owned(),
            message: e.message,
        }),
        warnings: r.warnings,
    }
}

/// Ingest a batch of platform data.
///
/// Every item is checked on its own: one bad item never rejects the others,
/// and a refused item writes nothing. Accepted items are written, with their
/// rollups, in one transaction. Items may reference entities that have not
/// arrived yet: an unknown user, workflow or component gets a placeholder that its own
/// upsert fills later; a message whose conversation is unknown is kept and
/// counted when the conversation arrives.
///
/// Bodies by type:
/// - `user.upsert`: `external_id`, `email`, optional `timezone` (IANA),
///   `monthly_budget_usd` (decimal; null clears), `weekly_report_opt_out`.
/// - `workflow.upsert`, `component.upsert`: `user_id`, `name`.
/// - `conversation.upsert`: `user_id`, optional `workflow_id`, `langflow_session_id`.
/// - `message.create`: `conversation_id`, `role` (user, assistant, system, tool),
///   optional `model`, `usage` (normalized token fields), `llm_response` (any raw
///   provider, LangChain or Langflow response), `component_id` (the platform
///   component that made the LLM call: its cost and tokens are also counted
///   per component). Explicit `usage`/`model` win over what is extracted. Cost
///   is computed at the message's timestamp. An unknown `component_id` gets a
///   placeholder owned by the conversation's user; a component of another
///   user refuses the message with `conflict`.
/// - `event.track`: `user_id`, `event_type`, `event_category`, optional
///   `workflow_id`, `component_id`, `conversation_id`, `metadata`.
/// - `error.log`: `service`, `error_type`, `error_message` (truncated to 5,000
///   characters), optional `error_code`, `user_id`, `workflow_id`, `endpoint`,
///   `request_id`, `metadata`, `sentry_event_id`.
#[utoipa::path(
    tag = "Ingestion",
    request_body = IngestRequest,
    security(("api_key" = [])),
    responses(
        (status = 207, description = "Per-item results", body = IngestResponse),
        (status = 400, description = "The body is not JSON or has no `batch` array", body = ErrorBody),
        (status = 401, description = "Missing, unknown or revoked API key", body = ErrorBody),
        (status = 413, description = "Too many items or too many bytes", body = ErrorBody),
    )
)]
#[post("/api/v1/ingest")]
pub async fn ingest(
    _key: ServiceKey,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let limit = state.settings.ingest_max_bytes;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::bad_request(ErrorCode::InvalidBody, format!("cannot read the body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}"),
        )
    })?;
    let items = match value.get("batch") {
        Some(serde_json::Value::Array(items)) => items,
        _ => {
            return Err(ApiError::bad_request(
                ErrorCode::InvalidBody,
                "the body must be an object with a `batch` array of items",
            ));
        }
    };
    let max = state.settings.ingest_max_items;
    if items.len() > max {
        return Err(ApiError::PayloadTooLarge(format!(
            "the batch has {} items; at most {max} are accepted",
            items.len()
        )));
    }
    let report = service::ingest::ingest(
        &state.store,
        items,
        &state.catalog,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    state.metrics.observe_ingest(&report);
    let response = IngestResponse {
        created: report.count(Outcome::Created),
        updated: report.count(Outcome::Updated),
        duplicates: report.count(Outcome::Duplicate),
        errors: report.count(Outcome::Error),
        results: report.results.into_iter().map(item_result).collect(),
    };
    Ok(HttpResponse::build(StatusCode::MULTI_STATUS).json(response))
}
