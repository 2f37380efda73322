//! Token usage and model from the attributes of an OpenTelemetry span.
//!
//! The span conventions this reads, and how each counts (our convention is
//! in [`TokenUsage`]: input includes cache reads and writes, output includes
//! reasoning):
//!
//! | source | input | cache read | cache write | output | reasoning | model |
//! |---|---|---|---|---|---|---|
//! | GenAI semantic conventions (current) | `gen_ai.usage.input_tokens` (includes cached tokens) | `gen_ai.usage.cache_read.input_tokens` | `gen_ai.usage.cache_creation.input_tokens` | `gen_ai.usage.output_tokens` | `gen_ai.usage.reasoning.output_tokens` (Traceloop: `gen_ai.usage.reasoning_tokens`) | `gen_ai.response.model`, else `gen_ai.request.model` |
//! | GenAI, older names (OpenLLMetry before 2025) | `gen_ai.usage.prompt_tokens` | `gen_ai.usage.cache_read_input_tokens` | `gen_ai.usage.cache_creation_input_tokens` | `gen_ai.usage.completion_tokens` | `llm.usage.reasoning_tokens` | as above |
//! | OpenInference | `llm.token_count.prompt` (includes cache) | `llm.token_count.prompt_details.cache_read` | `llm.token_count.prompt_details.cache_write` | `llm.token_count.completion` | `llm.token_count.completion_details.reasoning` | `llm.model_name` |
//! | Langfuse (`langfuse.observation.usage_details`, a JSON string) | `input` + every `input_*` part (Langfuse's `input` excludes them) | `input_cache_read` | `input_cache_creation` / `input_cache_write` | `output` + every `output_*` part | `output_reasoning` | `langfuse.observation.model.name` |
//!
//! Langfuse usage details that are a provider's own usage object
//! (`prompt_tokens`, `input_tokens`, …) go through [`crate::extract`].
//!
//! Some emitters report an Anthropic-style input that leaves the cache out.
//! A GenAI usage whose cache parts exceed its input, or whose
//! `gen_ai.usage.total_tokens` equals input + output + cache parts, is read
//! that way and the cache parts are added to the input.
//!
//! A span that only states a total (`llm.usage.total_tokens`) cannot be
//! priced: its usage is not taken, and a warning says so.

use crate::ExtractError;
use charlie_domain::TokenUsage;

/// An attribute value as a span carries it (arrays and maps are not usage).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrValue<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
}

/// Which convention a span's usage was read with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageConvention {
    GenAi,
    GenAiLegacy,
    OpenInference,
    Langfuse,
}

/// What a span says about an LLM call.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanUsage {
    pub usage: TokenUsage,
    pub model: Option<String>,
    pub convention: UsageConvention,
    pub warnings: Vec<String>,
}

