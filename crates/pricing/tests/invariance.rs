//! Property tests: extraction does not depend on key order or whitespace, and
//! pricing is additive across calls for models without long-context tiers.

use charlie_domain::{TokenUsage, Usd};
use charlie_pricing::{CallUsage, Catalog, PricingStatus, extract_slice};
use proptest::prelude::*;
use rust_decimal::Decimal;
use time::{OffsetDateTime, macros::datetime};

/// A JSON value with keys in a chosen order.
#[derive(Debug, Clone)]
enum J {
    Null,
    Num(u64),
    Str(&'static str),
    Arr(Vec<J>),
    Obj(Vec<(&'static str, J)>),
}

/// Writes `v` as JSON, taking the whitespace between tokens from `ws` in
/// turn and reordering each object's keys by `seed`.
fn write(v: &J, ws: &[&str], seed: u64, at: &mut usize, out: &mut String) {
    fn gap(ws: &[&str], at: &mut usize, out: &mut String) {
        if !ws.is_empty() {
            out.push_str(ws[*at % ws.len()]);
            *at += 1;
        }
    }
    match v {
        J::Null => out.push_str("null"),
        J::Num(n) => out.push_str(&n.to_string()),
        J::Str(s) => out.push_str(&serde_json::to_string(s).unwrap_or_default()),
        J::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    gap(ws, at, out);
                    out.push(',');
                }
                gap(ws, at, out);
                write(item, ws, seed, at, out);
            }
            gap(ws, at, out);
            out.push(']');
        }
        J::Obj(fields) => {
            let mut order: Vec<&(&str, J)> = fields.iter().collect();
            order.sort_by_key(|(k, _)| mix(seed, k));
            out.push('{');
            for (i, (k, value)) in order.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                gap(ws, at, out);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                gap(ws, at, out);
                out.push(':');
                gap(ws, at, out);
                write(value, ws, seed.rotate_left(7), at, out);
                gap(ws, at, out);
            }
            out.push('}');
        }
    }
}

/// A key's place in the order chosen by `seed` (FNV-1a over the key, mixed).
fn mix(seed: u64, key: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for b in key.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

fn compact(v: &J) -> String {
    let mut out = String::new();
    write(v, &[], 0, &mut 0, &mut out);
    out
}

fn openai(prompt: u64, cached: u64, completion: u64, reasoning: u64) -> J {
    J::Obj(vec![
        ("id", J::Str("chatcmpl-1")),
        ("object", J::Str("chat.completion")),
        ("created", J::Num(1_741_569_952)),
        ("model", J::Str("gpt-4o-2024-08-06")),
        (
            "choices",
            J::Arr(vec![J::Obj(vec![
                ("index", J::Num(0)),
                (
                    "message",
                    J::Obj(vec![
                        ("role", J::Str("assistant")),
                        ("content", J::Str("Hello there, how may I help?")),
                        ("refusal", J::Null),
                    ]),
                ),
                ("logprobs", J::Null),
                ("finish_reason", J::Str("stop")),
            ])]),
        ),
        (
            "usage",
            J::Obj(vec![
                ("prompt_tokens", J::Num(prompt)),
                ("completion_tokens", J::Num(completion)),
                ("total_tokens", J::Num(prompt + completion)),
                (
                    "prompt_tokens_details",
                    J::Obj(vec![
                        ("cached_tokens", J::Num(cached)),
                        ("audio_tokens", J::Num(0)),
                    ]),
                ),
                (
                    "completion_tokens_details",
                    J::Obj(vec![
                        ("reasoning_tokens", J::Num(reasoning)),
                        ("audio_tokens", J::Num(0)),
                    ]),
                ),
            ]),
        ),
        ("system_fingerprint", J::Str("fp_44709d6fcb")),
    ])
}

fn anthropic(input: u64, read: u64, write_5m: u64, write_1h: u64, output: u64) -> J {
    J::Obj(vec![
        ("id", J::Str("msg_01")),
        ("type", J::Str("message")),
        ("role", J::Str("assistant")),
        ("model", J::Str("claude-sonnet-4-20250514")),
        (
            "content",
            J::Arr(vec![J::Obj(vec![
                ("type", J::Str("text")),
                ("text", J::Str("Hi!")),
            ])]),
        ),
        ("stop_reason", J::Str("end_turn")),
        ("stop_sequence", J::Null),
        (
            "usage",
            J::Obj(vec![
                ("input_tokens", J::Num(input)),
                ("cache_read_input_tokens", J::Num(read)),
                ("cache_creation_input_tokens", J::Num(write_5m + write_1h)),
                (
                    "cache_creation",
                    J::Obj(vec![
                        ("ephemeral_5m_input_tokens", J::Num(write_5m)),
                        ("ephemeral_1h_input_tokens", J::Num(write_1h)),
                    ]),
                ),
                ("output_tokens", J::Num(output)),
                ("service_tier", J::Str("standard")),
            ]),
        ),
    ])
}

fn payload() -> impl Strategy<Value = J> {
    let n = 0u64..5_000_000;
    prop_oneof![
        (n.clone(), n.clone(), n.clone(), n.clone()).prop_map(|(a, b, c, d)| {
            // cached <= prompt, reasoning <= completion
            openai(a.max(b), a.min(b), c.max(d), c.min(d))
        }),
        (n.clone(), n.clone(), n.clone(), n.clone(), n)
            .prop_map(|(i, r, w5, w1, o)| anthropic(i, r, w5, w1, o)),
    ]
}

fn whitespace() -> impl Strategy<Value = Vec<&'static str>> {
    prop::collection::vec(
        prop::sample::select(vec!["", " ", "  ", "\n", "\t", "\r\n", "\n    "]),
        1..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn extraction_ignores_key_order_and_whitespace(
        v in payload(),
        ws in whitespace(),
        seed in any::<u64>(),
    ) {
        let plain = extract_slice(compact(&v).as_bytes());
        let mut text = String::new();
        write(&v, &ws, seed, &mut 0, &mut text);
        let shuffled = extract_slice(text.as_bytes());
        prop_assert!(plain.is_ok(), "{plain:?}");
        prop_assert!(plain.as_ref().is_ok_and(|x| x.usage.is_some()));
        prop_assert_eq!(plain, shuffled, "{}", text);
    }
}

/// Built-in models whose prices have no long-context tier.
const FLAT: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-5",
    "o3",
    "o4-mini",
    "claude-3-5-sonnet-20241022",
    "claude-opus-4-1",
    "claude-haiku-4-5",
    "claude-3-haiku-20240307",
    "gemini-2.5-flash",
    "gemini-2.0-flash-lite",
    "mistral-large-latest",
    "deepseek-chat",
    "grok-3-mini",
    "llama-3.3-70b-versatile",
    "us.meta.llama3-1-70b-instruct-v1:0",
];

