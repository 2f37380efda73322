//! Pricing: dated prices, matching, tiers, cache rates, custom files, aliases.

use charlie_domain::TokenUsage;
use charlie_pricing::{Catalog, Cost, PricingError, PricingStatus, parse_aliases, report};
use time::{OffsetDateTime, macros::datetime};

const AT: OffsetDateTime = datetime!(2025-12-01 12:00 UTC);

fn total(cost: &Cost) -> Option<String> {
    cost.total_usd.map(|u| u.to_string())
}

fn usage(
    input: u64,
    output: u64,
    cache_read: u64,
    cache_write: u64,
    cache_1h: u64,
    reasoning: u64,
) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: cache_read,
        cache_creation_input_tokens: cache_write,
        cache_creation_1h_input_tokens: cache_1h,
        reasoning_tokens: reasoning,
    }
}

#[test]
fn builtin_prices_match_models_by_every_rule() {
    let catalog = Catalog::builtin();
    let million = TokenUsage::new(1_000_000, 1_000_000);
    #[rustfmt::skip]
    let cases: &[(&str, OffsetDateTime, &str, &str)] = &[
        // model as written, when, matched key, USD for 1M in + 1M out
        ("gpt-4o", AT, "gpt-4o", "12.5"),
        ("gpt-4o", datetime!(2024-06-01 0:00 UTC), "gpt-4o", "20"),
        ("GPT-4o-2024-05-13", AT, "gpt-4o-2024-05-13", "20"),
        ("gpt-4o-2024-11-20", AT, "gpt-4o", "12.5"),
        ("openai/gpt-4o-mini", AT, "gpt-4o-mini", "0.75"),
        ("gpt-4-0613", AT, "gpt-4", "90"),
        ("gpt-3.5-turbo", datetime!(2023-07-01 0:00 UTC), "gpt-3.5-turbo", "3.5"),
        ("gpt-3.5-turbo", AT, "gpt-3.5-turbo", "2"),
        ("o3", datetime!(2025-05-01 0:00 UTC), "o3", "50"),
        ("o3-2025-04-16", AT, "o3", "10"),
        ("claude-3-5-sonnet-20241022", AT, "claude-3-5-sonnet", "18"),
        ("anthropic/claude-3-opus-20240229", AT, "claude-3-opus", "90"),
        ("claude-3-haiku-20240307", AT, "claude-3-haiku", "1.5"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", AT, "claude-3-5-sonnet", "18"),
        ("us.anthropic.claude-sonnet-4-20250514-v1:0", AT, "claude-sonnet-4", "28.5"), // 1M prompt: long-context tier
        ("global.anthropic.claude-sonnet-4-5-20250929-v1:0", AT, "claude-sonnet-4-5", "28.5"),
        ("apac.anthropic.claude-3-haiku-20240307-v1:0", AT, "claude-3-haiku", "1.5"),
        ("arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0", AT, "claude-3-haiku", "1.5"),
        ("claude-3-5-sonnet-v2@20241022", AT, "claude-3-5-sonnet", "18"),
        ("models/gemini-2.0-flash-001", AT, "gemini-2.0-flash", "0.5"),
        ("gemini-2.5-flash", AT, "gemini-2.5-flash", "2.8"),
        ("mistral-large-latest", AT, "mistral-large", "8"),
        ("mistral.mistral-large-2407-v1:0", datetime!(2024-09-01 0:00 UTC), "mistral-large-2407", "12"),
        ("mistral-large-latest", datetime!(2026-01-15 0:00 UTC), "mistral-large", "2"), // Mistral Large 3
        ("mistral-large-2411", datetime!(2026-01-15 0:00 UTC), "mistral-large-2411", "8"),
        ("meta.llama3-1-405b-instruct-v1:0", datetime!(2024-08-01 0:00 UTC), "meta.llama3-1-405b-instruct-v1:0", "21.32"),
        ("us.meta.llama3-1-405b-instruct-v1:0", AT, "meta.llama3-1-405b-instruct-v1:0", "4.8"),
        ("llama-3.3-70b-versatile", AT, "llama-3.3-70b-versatile", "1.38"),
        ("meta-llama/llama-4-scout-17b-16e-instruct", AT, "meta-llama/llama-4-scout-17b-16e-instruct", "0.45"),
        ("us.meta.llama3-3-70b-instruct-v1:0", AT, "meta.llama3-3-70b-instruct-v1:0", "1.44"),
        ("deepseek-chat", datetime!(2025-03-01 0:00 UTC), "deepseek-chat", "1.37"),
        ("deepseek-chat", AT, "deepseek-chat", "0.7"),
        ("grok-4-0709", AT, "grok-4", "36"), // above 128k: long-context tier
        ("xai/grok-3-mini", AT, "grok-3-mini", "0.8"),
    ];
    for (model, at, key, usd) in cases {
        let cost = catalog.price(Some(model), &million, *at);
        assert_eq!(cost.status, PricingStatus::Priced, "{model}: {cost:?}");
        assert_eq!(cost.matched_model.as_deref(), Some(*key), "{model}");
        assert_eq!(total(&cost).as_deref(), Some(*usd), "{model} at {at}");
        assert!(cost.warnings.is_empty(), "{model}: {:?}", cost.warnings);
    }
}

#[test]
fn anthropic_cache_reads_and_both_write_lifetimes_have_their_own_rates() {
    // Claude Sonnet 4: input 3, output 15, read 0.30, 5m write 3.75, 1h write 6 per million.
    let u = usage(15_021, 393, 12_000, 3_000, 2_000, 0);
    let cost = Catalog::builtin().price(Some("claude-sonnet-4-20250514"), &u, AT);
    // 21*3 + 12000*0.3 + 1000*3.75 + 2000*6 + 393*15 = 63 + 3600 + 3750 + 12000 + 5895 = 25308 per million
    assert_eq!(total(&cost).as_deref(), Some("0.025308"));
    let types: Vec<_> = cost
        .breakdown
        .iter()
        .map(|l| (l.token_type.as_str(), l.tokens))
        .collect();
    assert_eq!(
        types,
        [
            ("input", 21),
            ("cache_read", 12_000),
            ("cache_write_5m", 1_000),
            ("cache_write_1h", 2_000),
            ("output", 393)
        ]
    );
}

#[test]
fn long_context_tiers_bill_the_whole_request_above_the_threshold() {
    let catalog = Catalog::builtin();
    let small = catalog.price(
        Some("claude-sonnet-4"),
        &TokenUsage::new(200_000, 1_000),
        AT,
    );
    assert_eq!(total(&small).as_deref(), Some("0.615"));
    assert_eq!(small.long_context_above_input_tokens, None);
    let big = catalog.price(
        Some("claude-sonnet-4"),
        &TokenUsage::new(200_001, 1_000),
        AT,
    );
    assert_eq!(total(&big).as_deref(), Some("1.222506"));
    assert_eq!(big.long_context_above_input_tokens, Some(200_000));
    // Gemini 2.5 Pro above 200k: input 2.50, output 15, cached 0.25; thinking billed as output.
    let g = usage(250_000, 420, 200_000, 0, 0, 300);
    let cost = catalog.price(Some("gemini-2.5-pro"), &g, AT);
    // 50000*2.5 + 200000*0.25 + 120*15 + 300*15 = 125000 + 50000 + 1800 + 4500 per million
    assert_eq!(total(&cost).as_deref(), Some("0.1813"));
}

#[test]
fn openai_reasoning_and_cached_tokens_are_priced_once() {
    let u = usage(1117, 46, 1024, 0, 0, 10);
    let cost = Catalog::builtin().price(Some("gpt-4o-2024-08-06"), &u, AT);
    // 93*2.5 + 1024*1.25 + 46*10 = 232.5 + 1280 + 460 per million
    assert_eq!(total(&cost).as_deref(), Some("0.0019725"));
    let reasoning = cost
        .breakdown
        .iter()
        .find(|l| l.token_type.as_str() == "reasoning");
    assert_eq!(reasoning.map(|l| l.tokens), Some(10));
    assert!(cost.warnings.is_empty());
}

#[test]
fn unknown_or_missing_models_are_never_a_priced_zero() {
    let catalog = Catalog::builtin();
    let u = TokenUsage::new(10, 10);
    for model in [Some("my-local-llama"), Some(""), None] {
        let cost = catalog.price(model, &u, AT);
        assert_eq!(cost.status, PricingStatus::Unpriced, "{model:?}");
        assert_eq!(cost.total_usd, None);
        assert!(!cost.warnings.is_empty());
    }
    let early = catalog.price(Some("gpt-5"), &u, datetime!(2024-01-01 0:00 UTC));
    assert_eq!(early.status, PricingStatus::Unpriced);
    assert!(
        early.warnings[0].contains("2025-08-07"),
        "{:?}",
        early.warnings
    );
}

#[test]
fn missing_rates_fall_back_as_billed_or_make_the_cost_partial() -> Result<(), PricingError> {
    let catalog = Catalog::empty().with_custom_prices(
        r#"
        [[prices]]
        model = "house-model"
        input = "1"
        output = "2"

        [[prices]]
        model = "input-only"
        input = "1"
        "#,
    )?;
    let cached = usage(1_000_000, 0, 400_000, 0, 0, 0);
    let cost = catalog.price(Some("house-model"), &cached, AT);
    assert_eq!(cost.status, PricingStatus::Priced);
    assert_eq!(total(&cost).as_deref(), Some("1"));
    assert!(
        cost.warnings
            .iter()
            .any(|w| w.contains("cache_read") && w.contains("input rate")),
        "{:?}",
        cost.warnings
    );

    let partial = catalog.price(Some("input-only"), &TokenUsage::new(1_000_000, 5), AT);
    assert_eq!(partial.status, PricingStatus::Partial);
    assert_eq!(total(&partial).as_deref(), Some("1"));
    assert!(
        partial
            .warnings
            .iter()
            .any(|w| w.contains("no output rate"))
    );
    Ok(())
}

#[test]
fn custom_toml_beats_builtin_and_respects_dates() -> Result<(), PricingError> {
    let catalog = Catalog::builtin().with_custom_prices(
        r#"
        [aliases]
        prod-chat = "gpt-4o"

        [[prices]]
        model = "gpt-4o"
        provider = "openai"
        valid_from = "2025-06-01"
        input = "1"
        output = 4
        cache_read = 0.5

        [[prices]]
        model = "gpt-4o"
        valid_from = "2025-09-01"
        input = "0.5"
        output = "2"

        [[prices.long_context]]
        above_input_tokens = 100000
        input = "5"
        "#,
    )?;
    let m = TokenUsage::new(1_000_000, 1_000_000);
    let before = catalog.price(Some("gpt-4o"), &m, datetime!(2025-05-01 0:00 UTC));
    assert_eq!(total(&before).as_deref(), Some("12.5"));
    assert!(
        before
            .price_id
            .as_deref()
            .is_some_and(|id| id.starts_with("builtin:"))
    );
    let june = catalog.price(Some("prod-chat"), &m, datetime!(2025-07-01 0:00 UTC));
    assert_eq!(total(&june).as_deref(), Some("5"));
    assert_eq!(june.price_id.as_deref(), Some("custom:gpt-4o@2025-06-01"));
    // The newest custom price applies, with its long-context input rate.
    let late = catalog.price(Some("gpt-4o-2024-08-06"), &m, AT);
    assert_eq!(total(&late).as_deref(), Some("7"));
    let small = catalog.price(Some("gpt-4o"), &TokenUsage::new(100_000, 0), AT);
    assert_eq!(total(&small).as_deref(), Some("0.05"));
    Ok(())
}

#[test]
fn custom_json_in_our_format_is_detected() -> Result<(), PricingError> {
    let catalog = Catalog::empty().with_custom_prices(
        r#"{"aliases": {"eu-deploy": "house"}, "prices": [{"model": "house", "input": "0.1", "output": "0.2", "valid_from": "2025-01-01"}]}"#,
    )?;
    let cost = catalog.price(Some("EU-Deploy"), &TokenUsage::new(10_000_000, 0), AT);
    assert_eq!(total(&cost).as_deref(), Some("1"));
    Ok(())
}

const LITELLM: &str = r#"{
  "sample_spec": {"max_tokens": "LEGACY parameter", "input_cost_per_token": 0.0, "litellm_provider": "one of https://docs.litellm.ai/docs/providers"},
  "claude-sonnet-4-20250514": {
    "max_input_tokens": 1000000, "max_output_tokens": 64000,
    "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
    "cache_creation_input_token_cost": 3.75e-06, "cache_creation_input_token_cost_above_1hr": 6e-06,
    "cache_read_input_token_cost": 3e-07,
    "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
    "cache_read_input_token_cost_above_200k_tokens": 6e-07, "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
    "litellm_provider": "anthropic", "mode": "chat", "supports_prompt_caching": true
  },
  "azure/my-gpt": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05, "litellm_provider": "azure", "mode": "chat"},
  "o-reasoner": {"input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06, "output_cost_per_reasoning_token": 8e-06, "litellm_provider": "openai", "mode": "chat"},
  "dashscope/qwen-plus": {"litellm_provider": "dashscope", "mode": "chat",
    "tiered_pricing": [
      {"range": [0, 256000.0], "input_cost_per_token": 4e-07, "output_cost_per_token": 1.2e-06},
      {"range": [256000.0, 1000000.0], "input_cost_per_token": 1.2e-06, "output_cost_per_token": 3.6e-06}
    ]},
  "dall-e-3": {"input_cost_per_pixel": 1e-08, "litellm_provider": "openai", "mode": "image_generation"}
}"#;

