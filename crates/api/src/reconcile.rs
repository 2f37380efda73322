//! `charlie-stats reconcile`: compare the provider's bill with our costs, per
//! UTC day and model.
//!
//! Accepted files:
//! - OpenAI: the Costs API page (`GET /v1/organization/costs` with
//!   `group_by=line_item`: `data[].start_time` (Unix seconds),
//!   `data[].results[].amount.value` (USD), `line_item` such as
//!   `"gpt-4o-2024-08-06, input"`), or the usage dashboard's cost CSV
//!   (`start_time,end_time,start_time_iso,end_time_iso,amount_value,
//!   amount_currency,line_item,project_id,organization_id,organization_name`;
//!   any header naming a day column (`start_time_iso`, `start_time`, `date`),
//!   an amount column (`amount_value`, `cost`, `amount`, `cost_usd`) and
//!   optionally a model column (`line_item`, `model`) is read).
//! - Anthropic: the Admin API cost report (`GET /v1/organizations/cost_report`
//!   with `group_by[]=description`: `data[].starting_at`,
//!   `data[].results[].amount` in cents as a decimal string, `model`), or the
//!   console's cost CSV (`usage_date_utc,model,workspace,api_key,usage_type,
//!   context_window,token_type,cost_usd,list_price_usd,cost_type,…`, the
//!   model as a display name such as `Claude Sonnet 4`; any header with a day
//!   column (`usage_date_utc`, `date`, `starting_at`), a USD amount column
//!   (`cost_usd`, `cost`, `amount_usd`) and `model` is read). `cost_usd` (what
//!   was billed) is compared, not `list_price_usd`; a row whose `cost_type`
//!   is not `token` is reported on a line of its own, e.g. `(web_search)`.
//!
//! A file without a model breakdown (OpenAI's export without
//! `group_by=line_item` has an empty `line_item`) is compared per day against
//! our total of every model that day, on a line whose model is
//! [`ALL_MODELS`]. A row with no amount (OpenAI's export writes one for a day
//! with no spend) counts as nothing.
//!
//! Models are compared on a key: lower case, without a trailing release date
//! (`-2024-08-06`, `-20250514`), so `gpt-4o-2024-08-06` and `gpt-4o` meet.

use charlie_domain::Usd;
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};

/// The provider of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Provider {
    Openai,
    Anthropic,
}

/// Provider cost per (day, model key), in nano-USD.
pub type Costs = BTreeMap<(Date, String), i64>;

/// The model key of a figure that covers every model of its day.
pub const ALL_MODELS: &str = "(all models)";

/// The key of a provider's model name; an empty one means every model.
fn provider_key(model: &str) -> String {
    if model.trim().is_empty() {
        ALL_MODELS.to_owned()
    } else {
        model_key(model)
    }
}

/// The comparison key of a model name. A console display name (with
/// spaces: Anthropic's cost export writes `Claude Sonnet 4`,
/// `Claude Haiku 4.5`) becomes the API id's stem (`claude-sonnet-4`,
/// `claude-haiku-4-5`).
pub fn model_key(model: &str) -> String {
    let m = model.trim().to_ascii_lowercase();
    if m.contains(char::is_whitespace) {
        return m
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-")
            .replace('.', "-");
    }
    let bytes = m.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    // `-YYYY-MM-DD`
    if bytes.len() > 11 {
        let tail = &bytes[bytes.len() - 11..];
        if tail[0] == b'-'
            && digits(&tail[1..5])
            && tail[5] == b'-'
            && digits(&tail[6..8])
            && tail[8] == b'-'
            && digits(&tail[9..11])
        {
            return m[..m.len() - 11].to_owned();
        }
    }
    // `-YYYYMMDD`
    if bytes.len() > 9 {
        let tail = &bytes[bytes.len() - 9..];
        if tail[0] == b'-' && digits(&tail[1..]) && tail[1] == b'2' {
            return m[..m.len() - 9].to_owned();
        }
    }
    m
}

fn nanos(d: Decimal) -> Result<i64, String> {
    Usd(d).to_nanos().map_err(|e| e.to_string())
}

fn decimal(v: &Value) -> Result<Decimal, String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("`{other}` is not an amount")),
    };
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map_err(|e| format!("`{text}` is not an amount: {e}"))
}

fn day_of(text: &str) -> Result<Date, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(secs)
            .map(OffsetDateTime::date)
            .map_err(|e| e.to_string());
    }
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        // `9999-12-31T23:59:59-01:00` is beyond year 9999 in UTC.
        return at
            .checked_to_offset(time::UtcOffset::UTC)
            .map(OffsetDateTime::date)
            .ok_or_else(|| format!("`{t}` is beyond year 9999 in UTC"));
    }
    let head = t.get(..10).unwrap_or(t);
    Date::parse(
        head,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| format!("`{t}` is not a date: {e}"))
}

