//! The ingest wire format: a raw JSON item (`{"id","type","timestamp","body"}`
//! of `POST /api/v1/ingest`) checked into a typed `charlie_domain::ingest::Item`,
//! or refused with a stable code and a message naming the field.
//!
//! Everything that can be wrong with an item's content is found here, before
//! anything is written, so that a bad item is refused whole and never aborts
//! the batch it came in. Pure: no I/O, no database, no HTTP; prices messages
//! with the catalog it is handed. Imported by the transport edge (the API's
//! ingest service, the OpenTelemetry receiver through it), the benchmarks
//! and the fuzz targets; never by the store.

use charlie_domain::ErrorCode;
use charlie_domain::ingest::{
    Body, ConversationUpsert, ErrorLog, EventTrack, Item, ItemError, ItemType,
    MAX_ERROR_MESSAGE_CHARS, MessageCreate, NamedUpsert, UserUpsert,
};
use charlie_domain::{EventCategory, EventType, MessageRole, TokenUsage, Usd};
use charlie_pricing::{Catalog, PricingStatus};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};
use uuid::Uuid;

/// How far in the future an item's timestamp may be (clock skew).
pub const MAX_FUTURE_SKEW: Duration = Duration::days(1);

/// Reads the `id` of a raw item, if it has a valid one (for error reports).
pub fn raw_id(value: &Value) -> Option<Uuid> {
    value.get("id")?.as_str()?.parse().ok()
}

/// The item type a raw item names, when it names a known one (for the
/// metrics of refused items).
pub fn raw_type(value: &Value) -> Option<ItemType> {
    ItemType::parse(value.get("type")?.as_str()?)
}

