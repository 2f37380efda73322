//! Extraction from realistic payloads of every supported format, one line per case.

use charlie_domain::TokenUsage;
use charlie_pricing::{ExtractError, extract, extract_slice};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (input, output, cache read, cache write, of which 1h, reasoning)
type Counts = (u64, u64, u64, u64, u64, u64);

fn usage((i, o, cr, cw, cw1h, r): Counts) -> TokenUsage {
    TokenUsage {
        input_tokens: i,
        output_tokens: o,
        cache_read_input_tokens: cr,
        cache_creation_input_tokens: cw,
        cache_creation_1h_input_tokens: cw1h,
        reasoning_tokens: r,
    }
}

#[rustfmt::skip]
const CASES: &[(&str, Option<&str>, Counts, usize)] = &[
    // fixture, model, usage, distinct calls
    ("openai_chat.json", Some("gpt-4o-2024-08-06"), (1117, 46, 1024, 0, 0, 0), 1),
    ("openai_stream.json", Some("o3-mini-2025-01-31"), (20, 198, 0, 0, 0, 192), 1),
    ("openai_responses.json", Some("o4-mini-2025-04-16"), (328, 452, 128, 0, 0, 384), 1),
    ("responses_stream.json", Some("gpt-4.1-2025-04-14"), (37, 11, 0, 0, 0, 0), 1),
    ("azure_chat.json", Some("gpt-4o-2024-11-20"), (19, 10, 0, 0, 0, 0), 1),
    ("anthropic_message.json", Some("claude-sonnet-4-20250514"), (15021, 393, 12000, 3000, 2000, 0), 1),
    ("anthropic_stream.json", Some("claude-3-5-sonnet-20241022"), (2073, 15, 2048, 0, 0, 0), 1),
    ("gemini.json", Some("gemini-2.5-pro"), (250000, 420, 200000, 0, 0, 300), 1),
    ("gemini_stream.json", Some("gemini-2.0-flash"), (9, 13, 0, 0, 0, 0), 1),
    ("vertex_python.json", Some("gemini-2.5-flash"), (31, 15, 0, 0, 0, 10), 1),
    ("bedrock_converse.json", None, (1530, 12, 1000, 500, 0, 0), 1),
    ("bedrock_converse_stream.json", None, (8, 3, 0, 0, 0, 0), 1),
    ("bedrock_invoke_anthropic.json", Some("claude-3-5-haiku-20241022"), (17, 42, 0, 0, 0, 0), 1),
    ("bedrock_invoke_headers_only.json", Some("meta.llama3-1-70b-instruct-v1:0"), (120, 35, 0, 0, 0, 0), 1),
    ("bedrock_llama.json", None, (18, 9, 0, 0, 0, 0), 1),
    ("bedrock_titan.json", None, (5, 30, 0, 0, 0, 0), 1),
    ("bedrock_invoke_stream.json", Some("claude-3-haiku-20240307"), (12, 9, 0, 0, 0, 0), 1),
    ("cohere_v2.json", None, (5, 418, 0, 0, 0, 0), 1),
    ("cohere_v1.json", None, (3, 7, 0, 0, 0, 0), 1),
    ("mistral.json", Some("mistral-small-latest"), (16, 34, 0, 0, 0, 0), 1),
    ("groq.json", Some("llama-3.3-70b-versatile"), (18, 556, 0, 0, 0, 0), 1),
    ("groq_stream.json", Some("llama-3.1-8b-instant"), (40, 9, 0, 0, 0, 0), 1),
    ("deepseek.json", Some("deepseek-reasoner"), (16, 110, 0, 0, 0, 96), 1),
    ("deepseek_cache.json", Some("deepseek-chat"), (1000, 50, 800, 0, 0, 0), 1),
    ("xai.json", Some("grok-3-mini"), (32, 103, 6, 0, 0, 94), 1),
    ("ollama.json", Some("llama3.2"), (26, 298, 0, 0, 0, 0), 1),
    ("ollama_stream.json", Some("llama3.2"), (26, 282, 0, 0, 0, 0), 1),
    ("langchain_aimessage.json", Some("gpt-4o-mini-2024-07-18"), (2008, 10, 1920, 0, 0, 0), 1),
    ("langchain_dumpd.json", Some("claude-3-7-sonnet-20250219"), (1509, 12, 0, 1500, 1500, 0), 1),
    ("langchain_llmresult.json", Some("gpt-4o-2024-08-06"), (14, 3, 0, 0, 0, 0), 1),
    ("langchain_response_metadata_only.json", Some("mistral-large-latest"), (11, 4, 0, 0, 0, 0), 1),
    ("langgraph_state.json", Some("gpt-4o-mini"), (240, 28, 0, 0, 0, 0), 2),
    ("langflow_run.json", Some("gpt-4o-mini"), (1200, 80, 0, 0, 0, 0), 1),
    ("langflow_run_two_llms.json", Some("gpt-4o-mini"), (1200, 150, 0, 0, 0, 0), 2),
    ("langflow_stream.json", Some("gpt-4o-mini"), (300, 12, 0, 0, 0, 0), 1),
    ("langflow_run_id_in_data.json", Some("gpt-4o-mini"), (10, 5, 0, 0, 0, 0), 1),
    // Anthropic, current API (recorded responses kept by the Vercel AI SDK).
    ("anthropic_code_execution_cache_stream.json", Some("claude-sonnet-5"), (9632, 198, 6289, 3337, 0, 0), 1),
    ("anthropic_web_search_stream.json", Some("claude-sonnet-4-20250514"), (15665, 795, 0, 0, 0, 0), 1),
    ("anthropic_message_delta_input_stream.json", Some("claude-opus-4-5-20251101"), (61, 2, 0, 0, 0, 0), 1),
    ("anthropic_thinking.json", Some("claude-opus-5"), (51, 1699, 0, 0, 0, 139), 1),
    ("anthropic_compaction.json", Some("claude-opus-4-6"), (61067, 1912, 0, 0, 0, 0), 1),
    ("anthropic_compaction_stream.json", Some("claude-opus-4-6"), (60997, 3341, 0, 0, 0, 0), 1),
    ("anthropic_fallback.json", Some("claude-opus-4-8"), (412, 264, 0, 0, 0, 0), 1),
    ("anthropic_fallback_stream.json", Some("claude-opus-4-8"), (412, 264, 0, 0, 0, 0), 1),
    ("anthropic_advisor.json", Some("claude-sonnet-4-6"), (5142, 4074, 0, 0, 0, 0), 2),
    ("anthropic_advisor_stream.json", Some("claude-sonnet-4-6"), (7455, 7271, 0, 0, 0, 0), 2),
    ("bedrock_converse_cache_ttl.json", None, (3012, 40, 0, 3000, 2000, 0), 1),
];

