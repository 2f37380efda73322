//! Custom price files: our TOML and JSON format, and LiteLLM's
//! `model_prices_and_context_window.json` (read in [`crate::litellm`]), told
//! apart by their content.
//!
//! Our format (TOML shown; JSON has the same shape), rates in USD per
//! million tokens, as decimal strings (exact) or numbers:
//!
//! ```toml
//! [aliases]
//! prod-chat = "gpt-4o"
//!
//! [[prices]]
//! model = "my-finetune"
//! provider = "openai"          # optional, default "custom"
//! valid_from = "2025-01-01"    # optional, default 1970-01-01
//! input = "3"
//! output = "12"
//! cache_read = "1.5"           # also cache_write_5m, cache_write_1h, reasoning
//!
//! [[prices.long_context]]
//! above_input_tokens = 200000
//! input = "6"
//! output = "24"
//! ```

use crate::{
    PricingError,
    builtin::{parse_date, per_token},
    price::{EPOCH, ModelPrice, Parsed, PriceSource, Rates, Tier, TokenType, decimal, float_text},
};
use serde::{Deserialize, Deserializer, de};
use std::{collections::BTreeMap, fmt};

/// A rate as written: a decimal string, an integer or a float. Floats are
/// read through their shortest round-trip representation, which is the
/// literal the file contains for any price written with 17 or fewer digits.
#[derive(Debug, Clone)]
struct RateText(String);

impl<'de> Deserialize<'de> for RateText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = RateText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate as a decimal string or a number")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RateText, E> {
                Ok(RateText(s.trim().to_owned()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<RateText, E> {
                Ok(RateText(n.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<RateText, E> {
                Ok(RateText(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<RateText, E> {
                Ok(RateText(float_text(n)))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OurFile {
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    prices: Vec<OurPrice>,
}

#[derive(Debug, Deserialize)]
struct OurRates {
    input: Option<RateText>,
    output: Option<RateText>,
    cache_read: Option<RateText>,
    #[serde(alias = "cache_write")]
    cache_write_5m: Option<RateText>,
    cache_write_1h: Option<RateText>,
    reasoning: Option<RateText>,
}

#[derive(Debug, Deserialize)]
struct OurPrice {
    model: String,
    provider: Option<String>,
    valid_from: Option<String>,
    #[serde(flatten)]
    rates: OurRates,
    #[serde(default)]
    long_context: Vec<OurTier>,
}

#[derive(Debug, Deserialize)]
struct OurTier {
    above_input_tokens: u64,
    #[serde(flatten)]
    rates: OurRates,
}

impl OurRates {
    fn to_rates(&self, model: &str) -> Result<Rates, PricingError> {
        let mut rates = Rates::default();
        for (t, v) in [
            (TokenType::Input, &self.input),
            (TokenType::Output, &self.output),
            (TokenType::CacheRead, &self.cache_read),
            (TokenType::CacheWrite5m, &self.cache_write_5m),
            (TokenType::CacheWrite1h, &self.cache_write_1h),
            (TokenType::Reasoning, &self.reasoning),
        ] {
            if let Some(RateText(text)) = v {
                let per_m = decimal(model, t.as_str(), text)?;
                let rate =
                    per_token(&per_m.to_string()).ok_or_else(|| PricingError::InvalidPrice {
                        model: model.to_owned(),
                        field: t.as_str().to_owned(),
                        reason: format!("`{text}` is out of range"),
                    })?;
                rates.set(t, Some(rate));
            }
        }
        Ok(rates)
    }
}

fn our_prices(file: OurFile) -> Result<Parsed, PricingError> {
    let mut prices = Vec::with_capacity(file.prices.len());
    for p in file.prices {
        let model = p.model.trim().to_owned();
        if model.is_empty() {
            return Err(PricingError::InvalidPrice {
                model,
                field: "model".into(),
                reason: "empty model name".into(),
            });
        }
        let valid_from = match &p.valid_from {
            None => EPOCH,
            Some(text) => parse_date(text).ok_or_else(|| PricingError::InvalidPrice {
                model: model.clone(),
                field: "valid_from".into(),
                reason: format!("`{text}` is not a YYYY-MM-DD date"),
            })?,
        };
        let rates = p.rates.to_rates(&model)?;
        let tiers = p
            .long_context
            .iter()
            .map(|t| {
                Ok(Tier {
                    above_input_tokens: t.above_input_tokens,
                    rates: t.rates.to_rates(&model)?,
                })
            })
            .collect::<Result<Vec<_>, PricingError>>()?;
        prices.push(ModelPrice {
            provider: p.provider.unwrap_or_else(|| "custom".into()),
            model,
            valid_from,
            source: PriceSource::Custom,
            rates,
            tiers,
        });
    }
    Ok(Parsed {
        prices,
        aliases: file.aliases.into_iter().collect(),
        skipped: Vec::new(),
    })
}

/// Parses a price file, detecting its format.
pub(crate) fn parse(text: &str) -> Result<Parsed, PricingError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(trimmed).map_err(|e| PricingError::Json(e.to_string()))?;
        let is_ours = value.get("prices").is_some_and(serde_json::Value::is_array)
            || (value.get("aliases").is_some() && value.as_object().is_some_and(|o| o.len() <= 2));
        if is_ours {
            let file: OurFile =
                serde_json::from_value(value).map_err(|e| PricingError::Json(e.to_string()))?;
            our_prices(file)
        } else {
            crate::litellm::parse(&value)
        }
    } else {
        let file: OurFile =
            toml::from_str(trimmed).map_err(|e| PricingError::Toml(e.to_string()))?;
        our_prices(file)
    }
}

/// Parses `alias=model` pairs separated by commas (or newlines), as in
/// `MODEL_ALIASES="my-azure-deploy=gpt-4o,other=claude-sonnet-4"`.
///
/// ```
/// let pairs = charlie_pricing::parse_aliases("prod=gpt-4o, eu-chat = claude-sonnet-4")?;
/// assert_eq!(pairs[1], ("eu-chat".to_string(), "claude-sonnet-4".to_string()));
/// # Ok::<(), charlie_pricing::PricingError>(())
/// ```
pub fn parse_aliases(spec: &str) -> Result<Vec<(String, String)>, PricingError> {
    spec.split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((a, m)) if !a.trim().is_empty() && !m.trim().is_empty() => {
                Ok((a.trim().to_owned(), m.trim().to_owned()))
            }
            _ => Err(PricingError::InvalidAlias(pair.to_owned())),
        })
        .collect()
}
