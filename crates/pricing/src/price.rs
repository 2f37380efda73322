//! The price types every part of the crate shares: a model's dated price,
//! its rates per token type and its tiers, and where it comes from. A leaf:
//! the catalog, the built-in table and the custom file readers all use it,
//! and it uses none of them. With them, the pieces both price-file
//! readers (ours in `custom.rs`, LiteLLM's in `litellm.rs`) share.

use crate::PricingError;
use rust_decimal::Decimal;
use serde::Serialize;
use time::Date;

/// Where a price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PriceSource {
    Custom,
    Builtin,
}

impl PriceSource {
    pub fn as_str(&self) -> &'static str {
        match self {
            PriceSource::Custom => "custom",
            PriceSource::Builtin => "builtin",
        }
    }
}

/// The token types a price distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    Input,
    CacheRead,
    // Named as `as_str` names them (snake_case alone would write `cache_write5m`).
    #[serde(rename = "cache_write_5m")]
    CacheWrite5m,
    #[serde(rename = "cache_write_1h")]
    CacheWrite1h,
    Output,
    Reasoning,
}

impl TokenType {
    pub const ALL: [TokenType; 6] = [
        TokenType::Input,
        TokenType::CacheRead,
        TokenType::CacheWrite5m,
        TokenType::CacheWrite1h,
        TokenType::Output,
        TokenType::Reasoning,
    ];

    /// The position of this type in [`TokenType::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            TokenType::Input => 0,
            TokenType::CacheRead => 1,
            TokenType::CacheWrite5m => 2,
            TokenType::CacheWrite1h => 3,
            TokenType::Output => 4,
            TokenType::Reasoning => 5,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::CacheRead => "cache_read",
            TokenType::CacheWrite5m => "cache_write_5m",
            TokenType::CacheWrite1h => "cache_write_1h",
            TokenType::Output => "output",
            TokenType::Reasoning => "reasoning",
        }
    }
}

/// Rates in USD per token; `None` where the price names no rate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rates {
    pub input: Option<Decimal>,
    pub output: Option<Decimal>,
    pub cache_read: Option<Decimal>,
    pub cache_write_5m: Option<Decimal>,
    pub cache_write_1h: Option<Decimal>,
    pub reasoning: Option<Decimal>,
}

impl Rates {
    pub fn get(&self, t: TokenType) -> Option<Decimal> {
        match t {
            TokenType::Input => self.input,
            TokenType::CacheRead => self.cache_read,
            TokenType::CacheWrite5m => self.cache_write_5m,
            TokenType::CacheWrite1h => self.cache_write_1h,
            TokenType::Output => self.output,
            TokenType::Reasoning => self.reasoning,
        }
    }

    pub fn set(&mut self, t: TokenType, rate: Option<Decimal>) {
        let slot = match t {
            TokenType::Input => &mut self.input,
            TokenType::CacheRead => &mut self.cache_read,
            TokenType::CacheWrite5m => &mut self.cache_write_5m,
            TokenType::CacheWrite1h => &mut self.cache_write_1h,
            TokenType::Output => &mut self.output,
            TokenType::Reasoning => &mut self.reasoning,
        };
        *slot = rate;
    }

    pub fn is_empty(&self) -> bool {
        TokenType::ALL.iter().all(|t| self.get(*t).is_none())
    }
}

/// Rates that replace the base rates for the whole request when its prompt
/// (all input tokens, cache included) exceeds `above_input_tokens`. A rate
/// the tier does not name stays at the base rate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// One dated price of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelPrice {
    /// The key as written in the catalog or the custom file.
    pub model: String,
    pub provider: String,
    pub valid_from: Date,
    pub source: PriceSource,
    pub rates: Rates,
    pub tiers: Vec<Tier>,
}

impl ModelPrice {
    /// `source:model@valid_from`, stable across runs.
    pub fn id(&self) -> String {
        format!(
            "{}:{}@{}",
            self.source.as_str(),
            self.model,
            self.valid_from
        )
    }
}

/// What a price file holds once read.
pub(crate) struct Parsed {
    pub prices: Vec<ModelPrice>,
    pub aliases: Vec<(String, String)>,
    /// Entries of a LiteLLM table with no per-token price (search, image,
    /// audio, per-second, ...), sorted by name.
    pub skipped: Vec<String>,
}

pub(crate) fn float_text(n: f64) -> String {
    // Rust's Display for f64 prints the shortest round-trip digits, never
    // in exponent form.
    format!("{n}")
}

pub(crate) fn decimal(model: &str, field: &str, text: &str) -> Result<Decimal, PricingError> {
    let err = |reason: String| PricingError::InvalidPrice {
        model: model.to_owned(),
        field: field.to_owned(),
        reason,
    };
    let d = Decimal::from_str_exact(text)
        .map_err(|e| err(format!("`{text}` is not a decimal: {e}")))?;
    if d.is_sign_negative() {
        return Err(err(format!("`{text}` is negative")));
    }
    Ok(d)
}

/// `valid_from` of a price whose file gives no date.
pub(crate) const EPOCH: Date = time::macros::date!(1970 - 01 - 01);
