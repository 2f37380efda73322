use thiserror::Error;

/// Why a payload's usage could not be read. Every message names the field
/// (as a JSONPath-like `$.usage.prompt_tokens`) or the limit involved.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExtractError {
    #[error("payload is {size} bytes, above the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("payload nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("payload is not valid JSON: {0}")]
    Json(String),
    #[error("invalid token count at {path}: {reason}")]
    InvalidCount { path: String, reason: String },
    #[error("token counts overflow a 64-bit counter at {path}")]
    Overflow { path: String },
    #[error("inconsistent token usage at {path}: {reason}")]
    Inconsistent { path: String, reason: String },
}

/// Why a price file, a price or an alias could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PricingError {
    #[error("price file is not valid TOML: {0}")]
    Toml(String),
    #[error("price file is not valid JSON: {0}")]
    Json(String),
    #[error("price file format not recognized: {0}")]
    UnknownFormat(String),
    #[error("invalid price for model `{model}`, field `{field}`: {reason}")]
    InvalidPrice {
        model: String,
        field: String,
        reason: String,
    },
    #[error("invalid model alias `{0}`: expected `alias=model` pairs separated by commas")]
    InvalidAlias(String),
}
