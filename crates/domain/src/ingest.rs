//! The typed ingestion input: checked items, whatever transport they came
//! by. The HTTP ingest endpoint (`POST /api/v1/ingest`, parsed by
//! `charlie-wire`) and the OpenTelemetry receiver both turn what they receive
//! into these; the store writes only these and never reads a wire format.

use crate::{ErrorCode, MessageRole, TokenUsage, Usd};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest `error_message` kept; longer ones are truncated with a warning.
pub const MAX_ERROR_MESSAGE_CHARS: usize = 5000;

/// Why an item was refused: a stable code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemError {
    pub code: ErrorCode,
    pub message: String,
}

impl ItemError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// The item types of `POST /api/v1/ingest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemType {
    User,
    Workflow,
    Component,
    Conversation,
    Message,
    Event,
    Error,
}

impl ItemType {
    pub const ALL: [ItemType; 7] = [
        ItemType::User,
        ItemType::Workflow,
        ItemType::Component,
        ItemType::Conversation,
        ItemType::Message,
        ItemType::Event,
        ItemType::Error,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ItemType::User => "user.upsert",
            ItemType::Workflow => "workflow.upsert",
            ItemType::Component => "component.upsert",
            ItemType::Conversation => "conversation.upsert",
            ItemType::Message => "message.create",
            ItemType::Event => "event.track",
            ItemType::Error => "error.log",
        }
    }

    /// The type named `s` on the wire (`user.upsert`, …), if known.
    pub fn parse(s: &str) -> Option<ItemType> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// `user.upsert`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserUpsert {
    pub external_id: String,
    pub email: String,
    pub timezone: Option<String>,
    /// `Some(None)` clears the budget; `None` leaves it as it is.
    pub monthly_budget: Option<Option<Usd>>,
    /// Like `monthly_budget`, for the hard limit reservations enforce.
    pub monthly_hard_limit: Option<Option<Usd>>,
    pub weekly_report_opt_out: Option<bool>,
}

/// `workflow.upsert` and `component.upsert`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedUpsert {
    pub user_id: Uuid,
    pub name: String,
}

/// `conversation.upsert`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationUpsert {
    pub user_id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub langflow_session_id: Option<String>,
}

/// `message.create`, priced.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MessageCreate {
    pub conversation_id: Uuid,
    /// The platform component (`agent_components`) that made the LLM call.
    /// Defaults to none so that messages parked in `pending_messages` before
    /// this field existed still read.
    #[serde(default)]
    pub component_id: Option<Uuid>,
    pub role: MessageRole,
    pub model: Option<String>,
    /// `None` when neither the item nor its `llm_response` carried usage.
    pub usage: Option<TokenUsage>,
    /// Whole nano-dollars; `None` when nothing could be priced.
    pub cost_nano_usd: Option<i64>,
    /// `priced`, `partial`, `unpriced`, or `no_usage`.
    pub pricing_status: String,
    /// The price used: the catalog's price id, `<source>:<model>@<valid from>`.
    pub price_ref: Option<String>,
}

/// `event.track`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTrack {
    pub user_id: Uuid,
    pub event_type: String,
    pub event_category: String,
    pub workflow_id: Option<Uuid>,
    pub component_id: Option<Uuid>,
    pub conversation_id: Option<Uuid>,
    pub metadata: Value,
}

/// An error as it goes into `error_logs`: reported by the platform (an
/// `error.log` item) or by this service itself about a request it failed
/// (`Store::record_service_error`; those are not counted in the rollups,
/// which count what the platform reported).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorLog {
    /// Which service failed, e.g. `charlie-stats`.
    pub service: String,
    /// A short classification, e.g. `internal_error`.
    pub error_type: String,
    /// What went wrong; at most [`MAX_ERROR_MESSAGE_CHARS`] characters are kept.
    pub error_message: String,
    pub error_code: Option<String>,
    /// The user the failing request acted for.
    pub user_id: Option<Uuid>,
    pub workflow_id: Option<Uuid>,
    /// The route or endpoint that failed (for this service's own errors, the
    /// route template, never a raw path).
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    /// A JSON object of extra context.
    pub metadata: Value,
    /// The Sentry event that reported the same failure, if one was sent.
    pub sentry_event_id: Option<String>,
}

/// A checked item body.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    User(UserUpsert),
    Workflow(NamedUpsert),
    Component(NamedUpsert),
    Conversation(ConversationUpsert),
    Message(MessageCreate),
    Event(EventTrack),
    Error(ErrorLog),
}

/// An item that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub id: Uuid,
    pub at: OffsetDateTime,
    pub body: Body,
    /// SHA-256 of the item as sent (canonical JSON): tells a retry from an
    /// id reused for different content.
    pub content_hash: String,
    pub warnings: Vec<String>,
}

impl Item {
    pub fn item_type(&self) -> ItemType {
        match self.body {
            Body::User(_) => ItemType::User,
            Body::Workflow(_) => ItemType::Workflow,
            Body::Component(_) => ItemType::Component,
            Body::Conversation(_) => ItemType::Conversation,
            Body::Message(_) => ItemType::Message,
            Body::Event(_) => ItemType::Event,
            Body::Error(_) => ItemType::Error,
        }
    }
}
