//! The rows ingestion writes, with their column lists, defined once: the
//! ingest transaction inserts them and the benchmarks copy them (feature
//! `bench`), so both write the same thing.

use crate::rollup::tokens_i64;
use charlie_domain::ingest::MessageCreate;
use sea_orm::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// The `messages` columns, in [`MessageRow::values`] order.
pub const MESSAGE_COLUMNS: &[&str] = &[
    "id",
    "created_at",
    "user_id",
    "conversation_id",
    "workflow_id",
    "component_id",
    "role",
    "model",
    "has_usage",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write1h_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "pricing_status",
    "price_ref",
];

/// One `messages` row, as ingestion writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRow {
    pub id: Uuid,
    pub created_at: OffsetDateTime,
    pub user_id: Uuid,
    pub conversation_id: Uuid,
    pub workflow_id: Option<Uuid>,
    /// The component that made the LLM call, if the message named one.
    pub component_id: Option<Uuid>,
    pub role: &'static str,
    pub model: Option<String>,
    pub has_usage: bool,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cache_write1h_tokens: i64,
    pub reasoning_tokens: i64,
    pub cost_nano_usd: Option<i64>,
    pub pricing_status: String,
    pub price_ref: Option<String>,
}

impl MessageRow {
    /// The row ingestion writes for a checked and priced `message.create`.
    pub fn from_message(
        id: Uuid,
        at: OffsetDateTime,
        user_id: Uuid,
        workflow_id: Option<Uuid>,
        m: &MessageCreate,
    ) -> MessageRow {
        let u = m.usage.unwrap_or_default();
        MessageRow {
            id,
            created_at: at,
            user_id,
            conversation_id: m.conversation_id,
            workflow_id,
            component_id: m.component_id,
            role: m.role.as_str(),
            model: m.model.clone(),
            has_usage: m.usage.is_some(),
            input_tokens: tokens_i64(u.input_tokens),
            output_tokens: tokens_i64(u.output_tokens),
            cache_read_tokens: tokens_i64(u.cache_read_input_tokens),
            cache_write_tokens: tokens_i64(u.cache_creation_input_tokens),
            cache_write1h_tokens: tokens_i64(u.cache_creation_1h_input_tokens),
            reasoning_tokens: tokens_i64(u.reasoning_tokens),
            cost_nano_usd: m.cost_nano_usd,
            pricing_status: m.pricing_status.clone(),
            price_ref: m.price_ref.clone(),
        }
    }

    /// The row's values, in [`MESSAGE_COLUMNS`] order.
    pub fn values(&self) -> Vec<Value> {
        vec![
            self.id.into(),
            self.created_at.into(),
            self.user_id.into(),
            self.conversation_id.into(),
            self.workflow_id.into(),
            self.component_id.into(),
            self.role.into(),
            self.model.clone().into(),
            self.has_usage.into(),
            self.input_tokens.into(),
            self.output_tokens.into(),
            self.cache_read_tokens.into(),
            self.cache_write_tokens.into(),
            self.cache_write1h_tokens.into(),
            self.reasoning_tokens.into(),
            self.cost_nano_usd.into(),
            self.pricing_status.clone().into(),
            self.price_ref.clone().into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_the_column_list() {
        let m = MessageCreate {
            conversation_id: Uuid::nil(),
            component_id: Some(Uuid::max()),
            role: charlie_domain::MessageRole::Assistant,
            model: Some("gpt-4o".into()),
            usage: None,
            cost_nano_usd: None,
            pricing_status: "no_usage".into(),
            price_ref: None,
        };
        let row = MessageRow::from_message(
            Uuid::nil(),
            OffsetDateTime::UNIX_EPOCH,
            Uuid::nil(),
            None,
            &m,
        );
        let values = row.values();
        assert_eq!(values.len(), MESSAGE_COLUMNS.len());
        let at = |c: &str| {
            MESSAGE_COLUMNS
                .iter()
                .position(|x| *x == c)
                .and_then(|i| values.get(i))
        };
        assert_eq!(at("component_id"), Some(&Value::from(Some(Uuid::max()))));
        assert_eq!(at("role"), Some(&Value::from("assistant")));
        assert_eq!(at("has_usage"), Some(&Value::from(false)));
    }
}
