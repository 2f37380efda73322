//! Rollups that keep the read API flat as data grows (issue 5, item 8):
//! - `user_buckets`: per user × quarter-hour, the counters of `usage_buckets`
//!   without the workflow dimension, so my-stats reads at most 96 rows per
//!   day however many workflows a user has;
//! - `active_user_buckets`: how many users have their latest own message in
//!   each quarter-hour (a histogram of `users.last_message_bucket`), so
//!   "active since X" sums the rows at or after X instead of counting users;
//!   `users.previous_message_bucket` lets ingestion's update return where a
//!   user moved from (RETURNING only sees new values);
//! - `funnel_cohorts`: per quarter-hour of sign-up, how many users signed up
//!   and how many of them reached each funnel step;
//! - `platform_totals`: one row with the number of users and workflows.
//!
//! The funnel and the active-user counts no longer read `users` by range, so
//! `ix_users_signed_up_at` and `ix_users_last_message_bucket` go (ingestion's
//! updates of `users` can then stay heap-only). Existing rows are filled from
//! the current tables.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UserBuckets {
    Table,
    UserId,
    Bucket,
}

#[derive(DeriveIden)]
enum ActiveUserBuckets {
    Table,
    Bucket,
    Users,
}

#[derive(DeriveIden)]
enum FunnelCohorts {
    Table,
    Bucket,
    SignedUp,
    CreatedComponent,
    CreatedWorkflow,
    SentMessage,
}

#[derive(DeriveIden)]
enum PlatformTotals {
    Table,
    Id,
    Users,
    Workflows,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    PreviousMessageBucket,
    LastMessageBucket,
    SignedUpAt,
}

/// The counter columns of `usage_buckets`, copied by `user_buckets`.
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
        t.table(UserBuckets::Table)
            .col(uuid(UserBuckets::UserId))
            .col(big_integer(UserBuckets::Bucket));
        for c in COUNTERS {
            t.col(big_integer(Alias::new(c)).default(0));
        }
        m.create_table(
            t.primary_key(
                Index::create()
                    .col(UserBuckets::UserId)
                    .col(UserBuckets::Bucket),
            )
            .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ActiveUserBuckets::Table)
                .col(big_integer(ActiveUserBuckets::Bucket).primary_key())
                .col(big_integer(ActiveUserBuckets::Users).default(0))
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(FunnelCohorts::Table)
                .col(big_integer(FunnelCohorts::Bucket).primary_key())
                .col(big_integer(FunnelCohorts::SignedUp).default(0))
                .col(big_integer(FunnelCohorts::CreatedComponent).default(0))
                .col(big_integer(FunnelCohorts::CreatedWorkflow).default(0))
                .col(big_integer(FunnelCohorts::SentMessage).default(0))
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PlatformTotals::Table)
                .col(integer(PlatformTotals::Id).primary_key())
                .col(big_integer(PlatformTotals::Users).default(0))
                .col(big_integer(PlatformTotals::Workflows).default(0))
                .take(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .add_column(big_integer_null(Users::PreviousMessageBucket))
                .take(),
        )
        .await?;
        for name in ["ix_users_last_message_bucket", "ix_users_signed_up_at"] {
            m.drop_index(Index::drop().name(name).table(Users::Table).to_owned())
                .await?;
        }

        let db = m.get_connection();
        if db.get_database_backend() == sea_orm::DbBackend::Postgres {
            // Incremented in place like the other rollups (see
            // m20261128_000008): room on the page keeps the updates HOT.
            for table in [
                "user_buckets",
                "active_user_buckets",
                "funnel_cohorts",
                "platform_totals",
            ] {
                db.execute_unprepared(&format!("ALTER TABLE {table} SET (fillfactor = 80)"))
                    .await?;
            }
        }
        let sums = COUNTERS
            .iter()
            .map(|c| format!("SUM({c})"))
            .collect::<Vec<_>>()
            .join(", ");
        db.execute_unprepared(&format!(
            "INSERT INTO user_buckets (user_id, bucket, {}) \
             SELECT user_id, bucket, {sums} FROM usage_buckets GROUP BY user_id, bucket",
            COUNTERS.join(", ")
        ))
        .await?;
        db.execute_unprepared(
            "INSERT INTO active_user_buckets (bucket, users) SELECT last_message_bucket, COUNT(*) \
             FROM users WHERE last_message_bucket IS NOT NULL GROUP BY last_message_bucket",
        )
        .await?;
        // The bucket of an instant (after 1970), on both engines.
        let bucket_of = match db.get_database_backend() {
            sea_orm::DbBackend::Sqlite => "CAST(strftime('%s', signed_up_at) AS INTEGER) / 900",
            _ => "CAST(FLOOR(EXTRACT(EPOCH FROM signed_up_at) / 900) AS BIGINT)",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO funnel_cohorts (bucket, signed_up, created_component, created_workflow, sent_message) \
             SELECT b, COUNT(*), COUNT(first_component_at), COUNT(first_workflow_at), COUNT(first_message_at) \
             FROM (SELECT {bucket_of} AS b, first_component_at, first_workflow_at, first_message_at \
             FROM users WHERE signed_up_at IS NOT NULL) t GROUP BY b"
        ))
        .await?;
        db.execute_unprepared(
            "INSERT INTO platform_totals (id, users, workflows) \
             SELECT 1, (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM workflows)",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_index(
            Index::create()
                .name("ix_users_signed_up_at")
                .table(Users::Table)
                .col(Users::SignedUpAt)
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
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .drop_column(Users::PreviousMessageBucket)
                .take(),
        )
        .await?;
        for t in [
            PlatformTotals::Table.into_iden(),
            FunnelCohorts::Table.into_iden(),
            ActiveUserBuckets::Table.into_iden(),
            UserBuckets::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(t).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