#[test]
fn every_format_extracts_the_normalized_usage() {
    for (name, model, counts, calls) in CASES {
        let bytes = fixture(name);
        let found = extract_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(found.usage, Some(usage(*counts)), "{name}");
        assert_eq!(found.model.as_deref(), *model, "{name}");
        assert_eq!(found.calls.len(), *calls, "{name}");
        if let Some(u) = found.usage {
            assert_eq!(u.validate(), Ok(()), "{name}");
        }
    }
}

#[test]
fn parsed_values_and_raw_bytes_give_the_same_result() {
    for (name, ..) in CASES {
        let bytes = fixture(name);
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(extract(&value), extract_slice(&bytes), "{name}");
    }
}

#[test]
fn distinct_llm_calls_keep_their_own_models() {
    let found =
        extract_slice(&fixture("langflow_run_two_llms.json")).unwrap_or_else(|e| panic!("{e}"));
    let models: Vec<_> = found.calls.iter().map(|c| c.model.as_deref()).collect();
    assert_eq!(
        models,
        [Some("gpt-4o-mini"), Some("claude-3-5-haiku-20241022")]
    );
    assert!(
        found.warnings.iter().any(|w| w.contains("several models")),
        "{:?}",
        found.warnings
    );
}

#[test]
fn two_messages_in_one_anthropic_stream_are_summed() {
    let stream = br#"[
      {"type":"message_start","message":{"id":"msg_a","model":"claude-haiku-4-5","usage":{"input_tokens":100,"output_tokens":1}}},
      {"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":40}},
      {"type":"message_stop"},
      {"type":"message_start","message":{"id":"msg_b","model":"claude-haiku-4-5","usage":{"input_tokens":180,"cache_read_input_tokens":100,"output_tokens":1}}},
      {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":25}},
      {"type":"message_stop"}
    ]"#;
    let found = extract_slice(stream).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.calls.len(), 2);
    let mut expected = TokenUsage::new(380, 65);
    expected.cache_read_input_tokens = 100;
    assert_eq!(found.usage, Some(expected));
}

