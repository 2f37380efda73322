//! Plain domain types of Charlie Stats.
//!
//! This crate holds the vocabulary every other crate shares: typed ids, the
//! activity-event and message-role vocabularies from the reporting plan, the
//! normalized token usage, exact money and date ranges.
//!
//! It must not know about databases, HTTP, async runtimes or JSON formats of
//! any provider: it depends only on serde, thiserror, time, uuid and a decimal
//! type, so that every crate (the pure pricing core included) can import it.

mod code;
mod error;
mod events;
mod ids;
mod money;
mod period;
mod role;
mod usage;

pub use code::ErrorCode;
pub use error::DomainError;
pub use events::{EventCategory, EventType};
pub use ids::{ComponentId, ConversationId, ErrorLogId, EventId, MessageId, UserId, WorkflowId};
pub use money::Usd;
pub use period::DateRange;
pub use role::MessageRole;
pub use usage::TokenUsage;

/// Result alias for domain validation.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
