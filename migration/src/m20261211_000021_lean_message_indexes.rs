//! Two indexes of `messages` that nothing reads (issue #15).
//!
//! `messages` is the largest table and its insert the heaviest statement of
//! ingestion: every row went into the heap and four indexes. Two of them
//! served no query:
//!
//! - `ix_messages_conversation (conversation_id, created_at)`: no route, job
//!   or check reads raw messages by conversation; conversations are counted
//!   from `conversation_days` and the rollups.
//! - `ix_messages_user_created (user_id, created_at)`: on PostgreSQL the
//!   primary key starts with `user_id` since migration 17, so a user's rows
//!   (the cascade when a user is deleted, the reservation checks by
//!   `(id, user_id)`) are found through it.
//!
//! What reads `messages` is the primary key, `ix_messages_created` (the
//! time ranges of repricing, rebuilds and retention) and whole scans
//! (`rollups verify`). SQLite kept its `(id, created_at)` key, so it keeps
//! `ix_messages_user_created` for the user cascade; both engines drop the
//! conversation index. A future read of raw messages by conversation would
//! add the index it needs.

use sea_orm::DatabaseBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// `(index, columns, dropped on SQLite too)`.
const INDEXES: [(&str, &str, bool); 2] = [
    (
        "ix_messages_conversation",
        "conversation_id, created_at",
        true,
    ),
    ("ix_messages_user_created", "user_id, created_at", false),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let postgres = m.get_database_backend() == DatabaseBackend::Postgres;
        let db = m.get_connection();
        for (name, _, on_sqlite) in INDEXES {
            if postgres || on_sqlite {
                db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}"))
                    .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let postgres = m.get_database_backend() == DatabaseBackend::Postgres;
        let db = m.get_connection();
        for (name, columns, on_sqlite) in INDEXES {
            if postgres || on_sqlite {
                db.execute_unprepared(&format!(
                    "CREATE INDEX IF NOT EXISTS {name} ON messages ({columns})"
                ))
                .await?;
            }
        }
        Ok(())
    }
}
