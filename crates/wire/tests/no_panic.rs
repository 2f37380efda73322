//! Property tests of the wire check: whatever JSON an item or its body is,
//! `parse_item` answers with an item or a coded error, never a panic, and an
//! accepted item holds what the check promises. The fuzz target
//! `fuzz/fuzz_targets/ingest_item.rs` explores the same function with
//! coverage feedback; this runs in every `cargo test`.

use charlie_domain::ingest::{Body, ItemType, MAX_ERROR_MESSAGE_CHARS};
use charlie_pricing::Catalog;
use charlie_wire::{MAX_FUTURE_SKEW, parse_item, raw_id, raw_type};
use proptest::prelude::*;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-03 12:00 UTC);
const ID: &str = "0192a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";

/// Arbitrary JSON, biased toward the field names items use.
fn json() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("id".to_string()),
        Just("type".to_string()),
        Just("timestamp".to_string()),
        Just("body".to_string()),
        Just("user_id".to_string()),
        Just("email".to_string()),
        Just("external_id".to_string()),
        Just("timezone".to_string()),
        Just("monthly_budget_usd".to_string()),
        Just("conversation_id".to_string()),
        Just("role".to_string()),
        Just("model".to_string()),
        Just("usage".to_string()),
        Just("input_tokens".to_string()),
        Just("output_tokens".to_string()),
        Just("llm_response".to_string()),
        Just("event_type".to_string()),
        Just("metadata".to_string()),
        Just("error_message".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(ID)),
        Just(json!("2026-12-01T10:00:00+01:00")),
        Just(json!("a@b.c")),
        Just(json!("user")),
        Just(json!("gpt-4o")),
        Just(json!("Europe/Paris")),
        "[a-z0-9.@:-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..7)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn item_type() -> impl Strategy<Value = ItemType> {
    prop::sample::select(ItemType::ALL.to_vec())
}

/// What an accepted item must hold, whatever it came from.
fn check(raw: &Value, catalog: &Catalog) {
    match parse_item(raw, NOW, catalog) {
        Err(e) => assert!(!e.message.is_empty(), "an error without a message"),
        Ok(item) => {
            assert_eq!(Some(item.id), raw_id(raw));
            assert_eq!(Some(item.item_type()), raw_type(raw));
            assert!(item.at <= NOW + MAX_FUTURE_SKEW);
            assert!(item.at.year() >= 2000);
            assert_eq!(item.at.nanosecond() % 1_000, 0, "kept to microseconds");
            assert_eq!(item.content_hash.len(), 64);
            match &item.body {
                Body::Error(e) => {
                    assert!(e.error_message.chars().count() <= MAX_ERROR_MESSAGE_CHARS)
                }
                Body::Message(m) => {
                    if m.usage.is_none() {
                        assert_eq!(m.pricing_status, "no_usage");
                        assert_eq!(m.cost_nano_usd, None);
                    }
                    if let Some(cost) = m.cost_nano_usd {
                        assert!(cost >= 0, "a negative cost {cost}");
                    }
                }
                _ => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn any_json_as_an_item_is_answered(v in json()) {
        check(&v, &Catalog::builtin());
    }

    #[test]
    fn any_json_as_a_body_is_answered(t in item_type(), body in json()) {
        let raw = json!({"id": ID, "type": t.as_str(), "timestamp": "2026-12-01T10:00:00Z", "body": body});
        check(&raw, &Catalog::builtin());
    }

    #[test]
    fn any_json_as_an_llm_response_is_answered(response in json()) {
        let raw = json!({"id": ID, "type": "message.create", "timestamp": "2026-12-01T10:00:00Z",
            "body": {"conversation_id": ID, "role": "assistant", "llm_response": response}});
        check(&raw, &Catalog::builtin());
    }

    #[test]
    fn any_string_as_a_timestamp_is_answered(ts in "[0-9TZ:.+-]{0,40}") {
        let raw = json!({"id": ID, "type": "event.track", "timestamp": ts,
            "body": {"user_id": ID, "event_type": "onboarding_started"}});
        check(&raw, &Catalog::builtin());
    }
}

/// The same content hashes the same, other content differently: what tells
/// a retry from an id reused for other content.
#[test]
fn the_content_hash_tells_a_retry_from_other_content() {
    let catalog = Catalog::builtin();
    let a = json!({"id": ID, "type": "event.track", "timestamp": "2026-12-01T10:00:00Z",
        "body": {"user_id": ID, "event_type": "onboarding_started"}});
    let same_reordered: Value = serde_json::from_str(&format!(
        r#"{{"body": {{"event_type": "onboarding_started", "user_id": "{ID}"}}, "timestamp": "2026-12-01T10:00:00Z", "type": "event.track", "id": "{ID}"}}"#
    ))
    .unwrap_or(Value::Null);
    let other = json!({"id": ID, "type": "event.track", "timestamp": "2026-12-01T10:00:00Z",
        "body": {"user_id": ID, "event_type": "onboarding_completed"}});
    let hash = |v: &Value| parse_item(v, NOW, &catalog).map(|i| i.content_hash).ok();
    assert!(hash(&a).is_some());
    assert_eq!(hash(&a), hash(&same_reordered));
    assert_ne!(hash(&a), hash(&other));
}
