//! The PostHog outbox: one row per `user_activity_events` row still to be
//! forwarded to PostHog, written in the ingest transaction of the event
//! (only while forwarding is configured).
//!
//! A row names its event (the payload is built from the event and its user
//! when it is sent), so the queue stays small and the user's current
//! `external_id` is the `distinct_id`. A delivered row is deleted; a row
//! PostHog rejected for good keeps `failed_at_ms` and `last_error`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PosthogOutbox {
    Table,
    EventId,
    EventAt,
    EnqueuedAtMs,
    NextAttemptMs,
    Attempts,
    LastError,
    FailedAtMs,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(PosthogOutbox::Table)
                .col(pk_uuid(PosthogOutbox::EventId))
                // The event's `created_at` (the other half of its key).
                .col(timestamp_with_time_zone(PosthogOutbox::EventAt))
                .col(big_integer(PosthogOutbox::EnqueuedAtMs))
                .col(big_integer(PosthogOutbox::NextAttemptMs))
                .col(integer(PosthogOutbox::Attempts).default(0))
                .col(text_null(PosthogOutbox::LastError))
                .col(big_integer_null(PosthogOutbox::FailedAtMs))
                .to_owned(),
        )
        .await?;
        // The worker's question: which rows are due, oldest first.
        m.create_index(
            Index::create()
                .name("posthog_outbox_due")
                .table(PosthogOutbox::Table)
                .col(PosthogOutbox::FailedAtMs)
                .col(PosthogOutbox::NextAttemptMs)
                .to_owned(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(PosthogOutbox::Table).to_owned())
            .await?;
        Ok(())
    }
}
