//! `user_days`: per user × UTC day (day number since 1970-01-01), the
//! counters of `user_buckets` summed over the day's 96 quarter-hours.
//!
//! A local day in any zone is a range of quarter-hours `[s, e)`, and
//! `sum[s, e) = Σ whole UTC days from s's day to e's day − P(s) + P(e)`,
//! where `P(b)` is the part of `b`'s UTC day before `b`: read either
//! forwards (the head of the day) or as the day's total minus its tail,
//! whichever is shorter. So a user's month reads about 31 day rows plus at
//! most 48 quarter-hours per day boundary (none in UTC), instead of up to
//! 2,976 quarter-hours: my-stats stays flat for a user active all day long.
//! Existing rows are filled from `user_buckets`.
//!
//! `daily_metrics`' unique key becomes `(user_id, date, workflow_key)`
//! (the same columns, so ingestion's upserts are unchanged): my-stats'
//! per-workflow query asks for a user's dates, which the old order
//! (`user_id, workflow_key, date`) could only answer by walking the user's
//! whole history.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DailyMetrics {
    Table,
    UserId,
    WorkflowKey,
    Date,
}

#[derive(DeriveIden)]
enum UserDays {
    Table,
    UserId,
    Day,
}

/// The counter columns of `user_buckets`, copied by `user_days`.
const COUNTERS: [&str; 13] = [
    "message_count",
    "user_message_count",
    "assistant_message_count",
    "conversations_started",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "unpriced_message_count",
    "unpriced_tokens",
    "error_count",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut t = Table::create();
        t.table(UserDays::Table)
            .col(uuid(UserDays::UserId))
            .col(big_integer(UserDays::Day));
        for c in COUNTERS {
            t.col(big_integer(Alias::new(c)).default(0));
        }
        m.create_table(
            t.primary_key(Index::create().col(UserDays::UserId).col(UserDays::Day))
                .take(),
        )
        .await?;
        let db = m.get_connection();
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            // Incremented in place like the other rollups (see m20261128_000008).
            db.execute_unprepared("ALTER TABLE user_days SET (fillfactor = 80)")
                .await?;
        }
        let sums = COUNTERS
            .iter()
            .map(|c| format!("SUM({c})"))
            .collect::<Vec<_>>()
            .join(", ");
        // Buckets are after 1970, so integer division is the floor on both engines.
        db.execute_unprepared(&format!(
            "INSERT INTO user_days (user_id, day, {}) \
             SELECT user_id, bucket / 96, {sums} FROM user_buckets GROUP BY user_id, bucket / 96",
            COUNTERS.join(", ")
        ))
        .await?;
        // The new key first, so the upserts always have one to conflict on.
        m.create_index(
            Index::create()
                .name("uq_daily_metrics_user_date_workflow")
                .table(DailyMetrics::Table)
                .col(DailyMetrics::UserId)
                .col(DailyMetrics::Date)
                .col(DailyMetrics::WorkflowKey)
                .unique()
                .take(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("uq_daily_metrics_user_workflow_date")
                .table(DailyMetrics::Table)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("uq_daily_metrics_user_workflow_date")
                .table(DailyMetrics::Table)
                .col(DailyMetrics::UserId)
                .col(DailyMetrics::WorkflowKey)
                .col(DailyMetrics::Date)
                .unique()
                .take(),
        )
        .await?;
        m.drop_index(
            Index::drop()
                .name("uq_daily_metrics_user_date_workflow")
                .table(DailyMetrics::Table)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(UserDays::Table).to_owned())
            .await
    }
}
