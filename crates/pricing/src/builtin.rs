//! The built-in price table, in USD per million tokens as published by each
//! provider, with the date each price took effect.
//!
//! Columns of a rate array: input, output, cache read, cache write (5-minute
//! or the provider's only write), cache write (1-hour), reasoning. An empty
//! string is "no rate": cost computation then falls back as the provider
//! bills (cache reads and writes at the input rate, reasoning at the output
//! rate) and says so. Providers that bill cache writes as plain input
//! (OpenAI, Google, DeepSeek, xAI) carry the input rate in the write columns.
//! A tier's rates replace the base rates for the whole request when the
//! prompt exceeds its threshold.

use crate::price::{ModelPrice, PriceSource, Rates, Tier, TokenType};
use rust_decimal::Decimal;
use time::{Date, macros::format_description};

type R = [&'static str; 6];
type Row = (
    &'static str,
    &'static str,
    &'static str,
    R,
    &'static [(u64, R)],
);

const NO_TIERS: &[(u64, R)] = &[];

#[rustfmt::skip]
pub(crate) const ROWS: &[Row] = &[
    // OpenAI (prompt caching from 2024-10-01; writes bill as input).
    ("gpt-4o", "openai", "2024-05-13", ["5", "15", "", "5", "5", ""], NO_TIERS),
    ("gpt-4o", "openai", "2024-10-02", ["2.5", "10", "1.25", "2.5", "2.5", ""], NO_TIERS),
    ("gpt-4o-2024-05-13", "openai", "2024-05-13", ["5", "15", "", "5", "5", ""], NO_TIERS),
    ("gpt-4o-2024-08-06", "openai", "2024-08-06", ["2.5", "10", "1.25", "2.5", "2.5", ""], NO_TIERS),
    ("gpt-4o-mini", "openai", "2024-07-18", ["0.15", "0.6", "0.075", "0.15", "0.15", ""], NO_TIERS),
    ("gpt-4.1", "openai", "2025-04-14", ["2", "8", "0.5", "2", "2", ""], NO_TIERS),
    ("gpt-4.1-mini", "openai", "2025-04-14", ["0.4", "1.6", "0.1", "0.4", "0.4", ""], NO_TIERS),
    ("gpt-4.1-nano", "openai", "2025-04-14", ["0.1", "0.4", "0.025", "0.1", "0.1", ""], NO_TIERS),
    ("gpt-5", "openai", "2025-08-07", ["1.25", "10", "0.125", "1.25", "1.25", ""], NO_TIERS),
    ("gpt-5-mini", "openai", "2025-08-07", ["0.25", "2", "0.025", "0.25", "0.25", ""], NO_TIERS),
    ("gpt-5-nano", "openai", "2025-08-07", ["0.05", "0.4", "0.005", "0.05", "0.05", ""], NO_TIERS),
    ("o1", "openai", "2024-12-17", ["15", "60", "7.5", "15", "15", ""], NO_TIERS),
    ("o1-mini", "openai", "2024-09-12", ["3", "12", "1.5", "3", "3", ""], NO_TIERS),
    ("o1-mini", "openai", "2025-01-31", ["1.1", "4.4", "0.55", "1.1", "1.1", ""], NO_TIERS),
    ("o3", "openai", "2025-04-16", ["10", "40", "2.5", "10", "10", ""], NO_TIERS),
    ("o3", "openai", "2025-06-10", ["2", "8", "0.5", "2", "2", ""], NO_TIERS),
    ("o3-mini", "openai", "2025-01-31", ["1.1", "4.4", "0.55", "1.1", "1.1", ""], NO_TIERS),
    ("o4-mini", "openai", "2025-04-16", ["1.1", "4.4", "0.275", "1.1", "1.1", ""], NO_TIERS),
    // OpenAI legacy (the seed's table, with its dated history).
    ("gpt-4", "openai", "2023-03-14", ["30", "60", "", "30", "30", ""], NO_TIERS),
    ("gpt-4-32k", "openai", "2023-03-14", ["60", "120", "", "60", "60", ""], NO_TIERS),
    ("gpt-4-turbo", "openai", "2023-11-06", ["10", "30", "", "10", "10", ""], NO_TIERS),
    ("gpt-4-1106-preview", "openai", "2023-11-06", ["10", "30", "", "10", "10", ""], NO_TIERS),
    ("gpt-4-0125-preview", "openai", "2024-01-25", ["10", "30", "", "10", "10", ""], NO_TIERS),
    ("gpt-4-turbo-preview", "openai", "2024-01-25", ["10", "30", "", "10", "10", ""], NO_TIERS),
    ("gpt-3.5-turbo", "openai", "2023-03-01", ["2", "2", "", "2", "2", ""], NO_TIERS),
    ("gpt-3.5-turbo", "openai", "2023-06-13", ["1.5", "2", "", "1.5", "1.5", ""], NO_TIERS),
    ("gpt-3.5-turbo", "openai", "2023-11-06", ["1", "2", "", "1", "1", ""], NO_TIERS),
    ("gpt-3.5-turbo", "openai", "2024-01-25", ["0.5", "1.5", "", "0.5", "0.5", ""], NO_TIERS),
    ("gpt-3.5-turbo-0613", "openai", "2023-06-13", ["1.5", "2", "", "1.5", "1.5", ""], NO_TIERS),
    ("gpt-3.5-turbo-1106", "openai", "2023-11-06", ["1", "2", "", "1", "1", ""], NO_TIERS),
    ("gpt-3.5-turbo-16k", "openai", "2023-06-13", ["3", "4", "", "3", "3", ""], NO_TIERS),
    // Anthropic: 5-minute writes 1.25x input, 1-hour writes 2x, reads 0.1x.
    ("claude-opus-4-5", "anthropic", "2025-11-24", ["5", "25", "0.5", "6.25", "10", ""], NO_TIERS),
    ("claude-opus-4-1", "anthropic", "2025-08-05", ["15", "75", "1.5", "18.75", "30", ""], NO_TIERS),
    ("claude-opus-4", "anthropic", "2025-05-22", ["15", "75", "1.5", "18.75", "30", ""], NO_TIERS),
    ("claude-sonnet-4-5", "anthropic", "2025-09-29", ["3", "15", "0.3", "3.75", "6", ""],
        &[(200_000, ["6", "22.5", "0.6", "7.5", "12", ""])]),
    ("claude-sonnet-4", "anthropic", "2025-05-22", ["3", "15", "0.3", "3.75", "6", ""],
        &[(200_000, ["6", "22.5", "0.6", "7.5", "12", ""])]),
    ("claude-3-7-sonnet", "anthropic", "2025-02-24", ["3", "15", "0.3", "3.75", "6", ""], NO_TIERS),
    ("claude-3-5-sonnet", "anthropic", "2024-06-20", ["3", "15", "0.3", "3.75", "6", ""], NO_TIERS),
    ("claude-haiku-4-5", "anthropic", "2025-10-15", ["1", "5", "0.1", "1.25", "2", ""], NO_TIERS),
    ("claude-3-5-haiku", "anthropic", "2024-11-04", ["0.8", "4", "0.08", "1", "1.6", ""], NO_TIERS),
    ("claude-3-opus", "anthropic", "2024-02-29", ["15", "75", "1.5", "18.75", "30", ""], NO_TIERS),
    ("claude-3-sonnet", "anthropic", "2024-02-29", ["3", "15", "0.3", "3.75", "6", ""], NO_TIERS),
    ("claude-3-haiku", "anthropic", "2024-03-07", ["0.25", "1.25", "0.03", "0.3", "0.5", ""], NO_TIERS),
    // Google Gemini (thinking tokens bill as output; implicit cache writes as input).
    ("gemini-3-pro-preview", "google", "2025-11-18", ["2", "12", "0.2", "2", "2", ""],
        &[(200_000, ["4", "18", "0.4", "4", "4", ""])]),
    ("gemini-2.5-pro", "google", "2025-06-17", ["1.25", "10", "0.125", "1.25", "1.25", ""],
        &[(200_000, ["2.5", "15", "0.25", "2.5", "2.5", ""])]),
    ("gemini-2.5-flash", "google", "2025-06-17", ["0.3", "2.5", "0.03", "0.3", "0.3", ""], NO_TIERS),
    ("gemini-2.5-flash-lite", "google", "2025-07-22", ["0.1", "0.4", "0.01", "0.1", "0.1", ""], NO_TIERS),
    ("gemini-2.0-flash", "google", "2025-02-05", ["0.1", "0.4", "0.025", "0.1", "0.1", ""], NO_TIERS),
    ("gemini-2.0-flash-lite", "google", "2025-02-25", ["0.075", "0.3", "", "0.075", "0.075", ""], NO_TIERS),
    ("gemini-1.5-pro", "google", "2024-10-01", ["1.25", "5", "0.3125", "1.25", "1.25", ""],
        &[(128_000, ["2.5", "10", "0.625", "2.5", "2.5", ""])]),
    ("gemini-1.5-flash", "google", "2024-08-12", ["0.075", "0.3", "0.01875", "0.075", "0.075", ""],
        &[(128_000, ["0.15", "0.6", "0.0375", "0.15", "0.15", ""])]),
    // Mistral.
    ("mistral-large", "mistral", "2024-07-24", ["3", "9", "", "", "", ""], NO_TIERS),
    ("mistral-large", "mistral", "2024-11-18", ["2", "6", "", "", "", ""], NO_TIERS),
    // Mistral Large 3 (`mistral-large-2512`, now `mistral-large-latest`).
    ("mistral-large", "mistral", "2025-12-02", ["0.5", "1.5", "", "", "", ""], NO_TIERS),
    // Snapshots keep their own price when the family moves on.
    ("mistral-large-2407", "mistral", "2024-07-24", ["3", "9", "", "", "", ""], NO_TIERS),
    ("mistral-large-2411", "mistral", "2024-11-18", ["2", "6", "", "", "", ""], NO_TIERS),
    ("mistral-medium", "mistral", "2025-05-07", ["0.4", "2", "", "", "", ""], NO_TIERS),
    ("mistral-small", "mistral", "2024-09-17", ["0.2", "0.6", "", "", "", ""], NO_TIERS),
    ("mistral-small", "mistral", "2025-03-17", ["0.1", "0.3", "", "", "", ""], NO_TIERS),
    ("codestral", "mistral", "2025-01-13", ["0.3", "0.9", "", "", "", ""], NO_TIERS),
    ("ministral-8b", "mistral", "2024-10-16", ["0.1", "0.1", "", "", "", ""], NO_TIERS),
    ("ministral-3b", "mistral", "2024-10-16", ["0.04", "0.04", "", "", "", ""], NO_TIERS),
    ("open-mistral-nemo", "mistral", "2024-07-18", ["0.15", "0.15", "", "", "", ""], NO_TIERS),
    ("pixtral-large", "mistral", "2024-11-18", ["2", "6", "", "", "", ""], NO_TIERS),
    ("magistral-medium", "mistral", "2025-06-10", ["2", "5", "", "", "", ""], NO_TIERS),
    ("magistral-small", "mistral", "2025-06-10", ["0.5", "1.5", "", "", "", ""], NO_TIERS),
    // Meta Llama through Groq.
    ("llama-3.3-70b-versatile", "groq", "2024-12-06", ["0.59", "0.79", "", "", "", ""], NO_TIERS),
    ("llama-3.1-8b-instant", "groq", "2024-07-23", ["0.05", "0.08", "", "", "", ""], NO_TIERS),
    ("meta-llama/llama-4-scout-17b-16e-instruct", "groq", "2025-04-05", ["0.11", "0.34", "", "", "", ""], NO_TIERS),
    ("meta-llama/llama-4-maverick-17b-128e-instruct", "groq", "2025-04-05", ["0.2", "0.6", "", "", "", ""], NO_TIERS),
    ("openai/gpt-oss-120b", "groq", "2025-08-05", ["0.15", "0.75", "", "", "", ""], NO_TIERS),
    ("openai/gpt-oss-20b", "groq", "2025-08-05", ["0.1", "0.5", "", "", "", ""], NO_TIERS),
    // Meta Llama and Amazon Nova through Bedrock (on-demand, us-east-1).
    ("meta.llama3-3-70b-instruct-v1:0", "bedrock", "2024-12-19", ["0.72", "0.72", "", "", "", ""], NO_TIERS),
    // Llama 3.1 405B and 70B launched at 5.32/16 and 0.99/0.99; the later
    // 2.4 and 0.72 prices are dated at the Llama 3.3 launch (see README).
    ("meta.llama3-1-405b-instruct-v1:0", "bedrock", "2024-07-23", ["5.32", "16", "", "", "", ""], NO_TIERS),
    ("meta.llama3-1-405b-instruct-v1:0", "bedrock", "2024-12-19", ["2.4", "2.4", "", "", "", ""], NO_TIERS),
    ("meta.llama3-1-70b-instruct-v1:0", "bedrock", "2024-07-23", ["0.99", "0.99", "", "", "", ""], NO_TIERS),
    ("meta.llama3-1-70b-instruct-v1:0", "bedrock", "2024-12-19", ["0.72", "0.72", "", "", "", ""], NO_TIERS),
    ("meta.llama3-1-8b-instruct-v1:0", "bedrock", "2024-07-23", ["0.22", "0.22", "", "", "", ""], NO_TIERS),
    ("meta.llama3-70b-instruct-v1:0", "bedrock", "2024-04-23", ["2.65", "3.5", "", "", "", ""], NO_TIERS),
    ("meta.llama3-8b-instruct-v1:0", "bedrock", "2024-04-23", ["0.3", "0.6", "", "", "", ""], NO_TIERS),
    ("meta.llama4-maverick-17b-instruct-v1:0", "bedrock", "2025-04-28", ["0.24", "0.97", "", "", "", ""], NO_TIERS),
    ("meta.llama4-scout-17b-instruct-v1:0", "bedrock", "2025-04-28", ["0.17", "0.66", "", "", "", ""], NO_TIERS),
    ("amazon.nova-pro-v1:0", "bedrock", "2024-12-03", ["0.8", "3.2", "0.2", "0.8", "0.8", ""], NO_TIERS),
    ("amazon.nova-lite-v1:0", "bedrock", "2024-12-03", ["0.06", "0.24", "0.015", "0.06", "0.06", ""], NO_TIERS),
    ("amazon.nova-micro-v1:0", "bedrock", "2024-12-03", ["0.035", "0.14", "0.00875", "0.035", "0.035", ""], NO_TIERS),
    // DeepSeek (cache hit = read, cache miss = input). The 2025-09-05 prices
    // start at 16:00 UTC that day; the night discount before it is not modelled.
    ("deepseek-chat", "deepseek", "2024-12-26", ["0.27", "1.1", "0.07", "0.27", "0.27", ""], NO_TIERS),
    ("deepseek-chat", "deepseek", "2025-09-05", ["0.56", "1.68", "0.07", "0.56", "0.56", ""], NO_TIERS),
    ("deepseek-chat", "deepseek", "2025-09-29", ["0.28", "0.42", "0.028", "0.28", "0.28", ""], NO_TIERS),
    ("deepseek-reasoner", "deepseek", "2025-01-20", ["0.55", "2.19", "0.14", "0.55", "0.55", ""], NO_TIERS),
    ("deepseek-reasoner", "deepseek", "2025-09-05", ["0.56", "1.68", "0.07", "0.56", "0.56", ""], NO_TIERS),
    ("deepseek-reasoner", "deepseek", "2025-09-29", ["0.28", "0.42", "0.028", "0.28", "0.28", ""], NO_TIERS),
    // xAI.
    ("grok-4", "xai", "2025-07-09", ["3", "15", "0.75", "3", "3", ""],
        &[(128_000, ["6", "30", "1.5", "6", "6", ""])]),
    ("grok-4-fast-reasoning", "xai", "2025-09-19", ["0.2", "0.5", "0.05", "0.2", "0.2", ""],
        &[(128_000, ["0.4", "1", "0.1", "0.4", "0.4", ""])]),
    ("grok-4-fast-non-reasoning", "xai", "2025-09-19", ["0.2", "0.5", "0.05", "0.2", "0.2", ""],
        &[(128_000, ["0.4", "1", "0.1", "0.4", "0.4", ""])]),
    ("grok-code-fast-1", "xai", "2025-08-28", ["0.2", "1.5", "0.02", "0.2", "0.2", ""], NO_TIERS),
    ("grok-3", "xai", "2025-04-09", ["3", "15", "0.75", "3", "3", ""], NO_TIERS),
    ("grok-3-mini", "xai", "2025-04-09", ["0.3", "0.5", "0.075", "0.3", "0.3", ""], NO_TIERS),
    // Cohere.
    ("command-a-03-2025", "cohere", "2025-03-13", ["2.5", "10", "", "", "", ""], NO_TIERS),
    ("command-r-plus", "cohere", "2024-08-30", ["2.5", "10", "", "", "", ""], NO_TIERS),
    ("command-r-plus-08-2024", "cohere", "2024-08-30", ["2.5", "10", "", "", "", ""], NO_TIERS),
    ("command-r", "cohere", "2024-08-30", ["0.15", "0.6", "", "", "", ""], NO_TIERS),
    ("command-r-08-2024", "cohere", "2024-08-30", ["0.15", "0.6", "", "", "", ""], NO_TIERS),
    ("command-r7b-12-2024", "cohere", "2024-12-13", ["0.0375", "0.15", "", "", "", ""], NO_TIERS),
];

/// A USD-per-million-tokens decimal string as an exact per-token rate.
pub(crate) fn per_token(per_mtok: &str) -> Option<Decimal> {
    if per_mtok.is_empty() {
        return None;
    }
    Decimal::from_str_exact(per_mtok)
        .ok()?
        .checked_div(Decimal::from(1_000_000u32))
}

/// The token type of each column of a rate array.
const COLUMNS: [TokenType; 6] = [
    TokenType::Input,
    TokenType::Output,
    TokenType::CacheRead,
    TokenType::CacheWrite5m,
    TokenType::CacheWrite1h,
    TokenType::Reasoning,
];

fn rates(r: &R) -> Rates {
    let mut rates = Rates::default();
    for (t, text) in COLUMNS.iter().zip(r.iter()) {
        rates.set(*t, per_token(text));
    }
    rates
}

pub(crate) fn parse_date(text: &str) -> Option<Date> {
    Date::parse(text, format_description!("[year]-[month]-[day]")).ok()
}

/// The table as prices. A malformed row is skipped; a unit test proves
/// there is none.
pub(crate) fn prices() -> Vec<ModelPrice> {
    ROWS.iter()
        .filter_map(|(model, provider, from, r, tiers)| {
            Some(ModelPrice {
                model: (*model).to_owned(),
                provider: (*provider).to_owned(),
                valid_from: parse_date(from)?,
                source: PriceSource::Builtin,
                rates: rates(r),
                tiers: tiers
                    .iter()
                    .map(|(above, r)| Tier {
                        above_input_tokens: *above,
                        rates: rates(r),
                    })
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_parses_with_input_and_output_rates() {
        let prices = prices();
        assert_eq!(prices.len(), ROWS.len());
        for (row, p) in ROWS.iter().zip(&prices) {
            for text in row.3.iter().chain(row.4.iter().flat_map(|t| t.1.iter())) {
                assert!(
                    text.is_empty() || per_token(text).is_some(),
                    "{}: {text}",
                    row.0
                );
            }
            assert!(
                p.rates.input.is_some() && p.rates.output.is_some(),
                "{}",
                p.model
            );
        }
    }
}