/// The model of an OpenAI line item (`"gpt-4o-2024-08-06, input"`).
fn openai_model(line_item: &str) -> String {
    line_item
        .split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// Reads a provider export (JSON or CSV, told apart by its first character).
pub fn parse(provider: Provider, text: &str) -> Result<Costs, String> {
    if text.trim_start().starts_with('{') {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        parse_json(provider, &v)
    } else {
        parse_csv(provider, text)
    }
}

fn parse_json(provider: Provider, v: &Value) -> Result<Costs, String> {
    let mut out = Costs::new();
    let buckets = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or("no `data` array")?;
    for b in buckets {
        let results = b
            .get("results")
            .or_else(|| b.get("result"))
            .and_then(Value::as_array)
            .ok_or("a bucket has no `results`")?;
        match provider {
            Provider::Openai => {
                let start = b
                    .get("start_time")
                    .and_then(Value::as_i64)
                    .ok_or("a bucket has no `start_time`")?;
                let day = day_of(&start.to_string())?;
                for r in results {
                    let Some(amount) = r.get("amount") else {
                        continue;
                    };
                    let currency = amount
                        .get("currency")
                        .and_then(Value::as_str)
                        .unwrap_or("usd");
                    if !currency.eq_ignore_ascii_case("usd") {
                        return Err(format!("currency `{currency}` is not USD"));
                    }
                    let value = decimal(amount.get("value").unwrap_or(&Value::Null))?;
                    let model = r
                        .get("line_item")
                        .and_then(Value::as_str)
                        .map(openai_model)
                        .unwrap_or_default();
                    *out.entry((day, provider_key(&model))).or_default() += nanos(value)?;
                }
            }
            Provider::Anthropic => {
                let start = b
                    .get("starting_at")
                    .and_then(Value::as_str)
                    .ok_or("a bucket has no `starting_at`")?;
                let day = day_of(start)?;
                for r in results {
                    let currency = r.get("currency").and_then(Value::as_str).unwrap_or("USD");
                    if !currency.eq_ignore_ascii_case("usd") {
                        return Err(format!("currency `{currency}` is not USD"));
                    }
                    // Cents, as a decimal string.
                    let cents = decimal(r.get("amount").unwrap_or(&Value::Null))?;
                    let model = r.get("model").and_then(Value::as_str).unwrap_or_default();
                    *out.entry((day, provider_key(model))).or_default() +=
                        nanos(cents / Decimal::ONE_HUNDRED)?;
                }
            }
        }
    }
    Ok(out)
}

/// Splits CSV text into records (RFC 4180: quotes, doubled quotes, commas
/// and line breaks inside quotes).
pub fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                if record.iter().any(|f| !f.is_empty()) {
                    records.push(std::mem::take(&mut record));
                } else {
                    record.clear();
                }
            }
            _ => field.push(c),
        }
    }
    record.push(field);
    if record.iter().any(|f| !f.is_empty()) {
        records.push(record);
    }
    records
}

fn parse_csv(provider: Provider, text: &str) -> Result<Costs, String> {
    let records = csv_records(text.trim_start_matches('\u{feff}'));
    let (header, rows) = records.split_first().ok_or("empty file")?;
    let find = |names: &[&str]| {
        header.iter().position(|h| {
            let h = h.trim().to_ascii_lowercase();
            names.contains(&h.as_str())
        })
    };
    let (days, amounts, models) = match provider {
        Provider::Openai => (
            &["start_time_iso", "start_time", "date"][..],
            &["amount_value", "cost", "amount", "cost_usd"][..],
            &["line_item", "model"][..],
        ),
        Provider::Anthropic => (
            &["usage_date_utc", "date", "starting_at"][..],
            &["cost_usd", "cost", "amount_usd"][..],
            &["model"][..],
        ),
    };
    let day_col = find(days).ok_or_else(|| format!("no day column (one of {days:?})"))?;
    let amount_col =
        find(amounts).ok_or_else(|| format!("no amount column (one of {amounts:?})"))?;
    // Without a model column every row covers all models of its day.
    let model_col = find(models);
    let currency_col = find(&["amount_currency", "currency"]);
    // Anthropic's export: rows that are not token costs (`web_search`,
    // `code_execution`) have no model; each kind gets a line of its own.
    let cost_type_col = find(&["cost_type"]);
    let mut out = Costs::new();
    for (n, r) in rows.iter().enumerate() {
        let cell = |i: usize| r.get(i).map(String::as_str).unwrap_or_default();
        if let Some(c) = currency_col
            && !cell(c).is_empty()
            && !cell(c).eq_ignore_ascii_case("usd")
        {
            return Err(format!("line {}: currency `{}` is not USD", n + 2, cell(c)));
        }
        if cell(amount_col).trim().is_empty() {
            continue;
        }
        let day = day_of(cell(day_col)).map_err(|e| format!("line {}: {e}", n + 2))?;
        let amount = decimal(&Value::String(cell(amount_col).to_owned()))
            .map_err(|e| format!("line {}: {e}", n + 2))?;
        let model = match (provider, model_col) {
            (_, None) => String::new(),
            (Provider::Openai, Some(c)) => openai_model(cell(c)),
            (Provider::Anthropic, Some(c)) => cell(c).to_owned(),
        };
        let key = match cost_type_col.map(|c| cell(c).trim().to_ascii_lowercase()) {
            Some(kind) if !kind.is_empty() && kind != "token" && kind != "tokens" => {
                format!("({kind})")
            }
            _ => provider_key(&model),
        };
        *out.entry((day, key)).or_default() += nanos(amount)?;
    }
    Ok(out)
}

