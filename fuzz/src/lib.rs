//! Invariants the fuzz targets assert on what the code under test returns.
//! Each holds for every input by construction of that code; a failure is a
//! bug, not a strict check (see fuzz/README.md).

use charlie_domain::TokenUsage;
use charlie_pricing::{Cost, Extraction, PricingStatus};
use rust_decimal::Decimal;

/// An extraction's usage is the checked sum of its calls, every one of
/// which follows the convention (subsets within their parents); no calls,
/// no usage.
pub fn check_extraction(x: &Extraction) {
    assert_eq!(
        x.usage.is_some(),
        !x.calls.is_empty(),
        "usage without calls or calls without usage: {x:?}"
    );
    let mut sum: Option<TokenUsage> = None;
    for call in &x.calls {
        assert!(
            call.usage.validate().is_ok(),
            "a call breaks the convention: {call:?}"
        );
        sum = Some(match sum {
            None => call.usage,
            Some(s) => match s.checked_add(&call.usage) {
                Ok(t) => t,
                Err(e) => {
                    panic!("the calls' usages overflow ({e}) yet a total was returned: {x:?}")
                }
            },
        });
    }
    assert_eq!(sum, x.usage, "usage is not the sum of the calls");
}

/// Any cost: unpriced exactly when it has no amount; amounts never
/// negative; a line per token type with tokens; a priced cost has an
/// amount on every line.
pub fn check_cost(cost: &Cost) {
    assert_eq!(
        cost.status == PricingStatus::Unpriced,
        cost.total_usd.is_none(),
        "status and amount disagree: {cost:?}"
    );
    if let Some(total) = cost.total_usd {
        assert!(total.0 >= Decimal::ZERO, "negative total: {cost:?}");
    }
    for line in &cost.breakdown {
        assert!(line.tokens > 0, "a line without tokens: {cost:?}");
        if let Some(usd) = line.usd {
            assert!(usd.0 >= Decimal::ZERO, "negative line: {cost:?}");
        }
        if cost.status == PricingStatus::Priced {
            assert!(line.usd.is_some(), "priced with a line unpriced: {cost:?}");
        }
    }
}

/// A priced cost adds up: its total is the sum of its lines, and its lines
/// count every token of the usage priced (`input + output`), once.
///
/// Only for costs whose sum is exact: one call (`Catalog::price`, which sums
/// its lines the way this does), or several calls at rates small enough that
/// no sum is rounded (the built-in catalog's).
pub fn check_priced_sum(cost: &Cost, input_plus_output: u128) {
    if cost.status != PricingStatus::Priced {
        return;
    }
    let mut sum = Decimal::ZERO;
    let mut tokens = 0u128;
    for line in &cost.breakdown {
        if let Some(usd) = line.usd {
            sum = match sum.checked_add(usd.0) {
                Some(s) => s,
                None => panic!("priced, yet its lines overflow a decimal: {cost:?}"),
            };
        }
        tokens += u128::from(line.tokens);
    }
    assert_eq!(
        cost.total_usd.map(|t| t.0),
        Some(sum),
        "the total is not the sum of the lines: {cost:?}"
    );
    assert_eq!(
        tokens, input_plus_output,
        "the lines do not count input + output: {cost:?}"
    );
}

/// `input + output` of a usage, without overflow.
pub fn tokens(u: &TokenUsage) -> u128 {
    u128::from(u.input_tokens) + u128::from(u.output_tokens)
}
