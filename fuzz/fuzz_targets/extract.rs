//! Usage extraction from any bytes: every provider format, streams, and
//! OpenTelemetry span attributes read from the same bytes as JSON. Must
//! return a result or an error, never panic or overflow.
#![no_main]

use charlie_pricing::otel::{AttrValue, span_usage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = charlie_pricing::extract_slice(data);
    // The same bytes as a flat attribute map, as an OTLP span carries it.
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data) {
        let get = |k: &str| match map.get(k)? {
            serde_json::Value::String(s) => Some(AttrValue::Str(s)),
            serde_json::Value::Bool(b) => Some(AttrValue::Bool(*b)),
            serde_json::Value::Number(n) => n
                .as_i64()
                .map(AttrValue::Int)
                .or_else(|| n.as_f64().map(AttrValue::Double)),
            _ => None,
        };
        let _ = span_usage(&get);
    }
});
