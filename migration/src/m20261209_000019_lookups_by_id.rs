//! Indexes for the lookups that do not know the user (issue #15).
//!
//! Migration 17 made every per-user primary key start with `user_id`, which
//! Citus needs. Three lookups that ingestion and budgets make by id alone
//! lost their index with it and became scans of the whole table:
//!
//! - `conversations` by `id`: every message batch resolves its
//!   conversations' users (a message names its conversation, not its user);
//! - `funnel_milestones` by `(event_type, entity_id)`: every batch asks which
//!   of its milestones are already recorded;
//! - `budget_reservations` by `id`: committing or releasing a reservation.
//!
//! At 1M messages and 30,000 conversations the first two cost 58 ms and
//! 30 ms per 500-message batch, growing with the tables. Each gets a plain
//! (non-unique) index here: Citus keeps those on distributed tables, and the
//! primary keys stay as migration 17 made them. SQLite kept the old keys
//! (`id` first), so there is nothing to add there.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(index, table, columns)`.
const INDEXES: [(&str, &str, &str); 3] = [
    ("ix_conversations_id", "conversations", "id"),
    (
        "ix_funnel_milestones_entity",
        "funnel_milestones",
        "event_type, entity_id",
    ),
    ("ix_budget_reservations_id", "budget_reservations", "id"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        for (name, table, columns) in INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = m.get_connection();
        for (name, _, _) in INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                .await?;
        }
        Ok(())
    }
}