fn usage() -> impl Strategy<Value = TokenUsage> {
    let n = 0u64..2_000_000_000;
    (n.clone(), n.clone(), n.clone(), n.clone(), n.clone(), n).prop_map(
        |(input, a, b, c, output, d)| {
            // Subsets that fit: read + write <= input, 1h <= write, reasoning <= output.
            let read = a % (input + 1);
            let write = b % (input - read + 1);
            TokenUsage {
                input_tokens: input,
                output_tokens: output,
                cache_read_input_tokens: read,
                cache_creation_input_tokens: write,
                cache_creation_1h_input_tokens: c % (write + 1),
                reasoning_tokens: d % (output + 1),
            }
        },
    )
}

fn when() -> impl Strategy<Value = OffsetDateTime> {
    // 2025-11-01 .. 2026-06-01: every model in FLAT has a price in force.
    (0i64..212 * 86_400).prop_map(|s| datetime!(2025-11-01 0:00 UTC) + time::Duration::seconds(s))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pricing_is_additive_across_calls_without_tiers(
        ma in prop::sample::select(FLAT),
        mb in prop::sample::select(FLAT),
        a in usage(),
        b in usage(),
        at in when(),
    ) {
        let catalog = Catalog::builtin();
        let ca = catalog.price(Some(ma), &a, at);
        let cb = catalog.price(Some(mb), &b, at);
        prop_assert_eq!(ca.status, PricingStatus::Priced, "{:?}", ca);
        prop_assert_eq!(cb.status, PricingStatus::Priced, "{:?}", cb);
        let calls = [
            CallUsage { model: Some(ma.to_owned()), usage: a },
            CallUsage { model: Some(mb.to_owned()), usage: b },
        ];
        let both = catalog.price_calls(&calls, at);
        prop_assert_eq!(both.status, PricingStatus::Priced);
        let (Some(x), Some(y), Some(sum)) = (ca.total_usd, cb.total_usd, both.total_usd) else {
            return Err(TestCaseError::fail("a priced cost has no amount"));
        };
        let expected = Usd((x.0 + y.0).normalize());
        prop_assert_eq!(sum, expected);
        prop_assert_eq!(sum.to_string(), expected.to_string());
        // The breakdown is the two breakdowns, one after the other.
        prop_assert_eq!(both.breakdown.len(), ca.breakdown.len() + cb.breakdown.len());
        let lines: Decimal = both.breakdown.iter().filter_map(|l| l.usd).map(|u| u.0).sum();
        prop_assert_eq!(lines, sum.0);
        // The same model twice: one call of the summed usage costs the same.
        if ma == mb && let Ok(ab) = a.checked_add(&b) {
            let one = catalog.price(Some(ma), &ab, at);
            prop_assert_eq!(one.total_usd, Some(sum));
        }
    }
}

/// `report` prices what it extracts without copying it; the result is what
/// extracting and then pricing the extraction gives, for every fixture.
#[test]
fn report_equals_extract_then_price() {
    let catalog = Catalog::builtin();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        for at in [
            datetime!(2024-06-01 0:00 UTC),
            datetime!(2025-12-01 0:00 UTC),
        ] {
            let report = charlie_pricing::report(&catalog, &bytes, at);
            let manual = extract_slice(&bytes).map(|x| charlie_pricing::UsageReport {
                cost: catalog.price_extraction(&x, at),
                model: x.model,
                usage: x.usage,
                warnings: x.warnings,
            });
            assert_eq!(report, manual, "{}", entry.path().display());
        }
        seen += 1;
    }
    assert!(seen >= 30, "{seen} fixtures");
}
