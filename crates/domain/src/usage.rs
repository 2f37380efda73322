//! The normalized token usage of one LLM call (or of a sum of calls).
//!
//! Convention, the same for every provider:
//! - `input_tokens` counts every prompt token billed at any rate, cache reads
//!   and cache writes included;
//! - `cache_read_input_tokens` and `cache_creation_input_tokens` are subsets of
//!   `input_tokens`; `cache_creation_1h_input_tokens` is the part of the cache
//!   writes made with a one-hour lifetime (the rest are five-minute writes);
//! - `output_tokens` counts every generated token, reasoning included, and
//!   `reasoning_tokens` is a subset of it;
//! - `total_tokens = input_tokens + output_tokens`.

use crate::DomainError;
use serde::{Deserialize, Serialize};

/// Normalized token counts. See the module documentation for the convention.
///
/// On the wire the usage always carries `total_tokens`; on input it may be
/// omitted, and when present it must equal `input_tokens + output_tokens`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "UsageWire", try_from = "UsageWire")]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cache_read_input_tokens: u64,
    pub cache_creation_input_tokens: u64,
    pub cache_creation_1h_input_tokens: u64,
    pub reasoning_tokens: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageWire {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_creation_input_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    cache_creation_1h_input_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl From<TokenUsage> for UsageWire {
    fn from(u: TokenUsage) -> Self {
        UsageWire {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cache_read_input_tokens: u.cache_read_input_tokens,
            cache_creation_input_tokens: u.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: u.cache_creation_1h_input_tokens,
            reasoning_tokens: u.reasoning_tokens,
            total_tokens: u.total_tokens(),
        }
    }
}

impl TryFrom<UsageWire> for TokenUsage {
    type Error = DomainError;
    fn try_from(w: UsageWire) -> Result<Self, DomainError> {
        let u = TokenUsage {
            input_tokens: w.input_tokens,
            output_tokens: w.output_tokens,
            cache_read_input_tokens: w.cache_read_input_tokens,
            cache_creation_input_tokens: w.cache_creation_input_tokens,
            cache_creation_1h_input_tokens: w.cache_creation_1h_input_tokens,
            reasoning_tokens: w.reasoning_tokens,
        };
        match (w.total_tokens, u.total_tokens()) {
            (_, None) => Err(DomainError::UsageOverflow),
            (Some(given), Some(sum)) if given != sum => Err(DomainError::InconsistentUsage(
                format!("total_tokens ({given}) is not input_tokens + output_tokens ({sum})"),
            )),
            _ => Ok(u),
        }
    }
}

impl TokenUsage {
    /// Usage with the given input and output counts and no cache or reasoning detail.
    pub fn new(input_tokens: u64, output_tokens: u64) -> Self {
        Self {
            input_tokens,
            output_tokens,
            ..Self::default()
        }
    }

    /// `input_tokens + output_tokens`, or `None` on overflow.
    pub fn total_tokens(&self) -> Option<u64> {
        self.input_tokens.checked_add(self.output_tokens)
    }

    /// True when no token of any kind was counted.
    pub fn is_empty(&self) -> bool {
        self.input_tokens == 0 && self.output_tokens == 0
    }

    /// Field-wise sum with overflow checks: the usage of two distinct calls.
    pub fn checked_add(&self, other: &TokenUsage) -> Result<TokenUsage, DomainError> {
        let add = |a: u64, b: u64| a.checked_add(b).ok_or(DomainError::UsageOverflow);
        let sum = TokenUsage {
            input_tokens: add(self.input_tokens, other.input_tokens)?,
            output_tokens: add(self.output_tokens, other.output_tokens)?,
            cache_read_input_tokens: add(
                self.cache_read_input_tokens,
                other.cache_read_input_tokens,
            )?,
            cache_creation_input_tokens: add(
                self.cache_creation_input_tokens,
                other.cache_creation_input_tokens,
            )?,
            cache_creation_1h_input_tokens: add(
                self.cache_creation_1h_input_tokens,
                other.cache_creation_1h_input_tokens,
            )?,
            reasoning_tokens: add(self.reasoning_tokens, other.reasoning_tokens)?,
        };
        sum.total_tokens().ok_or(DomainError::UsageOverflow)?;
        Ok(sum)
    }

    /// Checks the subset rules of the convention.
    pub fn validate(&self) -> Result<(), DomainError> {
        let cached = self
            .cache_read_input_tokens
            .checked_add(self.cache_creation_input_tokens)
            .ok_or(DomainError::UsageOverflow)?;
        if cached > self.input_tokens {
            return Err(DomainError::InconsistentUsage(format!(
                "cache_read_input_tokens + cache_creation_input_tokens ({cached}) exceed input_tokens ({})",
                self.input_tokens
            )));
        }
        if self.cache_creation_1h_input_tokens > self.cache_creation_input_tokens {
            return Err(DomainError::InconsistentUsage(format!(
                "cache_creation_1h_input_tokens ({}) exceed cache_creation_input_tokens ({})",
                self.cache_creation_1h_input_tokens, self.cache_creation_input_tokens
            )));
        }
        if self.reasoning_tokens > self.output_tokens {
            return Err(DomainError::InconsistentUsage(format!(
                "reasoning_tokens ({}) exceed output_tokens ({})",
                self.reasoning_tokens, self.output_tokens
            )));
        }
        self.total_tokens().ok_or(DomainError::UsageOverflow)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_usage_carries_the_total() {
        let u = TokenUsage::new(1200, 300);
        let json = serde_json::to_value(u).unwrap_or_default();
        assert_eq!(json["total_tokens"], 1500);
        assert_eq!(json["input_tokens"], 1200);
        assert!(json.get("cache_creation_1h_input_tokens").is_none());
    }

    #[test]
    fn negative_or_unknown_fields_are_rejected_on_input() {
        assert!(serde_json::from_str::<TokenUsage>(r#"{"input_tokens": -1}"#).is_err());
        assert!(serde_json::from_str::<TokenUsage>(r#"{"input_tokens": 1.5}"#).is_err());
        assert!(serde_json::from_str::<TokenUsage>(r#"{"prompt_tokens": 3}"#).is_err());
        let ok: TokenUsage =
            serde_json::from_str(r#"{"input_tokens": 3, "output_tokens": 4, "total_tokens": 7}"#)
                .unwrap_or_default();
        assert_eq!(ok.total_tokens(), Some(7));
        assert!(
            serde_json::from_str::<TokenUsage>(
                r#"{"input_tokens": 3, "output_tokens": 4, "total_tokens": 8}"#
            )
            .is_err()
        );
    }

    #[test]
    fn subsets_larger_than_their_parent_are_inconsistent() {
        let mut u = TokenUsage::new(10, 5);
        u.cache_read_input_tokens = 11;
        assert!(u.validate().is_err());
        let mut u = TokenUsage::new(10, 5);
        u.reasoning_tokens = 6;
        assert!(u.validate().is_err());
        let mut u = TokenUsage::new(10, 5);
        u.cache_read_input_tokens = 4;
        u.cache_creation_input_tokens = 6;
        u.cache_creation_1h_input_tokens = 6;
        u.reasoning_tokens = 5;
        assert_eq!(u.validate(), Ok(()));
    }

    #[test]
    fn sums_overflow_into_an_error_not_a_wrap() {
        let big = TokenUsage::new(u64::MAX, 0);
        assert_eq!(
            big.checked_add(&TokenUsage::new(1, 0)),
            Err(DomainError::UsageOverflow)
        );
        let half = TokenUsage::new(u64::MAX / 2 + 1, 0);
        assert_eq!(
            half.checked_add(&TokenUsage::new(0, u64::MAX / 2 + 1)),
            Err(DomainError::UsageOverflow)
        );
        assert_eq!(
            TokenUsage::new(1, 2).checked_add(&TokenUsage::new(3, 4)),
            Ok(TokenUsage::new(4, 6))
        );
    }
}
