//! Tables of the ingestion pipeline:
//! - `pending_messages`: messages whose conversation has not arrived yet. They
//!   are kept whole and moved into `messages` (and counted in the rollups) in
//!   the transaction that brings their conversation.
//! - `conversation_days`: which conversations had a message on which UTC day,
//!   so `daily_metrics.unique_sessions` can be kept exact incrementally.
//! - `usage_buckets`: the same counters as `daily_metrics` at a quarter-hour
//!   grain (`bucket` = Unix seconds div 900). Every time zone's day, including
//!   +05:45 and DST days, is a whole number of quarter-hours, so any zone's
//!   daily figures are exact sums of buckets.
//! - `users.last_message_bucket`: the bucket of the user's latest own
//!   (role `user`) message, for "active users" over windows that end now.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PendingMessages {
    Table,
    Id,
    ConversationId,
    CreatedAt,
    Payload,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ConversationDays {
    Table,
    ConversationId,
    Date,
    UserId,
}

#[derive(DeriveIden)]
enum UsageBuckets {
    Table,
    UserId,
    WorkflowKey,
    Bucket,
    WorkflowId,
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
    ErrorCount,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    LastMessageBucket,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PendingMessages::Table)
                .col(pk_uuid(PendingMessages::Id))
                .col(uuid(PendingMessages::ConversationId))
                .col(timestamp_with_time_zone(PendingMessages::CreatedAt))
                .col(json_binary(PendingMessages::Payload))
                .col(timestamp_with_time_zone(PendingMessages::ReceivedAt))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_pending_messages_conversation")
                .table(PendingMessages::Table)
                .col(PendingMessages::ConversationId)
                .take(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ConversationDays::Table)
                .col(uuid(ConversationDays::ConversationId))
                .col(date(ConversationDays::Date))
                .col(uuid(ConversationDays::UserId))
                .primary_key(
                    Index::create()
                        .col(ConversationDays::ConversationId)
                        .col(ConversationDays::Date),
                )
                .take(),
        )
        .await?;

        let mut buckets = Table::create();
        buckets
            .table(UsageBuckets::Table)
            .col(uuid(UsageBuckets::UserId))
            .col(uuid(UsageBuckets::WorkflowKey))
            .col(big_integer(UsageBuckets::Bucket))
            .col(uuid_null(UsageBuckets::WorkflowId));
        for c in [
            UsageBuckets::MessageCount,
            UsageBuckets::UserMessageCount,
            UsageBuckets::AssistantMessageCount,
            UsageBuckets::ConversationsStarted,
            UsageBuckets::InputTokens,
            UsageBuckets::OutputTokens,
            UsageBuckets::CacheReadTokens,
            UsageBuckets::CacheWriteTokens,
            UsageBuckets::ReasoningTokens,
            UsageBuckets::CostNanoUsd,
            UsageBuckets::UnpricedMessageCount,
            UsageBuckets::ErrorCount,
        ] {
            buckets.col(big_integer(c).default(0));
        }
        m.create_table(
            buckets
                .primary_key(
                    Index::create()
                        .col(UsageBuckets::UserId)
                        .col(UsageBuckets::Bucket)
                        .col(UsageBuckets::WorkflowKey),
                )
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_usage_buckets_bucket")
                .table(UsageBuckets::Table)
                .col(UsageBuckets::Bucket)
                .take(),
        )
        .await?;

        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .add_column(big_integer_null(Users::LastMessageBucket))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_users_last_message_bucket")
                .table(Users::Table)
                .col(Users::LastMessageBucket)
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_users_last_message_bucket")
                .table(Users::Table)
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .drop_column(Users::LastMessageBucket)
                .take(),
        )
        .await?;
        for t in [
            UsageBuckets::Table.into_iden(),
            ConversationDays::Table.into_iden(),
            PendingMessages::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