#[test]
fn litellm_tables_are_read_with_cache_tiers_and_bands() -> Result<(), PricingError> {
    let catalog = Catalog::builtin().with_custom_prices(LITELLM)?;
    let c = catalog.price(
        Some("claude-sonnet-4-20250514"),
        &usage(15_021, 393, 12_000, 3_000, 2_000, 0),
        AT,
    );
    assert_eq!(total(&c).as_deref(), Some("0.025308"));
    assert!(
        c.price_id
            .as_deref()
            .is_some_and(|id| id.starts_with("custom:"))
    );
    let big = catalog.price(
        Some("claude-sonnet-4-20250514"),
        &TokenUsage::new(300_000, 1_000),
        AT,
    );
    assert_eq!(total(&big).as_deref(), Some("1.8225"));
    // Keys match as written and through the matching rules.
    for model in ["azure/my-gpt", "my-gpt", "AZURE/MY-GPT"] {
        let cost = catalog.price(Some(model), &TokenUsage::new(1_000_000, 0), AT);
        assert_eq!(total(&cost).as_deref(), Some("2.5"), "{model}");
    }
    let bedrock = catalog.price(
        Some("us.anthropic.claude-sonnet-4-20250514-v1:0"),
        &TokenUsage::new(1_000_000, 0),
        AT,
    );
    assert_eq!(
        bedrock.matched_model.as_deref(),
        Some("claude-sonnet-4-20250514")
    );
    let r = catalog.price(
        Some("o-reasoner"),
        &usage(0, 1_000_000, 0, 0, 0, 500_000),
        AT,
    );
    assert_eq!(total(&r).as_deref(), Some("6"));
    let low = catalog.price(Some("qwen-plus"), &TokenUsage::new(1_000_000, 0), AT);
    assert_eq!(total(&low).as_deref(), Some("1.2"));
    let band = catalog.price(Some("qwen-plus"), &TokenUsage::new(100_000, 1_000_000), AT);
    assert_eq!(total(&band).as_deref(), Some("1.24"));
    assert_eq!(
        catalog
            .price(Some("dall-e-3"), &TokenUsage::new(1, 1), AT)
            .status,
        PricingStatus::Unpriced
    );
    Ok(())
}