/// Checks one raw item. `now` bounds future timestamps; `catalog` prices messages.
pub fn parse_item(
    value: &Value,
    now: OffsetDateTime,
    catalog: &Catalog,
) -> Result<Item, ItemError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ItemError::new(ErrorCode::InvalidItem, "an item must be a JSON object"))?;
    let mut warnings = Vec::new();
    unknown_keys(obj, &["id", "type", "timestamp", "body"], "", &mut warnings);
    let id = match obj.get("id") {
        None | Some(Value::Null) => {
            return Err(ItemError::new(ErrorCode::MissingField, "`id` is required"));
        }
        Some(v) => v
            .as_str()
            .and_then(|s| s.parse::<Uuid>().ok())
            .ok_or_else(|| {
                ItemError::new(ErrorCode::InvalidId, format!("`id` is not a UUID: {v}"))
            })?,
    };
    let type_name = obj
        .get("type")
        .ok_or_else(|| ItemError::new(ErrorCode::MissingField, "`type` is required"))?
        .as_str()
        .ok_or_else(|| ItemError::new(ErrorCode::InvalidField, "`type` must be a string"))?;
    let item_type = ItemType::parse(type_name).ok_or_else(|| {
        let known: Vec<_> = ItemType::ALL.iter().map(ItemType::as_str).collect();
        ItemError::new(
            ErrorCode::UnknownType,
            format!(
                "unknown item type `{type_name}`; expected one of {}",
                known.join(", ")
            ),
        )
    })?;
    let at = parse_timestamp(obj.get("timestamp"), now)?;
    let body = match obj.get("body") {
        Some(Value::Object(b)) => b,
        Some(_) => {
            return Err(ItemError::new(
                ErrorCode::InvalidField,
                "`body` must be a JSON object",
            ));
        }
        None => {
            return Err(ItemError::new(
                ErrorCode::MissingField,
                "`body` is required",
            ));
        }
    };
    let fields = Fields { obj: body };
    let body = match item_type {
        ItemType::User => {
            unknown_keys(
                body,
                &[
                    "external_id",
                    "email",
                    "timezone",
                    "monthly_budget_usd",
                    "monthly_hard_limit_usd",
                    "weekly_report_opt_out",
                ],
                "body.",
                &mut warnings,
            );
            Body::User(UserUpsert {
                external_id: fields.req_str("external_id", 255)?,
                email: parse_email(&fields.req_str("email", 320)?)?,
                timezone: fields
                    .opt_str("timezone", 64)?
                    .map(|tz| check_timezone(&tz))
                    .transpose()?,
                monthly_budget: fields.opt_money("monthly_budget_usd")?,
                monthly_hard_limit: fields.opt_money("monthly_hard_limit_usd")?,
                weekly_report_opt_out: fields.opt_bool("weekly_report_opt_out")?,
            })
        }
        ItemType::Workflow | ItemType::Component => {
            unknown_keys(body, &["user_id", "name"], "body.", &mut warnings);
            let named = NamedUpsert {
                user_id: fields.req_uuid("user_id")?,
                name: fields.req_str("name", 255)?,
            };
            if item_type == ItemType::Workflow {
                Body::Workflow(named)
            } else {
                Body::Component(named)
            }
        }
        ItemType::Conversation => {
            unknown_keys(
                body,
                &["user_id", "workflow_id", "langflow_session_id"],
                "body.",
                &mut warnings,
            );
            Body::Conversation(ConversationUpsert {
                user_id: fields.req_uuid("user_id")?,
                workflow_id: fields.opt_uuid("workflow_id")?,
                langflow_session_id: fields.opt_str("langflow_session_id", 255)?,
            })
        }
        ItemType::Message => {
            unknown_keys(
                body,
                &[
                    "conversation_id",
                    "component_id",
                    "role",
                    "model",
                    "usage",
                    "llm_response",
                ],
                "body.",
                &mut warnings,
            );
            Body::Message(parse_message(&fields, at, catalog, &mut warnings)?)
        }
        ItemType::Event => {
            unknown_keys(
                body,
                &[
                    "user_id",
                    "event_type",
                    "event_category",
                    "workflow_id",
                    "component_id",
                    "conversation_id",
                    "metadata",
                ],
                "body.",
                &mut warnings,
            );
            let event_type = fields.req_str("event_type", 50)?;
            let known_type = EventType::parse(&event_type);
            if known_type.is_none() {
                warnings.push(format!(
                    "event_type `{event_type}` is not in the standard vocabulary"
                ));
            }
            let event_category = match (fields.opt_str("event_category", 50)?, known_type) {
                (Some(c), _) => c,
                (None, Some(t)) => t.category().as_str().to_owned(),
                (None, None) => {
                    return Err(ItemError::new(
                        ErrorCode::MissingField,
                        "`body.event_category` is required for an event_type outside the standard vocabulary",
                    ));
                }
            };
            if EventCategory::parse(&event_category).is_none() {
                warnings.push(format!(
                    "event_category `{event_category}` is not in the standard vocabulary"
                ));
            }
            Body::Event(EventTrack {
                user_id: fields.req_uuid("user_id")?,
                event_type,
                event_category,
                workflow_id: fields.opt_uuid("workflow_id")?,
                component_id: fields.opt_uuid("component_id")?,
                conversation_id: fields.opt_uuid("conversation_id")?,
                metadata: fields.opt_object("metadata")?,
            })
        }
        ItemType::Error => {
            unknown_keys(
                body,
                &[
                    "service",
                    "error_type",
                    "error_message",
                    "error_code",
                    "user_id",
                    "workflow_id",
                    "endpoint",
                    "request_id",
                    "metadata",
                    "sentry_event_id",
                ],
                "body.",
                &mut warnings,
            );
            let message = fields.req_str("error_message", usize::MAX)?;
            let error_message = if message.chars().count() > MAX_ERROR_MESSAGE_CHARS {
                warnings.push(format!(
                    "error_message truncated to {MAX_ERROR_MESSAGE_CHARS} characters"
                ));
                message.chars().take(MAX_ERROR_MESSAGE_CHARS).collect()
            } else {
                message
            };
            Body::Error(ErrorLog {
                service: fields.req_str("service", 50)?,
                error_type: fields.req_str("error_type", 100)?,
                error_message,
                error_code: fields.opt_str("error_code", 50)?,
                user_id: fields.opt_uuid("user_id")?,
                workflow_id: fields.opt_uuid("workflow_id")?,
                endpoint: fields.opt_str("endpoint", 200)?,
                request_id: fields.opt_str("request_id", 100)?,
                metadata: fields.opt_object("metadata")?,
                sentry_event_id: fields.opt_str("sentry_event_id", 100)?,
            })
        }
    };
    Ok(Item {
        id,
        at,
        body,
        content_hash: content_hash(value),
        warnings,
    })
}

