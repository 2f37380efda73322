//! Cost and tokens per Langflow component.
//!
//! - `messages.component_id`: the platform component (`agent_components`
//!   row) that made the LLM call, when the platform says so.
//! - `component_buckets`: per user × workflow-or-none × component ×
//!   quarter-hour, the message, token and cost counters of `usage_buckets`
//!   for messages that name a component (no rows for the others: their
//!   figures are in `usage_buckets` already). `workflow_key` is never NULL
//!   (nil UUID = no workflow) for the reason given for `daily_metrics`, and
//!   `workflow_id` is the same value with NULL for none, for reads. There is
//!   no model dimension: a Langflow component is configured with one model,
//!   so the model would add a text column to every key for nearly no extra
//!   information (per-model figures are in `platform_buckets`).
//!
//! Existing messages have no component, so there is nothing to fill.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Messages {
    Table,
    ComponentId,
}

#[derive(DeriveIden)]
enum ComponentBuckets {
    Table,
    UserId,
    Bucket,
    WorkflowKey,
    ComponentId,
    WorkflowId,
}

/// The counters kept per component: those of `usage_buckets` that describe
/// LLM calls (conversations and errors have no component).
const COUNTERS: [&str; 9] = [
    "message_count",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "unpriced_message_count",
    "unpriced_tokens",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Messages::Table)
                .add_column(uuid_null(Messages::ComponentId))
                .take(),
        )
        .await?;
        let mut t = Table::create();
        t.table(ComponentBuckets::Table)
            .col(uuid(ComponentBuckets::UserId))
            .col(big_integer(ComponentBuckets::Bucket))
            .col(uuid(ComponentBuckets::WorkflowKey))
            .col(uuid(ComponentBuckets::ComponentId))
            .col(uuid_null(ComponentBuckets::WorkflowId));
        for c in COUNTERS {
            t.col(big_integer(Alias::new(c)).default(0));
        }
        // User first: a user's breakdown is one range of this key.
        m.create_table(
            t.primary_key(
                Index::create()
                    .col(ComponentBuckets::UserId)
                    .col(ComponentBuckets::Bucket)
                    .col(ComponentBuckets::WorkflowKey)
                    .col(ComponentBuckets::ComponentId),
            )
            .take(),
        )
        .await?;
        // The admin's cost report reads every user's buckets of a period.
        m.create_index(
            Index::create()
                .name("ix_component_buckets_bucket")
                .table(ComponentBuckets::Table)
                .col(ComponentBuckets::Bucket)
                .take(),
        )
        .await?;
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // Incremented in place like the other rollups (see
            // m20261128_000008): room on the page keeps the updates HOT.
            m.get_connection()
                .execute_unprepared("ALTER TABLE component_buckets SET (fillfactor = 80)")
                .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(
            Table::drop()
                .table(ComponentBuckets::Table)
                .if_exists()
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Messages::Table)
                .drop_column(Messages::ComponentId)
                .take(),
        )
        .await
    }
}
