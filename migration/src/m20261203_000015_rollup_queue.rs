//! The rollup queue of the two-stage write path (issue #15).
//!
//! On PostgreSQL an ingest transaction appends its raw rows and one row
//! here: the batch's rollup changes (`payload`, JSON), the ids of its
//! messages (`message_ids`, so a budget reservation knows whether its
//! message's cost is in the rollups yet) and when it was appended. The
//! applier folds the queue into the rollups and deletes the rows it folded in
//! the same transaction, so each batch is counted exactly once. SQLite folds
//! in the ingest transaction itself and leaves the table empty.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            // A queue: rows are appended and deleted all the time, so
            // vacuum runs after every 1,000 dead rows, not after a share of
            // a table that is usually empty.
            db.execute_unprepared(
                "CREATE TABLE rollup_queue ( \
                 seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 enqueued_at TIMESTAMPTZ NOT NULL, \
                 message_ids UUID[] NOT NULL DEFAULT '{}', \
                 payload TEXT NOT NULL) \
                 WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000)",
            )
            .await?;
            // A payload is written once and read once: lz4 (PostgreSQL 14+,
            // when the server is built with it) costs far less CPU than the
            // default pglz.
            let lz4 = db
                .query_one_raw(sea_orm::Statement::from_string(
                    sea_orm::DatabaseBackend::Postgres,
                    "SELECT 1 AS yes FROM pg_settings WHERE name = 'default_toast_compression' \
                     AND 'lz4' = ANY (enumvals)",
                ))
                .await?
                .is_some();
            if lz4 {
                db.execute_unprepared(
                    "ALTER TABLE rollup_queue ALTER COLUMN payload SET COMPRESSION lz4, \
                     ALTER COLUMN message_ids SET COMPRESSION lz4",
                )
                .await?;
            }
        } else {
            db.execute_unprepared(
                "CREATE TABLE rollup_queue ( \
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, \
                 enqueued_at TEXT NOT NULL, \
                 message_ids TEXT NOT NULL DEFAULT '', \
                 payload TEXT NOT NULL)",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(Alias::new("rollup_queue")).to_owned())
            .await?;
        Ok(())
    }
}