/// One line of the comparison, in nano-USD.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Line {
    pub date: String,
    pub model: String,
    pub provider_usd: String,
    pub ours_usd: String,
    /// `ours − provider`.
    pub difference_usd: String,
}

/// Compares the provider's figures with ours (ours restricted to the days
/// and models the provider file covers, plus our models on those days that
/// the provider did not bill). On a day the provider gives as one
/// [`ALL_MODELS`] figure, ours is every model's total that day.
pub fn compare(provider: &Costs, ours: &Costs) -> Vec<Line> {
    let whole_days: std::collections::BTreeSet<Date> = provider
        .keys()
        .filter(|(_, m)| m == ALL_MODELS)
        .map(|(d, _)| *d)
        .collect();
    let mut folded = Costs::new();
    for ((d, m), n) in ours {
        let model = if whole_days.contains(d) {
            ALL_MODELS
        } else {
            m.as_str()
        };
        *folded.entry((*d, model.to_owned())).or_default() += n;
    }
    let ours = &folded;
    let days: std::collections::BTreeSet<Date> = provider.keys().map(|(d, _)| *d).collect();
    let mut keys: std::collections::BTreeSet<(Date, String)> = provider.keys().cloned().collect();
    // Ours on those days, but not what cost nothing (user turns have no model).
    keys.extend(
        ours.iter()
            .filter(|((d, _), n)| days.contains(d) && **n != 0)
            .map(|(k, _)| k.clone()),
    );
    keys.into_iter()
        .map(|k| {
            let p = provider.get(&k).copied().unwrap_or(0);
            let o = ours.get(&k).copied().unwrap_or(0);
            Line {
                date: k.0.to_string(),
                model: k.1,
                provider_usd: Usd::from_nanos(p).to_string(),
                ours_usd: Usd::from_nanos(o).to_string(),
                difference_usd: Usd::from_nanos(o.saturating_sub(p)).to_string(),
            }
        })
        .collect()
}

/// The comparison as an aligned text table.
pub fn table(lines: &[Line]) -> String {
    let mut out = format!(
        "{:<10}  {:<32}  {:>14}  {:>14}  {:>14}\n",
        "date", "model", "provider_usd", "ours_usd", "difference_usd"
    );
    for l in lines {
        out.push_str(&format!(
            "{:<10}  {:<32}  {:>14}  {:>14}  {:>14}\n",
            l.date, l.model, l.provider_usd, l.ours_usd, l.difference_usd
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_keys_drop_release_dates() {
        assert_eq!(model_key("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(model_key("GPT-4o"), "gpt-4o");
        assert_eq!(model_key("claude-sonnet-4-20250514"), "claude-sonnet-4");
        assert_eq!(model_key("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(model_key("Claude Haiku 4.5"), "claude-haiku-4-5");
        assert_eq!(model_key("claude-haiku-4-5-20251001"), "claude-haiku-4-5");
        assert_eq!(model_key("Claude 3.5 Sonnet"), "claude-3-5-sonnet");
        assert_eq!(model_key("claude-3-5-sonnet-20241022"), "claude-3-5-sonnet");
        assert_eq!(
            openai_model("gpt-4o-2024-08-06, input"),
            "gpt-4o-2024-08-06"
        );
    }

    #[test]
    fn days_are_utc_and_out_of_range_ones_are_refused() {
        assert_eq!(
            day_of("2026-01-09T23:30:00-01:00"),
            Ok(time::macros::date!(2026 - 01 - 10))
        );
        assert_eq!(
            day_of("1767916800"),
            Ok(time::macros::date!(2026 - 01 - 09))
        );
        assert!(day_of("9999-12-31T23:59:59-01:00").is_err());
        let csv = "usage_date_utc,model,cost_usd\n9999-12-31T23:59:59-01:00,x,1\n";
        assert!(parse(Provider::Anthropic, csv).is_err());
    }

    #[test]
    fn csv_fields_may_be_quoted() {
        let r = csv_records("a,b\n\"x, y\",\"say \"\"hi\"\"\"\n");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], vec!["x, y".to_owned(), "say \"hi\"".to_owned()]);
    }
}
