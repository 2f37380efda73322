//! Custom price files from any text: our own format (TOML, or JSON with a
//! `prices` list / `aliases`) and LiteLLM's
//! `model_prices_and_context_window.json` table, told apart by content
//! (`Catalog::load_custom_prices`); the same text as a `MODEL_ALIASES`
//! list (`parse_aliases`). Whatever loads is then listed (`Catalog::models`,
//! rates per million tokens) and priced: every loaded model (up to 8), by
//! name and by alias, on two dates (one beyond year 9999 in UTC), with usages from empty to near the
//! 64-bit limit, one call at a time (`Catalog::price`) and as two calls
//! summed (`Catalog::price_calls`). Checked arithmetic, tiers and fallbacks
//! must never panic or overflow; costs must add up (see `charlie_fuzz`).
#![no_main]

use charlie_domain::TokenUsage;
use charlie_fuzz::{check_cost, check_priced_sum, tokens};
use charlie_pricing::{CallUsage, Catalog};
use libfuzzer_sys::fuzz_target;

const fn usage(
    input: u64,
    read: u64,
    write: u64,
    write_1h: u64,
    output: u64,
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

/// Usages that follow the convention, from nothing to near the 64-bit limit.
const USAGES: [TokenUsage; 5] = [
    usage(0, 0, 0, 0, 0, 0),
    usage(1_500, 600, 300, 100, 700, 200),
    usage(300_000, 100_000, 50_000, 50_000, 4_000, 0),
    usage(
        4_000_000_000,
        1_000_000_000,
        1_000_000_000,
        500_000_000,
        3_000_000_000,
        2_000_000_000,
    ),
    usage(
        u64::MAX / 2,
        u64::MAX / 8,
        u64::MAX / 8,
        u64::MAX / 16,
        u64::MAX / 2,
        u64::MAX / 4,
    ),
];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(pairs) = charlie_pricing::parse_aliases(text) {
        for (alias, model) in &pairs {
            assert!(!alias.is_empty() && alias.trim() == alias, "{pairs:?}");
            assert!(!model.is_empty() && model.trim() == model, "{pairs:?}");
        }
    }

    let Ok((catalog, summary)) = Catalog::empty().load_custom_prices(text) else {
        return;
    };
    let _ = summary.to_string();
    let models = catalog.models();
    assert_eq!(models.len(), summary.loaded, "{summary:?}");
    let aliases = catalog.aliases();
    assert!(aliases.len() <= summary.aliases, "{summary:?}");

    let dates = [
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
        // Beyond year 9999 once in UTC.
        time::macros::datetime!(9999-12-31 23:59:59 -01:00),
    ];
    let names = models
        .iter()
        .take(8)
        .map(|m| m.id.as_str())
        .chain(aliases.iter().take(4).map(|(a, _)| a.as_str()));
    for name in names {
        for at in dates {
            for u in &USAGES {
                let cost = catalog.price(Some(name), u, at);
                check_cost(&cost);
                check_priced_sum(&cost, tokens(u));
            }
        }
    }

    // Two calls summed: a combined cost.
    let first = models.first().map(|m| m.id.clone());
    let last = models.last().map(|m| m.id.clone());
    for u in &USAGES[3..] {
        let calls = [
            CallUsage {
                model: first.clone(),
                usage: *u,
            },
            CallUsage {
                model: last.clone(),
                usage: *u,
            },
        ];
        check_cost(&catalog.price_calls(&calls, dates[0]));
    }
});