/// Reads a span's usage; `get` looks an attribute up by key. `Ok(None)`: the
/// span carries no usage it can be priced by (it is not an LLM call, or it
/// states only a total). `Err`: a count is negative, fractional or not a
/// number, naming the attribute.
pub fn span_usage<'a>(
    get: &dyn Fn(&str) -> Option<AttrValue<'a>>,
) -> Result<Option<SpanUsage>, ExtractError> {
    let model = [
        "gen_ai.response.model",
        "gen_ai.request.model",
        "llm.model_name",
    ]
    .into_iter()
    .find_map(|k| text(get(k)))
    .or_else(|| text(get("langfuse.observation.model.name")));
    let r = Reader { get };
    let mut warnings = Vec::new();

    let current = r.any(&["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"]);
    let legacy = r.any(&[
        "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens",
    ]);
    if current || legacy {
        let (input_key, output_key, convention) = if current {
            (
                "gen_ai.usage.input_tokens",
                "gen_ai.usage.output_tokens",
                UsageConvention::GenAi,
            )
        } else {
            (
                "gen_ai.usage.prompt_tokens",
                "gen_ai.usage.completion_tokens",
                UsageConvention::GenAiLegacy,
            )
        };
        let input = r.count(input_key)?.unwrap_or(0);
        let output = r.count(output_key)?.unwrap_or(0);
        let read = r
            .first(&[
                "gen_ai.usage.cache_read.input_tokens",
                "gen_ai.usage.cache_read_input_tokens",
            ])?
            .unwrap_or(0);
        let write = r
            .first(&[
                "gen_ai.usage.cache_creation.input_tokens",
                "gen_ai.usage.cache_write.input_tokens",
                "gen_ai.usage.cache_creation_input_tokens",
            ])?
            .unwrap_or(0);
        let reasoning = r
            .first(&[
                "gen_ai.usage.reasoning.output_tokens",
                "gen_ai.usage.reasoning_tokens",
                "llm.usage.reasoning_tokens",
            ])?
            .unwrap_or(0);
        let total = r.first(&["gen_ai.usage.total_tokens", "llm.usage.total_tokens"])?;
        let cache = add(read, write)?;
        let cache_left_out =
            cache > input || (cache > 0 && total == Some(add(add(input, output)?, cache)?));
        let input = if cache_left_out {
            add(input, cache)?
        } else {
            input
        };
        let usage = checked(TokenUsage {
            input_tokens: input,
            output_tokens: output.max(reasoning),
            cache_read_input_tokens: read,
            cache_creation_input_tokens: write,
            cache_creation_1h_input_tokens: 0,
            reasoning_tokens: reasoning,
        })?;
        if reasoning > output {
            warnings.push(format!(
                "reasoning tokens ({reasoning}) above the output ({output}): counted as output"
            ));
        }
        return Ok(Some(SpanUsage {
            usage,
            model,
            convention,
            warnings,
        }));
    }

    if r.any(&["llm.token_count.prompt", "llm.token_count.completion"]) {
        let usage = checked(TokenUsage {
            input_tokens: r.count("llm.token_count.prompt")?.unwrap_or(0),
            output_tokens: r.count("llm.token_count.completion")?.unwrap_or(0),
            cache_read_input_tokens: r
                .count("llm.token_count.prompt_details.cache_read")?
                .unwrap_or(0),
            cache_creation_input_tokens: r
                .count("llm.token_count.prompt_details.cache_write")?
                .unwrap_or(0),
            cache_creation_1h_input_tokens: 0,
            reasoning_tokens: r
                .count("llm.token_count.completion_details.reasoning")?
                .unwrap_or(0),
        })?;
        return Ok(Some(SpanUsage {
            usage,
            model,
            convention: UsageConvention::OpenInference,
            warnings,
        }));
    }

    if let Some(details) = text(get("langfuse.observation.usage_details")) {
        return langfuse_usage(&details, model);
    }
    Ok(None)
}

/// Langfuse's `usage_details`: its own keys (`input`, `input_cache_read`,
/// `output`, `output_reasoning`, …, where `input` and `output` leave the
/// detailed parts out) or a provider's usage object passed through.
fn langfuse_usage(details: &str, model: Option<String>) -> Result<Option<SpanUsage>, ExtractError> {
    let path = "langfuse.observation.usage_details";
    let value: serde_json::Value =
        serde_json::from_str(details).map_err(|e| ExtractError::InvalidCount {
            path: path.into(),
            reason: format!("not a JSON object: {e}"),
        })?;
    let Some(obj) = value.as_object() else {
        return Err(ExtractError::InvalidCount {
            path: path.into(),
            reason: "not a JSON object".into(),
        });
    };
    let own_keys = obj.contains_key("input") || obj.contains_key("output");
    if !own_keys {
        let found = crate::extract(&serde_json::json!({ "usage": value }))?;
        return Ok(found.usage.map(|usage| SpanUsage {
            usage,
            model,
            convention: UsageConvention::Langfuse,
            warnings: found.warnings,
        }));
    }
    let count = |key: &str| -> Result<u64, ExtractError> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                        .map(|f| f as u64)
                })
                .ok_or_else(|| ExtractError::InvalidCount {
                    path: format!("{path}.{key}"),
                    reason: format!("not a whole non-negative number: {v}"),
                }),
        }
    };
    let mut input = 0u64;
    let mut output = 0u64;
    for key in obj.keys() {
        if key == "input" || key.starts_with("input_") {
            input = add(input, count(key)?)?;
        } else if key == "output" || key.starts_with("output_") {
            output = add(output, count(key)?)?;
        }
    }
    let usage = checked(TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: count("input_cache_read")?,
        cache_creation_input_tokens: add(
            count("input_cache_creation")?,
            count("input_cache_write")?,
        )?,
        cache_creation_1h_input_tokens: 0,
        reasoning_tokens: count("output_reasoning")?,
    })?;
    Ok(Some(SpanUsage {
        usage,
        model,
        convention: UsageConvention::Langfuse,
        warnings: Vec::new(),
    }))
}

