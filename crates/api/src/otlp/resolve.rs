//! From a staged trace to ingest items, written through the same pipeline
//! as `POST /api/v1/ingest` (`Store::ingest`): same checks, same pricing,
//! same rollups, same idempotency.
//!
//! Identities (UUIDs derived with v5 under one namespace, so that a
//! re-export, a second instance or a retry derive the same ones):
//! - user: the trace's user id when it is a UUID (Langflow's user ids are,
//!   so a platform that sends its users under those ids joins them), else
//!   derived from it; a trace that never names a user belongs to one user
//!   per exporting service, `otel-service:<service.name>`, so its spend is
//!   counted (in the platform totals and on that user) and never dropped;
//! - workflow: derived from the user and the flow id (Langflow flows belong
//!   to one user);
//! - conversation: derived from the user and the session id, or from the
//!   trace when there is no session;
//! - component: derived from the workflow (else the user) and Langflow's
//!   component id (`OpenAIModel-AbC12`, unique within a flow);
//! - message: derived from the trace and span ids: a span exported twice is
//!   one message (the ingestion ledger refuses the second as a duplicate).
//!
//! An LLM span belongs to the component span that is its nearest staged
//! ancestor, else to the innermost component span whose time range holds
//! its own (Langflow's Traceloop tracer does not make component spans the
//! parents of the LLM calls made inside them), else to none.

use crate::AppState;
use charlie_domain::rfc3339;
use charlie_store::{
    StoreResult,
    ingest::Outcome,
    otel::{StagedSpan, WaitingTrace},
};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;
use uuid::Uuid;

/// The namespace of every id derived from OpenTelemetry data.
const NAMESPACE: Uuid = Uuid::from_u128(0x6c1e_4d7a_2b9f_4e35_9a0c_8f3d_51b2_c7e4);

/// How many traces one resolution pass takes at most.
const TRACES_PER_PASS: u64 = 200;

fn derive(parts: &[&str]) -> Uuid {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes())
}

/// What a resolution pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    /// LLM spans written as new messages.
    pub messages: usize,
    /// LLM spans already written (re-exports, a second pass).
    pub duplicates: usize,
    /// LLM spans the ingestion checks refused (logged with their reason).
    pub refused: usize,
}

/// Resolves the waiting LLM spans of `trace_ids` whose context is complete,
/// and of any trace that has waited longer than the configured wait.
pub async fn resolve(
    state: &AppState,
    trace_ids: &[String],
    now: OffsetDateTime,
) -> StoreResult<Resolved> {
    let waited_since = now - state.settings.otel_trace_wait;
    let ready = state
        .store
        .otel_ready(trace_ids, waited_since, TRACES_PER_PASS)
        .await?;
    let mut total = Resolved::default();
    for trace in ready {
        let (items, span_of_item) = items_for(&trace);
        let report =
            crate::service::ingest::ingest(&state.store, &items, &state.catalog, now).await?;
        state.metrics.observe_ingest(&report);
        for (result, item) in report.results.iter().zip(&items) {
            let Some(span) = result.id.and_then(|id| span_of_item.get(&id)) else {
                if result.outcome == Outcome::Error {
                    tracing::warn!(
                        trace_id = %trace.context.trace_id,
                        item = %item,
                        error = ?result.error,
                        "an entity derived from an OpenTelemetry trace was refused"
                    );
                }
                continue;
            };
            match result.outcome {
                Outcome::Created | Outcome::Updated => total.messages += 1,
                Outcome::Duplicate => total.duplicates += 1,
                Outcome::Error => {
                    total.refused += 1;
                    tracing::warn!(
                        trace_id = %trace.context.trace_id,
                        span_id = %span,
                        error = ?result.error,
                        "an LLM span was refused by the ingestion checks"
                    );
                }
            }
        }
        let done: Vec<(String, String)> = trace
            .waiting
            .iter()
            .map(|s| (s.trace_id.clone(), s.span_id.clone()))
            .collect();
        state.store.otel_mark_resolved(&done, now).await?;
    }
    state.metrics.observe_otel_resolved(total);
    Ok(total)
}

