//! The whole first schema: the platform's entities (users, workflows,
//! components, conversations, messages), the plan's three analytics tables
//! (`daily_metrics`, `user_activity_events`, `error_logs`), and the service's
//! own bookkeeping (ingestion ledger, funnel milestones, API keys).
//!
//! Choices that are expensive to change later:
//! - Append-only tables (`messages`, `user_activity_events`, `error_logs`) key
//!   on `(id, created_at)` so PostgreSQL can range-partition them by month
//!   (every unique key of a partitioned table must hold the partition column).
//!   Idempotent ingestion does not rely on those keys: `ingested_items` keeps
//!   one row per item id, unpartitioned.
//! - Every per-user table carries `user_id`, messages included, so the schema
//!   can be distributed by user later.
//! - Money is a whole number of nano-dollars (`*_nano_usd`, BIGINT): exact on
//!   both engines, 1e-9 USD resolution, up to about 9.2e9 USD.
//! - `daily_metrics` keys on `workflow_key`, never NULL (the nil UUID stands
//!   for "no workflow"), because `UNIQUE(user_id, workflow_id, date)` lets
//!   rows with a NULL `workflow_id` repeat on both engines. A CHECK keeps
//!   `workflow_key` equal to `workflow_id` (or nil when it is NULL).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    ExternalId,
    Email,
    Timezone,
    MonthlyBudgetNanoUsd,
    WeeklyReportOptOut,
    IsPlaceholder,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Workflows {
    Table,
    Id,
    UserId,
    Name,
    IsPlaceholder,
    CreatedAt,
    UpdatedAt,
}

/// Same columns as `Workflows`, created from its identifiers.
#[derive(DeriveIden)]
enum AgentComponents {
    Table,
}

#[derive(DeriveIden)]
enum Conversations {
    Table,
    Id,
    UserId,
    WorkflowId,
    LangflowSessionId,
    IsPlaceholder,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    CreatedAt,
    UserId,
    ConversationId,
    WorkflowId,
    Role,
    Model,
    HasUsage,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    CacheWrite1hTokens,
    ReasoningTokens,
    CostNanoUsd,
    PricingStatus,
    PriceRef,
}

#[derive(DeriveIden)]
enum DailyMetrics {
    Table,
    Id,
    UserId,
    WorkflowId,
    WorkflowKey,
    Date,
    MessageCount,
    UserMessageCount,
    AssistantMessageCount,
    ConversationCount,
    UniqueSessions,
    AvgMessagesPerSession,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    TotalTokens,
    EstimatedCostNanoUsd,
    UnpricedMessageCount,
    ErrorCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum UserActivityEvents {
    Table,
    Id,
    CreatedAt,
    UserId,
    EventType,
    EventCategory,
    WorkflowId,
    ComponentId,
    ConversationId,
    Metadata,
}

#[derive(DeriveIden)]
enum ErrorLogs {
    Table,
    Id,
    CreatedAt,
    UserId,
    Service,
    ErrorType,
    ErrorMessage,
    ErrorCode,
    WorkflowId,
    Endpoint,
    RequestId,
    Metadata,
    SentryEventId,
}

#[derive(DeriveIden)]
enum IngestedItems {
    Table,
    Id,
    ItemType,
    ContentHash,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum FunnelMilestones {
    Table,
    EventType,
    EntityId,
    UserId,
    EventId,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    KeyHash,
    Prefix,
    CreatedAt,
    RevokedAt,
    LastUsedAt,
}

fn fk_user(
    table: impl IntoIden + 'static,
    on_delete: ForeignKeyAction,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from_tbl(table)
        .from_col(Alias::new("user_id"))
        .to_tbl(Users::Table)
        .to_col(Users::Id)
        .on_delete(on_delete)
        .take()
}

fn index(table: impl IntoIden + 'static, name: &str, cols: &[&str]) -> IndexCreateStatement {
    let mut idx = Index::create().name(name).table(table).take();
    for c in cols {
        idx.col(Alias::new(*c));
    }
    idx
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(pk_uuid(Users::Id))
                .col(string_len_null(Users::ExternalId, 255).unique_key())
                .col(string_len_null(Users::Email, 320))
                .col(string_len_null(Users::Timezone, 64))
                .col(big_integer_null(Users::MonthlyBudgetNanoUsd))
                .col(boolean(Users::WeeklyReportOptOut).default(false))
                .col(boolean(Users::IsPlaceholder).default(false))
                .col(timestamp_with_time_zone(Users::CreatedAt))
                .col(timestamp_with_time_zone(Users::UpdatedAt))
                .take(),
        )
        .await?;
        m.create_index(index(Users::Table, "ix_users_created_at", &["created_at"]))
            .await?;

