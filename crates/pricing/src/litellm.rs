//! LiteLLM's `model_prices_and_context_window.json`, as published.
//!
//! The table prices far more than tokens: search queries, images, audio
//! seconds, rerank calls, pages. What is priced per text token is loaded;
//! every other entry is skipped and named in the [`PriceFileSummary`], so one
//! foreign entry never stops a start-up. What does stop it is a broken value
//! in a per-token field: negative, not a number, or a token band whose range
//! is not two token counts.
//!
//! Field mapping (USD per token):
//!
//! | LiteLLM field | rate |
//! |---|---|
//! | `input_cost_per_token` | input |
//! | `output_cost_per_token` | output |
//! | `cache_read_input_token_cost` | cache read |
//! | `cache_creation_input_token_cost` | cache write (5 minutes) |
//! | `cache_creation_input_token_cost_above_1hr` | cache write (1 hour) |
//! | `output_cost_per_reasoning_token` | reasoning |
//! | any of these + `_above_<N>k_tokens` or `_above_<N>_tokens` | the same rate, for a whole request whose prompt exceeds N tokens |
//! | `tiered_pricing: [{range: [low, high], …}]` | a complete rate set for a request whose prompt is in `(low, high]` (above the last range: the last band) |
//!
//! Rates for other service tiers (`_batches`, `_flex`, `_priority`, …),
//! other modalities (`_audio_`, `_image_`, `_video_`), per-second, per-query
//! and per-character prices, and time-of-day (`off_peak_pricing`) prices are
//! not read: the usage this service records carries no such dimension.

use crate::{
    PricingError,
    price::{EPOCH, ModelPrice, Parsed, PriceSource, Rates, Tier, TokenType, decimal, float_text},
};
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// LiteLLM's per-token field names and the token type each prices.
const FIELDS: [(&str, TokenType); 6] = [
    ("input_cost_per_token", TokenType::Input),
    ("output_cost_per_token", TokenType::Output),
    ("cache_read_input_token_cost", TokenType::CacheRead),
    ("cache_creation_input_token_cost", TokenType::CacheWrite5m),
    (
        "cache_creation_input_token_cost_above_1hr",
        TokenType::CacheWrite1h,
    ),
    ("output_cost_per_reasoning_token", TokenType::Reasoning),
];

/// What a field of an entry prices.
#[derive(Debug, PartialEq, Eq)]
enum Field {
    /// A base rate.
    Base(TokenType),
    /// A rate for a whole request whose prompt exceeds the threshold.
    Above(TokenType, u64),
}