/// The ingest items of a trace's waiting spans, and which message item
/// stands for which span.
fn items_for(trace: &WaitingTrace) -> (Vec<Value>, HashMap<Uuid, String>) {
    let c = &trace.context;
    let user_id = match c.user_key.as_deref() {
        Some(key) => Uuid::parse_str(key).unwrap_or_else(|_| derive(&["user", key])),
        None => derive(&[
            "otel-service",
            c.service.as_deref().unwrap_or("unknown_service"),
        ]),
    };
    let user = user_id.to_string();
    let first = trace
        .waiting
        .iter()
        .map(|s| s.start_at)
        .min()
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let mut items = Vec::new();
    let workflow_id = c
        .flow_key
        .as_deref()
        .map(|flow| derive(&["flow", &user, flow]));
    if let Some(workflow_id) = workflow_id {
        let name = c
            .flow_name
            .clone()
            .or_else(|| c.flow_key.clone())
            .unwrap_or_default();
        items.push(json!({
            "id": workflow_id, "type": "workflow.upsert", "timestamp": rfc3339(first),
            "body": {"user_id": user_id, "name": name},
        }));
    }
    let conversation_id = match c.session_key.as_deref() {
        Some(session) => derive(&["session", &user, session]),
        None => derive(&["trace", &c.trace_id]),
    };
    let mut conversation = json!({"user_id": user_id});
    if let Some(w) = workflow_id {
        conversation["workflow_id"] = json!(w);
    }
    if let Some(session) = &c.session_key {
        conversation["langflow_session_id"] = json!(session);
    }
    items.push(json!({
        "id": conversation_id, "type": "conversation.upsert", "timestamp": rfc3339(first),
        "body": conversation,
    }));

    let owner = workflow_id.map_or_else(|| user.clone(), |w| w.to_string());
    let mut components: BTreeMap<Uuid, (String, OffsetDateTime)> = BTreeMap::new();
    let mut span_of_item = HashMap::new();
    let mut messages = Vec::new();
    for span in &trace.waiting {
        let component = component_of(span, &trace.components).map(|(key, name)| {
            let id = derive(&["component", &owner, key]);
            let entry = components
                .entry(id)
                .or_insert_with(|| (name.to_owned(), span.start_at));
            entry.1 = entry.1.min(span.start_at);
            id
        });
        let id = derive(&["span", &span.trace_id, &span.span_id]);
        let mut body = json!({
            "conversation_id": conversation_id,
            "role": "assistant",
            "usage": span.usage,
        });
        if let Some(model) = &span.model {
            body["model"] = json!(model);
        }
        if let Some(component) = component {
            body["component_id"] = json!(component);
        }
        span_of_item.insert(id, span.span_id.clone());
        messages.push(json!({
            "id": id, "type": "message.create", "timestamp": rfc3339(span.end_at), "body": body,
        }));
    }
    for (id, (name, at)) in components {
        items.push(json!({
            "id": id, "type": "component.upsert", "timestamp": rfc3339(at),
            "body": {"user_id": user_id, "name": name},
        }));
    }
    items.extend(messages);
    (items, span_of_item)
}

