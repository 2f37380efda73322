//! Per-user counters that keep the read API flat as data grows:
//! - `total_messages`, `total_conversations`: all-time counts, incremented by
//!   ingestion (my-stats no longer sums a user's whole history);
//! - `signed_up_at`, `first_component_at`, `first_workflow_at`,
//!   `first_message_at`: when the user reached each funnel milestone, so the
//!   cohort funnel is one indexed range over `users`.
//!
//! Existing rows are filled from `daily_metrics` and `user_activity_events`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    TotalMessages,
    TotalConversations,
    SignedUpAt,
    FirstComponentAt,
    FirstWorkflowAt,
    FirstMessageAt,
}

const MILESTONES: [(&str, &str); 4] = [
    ("signed_up_at", "user_signed_up"),
    ("first_component_at", "component_created"),
    ("first_workflow_at", "workflow_created"),
    ("first_message_at", "message_sent"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for col in [
            big_integer(Users::TotalMessages).default(0).take(),
            big_integer(Users::TotalConversations).default(0).take(),
            timestamp_with_time_zone_null(Users::SignedUpAt),
            timestamp_with_time_zone_null(Users::FirstComponentAt),
            timestamp_with_time_zone_null(Users::FirstWorkflowAt),
            timestamp_with_time_zone_null(Users::FirstMessageAt),
        ] {
            m.alter_table(Table::alter().table(Users::Table).add_column(col).take())
                .await?;
        }
        m.create_index(
            Index::create()
                .name("ix_users_signed_up_at")
                .table(Users::Table)
                .col(Users::SignedUpAt)
                .take(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "UPDATE users SET \
             total_messages = COALESCE((SELECT SUM(d.message_count) FROM daily_metrics d WHERE d.user_id = users.id), 0), \
             total_conversations = COALESCE((SELECT SUM(d.conversation_count) FROM daily_metrics d WHERE d.user_id = users.id), 0)",
        )
        .await?;
        for (column, event) in MILESTONES {
            db.execute_unprepared(&format!(
                "UPDATE users SET {column} = (SELECT MIN(e.created_at) FROM user_activity_events e \
                 WHERE e.user_id = users.id AND e.event_type = '{event}')"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(
            Index::drop()
                .name("ix_users_signed_up_at")
                .table(Users::Table)
                .to_owned(),
        )
        .await?;
        for col in [
            Users::FirstMessageAt,
            Users::FirstWorkflowAt,
            Users::FirstComponentAt,
            Users::SignedUpAt,
            Users::TotalConversations,
            Users::TotalMessages,
        ] {
            m.alter_table(Table::alter().table(Users::Table).drop_column(col).take())
                .await?;
        }
        Ok(())
    }
}
