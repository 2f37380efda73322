//! Every stable error code the service answers with, in one table: the
//! `code` of an HTTP error body and of a refused ingestion item. Clients
//! branch on these strings, so a code's text never changes once released.
//! The HTTP status of each code is given by the API crate's one exhaustive
//! match over this enum (`crates/api/src/error.rs`).

/// A stable, machine-readable error code (its text is snake_case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    // A whole request.
    /// A query or path parameter is out of range or malformed.
    InvalidParameter,
    /// The body is not JSON (or not the encoding announced).
    InvalidJson,
    /// The body is JSON of the wrong shape.
    InvalidBody,
    /// A value cannot be stored as given.
    InvalidValue,
    /// A session token or API key is missing or refused.
    Unauthorized,
    /// The caller may not use this route.
    Forbidden,
    /// The thing asked for does not exist.
    NotFound,
    /// The path exists with other methods.
    MethodNotAllowed,
    /// The body is larger than the route accepts.
    PayloadTooLarge,
    /// The body's content type is not one the route reads.
    UnsupportedMediaType,
    /// A budget reservation names a model without a price and no estimate.
    UnpricedModel,
    /// The caller's rate limit is reached.
    RateLimited,
    /// A dependency (the database, the signing keys) cannot answer now.
    Unavailable,
    /// The database cannot be reached (readiness).
    DatabaseUnavailable,
    /// A fault of this service; the cause is logged, never shown.
    InternalError,
    // A whole request or one item.
    /// The write contradicts data already stored.
    Conflict,
    /// Token usage is inconsistent or out of range.
    InvalidUsage,
    // One ingestion item.
    /// A required field is missing.
    MissingField,
    /// A field has the wrong type or an impossible value.
    InvalidField,
    /// The item's `id` is not a UUID.
    InvalidId,
    /// The item is not an object of the expected shape.
    InvalidItem,
    /// The raw LLM response cannot be read.
    InvalidLlmResponse,
    /// The timestamp is not RFC 3339 or outside the storable range.
    InvalidTimestamp,
    /// The timestamp is further in the future than the clock skew allowed.
    TimestampInFuture,
    /// The message role is none of the known ones.
    UnknownRole,
    /// The item type is none of the known ones.
    UnknownType,
    /// The id was used before for another item type or other content.
    IdReused,
    /// The item is older than raw rows are kept (`RAW_RETENTION_MONTHS`):
    /// its month was dropped, so it cannot be told from a re-send.
    BeyondRetention,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 28] = [
        ErrorCode::InvalidParameter,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidBody,
        ErrorCode::InvalidValue,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::UnpricedModel,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::DatabaseUnavailable,
        ErrorCode::InternalError,
        ErrorCode::Conflict,
        ErrorCode::InvalidUsage,
        ErrorCode::MissingField,
        ErrorCode::InvalidField,
        ErrorCode::InvalidId,
        ErrorCode::InvalidItem,
        ErrorCode::InvalidLlmResponse,
        ErrorCode::InvalidTimestamp,
        ErrorCode::TimestampInFuture,
        ErrorCode::UnknownRole,
        ErrorCode::UnknownType,
        ErrorCode::IdReused,
        ErrorCode::BeyondRetention,
    ];

    /// The code's text, as clients see it.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "invalid_parameter",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidBody => "invalid_body",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::UnpricedModel => "unpriced_model",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::DatabaseUnavailable => "database_unavailable",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::Conflict => "conflict",
            ErrorCode::InvalidUsage => "invalid_usage",
            ErrorCode::MissingField => "missing_field",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::InvalidId => "invalid_id",
            ErrorCode::InvalidItem => "invalid_item",
            ErrorCode::InvalidLlmResponse => "invalid_llm_response",
            ErrorCode::InvalidTimestamp => "invalid_timestamp",
            ErrorCode::TimestampInFuture => "timestamp_in_future",
            ErrorCode::UnknownRole => "unknown_role",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::IdReused => "id_reused",
            ErrorCode::BeyondRetention => "beyond_retention",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_distinct_snake_case_and_all_listed() {
        let texts: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(texts.len(), ErrorCode::ALL.len(), "two codes share a text");
        for t in &texts {
            assert!(
                !t.is_empty() && t.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "`{t}` is not snake_case"
            );
        }
        let variants: HashSet<ErrorCode> = ErrorCode::ALL.into_iter().collect();
        assert_eq!(variants.len(), ErrorCode::ALL.len(), "ALL repeats a code");
    }
}
