//! From decoded OTLP spans to what is staged: LLM calls with usage, Langflow
//! component spans, and what each trace says about its user, session and
//! flow. Spans that are neither (HTTP, database, chain internals) are read
//! for their context and otherwise not kept.
//!
//! Attributes read for the context, first found wins (span attributes, then
//! the resource's):
//! - user: `langflow.user_id`, `user.id`, `langfuse.user.id`, `enduser.id`,
//!   `traceloop.association.properties.user_id`;
//! - session: `langflow.session_id`, `session.id`, `langfuse.session.id`,
//!   `gen_ai.conversation.id`, `traceloop.association.properties.session_id`;
//! - flow: `flow_id`, `langflow.flow_id`, `langfuse.trace.metadata.flow_id`,
//!   `traceloop.association.properties.flow_id`, else a root span named
//!   `"<flow name> - <flow id>"` (Langflow's run name); its name:
//!   `flow_name`, `langflow.flow_name`, else that run name's first part.
//!
//! A component span carries `vertex_id`, `langflow.component.id` or
//! `langfuse.observation.metadata.component_id` (or Langflow's `trace_id`
//! attribute beside `trace_type`); its name is the span name without the
//! ` (<component id>)` suffix Langflow adds.

use charlie_pricing::otel::{AttrValue, span_usage};
use charlie_store::otel::{StagedKind, StagedSpan, TraceContext};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{KeyValue, any_value::Value},
};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// What one export request gives to stage.
#[derive(Debug, Default)]
pub struct Staged {
    pub spans: Vec<StagedSpan>,
    /// One merged context per trace of the request.
    pub contexts: Vec<TraceContext>,
    /// Spans refused (bad ids, bad usage counts), and why.
    pub rejected: Vec<String>,
    /// Spans in the request.
    pub total: usize,
}

const USER_KEYS: [&str; 5] = [
    "langflow.user_id",
    "user.id",
    "langfuse.user.id",
    "enduser.id",
    "traceloop.association.properties.user_id",
];
const SESSION_KEYS: [&str; 5] = [
    "langflow.session_id",
    "session.id",
    "langfuse.session.id",
    "gen_ai.conversation.id",
    "traceloop.association.properties.session_id",
];
const FLOW_KEYS: [&str; 4] = [
    "flow_id",
    "langflow.flow_id",
    "langfuse.trace.metadata.flow_id",
    "traceloop.association.properties.flow_id",
];
const FLOW_NAME_KEYS: [&str; 3] = ["flow_name", "langflow.flow_name", "langfuse.trace.name"];
const COMPONENT_KEYS: [&str; 3] = [
    "vertex_id",
    "langflow.component.id",
    "langfuse.observation.metadata.component_id",
];

/// Longest id or name kept (the staging columns' width).
const MAX_TEXT: usize = 255;

/// Reads a decoded request. Never fails as a whole: a span that cannot be
/// read is counted in `rejected` and the others are kept.
pub fn stage(request: &ExportTraceServiceRequest) -> Staged {
    let mut out = Staged::default();
    let mut contexts: BTreeMap<String, TraceContext> = BTreeMap::new();
    for resource_spans in &request.resource_spans {
        let resource: &[KeyValue] = resource_spans
            .resource
            .as_ref()
            .map_or(&[], |r| r.attributes.as_slice());
        let service = text_of(resource, "service.name");
        for scope in &resource_spans.scope_spans {
            for span in &scope.spans {
                out.total += 1;
                let (Some(trace_id), Some(span_id)) =
                    (id_hex(&span.trace_id, 16), id_hex(&span.span_id, 8))
                else {
                    out.rejected.push(format!(
                        "span `{}`: trace_id must be 16 bytes and span_id 8 bytes, not all zero",
                        short(&span.name)
                    ));
                    continue;
                };
                let parent = id_hex(&span.parent_span_id, 8);
                let attrs = span.attributes.as_slice();
                let find = |keys: &[&str]| {
                    keys.iter()
                        .find_map(|k| text_of(attrs, k))
                        .or_else(|| keys.iter().find_map(|k| text_of(resource, k)))
                };
                let is_root = parent.is_none();
                let run_name = is_root.then(|| run_name(&span.name)).flatten();
                let flow_key =
                    find(&FLOW_KEYS).or_else(|| run_name.as_ref().map(|(_, id)| id.clone()));
                let flow_name = find(&FLOW_NAME_KEYS)
                    .or_else(|| run_name.as_ref().map(|(name, _)| name.clone()));
                let context = TraceContext {
                    trace_id: trace_id.clone(),
                    user_key: find(&USER_KEYS),
                    session_key: find(&SESSION_KEYS),
                    flow_key: flow_key.clone(),
                    flow_name,
                    service: service.clone(),
                    // The root, or the span that states the flow (Langflow's
                    // run span may hang under a span that is never exported).
                    root_seen: is_root || find(&FLOW_KEYS).is_some(),
                };
                merge(
                    contexts
                        .entry(trace_id.clone())
                        .or_insert_with(|| TraceContext {
                            trace_id: trace_id.clone(),
                            ..TraceContext::default()
                        }),
                    context,
                );

                let lookup = |key: &str| attr(attrs, key);
                let usage = match span_usage(&lookup) {
                    Ok(u) => u,
                    Err(e) => {
                        out.rejected
                            .push(format!("span {span_id} `{}`: {e}", short(&span.name)));
                        continue;
                    }
                };
                let component_key = component_key(attrs);
                let kind = match (&usage, &component_key) {
                    (Some(_), _) => StagedKind::Llm,
                    (None, Some(_)) => StagedKind::Component,
                    (None, None) => continue,
                };
                let component_name = component_key
                    .as_ref()
                    .map(|id| component_name(&span.name, id, attrs));
                out.spans.push(StagedSpan {
                    trace_id,
                    span_id,
                    parent_span_id: parent,
                    kind,
                    start_at: instant(span.start_time_unix_nano),
                    end_at: instant(span.end_time_unix_nano.max(span.start_time_unix_nano)),
                    component_key,
                    component_name,
                    model: usage.as_ref().and_then(|u| u.model.clone()).map(cut),
                    usage: usage.map(|u| u.usage),
                });
            }
        }
    }
    out.contexts = contexts.into_values().collect();
    out
}

