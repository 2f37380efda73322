//! OpenTelemetry staging: the spans an OTLP export delivered that matter to
//! us (LLM calls with usage, Langflow component spans) and what each trace
//! has told about its user, session and flow so far.
//!
//! Exporters send a trace's spans as they end (Langflow's Traceloop tracer
//! posts one span per request, children before the root), so an LLM span
//! often arrives before the span that names its user or flow. It waits here
//! until its trace is complete enough or a grace period has passed, and is
//! then written through the ingestion pipeline once (its item id is derived
//! from the trace and span ids, so a re-export counts once).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OtelSpans {
    Table,
    TraceId,
    SpanId,
    ParentSpanId,
    Kind,
    StartAt,
    EndAt,
    ComponentKey,
    ComponentName,
    Model,
    Usage,
    ReceivedAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum OtelTraces {
    Table,
    TraceId,
    UserKey,
    SessionKey,
    FlowKey,
    FlowName,
    Service,
    RootSeen,
    FirstSeenAt,
    LastSeenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(OtelSpans::Table)
                .col(string_len(OtelSpans::TraceId, 32))
                .col(string_len(OtelSpans::SpanId, 16))
                .col(string_len_null(OtelSpans::ParentSpanId, 16))
                // 1 = a component span, 2 = an LLM call with usage.
                .col(small_integer(OtelSpans::Kind))
                .col(timestamp_with_time_zone(OtelSpans::StartAt))
                .col(timestamp_with_time_zone(OtelSpans::EndAt))
                .col(string_len_null(OtelSpans::ComponentKey, 255))
                .col(string_len_null(OtelSpans::ComponentName, 255))
                .col(string_len_null(OtelSpans::Model, 255))
                // The normalized usage as JSON (LLM spans only).
                .col(text_null(OtelSpans::Usage))
                .col(timestamp_with_time_zone(OtelSpans::ReceivedAt))
                .col(timestamp_with_time_zone_null(OtelSpans::ResolvedAt))
                .primary_key(
                    Index::create()
                        .col(OtelSpans::TraceId)
                        .col(OtelSpans::SpanId),
                )
                .to_owned(),
        )
        .await?;
        // The sweeper's question: which LLM spans still wait, oldest first.
        m.create_index(
            Index::create()
                .name("otel_spans_waiting")
                .table(OtelSpans::Table)
                .col(OtelSpans::Kind)
                .col(OtelSpans::ResolvedAt)
                .col(OtelSpans::ReceivedAt)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(OtelTraces::Table)
                .col(string_len(OtelTraces::TraceId, 32).primary_key())
                .col(string_len_null(OtelTraces::UserKey, 255))
                .col(string_len_null(OtelTraces::SessionKey, 255))
                .col(string_len_null(OtelTraces::FlowKey, 255))
                .col(string_len_null(OtelTraces::FlowName, 255))
                .col(string_len_null(OtelTraces::Service, 255))
                .col(boolean(OtelTraces::RootSeen).default(false))
                .col(timestamp_with_time_zone(OtelTraces::FirstSeenAt))
                .col(timestamp_with_time_zone(OtelTraces::LastSeenAt))
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(OtelTraces::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(OtelSpans::Table).to_owned())
            .await?;
        Ok(())
    }
}
