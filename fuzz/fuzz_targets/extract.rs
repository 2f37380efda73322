//! Usage extraction from any bytes, through every entry point of
//! `charlie-pricing`: `extract_slice` (the pruned streaming parse every
//! provider format, stream, LangChain and Langflow payload goes through),
//! `report` (the same, priced with the built-in catalog), `extract` on a
//! parsed `Value` (what the ingest item check calls) with
//! `Catalog::price_extraction`, and OpenTelemetry span attributes
//! (`otel::span_usage`) read from the same bytes as a flat JSON object and as
//! Langfuse's `usage_details` string.
//!
//! Must return a result or an error, never panic or overflow; what it returns
//! must follow the usage convention and add up (see `charlie_fuzz`).
#![no_main]

use charlie_fuzz::{check_cost, check_extraction, check_priced_sum, tokens};
use charlie_pricing::{
    Catalog,
    otel::{AttrValue, span_usage},
};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::builtin)
}

fuzz_target!(|data: &[u8]| {
    let at = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);

    // Bytes as an HTTP body: the pruned parse, then pricing.
    let sliced = charlie_pricing::extract_slice(data);
    if let Ok(x) = &sliced {
        check_extraction(x);
    }
    let reported = charlie_pricing::report(catalog(), data, at);
    match (&sliced, &reported) {
        (Ok(x), Ok(r)) => {
            assert_eq!((&x.usage, &x.model), (&r.usage, &r.model));
            check_cost(&r.cost);
            // The built-in rates are small enough that no sum is rounded.
            check_priced_sum(&r.cost, r.usage.as_ref().map_or(0, tokens));
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        _ => panic!("extract_slice and report disagree: {sliced:?} / {reported:?}"),
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The text as Langfuse's `usage_details` attribute.
    if let Ok(Some(span)) =
        span_usage(&|k| (k == "langfuse.observation.usage_details").then_some(AttrValue::Str(text)))
    {
        assert!(span.usage.validate().is_ok(), "{span:?}");
    }

    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    // A parsed value, as the ingest item check hands `llm_response` over.
    if let Ok(x) = charlie_pricing::extract(&value) {
        check_extraction(&x);
        let cost = catalog().price_extraction(&x, at);
        check_cost(&cost);
        check_priced_sum(&cost, x.usage.as_ref().map_or(0, tokens));
    }
    // The same object as a span's flat attribute map.
    if let serde_json::Value::Object(map) = &value {
        let get = |k: &str| match map.get(k)? {
            serde_json::Value::String(s) => Some(AttrValue::Str(s)),
            serde_json::Value::Bool(b) => Some(AttrValue::Bool(*b)),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(AttrValue::Int)
                .or_else(|| n.as_f64().map(AttrValue::Double)),
            _ => None,
        };
        if let Ok(Some(span)) = span_usage(&get) {
            assert!(span.usage.validate().is_ok(), "{span:?}");
        }
    }
});