/// Folds what one span says into its trace's context: the root's (or the
/// flow span's) values win, the others only fill gaps.
fn merge(into: &mut TraceContext, from: TraceContext) {
    let pick = |old: &mut Option<String>, new: Option<String>, wins: bool| {
        if new.is_some() && (wins || old.is_none()) {
            *old = new;
        }
    };
    let wins = from.root_seen;
    pick(&mut into.user_key, from.user_key, wins);
    pick(&mut into.session_key, from.session_key, wins);
    pick(&mut into.flow_key, from.flow_key, wins);
    pick(&mut into.flow_name, from.flow_name, wins);
    pick(&mut into.service, from.service, false);
    into.root_seen |= from.root_seen;
}

/// A Langflow run name, `"<flow name> - <flow id>"`, when the id is a UUID.
fn run_name(name: &str) -> Option<(String, String)> {
    let (flow, id) = name.rsplit_once(" - ")?;
    let id = id.trim();
    uuid::Uuid::parse_str(id).ok()?;
    Some((cut(flow.trim().to_owned()), id.to_owned()))
}

fn component_key(attrs: &[KeyValue]) -> Option<String> {
    COMPONENT_KEYS
        .iter()
        .find_map(|k| text_of(attrs, k))
        .or_else(|| {
            // Langflow's tracers put the component id in a `trace_id`
            // attribute, beside `trace_type`.
            text_of(attrs, "trace_type").and_then(|_| text_of(attrs, "trace_id"))
        })
}

/// `"OpenAI (OpenAIModel-AbC12)"` → `"OpenAI"`; else `trace_name`'s same
/// form, else the span name.
fn component_name(span_name: &str, id: &str, attrs: &[KeyValue]) -> String {
    let strip = |s: &str| {
        s.strip_suffix(&format!(" ({id})"))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
    };
    strip(span_name)
        .or_else(|| text_of(attrs, "trace_name").and_then(|n| strip(&n).or(Some(n))))
        .map(cut)
        .unwrap_or_else(|| cut(span_name.to_owned()))
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<AttrValue<'a>> {
    let value = attrs
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        Value::StringValue(s) => AttrValue::Str(s),
        Value::IntValue(i) => AttrValue::Int(*i),
        Value::DoubleValue(d) => AttrValue::Double(*d),
        Value::BoolValue(b) => AttrValue::Bool(*b),
        _ => return None,
    })
}

/// A string (or integer) attribute as text, trimmed, cut to the column.
fn text_of(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        AttrValue::Str(s) if !s.trim().is_empty() => Some(cut(s.trim().to_owned())),
        AttrValue::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn cut(mut s: String) -> String {
    if s.chars().count() > MAX_TEXT {
        s = s.chars().take(MAX_TEXT).collect();
    }
    s
}

fn short(name: &str) -> String {
    name.chars().take(64).collect()
}

/// Lowercase hex of an id of `len` bytes; `None` if empty, of another
/// length, or all zero (OTLP's "no id").
fn id_hex(bytes: &[u8], len: usize) -> Option<String> {
    (bytes.len() == len && bytes.iter().any(|b| *b != 0)).then(|| hex::encode(bytes))
}

/// An OTLP timestamp (nanoseconds since the epoch), to the microsecond.
fn instant(nanos: u64) -> OffsetDateTime {
    let micros = i128::from(nanos / 1_000) * 1_000;
    OffsetDateTime::from_unix_timestamp_nanos(micros).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn langflow_names_are_read() {
        let id = "5f0c1b5e-8f1e-4c1a-9a57-3f0e4d8b2a11";
        assert_eq!(
            run_name(&format!("Support bot - {id}")),
            Some(("Support bot".to_owned(), id.to_owned()))
        );
        assert_eq!(run_name("openai.chat"), None);
        assert_eq!(run_name("a - not-a-uuid"), None);
        assert_eq!(
            component_name("OpenAI (OpenAIModel-AbC12)", "OpenAIModel-AbC12", &[]),
            "OpenAI"
        );
        assert_eq!(component_name("OpenAI", "OpenAIModel-AbC12", &[]), "OpenAI");
    }

    #[test]
    fn ids_must_have_their_length_and_not_be_zero() {
        assert_eq!(id_hex(&[0xab; 8], 8).as_deref(), Some("abababababababab"));
        assert_eq!(id_hex(&[0; 8], 8), None);
        assert_eq!(id_hex(&[1; 7], 8), None);
        assert_eq!(id_hex(&[], 8), None);
    }
}
