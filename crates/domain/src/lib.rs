//! Plain domain types of Charlie Stats.
//!
//! This crate holds the vocabulary every other crate shares: the
//! activity-event and message-role vocabularies from the reporting plan, the
//! normalized token usage, exact money, the error-code table and the typed
//! ingestion items (`ingest`).
//!
//! It must not know about databases, HTTP, async runtimes or JSON formats of
//! any provider: it depends only on serde (and `serde_json::Value` for free-form metadata),
//! thiserror, time, uuid and a decimal type, so that every crate (the pure pricing core included) can import it.

mod code;
mod error;
mod events;
pub mod ingest;
mod money;
mod role;
mod timestamp;
mod usage;

pub use code::ErrorCode;
pub use error::DomainError;
pub use events::{EventCategory, EventType};
pub use money::Usd;
pub use role::MessageRole;
pub use timestamp::rfc3339;
pub use usage::TokenUsage;

/// Result alias for domain validation.
pub type Result<T, E = DomainError> = std::result::Result<T, E>;
