//! Property tests: no input, however malformed, makes extraction or pricing panic.

use charlie_domain::TokenUsage;
use charlie_pricing::{Catalog, extract, extract_slice, report};
use proptest::prelude::*;
use time::macros::datetime;

/// Arbitrary JSON, biased toward the keys extraction looks at.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let key = prop_oneof![
        Just("usage".to_string()),
        Just("usage_metadata".to_string()),
        Just("usageMetadata".to_string()),
        Just("prompt_tokens".to_string()),
        Just("completion_tokens".to_string()),
        Just("input_tokens".to_string()),
        Just("output_tokens".to_string()),
        Just("cache_read_input_tokens".to_string()),
        Just("cache_creation_input_tokens".to_string()),
        Just("cache_creation".to_string()),
        Just("ephemeral_1h_input_tokens".to_string()),
        Just("prompt_tokens_details".to_string()),
        Just("cached_tokens".to_string()),
        Just("promptTokenCount".to_string()),
        Just("thoughtsTokenCount".to_string()),
        Just("totalTokenCount".to_string()),
        Just("total_tokens".to_string()),
        Just("inputTokens".to_string()),
        Just("eval_count".to_string()),
        Just("billed_units".to_string()),
        Just("x-amzn-bedrock-input-token-count".to_string()),
        Just("id".to_string()),
        Just("model".to_string()),
        Just("properties".to_string()),
        Just("source".to_string()),
        Just("llm_output".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        (0u64..1000).prop_map(|n| serde_json::json!(n)),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        "[a-z0-9.-]{0,12}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = extract_slice(&bytes);
        let _ = report(&Catalog::builtin(), &bytes, datetime!(2025-06-01 0:00 UTC));
    }

    #[test]
    fn arbitrary_json_never_panics_and_both_paths_agree(value in json()) {
        let bytes = serde_json::to_vec(&value).unwrap_or_default();
        let from_bytes = extract_slice(&bytes);
        let from_value = extract(&value);
        prop_assert_eq!(&from_bytes, &from_value);
        if let Ok(found) = from_bytes {
            if let Some(u) = found.usage {
                prop_assert!(u.validate().is_ok());
            }
            let cost = Catalog::builtin().price_extraction(&found, datetime!(2025-06-01 0:00 UTC));
            if found.usage.is_none() {
                prop_assert!(cost.total_usd.is_none());
            }
        }
    }

    #[test]
    fn arbitrary_usage_and_model_names_price_without_panic(
        model in "[a-zA-Z0-9./:@_-]{0,60}",
        counts in prop::array::uniform6(any::<u64>()),
    ) {
        let u = TokenUsage {
            input_tokens: counts[0],
            output_tokens: counts[1],
            cache_read_input_tokens: counts[2],
            cache_creation_input_tokens: counts[3],
            cache_creation_1h_input_tokens: counts[4],
            reasoning_tokens: counts[5],
        };
        let _ = Catalog::builtin().price(Some(&model), &u, datetime!(2025-06-01 0:00 UTC));
        let _ = Catalog::builtin().price(Some("claude-sonnet-4"), &u, datetime!(2025-06-01 0:00 UTC));
    }

    #[test]
    fn arbitrary_price_files_never_panic(text in "\\PC{0,300}") {
        let _ = Catalog::builtin().with_custom_prices(&text);
        let _ = charlie_pricing::parse_aliases(&text);
    }
}