fn base_field(name: &str) -> Option<TokenType> {
    FIELDS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Reads a field name: `input_cost_per_token` is a base rate,
/// `input_cost_per_token_above_200k_tokens` (or `_above_128_tokens`) a
/// threshold rate; anything else, `None`.
fn field(name: &str) -> Option<Field> {
    if let Some(t) = base_field(name) {
        return Some(Field::Base(t));
    }
    let rest = name.strip_suffix("_tokens")?;
    let (base, n) = rest.rsplit_once("_above_")?;
    let t = base_field(base)?;
    let (digits, scale) = match n.strip_suffix('k') {
        Some(d) => (d, 1000),
        None => (n, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let above = digits.parse::<u64>().ok()?.checked_mul(scale)?;
    Some(Field::Above(t, above))
}

/// A per-token rate: a number or a decimal string; `null` is no rate.
fn rate(model: &str, field: &str, v: &Value) -> Result<Option<Decimal>, PricingError> {
    let text = match v {
        Value::Null => return Ok(None),
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.to_string(),
            (None, Some(i), _) => i.to_string(),
            (None, None, Some(f)) => float_text(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.trim().to_owned(),
        other => {
            return Err(PricingError::InvalidPrice {
                model: model.to_owned(),
                field: field.to_owned(),
                reason: format!("expected a number, found {other}"),
            });
        }
    };
    decimal(model, field, &text).map(Some)
}

/// A whole, non-negative token count written as a JSON number (LiteLLM
/// writes `256000.0`).
fn token_count(v: &Value) -> Option<u64> {
    if let Some(n) = v.as_u64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    if f >= 0.0 && f.fract() == 0.0 && f < 1e15 {
        // A whole number below 1e15: the cast is exact.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(f as u64)
    } else {
        None
    }
}

/// One band of `tiered_pricing`, if it prices tokens: its lower bound and
/// its complete rates. A band names every rate it bills: cache reads and
/// writes it does not name are billed at its input rate, output it does not
/// name at the entry's output rate (LiteLLM's reading of Dashscope's table).
fn band(
    model: &str,
    band: &Value,
    entry_output: Option<Decimal>,
) -> Result<Option<(u64, Rates)>, PricingError> {
    let Some(fields) = band.as_object() else {
        return Ok(None);
    };
    let priced = fields.keys().any(|k| base_field(k).is_some());
    let Some(range) = fields.get("range") else {
        if priced {
            return Err(PricingError::InvalidPrice {
                model: model.to_owned(),
                field: "tiered_pricing".into(),
                reason: "a band with per-token prices has no `range`".into(),
            });
        }
        // Bands over something else (`max_results_range` of a search API).
        return Ok(None);
    };
    if !priced {
        return Ok(None);
    }
    let bounds = range
        .as_array()
        .filter(|r| r.len() == 2)
        .and_then(|r| Some((token_count(&r[0])?, token_count(&r[1])?)))
        .filter(|(low, high)| low <= high);
    let Some((low, _)) = bounds else {
        return Err(PricingError::InvalidPrice {
            model: model.to_owned(),
            field: "tiered_pricing.range".into(),
            reason: format!("expected [low, high] token counts, found {range}"),
        });
    };
    let mut rates = Rates::default();
    for (name, t) in FIELDS {
        if let Some(v) = fields.get(name) {
            rates.set(t, rate(model, &format!("tiered_pricing.{name}"), v)?);
        }
    }
    if rates.output.is_none() {
        rates.output = entry_output;
    }
    if rates.cache_read.is_none() {
        rates.cache_read = rates.input;
    }
    if rates.cache_write_5m.is_none() {
        rates.cache_write_5m = rates.input;
    }
    if rates.cache_write_1h.is_none() {
        rates.cache_write_1h = rates.cache_write_5m;
    }
    Ok(Some((low, rates)))
}

/// The price of one entry, or `None` when nothing in it is per token.
fn entry(model: &str, fields: &Map<String, Value>) -> Result<Option<ModelPrice>, PricingError> {
    let mut rates = Rates::default();
    let mut tiers: BTreeMap<u64, Rates> = BTreeMap::new();
    for (name, v) in fields {
        match field(name) {
            Some(Field::Base(t)) => rates.set(t, rate(model, name, v)?),
            Some(Field::Above(t, above)) => {
                if let Some(r) = rate(model, name, v)? {
                    tiers.entry(above).or_default().set(t, Some(r));
                }
            }
            None => {}
        }
    }
    if let Some(Value::Array(bands)) = fields.get("tiered_pricing") {
        let entry_output = rates.output;
        for b in bands {
            let Some((low, band_rates)) = band(model, b, entry_output)? else {
                continue;
            };
            // A band is the whole price of the requests it covers, so it
            // replaces what the entry's own fields say.
            if low == 0 {
                rates = band_rates;
            } else {
                tiers.insert(low, band_rates);
            }
        }
    }
    if rates.is_empty() && tiers.values().all(Rates::is_empty) {
        return Ok(None);
    }
    let provider = fields
        .get("litellm_provider")
        .and_then(Value::as_str)
        .unwrap_or("custom")
        .to_owned();
    Ok(Some(ModelPrice {
        model: model.to_owned(),
        provider,
        valid_from: EPOCH,
        source: PriceSource::Custom,
        rates,
        tiers: tiers
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(above, rates)| Tier {
                above_input_tokens: above,
                rates,
            })
            .collect(),
    }))
}

/// Reads a LiteLLM table: every token-priced entry, the names of the others.
pub(crate) fn parse(value: &Value) -> Result<Parsed, PricingError> {
    let Some(entries) = value.as_object() else {
        return Err(PricingError::UnknownFormat(
            "expected an object of models (LiteLLM) or a `prices` list".into(),
        ));
    };
    let mut prices = Vec::new();
    let mut skipped = Vec::new();
    for (model, value) in entries {
        // LiteLLM's own description of the fields, not a model.
        if model == "sample_spec" {
            continue;
        }
        let priced = match value.as_object() {
            Some(fields) => entry(model, fields)?,
            None => None,
        };
        match priced {
            Some(price) => prices.push(price),
            None => skipped.push(model.clone()),
        }
    }
    skipped.sort();
    if prices.is_empty() && !entries.is_empty() {
        return Err(PricingError::UnknownFormat(
            "no entry has per-token prices (`input_cost_per_token`, ...) nor is there a `prices` list".into(),
        ));
    }
    Ok(Parsed {
        prices,
        aliases: Vec::new(),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_map_to_rates_and_thresholds() {
        use TokenType::*;
        let cases = [
            ("input_cost_per_token", Some(Field::Base(Input))),
            (
                "cache_creation_input_token_cost_above_1hr",
                Some(Field::Base(CacheWrite1h)),
            ),
            (
                "input_cost_per_token_above_200k_tokens",
                Some(Field::Above(Input, 200_000)),
            ),
            (
                "output_cost_per_token_above_128_tokens",
                Some(Field::Above(Output, 128)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
                Some(Field::Above(CacheWrite1h, 200_000)),
            ),
            ("input_cost_per_token_batches", None),
            ("input_cost_per_token_above_200k_tokens_priority", None),
            ("cache_creation_input_token_cost_above_12hr", None),
            ("input_cost_per_audio_token", None),
            ("input_cost_per_token_above_k_tokens", None),
            (
                "input_cost_per_token_above_99999999999999999999k_tokens",
                None,
            ),
        ];
        for (name, want) in cases {
            assert_eq!(field(name), want, "{name}");
        }
    }

    #[test]
    fn a_band_without_cache_rates_bills_them_at_its_input_rate() -> Result<(), PricingError> {
        let v: Value =
            serde_json::from_str(r#"{"range": [32000.0, 128000], "input_cost_per_token": 5e-07}"#)
                .map_err(|e| PricingError::Json(e.to_string()))?;
        let out = Decimal::new(2, 6);
        let (low, rates) = band("m", &v, Some(out))?.ok_or(PricingError::Json("none".into()))?;
        assert_eq!(low, 32_000);
        assert_eq!(rates.input, Some(Decimal::new(5, 7)));
        assert_eq!(rates.cache_read, rates.input);
        assert_eq!(rates.cache_write_1h, rates.input);
        assert_eq!(rates.output, Some(out));
        Ok(())
    }
}