#[test]
fn bad_price_files_and_aliases_are_errors() {
    let bad: &[&str] = &[
        "[[prices]]\nmodel = \"x\"\ninput = \"abc\"",
        "[[prices]]\nmodel = \"x\"\ninput = \"-1\"",
        "[[prices]]\nmodel = \"x\"\nvalid_from = \"yesterday\"",
        "[[prices]\n",
        "{\"m\": {\"input_cost_per_token\": \"free\"}}",
        "{\"m\": {\"mode\": \"chat\"}}",
        "{not json",
    ];
    for text in bad {
        assert!(
            Catalog::builtin().with_custom_prices(text).is_err(),
            "{text}"
        );
    }
    assert!(parse_aliases("a=b,broken").is_err());
    assert!(parse_aliases("=b").is_err());
    assert_eq!(parse_aliases(" ").map(|v| v.len()), Ok(0));
}

#[test]
fn aliases_from_the_environment_format_route_to_models() -> Result<(), PricingError> {
    let pairs = parse_aliases("my-azure-deploy=gpt-4o,other=claude-sonnet-4")?;
    let catalog = Catalog::builtin().with_aliases(pairs);
    let cost = catalog.price(Some("my-azure-deploy"), &TokenUsage::new(1_000_000, 0), AT);
    assert_eq!(cost.matched_model.as_deref(), Some("gpt-4o"));
    assert_eq!(cost.model.as_deref(), Some("my-azure-deploy"));
    Ok(())
}

