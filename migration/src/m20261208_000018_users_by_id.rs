//! `users` distributed with the per-user tables (issue #19).
//!
//! On Citus `users` was a reference table: a copy on every node, so every
//! write to it (the per-user counters the fold moves, the funnel stamps a
//! batch sets) was a cluster-wide write that Citus serializes with one lock
//! per table. Ingestion at scale then queued behind that lock and closed
//! lock cycles with the fold. From this migration `users` is distributed by
//! its `id`, co-located with every table distributed by `user_id`, so a
//! user's row lives in the same shard group as the rest of their data and
//! its writes are single-shard (see [`crate::citus`]).
//!
//! Two things a distributed `users` cannot keep, and what replaces them:
//! - **`external_id` unique platform-wide**: a unique index of a distributed
//!   table must hold its distribution column. The new table `user_subjects`
//!   (`external_id` primary key, `user_id`) is the guard: every writer of
//!   `users.external_id` writes it in the same transaction. On Citus it is
//!   distributed by `external_id`, so the key is checked in one shard.
//! - **Foreign keys to `users` from tables that are not co-located with it**
//!   (`workflows`, `agent_components`, `error_logs`, `report_deliveries`):
//!   Citus keeps a foreign key to a distributed table only from a co-located
//!   one. On PostgreSQL they are dropped; the one place that deletes a user
//!   (a sign-in placeholder replaced by the platform's record) does what
//!   their `ON DELETE` did. SQLite keeps them (it cannot drop a foreign key
//!   without rebuilding the table, and they agree with what that place does).

use sea_orm::{DatabaseBackend, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UserSubjects {
    Table,
    ExternalId,
    UserId,
}

/// The foreign keys to `users(id)` PostgreSQL drops: `(table, name, on delete)`.
const NOT_COLOCATED: [(&str, &str, &str); 4] = [
    ("workflows", "fk_workflows_user", "CASCADE"),
    ("agent_components", "fk_agent_components_user", "CASCADE"),
    ("error_logs", "fk_error_logs_user", "SET NULL"),
    ("report_deliveries", "fk_report_deliveries_user", "CASCADE"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UserSubjects::Table)
                .col(
                    ColumnDef::new(UserSubjects::ExternalId)
                        .string_len(255)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(UserSubjects::UserId).uuid().not_null())
                .take(),
        )
        .await?;
        let db = m.get_connection();
        db.execute_unprepared(
            "INSERT INTO user_subjects (external_id, user_id) \
             SELECT external_id, id FROM users WHERE external_id IS NOT NULL",
        )
        .await?;
        if m.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        // Named by PostgreSQL or sea-query when the tables were made: found
        // in the catalog.
        let names = db
            .query_all_raw(Statement::from_string(
                DatabaseBackend::Postgres,
                "SELECT CAST(conrelid AS regclass)::text AS tbl, CAST(conname AS TEXT) AS name \
                 FROM pg_constraint WHERE confrelid = CAST('users' AS regclass) AND contype = 'f' \
                 AND CAST(conrelid AS regclass)::text IN \
                   ('workflows', 'agent_components', 'error_logs', 'report_deliveries') \
                 UNION ALL SELECT 'users', CAST(conname AS TEXT) FROM pg_constraint \
                 WHERE conrelid = CAST('users' AS regclass) AND contype = 'u'",
            ))
            .await?;
        for row in names {
            let table: String = row.try_get("", "tbl")?;
            let name: String = row.try_get("", "name")?;
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT \"{name}\""))
                .await?;
        }
        db.execute_unprepared("CREATE INDEX ix_users_external_id ON users (external_id)")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        if m.get_database_backend() == DatabaseBackend::Postgres {
            // The keys below cannot exist on a distributed `users`, nor
            // from a reference or Citus local table to a plain one.
            crate::citus::undistribute(db).await?;
            for (table, _, _) in NOT_COLOCATED {
                crate::citus::make_plain(db, table).await?;
            }
            db.execute_unprepared("DROP INDEX ix_users_external_id")
                .await?;
            db.execute_unprepared(
                "ALTER TABLE users ADD CONSTRAINT users_external_id_key UNIQUE (external_id)",
            )
            .await?;
            for (table, name, on_delete) in NOT_COLOCATED {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY (user_id) \
                     REFERENCES users (id) ON DELETE {on_delete}"
                ))
                .await?;
            }
        }
        m.drop_table(Table::drop().table(UserSubjects::Table).to_owned())
            .await
    }
}