/// The component an LLM span belongs to: its own, its nearest component
/// ancestor, or the innermost component span holding it in time.
fn component_of<'a>(
    span: &'a StagedSpan,
    components: &'a [StagedSpan],
) -> Option<(&'a str, &'a str)> {
    let named = |s: &'a StagedSpan| {
        s.component_key
            .as_deref()
            .map(|k| (k, s.component_name.as_deref().unwrap_or(k)))
    };
    if let Some(own) = named(span) {
        return Some(own);
    }
    let by_id: HashMap<&str, &StagedSpan> =
        components.iter().map(|c| (c.span_id.as_str(), c)).collect();
    let mut parent = span.parent_span_id.as_deref();
    // At most as many steps as there are components: a cycle cannot loop.
    for _ in 0..=components.len() {
        let Some(p) = parent.and_then(|p| by_id.get(p)) else {
            break;
        };
        if let Some(found) = named(p) {
            return Some(found);
        }
        parent = p.parent_span_id.as_deref();
    }
    let holding: Vec<&StagedSpan> = components
        .iter()
        .filter(|c| c.start_at <= span.start_at && span.end_at <= c.end_at)
        .collect();
    let shortest = holding.iter().map(|c| c.end_at - c.start_at).min()?;
    let mut innermost = holding
        .into_iter()
        .filter(|c| c.end_at - c.start_at == shortest);
    match (innermost.next(), innermost.next()) {
        // Two components equally close: the span is not attributed to either.
        (Some(only), None) => named(only),
        _ => None,
    }
}

/// Resolves traces that waited long enough, and forgets old resolved ones,
/// until the server stops.
pub async fn sweeper(state: AppState) {
    // Half the wait, between 0.2 and 5 seconds.
    let half: time::Duration = state.settings.otel_trace_wait / 2;
    let millis = half.whole_milliseconds().clamp(200, 5_000) as u64;
    let every = std::time::Duration::from_millis(millis);
    let mut last_forget = OffsetDateTime::UNIX_EPOCH;
    loop {
        tokio::time::sleep(every).await;
        let now = OffsetDateTime::now_utc();
        if let Err(e) = resolve(&state, &[], now).await {
            tracing::warn!(error = %e, "resolving waiting OpenTelemetry spans failed; trying again");
            continue;
        }
        if now - last_forget > time::Duration::hours(1) {
            last_forget = now;
            match state.store.otel_forget(now - time::Duration::days(1)).await {
                Ok(n) if n > 0 => {
                    tracing::info!(traces = n, "forgot resolved OpenTelemetry traces")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "forgetting resolved traces failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use charlie_store::otel::StagedKind;
    use time::macros::datetime;

    fn span(
        id: &str,
        parent: Option<&str>,
        kind: StagedKind,
        from: i64,
        to: i64,
        key: Option<&str>,
    ) -> StagedSpan {
        let t0 = datetime!(2026-12-01 10:00 UTC);
        StagedSpan {
            trace_id: "t".into(),
            span_id: id.into(),
            parent_span_id: parent.map(str::to_owned),
            kind,
            start_at: t0 + time::Duration::seconds(from),
            end_at: t0 + time::Duration::seconds(to),
            component_key: key.map(str::to_owned),
            component_name: key.map(|k| format!("{k} name")),
            model: None,
            usage: None,
        }
    }

    #[test]
    fn llm_spans_find_their_component() {
        use StagedKind::{Component, Llm};
        let components = [
            span("c1", None, Component, 0, 10, Some("Agent-1")),
            span("c2", Some("c1"), Component, 2, 8, Some("OpenAIModel-2")),
            span("c3", None, Component, 20, 30, Some("Tool-3")),
            span("c4", None, Component, 20, 30, Some("Tool-4")),
        ];
        #[rustfmt::skip]
        let cases: &[(StagedSpan, Option<&str>)] = &[
            // Its own component id wins.
            (span("l0", Some("c2"), Llm, 3, 4, Some("Own-0")), Some("Own-0")),
            // The nearest component ancestor.
            (span("l1", Some("c1"), Llm, 3, 4, None), Some("Agent-1")),
            // No staged parent: the innermost component holding it in time.
            (span("l2", Some("x"), Llm, 3, 4, None), Some("OpenAIModel-2")),
            (span("l3", None, Llm, 1, 9, None), Some("Agent-1")),
            // Two components equally close: neither.
            (span("l4", None, Llm, 21, 22, None), None),
            // Outside every component.
            (span("l5", None, Llm, 40, 41, None), None),
        ];
        for (llm, want) in cases {
            assert_eq!(
                component_of(llm, &components).map(|c| c.0),
                *want,
                "{}",
                llm.span_id
            );
        }
    }
}