struct Reader<'g, 'a> {
    get: &'g dyn Fn(&str) -> Option<AttrValue<'a>>,
}

impl Reader<'_, '_> {
    fn any(&self, keys: &[&str]) -> bool {
        keys.iter().any(|k| (self.get)(k).is_some())
    }

    fn first(&self, keys: &[&str]) -> Result<Option<u64>, ExtractError> {
        for k in keys {
            if let Some(v) = self.count(k)? {
                return Ok(Some(v));
            }
        }
        Ok(None)
    }

    /// A token count: a non-negative integer, a whole double, or a string of
    /// digits (some SDKs stringify every attribute).
    fn count(&self, key: &str) -> Result<Option<u64>, ExtractError> {
        let bad = |reason: String| ExtractError::InvalidCount {
            path: key.to_owned(),
            reason,
        };
        match (self.get)(key) {
            None => Ok(None),
            Some(AttrValue::Int(i)) => u64::try_from(i)
                .map(Some)
                .map_err(|_| bad(format!("negative: {i}"))),
            Some(AttrValue::Double(f)) if f.fract() == 0.0 && (0.0..1.8e19).contains(&f) => {
                Ok(Some(f as u64))
            }
            Some(AttrValue::Double(f)) => Err(bad(format!("not a whole non-negative number: {f}"))),
            Some(AttrValue::Str(s)) if s.trim().is_empty() => Ok(None),
            Some(AttrValue::Str(s)) => s
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| bad(format!("not a whole non-negative number: {s:?}"))),
            Some(AttrValue::Bool(b)) => Err(bad(format!("a boolean: {b}"))),
        }
    }
}