        for (table, name) in [
            (Workflows::Table.into_iden(), "workflows"),
            (AgentComponents::Table.into_iden(), "agent_components"),
        ] {
            m.create_table(
                Table::create()
                    .table(table.clone())
                    .col(pk_uuid(Workflows::Id))
                    .col(uuid(Workflows::UserId))
                    .col(string_len(Workflows::Name, 255))
                    .col(boolean(Workflows::IsPlaceholder).default(false))
                    .col(timestamp_with_time_zone(Workflows::CreatedAt))
                    .col(timestamp_with_time_zone(Workflows::UpdatedAt))
                    .foreign_key(&mut fk_user(table.clone(), ForeignKeyAction::Cascade))
                    .take(),
            )
            .await?;
            m.create_index(index(
                table,
                &format!("ix_{name}_user_created"),
                &["user_id", "created_at"],
            ))
            .await?;
        }

        m.create_table(
            Table::create()
                .table(Conversations::Table)
                .col(pk_uuid(Conversations::Id))
                .col(uuid(Conversations::UserId))
                .col(uuid_null(Conversations::WorkflowId))
                .col(string_len_null(Conversations::LangflowSessionId, 255))
                .col(boolean(Conversations::IsPlaceholder).default(false))
                .col(timestamp_with_time_zone(Conversations::CreatedAt))
                .col(timestamp_with_time_zone(Conversations::UpdatedAt))
                .foreign_key(&mut fk_user(
                    Conversations::Table,
                    ForeignKeyAction::Cascade,
                ))
                .take(),
        )
        .await?;
        m.create_index(index(
            Conversations::Table,
            "ix_conversations_user_created",
            &["user_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            Conversations::Table,
            "ix_conversations_workflow",
            &["workflow_id"],
        ))
        .await?;
        m.create_index(index(
            Conversations::Table,
            "ix_conversations_langflow_session",
            &["langflow_session_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Messages::Table)
                .col(uuid(Messages::Id))
                .col(timestamp_with_time_zone(Messages::CreatedAt))
                .col(uuid(Messages::UserId))
                .col(uuid(Messages::ConversationId))
                .col(uuid_null(Messages::WorkflowId))
                .col(string_len(Messages::Role, 16))
                .col(string_len_null(Messages::Model, 255))
                .col(boolean(Messages::HasUsage))
                .col(big_integer(Messages::InputTokens))
                .col(big_integer(Messages::OutputTokens))
                .col(big_integer(Messages::CacheReadTokens))
                .col(big_integer(Messages::CacheWriteTokens))
                .col(big_integer(Messages::CacheWrite1hTokens))
                .col(big_integer(Messages::ReasoningTokens))
                .col(big_integer_null(Messages::CostNanoUsd))
                .col(string_len(Messages::PricingStatus, 16))
                .col(string_len_null(Messages::PriceRef, 255))
                .primary_key(Index::create().col(Messages::Id).col(Messages::CreatedAt))
                .foreign_key(&mut fk_user(Messages::Table, ForeignKeyAction::Cascade))
                .take(),
        )
        .await?;
        m.create_index(index(
            Messages::Table,
            "ix_messages_user_created",
            &["user_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            Messages::Table,
            "ix_messages_conversation",
            &["conversation_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            Messages::Table,
            "ix_messages_created",
            &["created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(DailyMetrics::Table)
                .col(pk_uuid(DailyMetrics::Id))
                .col(uuid(DailyMetrics::UserId))
                .col(uuid_null(DailyMetrics::WorkflowId))
                .col(uuid(DailyMetrics::WorkflowKey))
                .col(date(DailyMetrics::Date))
                .col(big_integer(DailyMetrics::MessageCount).default(0))
                .col(big_integer(DailyMetrics::UserMessageCount).default(0))
                .col(big_integer(DailyMetrics::AssistantMessageCount).default(0))
                .col(big_integer(DailyMetrics::ConversationCount).default(0))
                .col(big_integer(DailyMetrics::UniqueSessions).default(0))
                .col(double(DailyMetrics::AvgMessagesPerSession).default(0.0))
                .col(big_integer(DailyMetrics::InputTokens).default(0))
                .col(big_integer(DailyMetrics::OutputTokens).default(0))
                .col(big_integer(DailyMetrics::CacheReadTokens).default(0))
                .col(big_integer(DailyMetrics::CacheWriteTokens).default(0))
                .col(big_integer(DailyMetrics::ReasoningTokens).default(0))
                .col(big_integer(DailyMetrics::TotalTokens).default(0))
                .col(big_integer(DailyMetrics::EstimatedCostNanoUsd).default(0))
                .col(big_integer(DailyMetrics::UnpricedMessageCount).default(0))
                .col(big_integer(DailyMetrics::ErrorCount).default(0))
                .col(timestamp_with_time_zone(DailyMetrics::CreatedAt))
                .col(timestamp_with_time_zone(DailyMetrics::UpdatedAt))
                .check(Expr::cust(
                    "(workflow_id IS NULL) OR (workflow_id = workflow_key)",
                ))
                .foreign_key(&mut fk_user(DailyMetrics::Table, ForeignKeyAction::Cascade))
                .take(),
        )
        .await?;
        m.create_index(
            index(
                DailyMetrics::Table,
                "uq_daily_metrics_user_workflow_date",
                &["user_id", "workflow_key", "date"],
            )
            .unique()
            .take(),
        )
        .await?;
        m.create_index(index(
            DailyMetrics::Table,
            "ix_daily_metrics_user_date",
            &["user_id", "date"],
        ))
        .await?;
        m.create_index(index(
            DailyMetrics::Table,
            "ix_daily_metrics_workflow",
            &["workflow_id"],
        ))
        .await?;
        m.create_index(index(
            DailyMetrics::Table,
            "ix_daily_metrics_date",
            &["date"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(UserActivityEvents::Table)
                .col(uuid(UserActivityEvents::Id))
                .col(timestamp_with_time_zone(UserActivityEvents::CreatedAt))
                .col(uuid(UserActivityEvents::UserId))
                .col(string_len(UserActivityEvents::EventType, 50))
                .col(string_len(UserActivityEvents::EventCategory, 50))
                .col(uuid_null(UserActivityEvents::WorkflowId))
                .col(uuid_null(UserActivityEvents::ComponentId))
                .col(uuid_null(UserActivityEvents::ConversationId))
                .col(json_binary(UserActivityEvents::Metadata))
                .primary_key(
                    Index::create()
                        .col(UserActivityEvents::Id)
                        .col(UserActivityEvents::CreatedAt),
                )
                .foreign_key(&mut fk_user(
                    UserActivityEvents::Table,
                    ForeignKeyAction::Cascade,
                ))
                .take(),
        )
        .await?;
        m.create_index(index(
            UserActivityEvents::Table,
            "ix_user_activity_user_type",
            &["user_id", "event_type"],
        ))
        .await?;
        m.create_index(index(
            UserActivityEvents::Table,
            "ix_user_activity_category",
            &["event_category", "created_at"],
        ))
        .await?;
        m.create_index(index(
            UserActivityEvents::Table,
            "ix_user_activity_type_created",
            &["event_type", "created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(ErrorLogs::Table)
                .col(uuid(ErrorLogs::Id))
                .col(timestamp_with_time_zone(ErrorLogs::CreatedAt))
                .col(uuid_null(ErrorLogs::UserId))
                .col(string_len(ErrorLogs::Service, 50))
                .col(string_len(ErrorLogs::ErrorType, 100))
                .col(text(ErrorLogs::ErrorMessage))
                .col(string_len_null(ErrorLogs::ErrorCode, 50))
                .col(uuid_null(ErrorLogs::WorkflowId))
                .col(string_len_null(ErrorLogs::Endpoint, 200))
                .col(string_len_null(ErrorLogs::RequestId, 100))
                .col(json_binary(ErrorLogs::Metadata))
                .col(string_len_null(ErrorLogs::SentryEventId, 100))
                .primary_key(Index::create().col(ErrorLogs::Id).col(ErrorLogs::CreatedAt))
                .foreign_key(&mut fk_user(ErrorLogs::Table, ForeignKeyAction::SetNull))
                .take(),
        )
        .await?;
        m.create_index(index(
            ErrorLogs::Table,
            "ix_error_logs_service",
            &["service", "created_at"],
        ))
        .await?;
        m.create_index(index(
            ErrorLogs::Table,
            "ix_error_logs_user",
            &["user_id", "created_at"],
        ))
        .await?;
        m.create_index(index(
            ErrorLogs::Table,
            "ix_error_logs_created",
            &["created_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(IngestedItems::Table)
                .col(pk_uuid(IngestedItems::Id))
                .col(string_len(IngestedItems::ItemType, 32))
                .col(string_len(IngestedItems::ContentHash, 64))
                .col(timestamp_with_time_zone(IngestedItems::ReceivedAt))
                .take(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(FunnelMilestones::Table)
                .col(string_len(FunnelMilestones::EventType, 50))
                .col(uuid(FunnelMilestones::EntityId))
                .col(uuid(FunnelMilestones::UserId))
                .col(uuid(FunnelMilestones::EventId))
                .primary_key(
                    Index::create()
                        .col(FunnelMilestones::EventType)
                        .col(FunnelMilestones::EntityId),
                )
                .take(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(pk_uuid(ApiKeys::Id))
                .col(string_len(ApiKeys::Name, 100))
                .col(string_len_uniq(ApiKeys::KeyHash, 64))
                .col(string_len(ApiKeys::Prefix, 16))
                .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
                .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
                .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let tables: [DynIden; 11] = [
            ApiKeys::Table.into_iden(),
            FunnelMilestones::Table.into_iden(),
            IngestedItems::Table.into_iden(),
            ErrorLogs::Table.into_iden(),
            UserActivityEvents::Table.into_iden(),
            DailyMetrics::Table.into_iden(),
            Messages::Table.into_iden(),
            Conversations::Table.into_iden(),
            AgentComponents::Table.into_iden(),
            Workflows::Table.into_iden(),
            Users::Table.into_iden(),
        ];
        for t in tables {
            m.drop_table(Table::drop().table(t).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
