//! Keys a distributed database can keep (issue #19).
//!
//! Citus hashes each distributed table's rows to shards by one column, and a
//! unique key can only be checked inside one shard: every primary key and
//! unique index of a distributed table must hold its distribution column
//! (see [`crate::citus`] for which table is distributed by what). On
//! PostgreSQL this migration widens the keys of the per-user tables that did
//! not hold `user_id` to start with it, on plain PostgreSQL as on Citus, so
//! one schema serves both and the catalog check in `charlie-store`'s schema
//! tests keeps it that way.
//!
//! What it means: a conversation, daily row, alert, reservation or funnel
//! milestone id is unique per user (ids are UUIDs the platform or this
//! service makes, so two users never share one in practice; ingestion still
//! refuses a conversation id that another user owns). Message and event ids
//! were already unique only together with their month.
//!
//! On SQLite (one file, never distributed) the keys stay as they are; the
//! two conflict targets that ingestion now names with `user_id` first get a
//! unique index of that shape, so the same statements run on both engines.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(table, old primary key, new primary key)` on PostgreSQL.
const KEYS: [(&str, &str, &str); 8] = [
    ("conversations", "id", "user_id, id"),
    (
        "conversation_days",
        "conversation_id, date",
        "user_id, conversation_id, date",
    ),
    ("daily_metrics", "id", "user_id, id"),
    ("alerts", "id", "user_id, id"),
    ("budget_reservations", "id", "user_id, id"),
    (
        "funnel_milestones",
        "event_type, entity_id",
        "user_id, event_type, entity_id",
    ),
    ("messages", "id, created_at", "user_id, id, created_at"),
    (
        "user_activity_events",
        "id, created_at",
        "user_id, id, created_at",
    ),
];

/// The unique indexes SQLite gains, so `ON CONFLICT (user_id, …)` has a target.
const SQLITE_TARGETS: [(&str, &str, &str); 2] = [
    (
        "ux_conversation_days_user",
        "conversation_days",
        "user_id, conversation_id, date",
    ),
    (
        "ux_funnel_milestones_user",
        "funnel_milestones",
        "user_id, event_type, entity_id",
    ),
];

async fn set_keys(m: &SchemaManager<'_>, up: bool) -> Result<(), DbErr> {
    let db = m.get_connection();
    if m.get_database_backend() == DatabaseBackend::Postgres {
        for (table, old, new) in KEYS {
            let key = if up { new } else { old };
            // Two statements: Citus refuses an ALTER that drops and adds a
            // constraint at once.
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT {table}_pkey"))
                .await?;
            db.execute_unprepared(&format!(
                "ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY ({key})"
            ))
            .await?;
        }
    } else {
        for (name, table, cols) in SQLITE_TARGETS {
            db.execute_unprepared(&if up {
                format!("CREATE UNIQUE INDEX {name} ON {table} ({cols})")
            } else {
                format!("DROP INDEX {name}")
            })
            .await?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        set_keys(m, true).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // The older keys cannot exist on distributed tables.
        crate::citus::undistribute(m.get_connection()).await?;
        set_keys(m, false).await
    }
}
