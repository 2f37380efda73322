//! Token extraction and pricing: the pure core of Charlie Stats' cost
//! tracking.
//!
//! It reads the token usage out of raw JSON from any supported provider
//! (OpenAI, Azure, Anthropic, Gemini/Vertex, Bedrock, Cohere, Mistral, Groq,
//! DeepSeek, xAI, Ollama), from LangChain serializations and from Langflow
//! `/api/v1/run` responses, normalizes it to one convention
//! ([`TokenUsage`](charlie_domain::TokenUsage)), and prices it exactly with a
//! dated catalog of USD-per-token decimals, built in or loaded from a custom
//! price file's text.
//!
//! It must not know about I/O of any kind: no files, no environment, no
//! async runtime, no database, no HTTP. Callers read files and variables and
//! hand their text in, so any service can import this crate alone.
//!
//! ```
//! use charlie_pricing::{Catalog, report};
//! use time::macros::datetime;
//!
//! let body = br#"{"id":"chatcmpl-1","model":"gpt-4o-mini","usage":
//!     {"prompt_tokens":1000,"completion_tokens":200,"total_tokens":1200}}"#;
//! let out = report(&Catalog::builtin(), body, datetime!(2025-03-01 0:00 UTC))?;
//! assert_eq!(out.cost.total_usd.map(|u| u.to_string()).as_deref(), Some("0.00027"));
//! # Ok::<(), charlie_pricing::ExtractError>(())
//! ```

mod builtin;
mod catalog;
mod custom;
mod error;
mod extract;
mod litellm;
mod matching;
mod node;
pub mod otel;
mod price;

pub use catalog::{
    Catalog, Cost, CostLine, ModelPrice, ModelPriceInfo, PriceFileSummary, PriceSource,
    PricingStatus, Rates, RatesPerMtok, Tier, TierInfo, TokenType,
};
pub use custom::parse_aliases;
pub use error::{ExtractError, PricingError};
pub use extract::{CallUsage, Extraction, MAX_PAYLOAD_BYTES, extract, extract_slice};

use charlie_domain::TokenUsage;
use serde::Serialize;
use time::OffsetDateTime;

/// Result alias for pricing configuration.
pub type Result<T, E = PricingError> = std::result::Result<T, E>;

/// What `charlie-stats usage extract` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageReport {
    /// The model string the payload carries, as written, or null.
    pub model: Option<String>,
    /// The normalized usage, or null when the payload carries none.
    pub usage: Option<TokenUsage>,
    pub cost: Cost,
    pub warnings: Vec<String>,
}

/// Extracts the usage of one raw response and prices it at `at`.
///
/// A payload without usage is not an error: `usage` is null and the cost is
/// `unpriced` with no amount.
pub fn report(
    catalog: &Catalog,
    payload_bytes: &[u8],
    at: OffsetDateTime,
) -> Result<UsageReport, ExtractError> {
    extract::with_found(payload_bytes, |found| {
        let cost = catalog.price_found(&found, at);
        UsageReport {
            model: found.model.map(str::to_owned),
            usage: found.usage,
            cost,
            warnings: found.warnings,
        }
    })
}
