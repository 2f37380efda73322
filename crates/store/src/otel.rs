//! OpenTelemetry staging (`otel_spans`, `otel_traces`; see migration 12).
//!
//! The OTLP receiver stages the spans that matter (LLM calls with usage and
//! Langflow component spans) and what each trace told about its user,
//! session and flow. A trace's waiting LLM spans are later turned into
//! ingest items by the API crate's `otlp` module, written through the same
//! pipeline as `POST /api/v1/ingest`, and marked resolved. Staging is
//! idempotent (a re-exported span is ignored) and resolving twice is
//! harmless (the items' ids come from the trace and span ids, and the
//! ingestion ledger counts each once).

use crate::{Store, StoreResult, sql};
use charlie_domain::TokenUsage;
use sea_orm::{FromQueryResult, TransactionTrait};
use time::OffsetDateTime;

/// What a staged span is to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StagedKind {
    /// A Langflow component's span: LLM calls within it belong to it.
    Component,
    /// An LLM call with usage.
    Llm,
}

impl StagedKind {
    fn code(self) -> i16 {
        match self {
            StagedKind::Component => 1,
            StagedKind::Llm => 2,
        }
    }
}

/// One staged span.
#[derive(Debug, Clone, PartialEq)]
pub struct StagedSpan {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits.
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub kind: StagedKind,
    pub start_at: OffsetDateTime,
    pub end_at: OffsetDateTime,
    /// The Langflow component id (`OpenAIModel-AbC12`) of a component span,
    /// or of an LLM span that names it itself.
    pub component_key: Option<String>,
    pub component_name: Option<String>,
    pub model: Option<String>,
    /// LLM spans only.
    pub usage: Option<TokenUsage>,
}

/// What a trace's spans said about where it belongs; `None` = not said.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromQueryResult)]
pub struct TraceContext {
    pub trace_id: String,
    pub user_key: Option<String>,
    pub session_key: Option<String>,
    pub flow_key: Option<String>,
    pub flow_name: Option<String>,
    /// The exporter's `service.name`.
    pub service: Option<String>,
    /// The trace's root span has arrived: nothing more about the trace's
    /// context is expected.
    pub root_seen: bool,
}

/// A trace with LLM spans waiting to be resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitingTrace {
    pub context: TraceContext,
    /// Every staged component span of the trace.
    pub components: Vec<StagedSpan>,
    /// The trace's unresolved LLM spans.
    pub waiting: Vec<StagedSpan>,
}

/// The columns of `otel_spans` a [`StagedSpan`] holds, then `received_at`.
const SPAN_INSERT_COLUMNS: [&str; 11] = [
    "trace_id",
    "span_id",
    "parent_span_id",
    "kind",
    "start_at",
    "end_at",
    "component_key",
    "component_name",
    "model",
    "usage",
    "received_at",
];

/// A stored `otel_spans` row: the columns of [`SPAN_INSERT_COLUMNS`] but
/// `received_at`, `kind` as its code and `usage` as JSON text.
#[derive(FromQueryResult)]
struct SpanRow {
    trace_id: String,
    span_id: String,
    parent_span_id: Option<String>,
    kind: i16,
    start_at: OffsetDateTime,
    end_at: OffsetDateTime,
    component_key: Option<String>,
    component_name: Option<String>,
    model: Option<String>,
    usage: Option<String>,
}

impl TryFrom<SpanRow> for StagedSpan {
    type Error = crate::StoreError;

    fn try_from(row: SpanRow) -> StoreResult<StagedSpan> {
        Ok(StagedSpan {
            trace_id: row.trace_id,
            span_id: row.span_id,
            parent_span_id: row.parent_span_id,
            kind: if row.kind == 1 {
                StagedKind::Component
            } else {
                StagedKind::Llm
            },
            start_at: row.start_at,
            end_at: row.end_at,
            component_key: row.component_key,
            component_name: row.component_name,
            model: row.model,
            usage: row
                .usage
                .map(|u| serde_json::from_str(&u))
                .transpose()
                .map_err(|e| crate::StoreError::Corrupt(format!("otel_spans.usage: {e}")))?,
        })
    }
}

