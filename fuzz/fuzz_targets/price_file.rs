//! Custom price files (our TOML/JSON and LiteLLM's table) from any text,
//! then pricing a large usage with whatever loaded: checked arithmetic and
//! tiers must never panic or overflow.
#![no_main]

use charlie_domain::TokenUsage;
use charlie_pricing::Catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((catalog, _)) = Catalog::empty().load_custom_prices(text) {
        let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let usage = TokenUsage {
            input_tokens: 4_000_000_000,
            output_tokens: 3_000_000_000,
            cache_read_input_tokens: 1_000_000_000,
            cache_creation_input_tokens: 1_000_000_000,
            cache_creation_1h_input_tokens: 500_000_000,
            reasoning_tokens: 2_000_000_000,
        };
        for info in catalog.models().into_iter().take(8) {
            let _ = catalog.price(Some(&info.id), &usage, at);
        }
    }
});
