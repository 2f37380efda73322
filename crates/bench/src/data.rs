//! Generated benchmark data: ingest items with named ids (UUID v5) and
//! realistic message bodies (explicit usage, or a raw OpenAI / Anthropic
//! response so extraction and pricing run).

use charlie_devtools::samples::{Shape, draw_usage, llm_response};
use charlie_domain::ingest::Body;
use charlie_pricing::Catalog;
use charlie_store::bench::MessageRow;
use charlie_wire::parse_item;
use rand::{Rng, rngs::StdRng};
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x3c0e_52a8_41d7_4b6e_9f20_7a15_c8d3_e641);

/// A stable id for the `n`-th entity of `kind` in run `run`.
pub fn named_id(run: u64, kind: &str, n: u64) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{run}/{kind}/{n}").as_bytes())
}

pub use charlie_domain::rfc3339 as ts;

pub fn item(id: Uuid, kind: &str, at: OffsetDateTime, body: Value) -> Value {
    json!({"id": id, "type": kind, "timestamp": ts(at), "body": body})
}

pub fn user_item(id: Uuid, n: u64, at: OffsetDateTime) -> Value {
    item(
        id,
        "user.upsert",
        at,
        json!({"external_id": format!("bench_user_{n}"), "email": format!("bench.user.{n}@example.com")}),
    )
}

pub fn named_item(kind: &str, id: Uuid, user_id: Uuid, name: String, at: OffsetDateTime) -> Value {
    item(id, kind, at, json!({"user_id": user_id, "name": name}))
}

pub fn conversation_item(
    id: Uuid,
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    at: OffsetDateTime,
) -> Value {
    item(
        id,
        "conversation.upsert",
        at,
        json!({"user_id": user_id, "workflow_id": workflow_id, "langflow_session_id": format!("session-{}", id.simple())}),
    )
}

/// Models with built-in prices, weighted by repetition.
const MODELS: [(&str, Shape); 7] = [
    ("gpt-4o-mini-2024-07-18", Shape::OpenAi),
    ("gpt-4o-mini-2024-07-18", Shape::OpenAi),
    ("gpt-4o-2024-08-06", Shape::OpenAi),
    ("gpt-4.1-mini", Shape::OpenAi),
    ("claude-sonnet-4-20250514", Shape::Anthropic),
    ("claude-haiku-4-5-20251001", Shape::Anthropic),
    ("claude-haiku-4-5-20251001", Shape::Anthropic),
];

/// The body of a `message.create`. `raw_share` of assistant messages carry
/// a raw provider response instead of explicit `model` + `usage`.
pub fn message_body(
    rng: &mut StdRng,
    conversation_id: Uuid,
    user_turn: bool,
    raw_share: f64,
) -> Value {
    if user_turn {
        return json!({"conversation_id": conversation_id, "role": "user"});
    }
    let (model, shape) = MODELS[rng.random_range(0..MODELS.len())];
    let (input, output, cached) = draw_usage(rng);
    if rng.random_bool(raw_share.clamp(0.0, 1.0)) {
        json!({
            "conversation_id": conversation_id,
            "role": "assistant",
            "llm_response": llm_response(rng, model, shape, input, output, cached),
        })
    } else {
        json!({
            "conversation_id": conversation_id,
            "role": "assistant",
            "model": model,
            "usage": {"input_tokens": input, "output_tokens": output, "cache_read_input_tokens": cached},
        })
    }
}

/// The `messages` row ingestion writes for a `message.create` item, priced
/// with the same code (`charlie_wire::parse_item`). `None` for a refused item.
pub fn message_row(
    value: &Value,
    now: OffsetDateTime,
    catalog: &Catalog,
    user_id: Uuid,
    workflow_id: Option<Uuid>,
) -> Option<MessageRow> {
    let item = parse_item(value, now, catalog).ok()?;
    match &item.body {
        Body::Message(m) => Some(MessageRow::from_message(
            item.id,
            item.at,
            user_id,
            workflow_id,
            m,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn generated_messages_are_accepted_and_priced() {
        let catalog = Catalog::builtin();
        let mut rng = StdRng::seed_from_u64(7);
        let now = OffsetDateTime::now_utc();
        let conversation = named_id(1, "conversation", 1);
        let user = named_id(1, "user", 1);
        let mut priced = 0;
        for n in 0..200u64 {
            let body = message_body(&mut rng, conversation, n % 2 == 0, 0.5);
            let v = item(named_id(1, "message", n), "message.create", now, body);
            let row = message_row(&v, now, &catalog, user, None);
            assert!(row.is_some(), "refused: {v}");
            if row.is_some_and(|r| r.pricing_status == "priced") {
                priced += 1;
            }
        }
        assert_eq!(priced, 100, "every assistant message is priced");
    }
}