#[test]
fn the_extract_report_has_the_cli_shape() -> Result<(), Box<dyn std::error::Error>> {
    let body = br#"{"id":"chatcmpl-1","model":"gpt-4o-mini","usage":{"prompt_tokens":1000,"completion_tokens":200,"total_tokens":1200,"prompt_tokens_details":{"cached_tokens":0}}}"#;
    let out = serde_json::to_value(report(&Catalog::builtin(), body, AT)?)?;
    let expected = serde_json::json!({
        "model": "gpt-4o-mini",
        "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0, "reasoning_tokens": 0, "total_tokens": 1200},
        "cost": {
            "total_usd": "0.00027", "status": "priced", "model": "gpt-4o-mini", "matched_model": "gpt-4o-mini",
            "price_id": "builtin:gpt-4o-mini@2024-07-18", "valid_from": "2024-07-18",
            "long_context_above_input_tokens": null,
            "breakdown": [
                {"token_type": "input", "tokens": 1000, "usd_per_mtok": "0.15", "usd": "0.00015"},
                {"token_type": "output", "tokens": 200, "usd_per_mtok": "0.6", "usd": "0.00012"}
            ],
            "warnings": []
        },
        "warnings": []
    });
    assert_eq!(out, expected);
    Ok(())
}

#[test]
fn no_usage_found_reports_nulls_and_an_unpriced_cost() -> Result<(), Box<dyn std::error::Error>> {
    let body = br#"{"id":"chatcmpl-2","model":"gpt-4o","choices":[]}"#;
    let out = serde_json::to_value(report(&Catalog::builtin(), body, AT)?)?;
    assert_eq!(out["model"], "gpt-4o");
    assert_eq!(out["usage"], serde_json::Value::Null);
    assert_eq!(out["cost"]["status"], "unpriced");
    assert_eq!(out["cost"]["total_usd"], serde_json::Value::Null);
    assert!(report(&Catalog::builtin(), b"{oops", AT).is_err());
    Ok(())
}

