//! LiteLLM's whole published price table (release 1.110.2, 4,878 entries):
//! it loads, skips what is not priced per token with a summary, and prices
//! its models exactly as the table says. See `fixtures/litellm/README.md`.

use charlie_domain::TokenUsage;
use charlie_pricing::{Catalog, Cost, PricingError, PricingStatus};
use std::io::Read;
use time::macros::datetime;

const AT: time::OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

fn table() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/litellm/model_prices_and_context_window-1.110.2.json.gz"
    );
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    text
}

fn usage(
    input: u64,
    output: u64,
    read: u64,
    write: u64,
    write_1h: u64,
    reasoning: u64,
) -> TokenUsage {
    TokenUsage {
        input_tokens: input,
        output_tokens: output,
        cache_read_input_tokens: read,
        cache_creation_input_tokens: write,
        cache_creation_1h_input_tokens: write_1h,
        reasoning_tokens: reasoning,
    }
}

fn total(c: &Cost) -> Option<String> {
    c.total_usd.map(|u| u.to_string())
}

#[test]
fn the_whole_table_loads_and_names_what_it_skips() -> Result<(), PricingError> {
    let (_, summary) = Catalog::builtin().load_custom_prices(&table())?;
    // Counted independently (README): entries with a non-null per-token
    // rate, a threshold rate or a token band; `sample_spec` is neither.
    assert_eq!(summary.loaded, 3994);
    assert_eq!(summary.skipped.len(), 4878 - 1 - 3994);
    for foreign in ["exa_ai/search", "aiml/dall-e-2"] {
        assert!(
            summary.skipped.iter().any(|s| s == foreign),
            "{foreign} should be skipped"
        );
    }
    let line = summary.to_string();
    assert!(
        line.starts_with(
            "3994 token-priced entries loaded; 883 entries without a per-token price skipped ("
        ),
        "{line}"
    );
    assert!(line.ends_with(", and 878 more)"), "{line}");
    assert_eq!(line.lines().count(), 1);
    Ok(())
}

#[test]
fn its_models_are_priced_as_the_table_says() -> Result<(), PricingError> {
    let catalog = Catalog::empty().with_custom_prices(&table())?;
    #[rustfmt::skip]
    let cases: &[(&str, TokenUsage, &str, &str)] = &[
        // gpt-4o: input 2.5e-06, cache read 1.25e-06, output 1e-05.
        // 600k × 2.5e-6 + 400k × 1.25e-6 + 100k × 1e-5
        ("gpt-4o", usage(1_000_000, 100_000, 400_000, 0, 0, 0), "3", "gpt-4o"),
        // claude-sonnet-4-5: input 3e-06, read 3e-07, write 3.75e-06, 1h write 6e-06, output 1.5e-05.
        // 30k × 3e-6 + 50k × 3e-7 + 10k × 3.75e-6 + 10k × 6e-6 + 10k × 1.5e-5
        ("claude-sonnet-4-5", usage(100_000, 10_000, 50_000, 20_000, 10_000, 0), "0.3525", "claude-sonnet-4-5"),
        // gemini-2.5-pro at or below 200k: input 1.25e-06, output 1e-05 (thinking billed as output).
        ("gemini-2.5-pro", usage(200_000, 1_000, 0, 0, 0, 400), "0.26", "gemini-2.5-pro"),
        // above 200k, the whole request: input 2.5e-06, read 2.5e-07, output 1.5e-05.
        // 200k × 2.5e-6 + 100k × 2.5e-7 + 10k × 1.5e-5
        ("gemini-2.5-pro", usage(300_000, 10_000, 100_000, 0, 0, 4_000), "0.675", "gemini-2.5-pro"),
        // Dashscope bands, (256k, 1M]: input 1.2e-06, output 3.6e-06, reasoning 1.2e-05.
        // 300k × 1.2e-6 + 5k × 3.6e-6 + 5k × 1.2e-5
        ("dashscope/qwen-plus-2025-07-28", usage(300_000, 10_000, 0, 0, 0, 5_000), "0.438", "dashscope/qwen-plus-2025-07-28"),
        // (0, 256k]: input 4e-07, output 1.2e-06, reasoning 4e-06; cache reads at the band's input rate.
        // 60k × 4e-7 + 40k × 4e-7 + 1k × 1.2e-6 + 1k × 4e-6
        ("dashscope/qwen-plus-2025-07-28", usage(100_000, 2_000, 40_000, 0, 0, 1_000), "0.0452", "dashscope/qwen-plus-2025-07-28"),
        // deepseek-chat: input 2.8e-07, read 2.8e-08, output 4.2e-07.
        // 200k × 2.8e-7 + 800k × 2.8e-8 + 1M × 4.2e-7
        ("deepseek-chat", usage(1_000_000, 1_000_000, 800_000, 0, 0, 0), "0.4984", "deepseek-chat"),
        // A provider-prefixed name finds its own entry.
        ("deepseek/deepseek-chat", usage(1_000_000, 0, 0, 0, 0, 0), "0.28", "deepseek/deepseek-chat"),
    ];
    for (model, u, want, matched) in cases {
        let cost = catalog.price(Some(model), u, AT);
        assert_eq!(
            cost.status,
            PricingStatus::Priced,
            "{model}: {:?}",
            cost.warnings
        );
        assert_eq!(total(&cost).as_deref(), Some(*want), "{model} {u:?}");
        assert_eq!(cost.matched_model.as_deref(), Some(*matched), "{model}");
    }
    // Search and image entries load as nothing: not priced, not an error.
    let search = catalog.price(Some("exa_ai/search"), &TokenUsage::new(10, 0), AT);
    assert_eq!(search.status, PricingStatus::Unpriced);
    Ok(())
}