#[test]
fn newer_anthropic_message_delta_with_cumulative_input_is_not_double_counted() {
    let stream = br#"[
      {"type":"message_start","message":{"id":"msg_c","model":"claude-sonnet-4-5","usage":{"input_tokens":50,"cache_read_input_tokens":1000,"output_tokens":1}}},
      {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":50,"cache_read_input_tokens":1000,"output_tokens":70}}
    ]"#;
    let found = extract_slice(stream).unwrap_or_else(|e| panic!("{e}"));
    let mut expected = TokenUsage::new(1050, 70);
    expected.cache_read_input_tokens = 1000;
    assert_eq!(found.usage, Some(expected));
}

#[test]
fn an_old_style_message_delta_keeps_message_start_input_and_cache() {
    // Before 2025 `message_delta` carried only `output_tokens`.
    let stream = br#"[
      {"type":"message_start","message":{"id":"msg_o","model":"claude-3-5-haiku-20241022","usage":{"input_tokens":40,"cache_read_input_tokens":900,"cache_creation_input_tokens":60,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":60},"output_tokens":1}}},
      {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":33}}
    ]"#;
    let found = extract_slice(stream).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.usage, Some(usage((1000, 33, 900, 60, 60, 0))));
}

#[test]
fn a_cumulative_message_delta_replaces_message_start_even_when_smaller() {
    // The delta's counts are the turn's; message_start's cache write was
    // re-reported as a read. Max would keep 3068 written and 6289 read.
    let stream = br#"[
      {"type":"message_start","message":{"id":"msg_r","model":"claude-sonnet-4-5","usage":{"input_tokens":2,"cache_creation_input_tokens":3068,"cache_read_input_tokens":0,"output_tokens":1}}},
      {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":6,"cache_creation_input_tokens":0,"cache_read_input_tokens":6289,"output_tokens":198}}
    ]"#;
    let found = extract_slice(stream).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.usage, Some(usage((6295, 198, 6289, 0, 0, 0))));
    // A delta stating only the input keeps message_start's cache parts.
    let stream = br#"[
      {"type":"message_start","message":{"id":"msg_s","usage":{"input_tokens":43,"cache_read_input_tokens":1000,"output_tokens":1}}},
      {"type":"message_delta","usage":{"input_tokens":61,"output_tokens":2}}
    ]"#;
    let found = extract_slice(stream).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.usage, Some(usage((1061, 2, 1000, 0, 0, 0))));
}