fn parse_message(
    fields: &Fields<'_>,
    at: OffsetDateTime,
    catalog: &Catalog,
    warnings: &mut Vec<String>,
) -> Result<MessageCreate, ItemError> {
    let conversation_id = fields.req_uuid("conversation_id")?;
    let component_id = fields.opt_uuid("component_id")?;
    let role_text = fields.req_str("role", 16)?;
    let role: MessageRole = role_text
        .parse()
        .map_err(|e: charlie_domain::DomainError| {
            ItemError::new(ErrorCode::UnknownRole, format!("`body.role`: {e}"))
        })?;
    let explicit_model = fields.opt_str("model", 255)?;
    let explicit_usage = match fields.obj.get("usage") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let usage: TokenUsage = serde_json::from_value(v.clone()).map_err(|e| {
                ItemError::new(ErrorCode::InvalidUsage, format!("`body.usage`: {e}"))
            })?;
            usage.validate().map_err(|e| {
                ItemError::new(ErrorCode::InvalidUsage, format!("`body.usage`: {e}"))
            })?;
            Some(usage)
        }
    };
    let extraction = match fields.obj.get("llm_response") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let found = charlie_pricing::extract(v).map_err(|e| {
                ItemError::new(
                    ErrorCode::InvalidLlmResponse,
                    format!("`body.llm_response`: {e}"),
                )
            })?;
            warnings.extend(found.warnings.iter().map(|w| format!("llm_response: {w}")));
            Some(found)
        }
    };
    let model = explicit_model
        .clone()
        .or_else(|| extraction.as_ref().and_then(|x| x.model.clone()));
    let cost = match (&explicit_usage, &extraction) {
        (Some(usage), _) => Some(catalog.price(model.as_deref(), usage, at)),
        (None, Some(x)) if x.usage.is_some() => Some(match (&explicit_model, x.usage) {
            (Some(m), Some(usage)) => catalog.price(Some(m), &usage, at),
            _ => catalog.price_extraction(x, at),
        }),
        _ => None,
    };
    let usage = explicit_usage.or_else(|| extraction.as_ref().and_then(|x| x.usage));
    if let Some(u) = &usage {
        let largest = [u.input_tokens, u.output_tokens]
            .into_iter()
            .max()
            .unwrap_or(0);
        if i64::try_from(largest).is_err() {
            return Err(ItemError::new(
                ErrorCode::InvalidUsage,
                format!(
                    "token count {largest} is larger than the storable maximum {}",
                    i64::MAX
                ),
            ));
        }
    }
    let (cost_nano_usd, pricing_status, price_ref) = match cost {
        None => (None, "no_usage".to_owned(), None),
        Some(cost) => {
            if cost.status != PricingStatus::Priced {
                warnings.extend(cost.warnings.iter().cloned());
            }
            let nanos = cost
                .total_usd
                .map(|usd| usd.to_nanos())
                .transpose()
                .map_err(|e| {
                    ItemError::new(ErrorCode::InvalidUsage, format!("cost out of range: {e}"))
                })?;
            // The price id names the catalog entry and its valid-from date,
            // e.g. `builtin:gpt-4o@2024-10-02`.
            let price_ref = cost.price_id.clone();
            (nanos, cost.status.as_str().to_owned(), price_ref)
        }
    };
    Ok(MessageCreate {
        conversation_id,
        component_id,
        role,
        model,
        usage,
        cost_nano_usd,
        pricing_status,
        price_ref,
    })
}

fn parse_timestamp(v: Option<&Value>, now: OffsetDateTime) -> Result<OffsetDateTime, ItemError> {
    let text = match v {
        None | Some(Value::Null) => {
            return Err(ItemError::new(
                ErrorCode::MissingField,
                "`timestamp` is required",
            ));
        }
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(ItemError::new(
                ErrorCode::InvalidTimestamp,
                format!("`timestamp` must be an RFC 3339 string, got {other}"),
            ));
        }
    };
    let at = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| {
            ItemError::new(
                ErrorCode::InvalidTimestamp,
                format!("`timestamp` `{text}` is not RFC 3339: {e}"),
            )
        })?
        // In UTC, `9999-12-31T23:59:59-01:00` is beyond year 9999, which
        // `to_offset` would panic on.
        .checked_to_offset(UtcOffset::UTC)
        .ok_or_else(|| {
            ItemError::new(
                ErrorCode::InvalidTimestamp,
                format!("`timestamp` `{text}` is beyond year 9999 in UTC"),
            )
        })?;
    // PostgreSQL keeps microseconds; keeping the same everywhere makes a
    // stored row compare equal to the item it came from on both engines.
    let at = at
        .replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .map_err(|e| ItemError::new(ErrorCode::InvalidTimestamp, e.to_string()))?;
    if at > now + MAX_FUTURE_SKEW {
        return Err(ItemError::new(
            ErrorCode::TimestampInFuture,
            format!("`timestamp` {text} is more than a day in the future"),
        ));
    }
    if at.year() < 2000 {
        return Err(ItemError::new(
            ErrorCode::InvalidTimestamp,
            format!("`timestamp` {text} is before 2000"),
        ));
    }
    Ok(at)
}

fn parse_email(s: &str) -> Result<String, ItemError> {
    let trimmed = s.trim();
    match trimmed.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !trimmed.contains(char::is_whitespace) =>
        {
            Ok(trimmed.to_owned())
        }
        _ => Err(ItemError::new(
            ErrorCode::InvalidField,
            format!("`body.email` `{s}` is not an e-mail address"),
        )),
    }
}

