//! The ingest item check (`charlie_wire::parse_item`) from any
//! bytes read as JSON: the value as a whole item (envelope, id, type,
//! timestamp), the value (when an object) as the body of every item type
//! in a valid envelope, a string as the timestamp of a valid item, and the
//! value as a `message.create`'s
//! `llm_response` (extraction and pricing with the built-in catalog).
//! Must answer with an item or an item error (code and message), never
//! panic; an accepted item must hold what the check promises.
#![no_main]

use charlie_pricing::Catalog;
use charlie_domain::ingest::{Body, Item, ItemError, ItemType, MAX_ERROR_MESSAGE_CHARS};
use charlie_wire::{MAX_FUTURE_SKEW, parse_item};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use std::sync::OnceLock;
use time::OffsetDateTime;

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(Catalog::builtin)
}

const ID: &str = "0192a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
const AT: &str = "2024-10-03T12:34:56.123456789+02:00";

fn check(result: Result<Item, ItemError>, now: OffsetDateTime) {
    let item = match result {
        Ok(item) => item,
        Err(e) => {
            assert!(!e.code.as_str().is_empty() && !e.message.is_empty(), "{e:?}");
            return;
        }
    };
    assert_eq!(item.content_hash.len(), 64, "{item:?}");
    assert!(item.at <= now + MAX_FUTURE_SKEW, "{item:?}");
    assert!(item.at.year() >= 2000, "{item:?}");
    assert_eq!(item.at.nanosecond() % 1_000, 0, "{item:?}");
    match &item.body {
        Body::Message(m) => {
            assert_eq!(m.usage.is_none(), m.pricing_status == "no_usage", "{m:?}");
            if let Some(u) = &m.usage {
                assert!(u.validate().is_ok(), "{m:?}");
                assert!(
                    i64::try_from(u.input_tokens.max(u.output_tokens)).is_ok(),
                    "{m:?}"
                );
            }
            match m.pricing_status.as_str() {
                "priced" | "partial" => {
                    assert!(m.cost_nano_usd.is_some_and(|n| n >= 0), "{m:?}");
                }
                "unpriced" | "no_usage" => assert_eq!(m.cost_nano_usd, None, "{m:?}"),
                other => panic!("unknown pricing status {other}"),
            }
        }
        Body::Error(e) => {
            assert!(e.error_message.chars().count() <= MAX_ERROR_MESSAGE_CHARS);
        }
        Body::User(u) => {
            for budget in [&u.monthly_budget, &u.monthly_hard_limit] {
                if let Some(Some(usd)) = budget {
                    assert!(!usd.decimal().is_sign_negative(), "{u:?}");
                    assert!(usd.to_nanos().is_ok(), "{u:?}");
                }
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let _ = charlie_wire::raw_id(&value);
    check(parse_item(&value, now, catalog()), now);

    // The value as the body of each item type, in a valid envelope.
    let mut envelope = json!({"id": ID, "type": "", "timestamp": AT, "body": value});
    if envelope["body"].is_object() {
        for t in ItemType::ALL {
            envelope["type"] = Value::from(t.as_str());
            check(parse_item(&envelope, now, catalog()), now);
        }
    }

    // A string as the timestamp of a valid item.
    if value.is_string() {
        let item = json!({
            "id": ID,
            "type": "workflow.upsert",
            "timestamp": value,
            "body": {"user_id": ID, "name": "w"},
        });
        check(parse_item(&item, now, catalog()), now);
    }

    // The value as the raw provider response of a message.
    let response = envelope["body"].take();
    let message = json!({
        "id": ID,
        "type": "message.create",
        "timestamp": AT,
        "body": {"conversation_id": ID, "role": "assistant", "llm_response": response},
    });
    check(parse_item(&message, now, catalog()), now);
});
