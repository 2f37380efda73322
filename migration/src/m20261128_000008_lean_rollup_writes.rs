//! Cheaper rollup increments for ingestion.
//!
//! Every ingest batch increments rows of `daily_metrics`, `usage_buckets`,
//! `platform_buckets`, `user_month_usage` and `users`. On PostgreSQL an
//! update that changes no indexed column can stay on the same page (a HOT
//! update) and then writes no index entries at all, but only if the page has
//! room: these tables get a fill factor of 80 so that it usually has.
//! (SQLite has no fill factor; nothing to do there.)
//!
//! `daily_metrics` also loses two indexes no query uses: `(workflow_id)` and
//! `(user_id, date)` (per-user reads use the unique `(user_id, workflow_key,
//! date)` index, date ranges `ix_daily_metrics_date`). Each cost an index
//! entry per new row and per non-HOT update.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DailyMetrics {
    Table,
    UserId,
    WorkflowId,
    Date,
}

/// Tables whose rows ingestion increments in place.
const INCREMENTED: [&str; 5] = [
    "daily_metrics",
    "usage_buckets",
    "platform_buckets",
    "user_month_usage",
    "users",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for name in ["ix_daily_metrics_workflow", "ix_daily_metrics_user_date"] {
            m.drop_index(
                Index::drop()
                    .name(name)
                    .table(DailyMetrics::Table)
                    .to_owned(),
            )
            .await?;
        }
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let db = m.get_connection();
            for table in INCREMENTED {
                db.execute_unprepared(&format!("ALTER TABLE {table} SET (fillfactor = 80)"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            let db = m.get_connection();
            for table in INCREMENTED {
                db.execute_unprepared(&format!("ALTER TABLE {table} RESET (fillfactor)"))
                    .await?;
            }
        }
        m.create_index(
            Index::create()
                .name("ix_daily_metrics_user_date")
                .table(DailyMetrics::Table)
                .col(DailyMetrics::UserId)
                .col(DailyMetrics::Date)
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_daily_metrics_workflow")
                .table(DailyMetrics::Table)
                .col(DailyMetrics::WorkflowId)
                .take(),
        )
        .await
    }
}