fn text(v: Option<AttrValue<'_>>) -> Option<String> {
    match v {
        Some(AttrValue::Str(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn add(a: u64, b: u64) -> Result<u64, ExtractError> {
    a.checked_add(b).ok_or_else(|| ExtractError::Overflow {
        path: "span attributes".into(),
    })
}

fn checked(u: TokenUsage) -> Result<TokenUsage, ExtractError> {
    u.validate().map_err(|e| ExtractError::Inconsistent {
        path: "span attributes".into(),
        reason: e.to_string(),
    })?;
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(attrs: &[(&str, AttrValue<'static>)]) -> Option<SpanUsage> {
        let map: HashMap<&str, AttrValue<'static>> = attrs.iter().copied().collect();
        span_usage(&|k| map.get(k).copied()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn counts(u: &SpanUsage) -> (u64, u64, u64, u64, u64) {
        let t = u.usage;
        (
            t.input_tokens,
            t.output_tokens,
            t.cache_read_input_tokens,
            t.cache_creation_input_tokens,
            t.reasoning_tokens,
        )
    }

    use AttrValue::{Double, Int, Str};

    type Attrs = &'static [(&'static str, AttrValue<'static>)];
    /// Input, output, cache read, cache write, reasoning.
    type Counts = (u64, u64, u64, u64, u64);

    #[test]
    fn each_convention_reads_to_ours() {
        #[rustfmt::skip]
        let cases: &[(Attrs, Counts, Option<&str>)] = &[
            // Traceloop's OpenAI instrumentation: input includes the cached part.
            (&[("gen_ai.request.model", Str("gpt-4o-mini")), ("gen_ai.response.model", Str("gpt-4o-mini-2024-07-18")),
               ("gen_ai.usage.input_tokens", Int(1200)), ("gen_ai.usage.output_tokens", Int(300)),
               ("gen_ai.usage.cache_read.input_tokens", Int(1000)), ("gen_ai.usage.reasoning_tokens", Int(64))],
             (1200, 300, 1000, 0, 64), Some("gpt-4o-mini-2024-07-18")),
            // Anthropic-style: the cache parts exceed the input, so they were left out of it.
            (&[("gen_ai.request.model", Str("claude-haiku-4-5")), ("gen_ai.usage.input_tokens", Int(40)),
               ("gen_ai.usage.output_tokens", Int(10)), ("gen_ai.usage.cache_read.input_tokens", Int(900)),
               ("gen_ai.usage.cache_creation.input_tokens", Int(60))],
             (1000, 10, 900, 60, 0), Some("claude-haiku-4-5")),
            // ... or the total says so.
            (&[("gen_ai.usage.input_tokens", Int(500)), ("gen_ai.usage.output_tokens", Int(10)),
               ("gen_ai.usage.cache_read.input_tokens", Int(300)), ("gen_ai.usage.total_tokens", Int(810))],
             (800, 10, 300, 0, 0), None),
            // Older names, values as strings and whole doubles.
            (&[("gen_ai.request.model", Str("claude-haiku-4-5")), ("gen_ai.usage.prompt_tokens", Str("800")),
               ("gen_ai.usage.completion_tokens", Double(100.0)), ("llm.usage.total_tokens", Int(900))],
             (800, 100, 0, 0, 0), Some("claude-haiku-4-5")),
            // OpenInference.
            (&[("llm.model_name", Str("gpt-4.1-mini")), ("llm.token_count.prompt", Int(700)),
               ("llm.token_count.completion", Int(50)), ("llm.token_count.prompt_details.cache_read", Int(200)),
               ("llm.token_count.completion_details.reasoning", Int(20))],
             (700, 50, 200, 0, 20), Some("gpt-4.1-mini")),
            // Langfuse's own keys leave the detailed parts out of input and output.
            (&[("langfuse.observation.model.name", Str("gpt-4o")),
               ("langfuse.observation.usage_details", Str(r#"{"input":200,"input_cache_read":1000,"output":300,"output_reasoning":40,"total":1540}"#))],
             (1200, 340, 1000, 0, 40), Some("gpt-4o")),
            // Langfuse passing a provider's usage through.
            (&[("langfuse.observation.model.name", Str("gpt-4o")),
               ("langfuse.observation.usage_details", Str(r#"{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500}"#))],
             (1200, 300, 0, 0, 0), Some("gpt-4o")),
        ];
        for (attrs, want, model) in cases {
            let got = read(attrs).unwrap_or_else(|| panic!("no usage in {attrs:?}"));
            assert_eq!(counts(&got), *want, "{attrs:?}");
            assert_eq!(got.model.as_deref(), *model, "{attrs:?}");
        }
    }

    #[test]
    fn spans_without_usage_or_with_only_a_total_have_none() {
        assert_eq!(read(&[("http.method", Str("POST"))]), None);
        assert_eq!(read(&[("llm.usage.total_tokens", Int(900))]), None);
    }

    #[test]
    fn bad_counts_are_errors_naming_the_attribute() {
        for (key, value) in [
            ("gen_ai.usage.input_tokens", Int(-1)),
            ("gen_ai.usage.input_tokens", Double(1.5)),
            ("gen_ai.usage.input_tokens", Str("many")),
            ("gen_ai.usage.output_tokens", AttrValue::Bool(true)),
        ] {
            let Err(err) = span_usage(&|k| (k == key).then_some(value)) else {
                panic!("{key} = {value:?} was accepted");
            };
            assert!(err.to_string().contains(key), "{err}");
        }
        let Err(err) =
            span_usage(&|k| (k == "langfuse.observation.usage_details").then_some(Str("[1,2]")))
        else {
            panic!("usage details that are not an object were accepted");
        };
        assert!(err.to_string().contains("usage_details"), "{err}");
    }
}
