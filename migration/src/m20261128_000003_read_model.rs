//! What the read API needs beyond the ingestion tables:
//! - `platform_buckets`: platform-wide counters per quarter-hour and model
//!   (empty string = no model), so admin totals over any time zone's days read
//!   a few hundred rows instead of every user's buckets, and costs can be
//!   grouped by model.
//! - `unpriced_tokens` on the rollups: tokens of messages whose model has no
//!   price, reported beside the cost instead of being priced at $0.
//! - an index to find a cohort's funnel milestones by user.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PlatformBuckets {
    Table,
    Bucket,
    Model,
    MessageCount,
    UserMessageCount,
    AssistantMessageCount,
    ConversationsStarted,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    CostNanoUsd,
    UnpricedMessageCount,
    UnpricedTokens,
    ErrorCount,
}

#[derive(DeriveIden)]
enum DailyMetrics {
    Table,
    UnpricedTokens,
}

#[derive(DeriveIden)]
enum UsageBuckets {
    Table,
    UnpricedTokens,
}

#[derive(DeriveIden)]
enum FunnelMilestones {
    Table,
    UserId,
    EventType,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut t = Table::create();
        t.table(PlatformBuckets::Table)
            .col(big_integer(PlatformBuckets::Bucket))
            .col(string_len(PlatformBuckets::Model, 255));
        for c in [
            PlatformBuckets::MessageCount,
            PlatformBuckets::UserMessageCount,
            PlatformBuckets::AssistantMessageCount,
            PlatformBuckets::ConversationsStarted,
            PlatformBuckets::InputTokens,
            PlatformBuckets::OutputTokens,
            PlatformBuckets::CacheReadTokens,
            PlatformBuckets::CacheWriteTokens,
            PlatformBuckets::ReasoningTokens,
            PlatformBuckets::CostNanoUsd,
            PlatformBuckets::UnpricedMessageCount,
            PlatformBuckets::UnpricedTokens,
            PlatformBuckets::ErrorCount,
        ] {
            t.col(big_integer(c).default(0));
        }
        m.create_table(
            t.primary_key(
                Index::create()
                    .col(PlatformBuckets::Bucket)
                    .col(PlatformBuckets::Model),
            )
            .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(DailyMetrics::Table)
                .add_column(big_integer(DailyMetrics::UnpricedTokens).default(0))
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UsageBuckets::Table)
                .add_column(big_integer(UsageBuckets::UnpricedTokens).default(0))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_funnel_milestones_user_type")
                .table(FunnelMilestones::Table)
                .col(FunnelMilestones::UserId)
                .col(FunnelMilestones::EventType)
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_funnel_milestones_user_type")
                .table(FunnelMilestones::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(UsageBuckets::Table)
                .drop_column(UsageBuckets::UnpricedTokens)
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(DailyMetrics::Table)
                .drop_column(DailyMetrics::UnpricedTokens)
                .take(),
        )
        .await?;
        m.drop_table(
            Table::drop()
                .table(PlatformBuckets::Table)
                .if_exists()
                .take(),
        )
        .await?;
        Ok(())
    }
}