#[test]
fn a_genuinely_broken_table_still_stops_with_the_entry_named() {
    let good = r#""gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05}"#;
    let cases = [
        (
            r#""bad-model": {"input_cost_per_token": -1e-06}"#,
            "bad-model",
        ),
        (
            r#""bad-model": {"output_cost_per_token": "cheap"}"#,
            "bad-model",
        ),
        (
            r#""bad-model": {"cache_read_input_token_cost": true}"#,
            "bad-model",
        ),
        (
            r#""bad-model": {"input_cost_per_token_above_200k_tokens": {"x": 1}}"#,
            "bad-model",
        ),
        (
            r#""bad-band": {"tiered_pricing": [{"range": ["a", 2], "input_cost_per_token": 1e-06}]}"#,
            "bad-band",
        ),
        (
            r#""bad-band": {"tiered_pricing": [{"input_cost_per_token": 1e-06}]}"#,
            "bad-band",
        ),
        (
            r#""bad-band": {"tiered_pricing": [{"range": [0, 10], "output_cost_per_token": -2}]}"#,
            "bad-band",
        ),
    ];
    for (entry, name) in cases {
        let text = format!("{{{good}, {entry}}}");
        match Catalog::builtin().with_custom_prices(&text) {
            Ok(_) => panic!("{entry} should be refused"),
            Err(e) => assert!(e.to_string().contains(name), "{entry}: {e}"),
        }
    }
    // Foreign shapes beside token prices are skipped, not refused.
    let foreign = format!(
        r#"{{{good}, "s": {{"tiered_pricing": [{{"input_cost_per_query": 0.005, "max_results_range": [0, 25]}}]}},
           "img": {{"output_cost_per_image": 0.04}}, "list": [1, 2], "odd": {{"tiered_pricing": "soon"}}}}"#
    );
    let loaded = Catalog::builtin().load_custom_prices(&foreign);
    let skipped = loaded.map(|(_, s)| s.skipped);
    assert_eq!(
        skipped,
        Ok(vec!["img".into(), "list".into(), "odd".into(), "s".into()])
    );
}