/// Checks an IANA time zone name against the bundled database.
pub fn check_timezone(name: &str) -> Result<String, ItemError> {
    jiff::tz::TimeZone::get(name)
        .map(|_| name.to_owned())
        .map_err(|_| {
            ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.timezone` `{name}` is not an IANA time zone"),
            )
        })
}

/// SHA-256 of the item's JSON, written straight into the hasher (no copy
/// of the text). serde_json's maps are ordered by key, so this is a
/// canonical form: the same content hashes the same whatever its key order.
fn content_hash(v: &Value) -> String {
    /// `io::Write` into a running SHA-256.
    struct Hashing(Sha256);
    impl std::io::Write for Hashing {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut hashing = Hashing(Sha256::new());
    // Serializing a `Value` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut hashing, v);
    hex::encode(hashing.0.finalize())
}

fn unknown_keys(
    obj: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
    warnings: &mut Vec<String>,
) {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            warnings.push(format!("unknown field `{prefix}{key}` ignored"));
        }
    }
}

struct Fields<'a> {
    obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn present(&self, name: &str) -> Option<&Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    fn req_str(&self, name: &str, max_chars: usize) -> Result<String, ItemError> {
        self.opt_str(name, max_chars)?.ok_or_else(|| {
            ItemError::new(
                ErrorCode::MissingField,
                format!("`body.{name}` is required"),
            )
        })
    }

    fn opt_str(&self, name: &str, max_chars: usize) -> Result<Option<String>, ItemError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Err(ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` must not be empty"),
            )),
            Some(Value::String(s)) if s.chars().count() > max_chars => Err(ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` is longer than {max_chars} characters"),
            )),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` must be a string, got {}", kind(other)),
            )),
        }
    }

    fn req_uuid(&self, name: &str) -> Result<Uuid, ItemError> {
        self.opt_uuid(name)?.ok_or_else(|| {
            ItemError::new(
                ErrorCode::MissingField,
                format!("`body.{name}` is required"),
            )
        })
    }

    fn opt_uuid(&self, name: &str) -> Result<Option<Uuid>, ItemError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::String(s)) => s.parse().map(Some).map_err(|_| {
                ItemError::new(
                    ErrorCode::InvalidId,
                    format!("`body.{name}` is not a UUID: `{s}`"),
                )
            }),
            Some(other) => Err(ItemError::new(
                ErrorCode::InvalidId,
                format!("`body.{name}` must be a UUID string, got {}", kind(other)),
            )),
        }
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, ItemError> {
        match self.present(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` must be true or false, got {}", kind(other)),
            )),
        }
    }

    fn opt_object(&self, name: &str) -> Result<Value, ItemError> {
        match self.present(name) {
            None => Ok(Value::Object(Map::new())),
            Some(v @ Value::Object(_)) => Ok(v.clone()),
            Some(other) => Err(ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` must be a JSON object, got {}", kind(other)),
            )),
        }
    }

    /// A money amount as a decimal string or a JSON number, read exactly.
    /// Present-but-null clears it.
    fn opt_money(&self, name: &str) -> Result<Option<Option<Usd>>, ItemError> {
        let text = match self.obj.get(name) {
            None => return Ok(None),
            Some(Value::Null) => return Ok(Some(None)),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(ItemError::new(
                    ErrorCode::InvalidField,
                    format!(
                        "`body.{name}` must be a decimal amount, got {}",
                        kind(other)
                    ),
                ));
            }
        };
        let usd: Usd = text.trim().parse().map_err(|_| {
            ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` `{text}` is not a decimal amount"),
            )
        })?;
        if usd.decimal().is_sign_negative() {
            return Err(ItemError::new(
                ErrorCode::InvalidField,
                format!("`body.{name}` must not be negative"),
            ));
        }
        usd.to_nanos()
            .map_err(|e| ItemError::new(ErrorCode::InvalidField, format!("`body.{name}`: {e}")))?;
        Ok(Some(Some(usd)))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timestamp whose UTC time is beyond year 9999 panicked instead of
    /// being refused (found in review for the fuzz target `ingest_item`,
    /// which now also reads any JSON string as a timestamp).
    #[test]
    fn a_timestamp_beyond_year_9999_in_utc_is_refused() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
        let text = Value::from("9999-12-31T23:59:59-01:00");
        let err = parse_timestamp(Some(&text), now).err();
        assert_eq!(err.map(|e| e.code), Some(ErrorCode::InvalidTimestamp));
        let ok = Value::from("2024-10-03T23:30:00-01:00");
        assert!(parse_timestamp(Some(&ok), now).is_ok());
    }
}
