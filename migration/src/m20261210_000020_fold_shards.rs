//! Fold shards (issue #15).
//!
//! On PostgreSQL one fold transaction at a time used to write the rollups,
//! so at most one backend did the write path's second stage, however many
//! cores the database had. Random traffic (one rollup row per table per
//! message) made that backend the bottleneck. A batch's rollup changes are
//! now appended as one `rollup_queue` row per *shard*: changes keyed by a
//! user go to the user's shard, platform-wide ones to their bucket's shard.
//! Each shard is folded by its own transaction, in parallel with the
//! others, and no two shards write the same per-user row.
//!
//! Rows appended before this migration have shard 0, and hold a whole
//! batch; folding them with the others is correct (the rollup writes are
//! increments, taken in key order), only not spread out.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Adding a NOT NULL column with a constant default rewrites no row
        // (PostgreSQL 11+; SQLite stores the default in the schema). A
        // shard's fold reads its rows in `seq` order.
        let db = m.get_connection();
        db.execute_unprepared(
            "ALTER TABLE rollup_queue ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared("CREATE INDEX ix_rollup_queue_shard ON rollup_queue (shard, seq)")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        db.execute_unprepared("DROP INDEX ix_rollup_queue_shard")
            .await?;
        db.execute_unprepared("ALTER TABLE rollup_queue DROP COLUMN shard")
            .await?;
        Ok(())
    }
}