impl Store {
    /// Stages spans (a span already staged is left as it is) and merges what
    /// `contexts` say into their traces: the root span's values win, other
    /// spans only fill what is still unknown.
    pub async fn otel_stage(
        &self,
        spans: &[StagedSpan],
        contexts: &[TraceContext],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        // Key order, so that concurrent exports of one trace cannot deadlock.
        let mut ordered: Vec<&TraceContext> = contexts.iter().collect();
        ordered.sort_by(|a, b| a.trace_id.cmp(&b.trace_id));
        for c in ordered {
            sql::execute(
                &txn,
                "INSERT INTO otel_traces (trace_id, user_key, session_key, flow_key, flow_name, service, \
                 root_seen, first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (trace_id) DO UPDATE SET \
                 user_key = CASE WHEN excluded.root_seen THEN COALESCE(excluded.user_key, otel_traces.user_key) \
                   ELSE COALESCE(otel_traces.user_key, excluded.user_key) END, \
                 session_key = CASE WHEN excluded.root_seen THEN COALESCE(excluded.session_key, otel_traces.session_key) \
                   ELSE COALESCE(otel_traces.session_key, excluded.session_key) END, \
                 flow_key = CASE WHEN excluded.root_seen THEN COALESCE(excluded.flow_key, otel_traces.flow_key) \
                   ELSE COALESCE(otel_traces.flow_key, excluded.flow_key) END, \
                 flow_name = CASE WHEN excluded.root_seen THEN COALESCE(excluded.flow_name, otel_traces.flow_name) \
                   ELSE COALESCE(otel_traces.flow_name, excluded.flow_name) END, \
                 service = COALESCE(otel_traces.service, excluded.service), \
                 root_seen = otel_traces.root_seen OR excluded.root_seen, \
                 last_seen_at = excluded.last_seen_at",
                vec![
                    c.trace_id.clone().into(),
                    c.user_key.clone().into(),
                    c.session_key.clone().into(),
                    c.flow_key.clone().into(),
                    c.flow_name.clone().into(),
                    c.service.clone().into(),
                    c.root_seen.into(),
                    now.into(),
                ],
            )
            .await?;
        }
        let mut rows = Vec::with_capacity(spans.len());
        for s in spans {
            let usage = s
                .usage
                .map(|u| serde_json::to_string(&u))
                .transpose()
                .map_err(|e| crate::StoreError::Internal(format!("span usage: {e}")))?;
            rows.push(vec![
                s.trace_id.clone().into(),
                s.span_id.clone().into(),
                s.parent_span_id.clone().into(),
                s.kind.code().into(),
                s.start_at.into(),
                s.end_at.into(),
                s.component_key.clone().into(),
                s.component_name.clone().into(),
                s.model.clone().into(),
                usage.into(),
                now.into(),
            ]);
        }
        // One statement for the whole export; a span already staged (a
        // re-export) is left as it is.
        sql::insert_many(
            &txn,
            "otel_spans",
            &SPAN_INSERT_COLUMNS,
            rows,
            Some(sql::ignore_conflicts(&["trace_id", "span_id"])),
            &[],
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Traces with unresolved LLM spans that are ready: among `trace_ids`,
    /// those whose root has been seen; and any trace whose oldest waiting
    /// span was received before `waited_since` (up to `limit` traces).
    pub async fn otel_ready(
        &self,
        trace_ids: &[String],
        waited_since: OffsetDateTime,
        limit: u64,
    ) -> StoreResult<Vec<WaitingTrace>> {
        let mut ready: Vec<String> = Vec::new();
        if !trace_ids.is_empty() {
            let rows = sql::query_all(
                self.conn(),
                &format!(
                    "SELECT trace_id FROM otel_traces WHERE root_seen AND trace_id IN ({})",
                    sql::placeholders(1, trace_ids.len())
                ),
                trace_ids.iter().map(|t| t.clone().into()).collect(),
            )
            .await?;
            for row in rows {
                ready.push(row.try_get("", "trace_id")?);
            }
        }
        let rows = sql::query_all(
            self.conn(),
            "SELECT DISTINCT trace_id FROM otel_spans \
             WHERE kind = 2 AND resolved_at IS NULL AND received_at < $1 LIMIT $2",
            vec![waited_since.into(), (limit as i64).into()],
        )
        .await?;
        for row in rows {
            ready.push(row.try_get("", "trace_id")?);
        }
        ready.sort();
        ready.dedup();
        let mut out = Vec::new();
        for trace_id in ready {
            let spans: Vec<StagedSpan> = sql::fetch_all::<SpanRow, _>(
                self.conn(),
                &format!(
                    "SELECT {} FROM otel_spans WHERE trace_id = $1 \
                     AND (kind = 1 OR resolved_at IS NULL) ORDER BY start_at, span_id",
                    SPAN_INSERT_COLUMNS[..SPAN_INSERT_COLUMNS.len() - 1].join(", ")
                ),
                vec![trace_id.clone().into()],
            )
            .await?
            .into_iter()
            .map(StagedSpan::try_from)
            .collect::<StoreResult<_>>()?;
            let (components, waiting): (Vec<_>, Vec<_>) = spans
                .into_iter()
                .partition(|s| s.kind == StagedKind::Component);
            if waiting.is_empty() {
                continue;
            }
            let context = sql::fetch_one(
                self.conn(),
                "SELECT trace_id, user_key, session_key, flow_key, flow_name, service, root_seen \
                 FROM otel_traces WHERE trace_id = $1",
                vec![trace_id.clone().into()],
            )
            .await?
            .unwrap_or(TraceContext {
                trace_id,
                ..TraceContext::default()
            });
            out.push(WaitingTrace {
                context,
                components,
                waiting,
            });
        }
        Ok(out)
    }

    /// Marks LLM spans `(trace_id, span_id)` as written through ingestion.
    pub async fn otel_mark_resolved(
        &self,
        spans: &[(String, String)],
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        if spans.is_empty() {
            return Ok(());
        }
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        // One statement per trace (a resolution pass marks whole traces).
        let mut by_trace: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for (trace_id, span_id) in spans {
            by_trace.entry(trace_id).or_default().push(span_id);
        }
        for (trace_id, span_ids) in by_trace {
            let mut values: Vec<sea_orm::Value> = vec![now.into(), trace_id.to_owned().into()];
            values.extend(span_ids.iter().map(|s| (*s).to_owned().into()));
            sql::execute(
                &txn,
                &format!(
                    "UPDATE otel_spans SET resolved_at = $1 WHERE trace_id = $2 AND span_id IN ({})",
                    sql::placeholders(3, span_ids.len())
                ),
                values,
            )
            .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Forgets traces last seen before `before` whose LLM spans are all
    /// resolved: their messages are stored, and a span re-exported later is
    /// still counted once (the ingestion ledger knows its item id).
    /// Returns how many traces were forgotten.
    pub async fn otel_forget(&self, before: OffsetDateTime) -> StoreResult<u64> {
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let old = "SELECT trace_id FROM otel_traces t WHERE t.last_seen_at < $1 AND NOT EXISTS \
                   (SELECT 1 FROM otel_spans s WHERE s.trace_id = t.trace_id AND s.kind = 2 \
                   AND s.resolved_at IS NULL)";
        sql::execute(
            &txn,
            &format!("DELETE FROM otel_spans WHERE trace_id IN ({old})"),
            vec![before.into()],
        )
        .await?;
        let n = sql::execute(
            &txn,
            &format!("DELETE FROM otel_traces WHERE trace_id IN ({old})"),
            vec![before.into()],
        )
        .await?;
        txn.commit().await?;
        Ok(n)
    }
}