#[test]
fn anthropic_iterations_are_summed_by_type() {
    let with = |iterations: &str| {
        let body = format!(
            r#"{{"model":"claude-opus-4-6","usage":{{"input_tokens":100,"cache_read_input_tokens":50,"output_tokens":20,"output_tokens_details":{{"thinking_tokens":5}},"iterations":[{iterations}]}}}}"#
        );
        extract_slice(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"))
    };
    // compaction + message: the sum, cache parts included; thinking kept.
    let found = with(
        r#"{"type":"compaction","input_tokens":5000,"cache_read_input_tokens":0,"output_tokens":300},{"type":"message","input_tokens":100,"cache_read_input_tokens":50,"output_tokens":20}"#,
    );
    assert_eq!(found.usage, Some(usage((5150, 320, 50, 0, 0, 5))));
    // A fallback served the turn: the top level stands, the served model wins.
    let found = with(
        r#"{"type":"message","model":"claude-fable-5","input_tokens":90,"output_tokens":0},{"type":"fallback_message","model":"claude-opus-4-8","input_tokens":100,"cache_read_input_tokens":50,"output_tokens":20}"#,
    );
    assert_eq!(found.usage, Some(usage((150, 20, 50, 0, 0, 5))));
    assert_eq!(found.model.as_deref(), Some("claude-opus-4-8"));
    // An advisor iteration is a call of its own, at the advisor's model.
    let found = with(
        r#"{"type":"message","input_tokens":100,"cache_read_input_tokens":50,"output_tokens":20},{"type":"advisor_message","model":"claude-opus-4-7","input_tokens":700,"output_tokens":80}"#,
    );
    let calls: Vec<_> = found
        .calls
        .iter()
        .map(|c| (c.model.as_deref(), c.usage))
        .collect();
    assert_eq!(
        calls,
        [
            (Some("claude-opus-4-6"), usage((150, 20, 50, 0, 0, 5))),
            (Some("claude-opus-4-7"), usage((700, 80, 0, 0, 0, 0))),
        ]
    );
    // Unknown types only: the top level stands, with a warning.
    let found = with(r#"{"type":"future_kind","input_tokens":9,"output_tokens":9}"#);
    assert_eq!(found.usage, Some(usage((150, 20, 50, 0, 0, 5))));
    assert!(
        found.warnings.iter().any(|w| w.contains("future_kind")),
        "{:?}",
        found.warnings
    );
}

#[test]
fn responses_api_usage_is_not_mistaken_for_anthropic_thinking() {
    let found = extract_slice(
        br#"{"model":"o4-mini","usage":{"input_tokens":10,"input_tokens_details":{"cached_tokens":4},"output_tokens":9,"output_tokens_details":{"reasoning_tokens":6},"total_tokens":19}}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.usage, Some(usage((10, 9, 4, 0, 0, 6))));
}

#[test]
fn a_langflow_message_takes_its_model_from_the_source() {
    let found = extract_slice(
        br#"{"outputs":[{"outputs":[{"results":{"message":{"data":{"id":"m-1"},"properties":{"source":{"id":"LanguageModelComponent-x","display_name":"Language Model","source":"claude-haiku-4-5"},"usage":{"input_tokens":70,"output_tokens":9,"total_tokens":79}}}}}]}]}"#,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.model.as_deref(), Some("claude-haiku-4-5"));
    assert_eq!(found.calls.len(), 1);
}

#[test]
fn payloads_without_usage_are_not_errors_and_keep_the_model() {
    #[rustfmt::skip]
    let cases: &[(&[u8], Option<&str>)] = &[
        (br#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}"#, Some("gpt-4o")),
        (br#"{"outputs":[],"session_id":"s"}"#, None),
        (br#"[]"#, None),
        (br#"{}"#, None),
        (br#"null"#, None),
        (br#""just text""#, None),
        (br#"{"usage":{}}"#, None),
        (br#"{"properties":{"source":{"source":"gpt-4o-mini"},"usage":{"input_tokens":null,"output_tokens":null,"total_tokens":null}}}"#, Some("gpt-4o-mini")),
    ];
    for (bytes, model) in cases {
        let found = extract_slice(bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(bytes)));
        assert_eq!(found.usage, None, "{}", String::from_utf8_lossy(bytes));
        assert_eq!(
            found.model.as_deref(),
            *model,
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn the_seed_metadata_shapes_are_read() {
    let openai = extract_slice(br#"{"usage":{"prompt_tokens":12,"completion_tokens":5}}"#);
    assert_eq!(openai.map(|e| e.usage), Ok(Some(TokenUsage::new(12, 5))));
    let flat = extract_slice(br#"{"input_tokens":7,"output_tokens":3}"#);
    assert_eq!(flat.map(|e| e.usage), Ok(Some(TokenUsage::new(7, 3))));
}

#[test]
fn bad_counts_are_errors_that_name_the_field() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        (r#"{"usage":{"prompt_tokens":-5,"completion_tokens":1}}"#, "$.usage.prompt_tokens"),
        (r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":1}}"#, "$.usage.prompt_tokens"),
        (r#"{"usage":{"prompt_tokens":10,"completion_tokens":1.0}}"#, "$.usage.completion_tokens"),
        (r#"{"usage":{"prompt_tokens":"10","completion_tokens":1}}"#, "$.usage.prompt_tokens"),
        (r#"{"usage":{"prompt_tokens":18446744073709551616,"completion_tokens":1}}"#, "$.usage.prompt_tokens"),
        (r#"{"usage":{"prompt_tokens":1e3,"completion_tokens":1}}"#, "$.usage.prompt_tokens"),
        (r#"{"usage":{"prompt_tokens":true,"completion_tokens":1}}"#, "$.usage.prompt_tokens"),
        (r#"{"usage":{"prompt_tokens":5,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":-1}}}"#, "$.usage.prompt_tokens_details.cached_tokens"),
        (r#"{"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":"7"}}"#, "$.usageMetadata.candidatesTokenCount"),
        (r#"[{"type":"message_start","message":{"id":"m","usage":{"input_tokens":1,"output_tokens":-1}}}]"#, "$[0].message.usage.output_tokens"),
        (r#"{"outputs":[{"outputs":[{"results":{"message":{"properties":{"usage":{"input_tokens":2.5}}}}}]}]}"#, "$.outputs[0].outputs[0].results.message.properties.usage.input_tokens"),
        (r#"{"ResponseMetadata":{"HTTPHeaders":{"x-amzn-bedrock-input-token-count":"-3"}}}"#, "x-amzn-bedrock-input-token-count"),
    ];
    for (json, field) in cases {
        match extract_slice(json.as_bytes()) {
            Err(ExtractError::InvalidCount { path, .. }) => {
                assert!(path.contains(field), "{json}: {path}")
            }
            other => panic!("{json}: expected an invalid count, got {other:?}"),
        }
        let value: serde_json::Value =
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
        assert!(extract(&value).is_err(), "{json}");
    }
}

#[test]
fn sums_that_overflow_are_errors_not_wraps() {
    let max = u64::MAX;
    let single = format!(
        r#"{{"usage":{{"input_tokens":{max},"cache_read_input_tokens":1,"output_tokens":0}}}}"#
    );
    assert!(
        matches!(
            extract_slice(single.as_bytes()),
            Err(ExtractError::Overflow { .. })
        ),
        "{single}"
    );
    let two_calls = format!(
        r#"{{"messages":[{{"id":"a","usage_metadata":{{"input_tokens":{max},"output_tokens":0}}}},{{"id":"b","usage_metadata":{{"input_tokens":1,"output_tokens":0}}}}]}}"#
    );
    assert!(matches!(
        extract_slice(two_calls.as_bytes()),
        Err(ExtractError::Overflow { .. })
    ));
    let total = format!(r#"{{"usage":{{"prompt_tokens":{max},"completion_tokens":1}}}}"#);
    assert!(extract_slice(total.as_bytes()).is_err());
}

#[test]
fn inconsistent_subsets_are_errors() {
    let json = br#"{"usage":{"prompt_tokens":10,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":11}}}"#;
    assert!(matches!(
        extract_slice(json),
        Err(ExtractError::Inconsistent { .. })
    ));
}

#[test]
fn malformed_deep_and_huge_payloads_are_bounded_errors() {
    assert!(matches!(
        extract_slice(b"{\"usage\": {"),
        Err(ExtractError::Json(_))
    ));
    assert!(matches!(
        extract_slice(b"not json"),
        Err(ExtractError::Json(_))
    ));
    assert!(matches!(
        extract_slice(b"{} {}"),
        Err(ExtractError::Json(_))
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(
        extract_slice(deep.as_bytes()),
        Err(ExtractError::TooDeep { limit: 128 })
    );
    let deep_obj = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
    assert_eq!(
        extract_slice(deep_obj.as_bytes()),
        Err(ExtractError::TooDeep { limit: 128 })
    );
    let huge = vec![b' '; charlie_pricing::MAX_PAYLOAD_BYTES + 1];
    assert!(matches!(
        extract_slice(&huge),
        Err(ExtractError::TooLarge { .. })
    ));
}

#[test]
fn deep_values_built_in_code_are_bounded_too() {
    let mut v = serde_json::json!({"usage": {"prompt_tokens": 1, "completion_tokens": 1}});
    for _ in 0..300 {
        v = serde_json::json!([v]);
    }
    assert_eq!(extract(&v), Err(ExtractError::TooDeep { limit: 128 }));
}