#[test]
fn calls_to_several_models_are_priced_each_with_its_own() -> Result<(), Box<dyn std::error::Error>>
{
    let body = br#"{"messages":[
        {"id":"a","usage_metadata":{"input_tokens":1000000,"output_tokens":0},"response_metadata":{"model_name":"gpt-4o-mini"}},
        {"id":"b","usage_metadata":{"input_tokens":1000000,"output_tokens":0},"response_metadata":{"model_name":"claude-3-haiku-20240307"}},
        {"id":"c","usage_metadata":{"input_tokens":1000000,"output_tokens":0},"response_metadata":{"model_name":"unknown-model"}}
    ]}"#;
    let out = report(&Catalog::builtin(), body, AT)?;
    assert_eq!(out.cost.status, PricingStatus::Partial);
    assert_eq!(total(&out.cost).as_deref(), Some("0.4"));
    assert_eq!(out.cost.price_id, None);
    Ok(())
}

#[test]
fn the_model_listing_serializes_rates_per_million() -> Result<(), Box<dyn std::error::Error>> {
    let rows = Catalog::builtin().models();
    assert!(rows.len() > 80);
    let sonnet = rows
        .iter()
        .find(|r| r.id == "claude-sonnet-4")
        .ok_or("claude-sonnet-4 missing")?;
    let json = serde_json::to_value(sonnet)?;
    assert_eq!(json["provider"], "anthropic");
    assert_eq!(json["source"], "builtin");
    assert_eq!(json["valid_from"], "2025-05-22");
    assert_eq!(json["usd_per_mtok"]["cache_write_1h"], "6");
    assert_eq!(json["usd_per_mtok"]["reasoning"], serde_json::Value::Null);
    assert_eq!(json["long_context"][0]["above_input_tokens"], 200_000);
    assert_eq!(json["long_context"][0]["usd_per_mtok"]["output"], "22.5");
    for legacy in [
        "gpt-4",
        "gpt-4-turbo",
        "gpt-3.5-turbo",
        "claude-3-opus",
        "claude-3-sonnet",
        "claude-3-haiku",
    ] {
        assert!(rows.iter().any(|r| r.id == legacy), "{legacy}");
    }
    Ok(())
}

#[test]
fn the_catalog_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Catalog>();
}
