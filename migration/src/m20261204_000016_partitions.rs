//! Monthly partitions and raw-data retention (issue #16).
//!
//! On PostgreSQL the append-only tables (`messages`, `user_activity_events`,
//! `error_logs`) become range-partitioned by `created_at`, one partition per
//! UTC month (`messages_p2026_12`), plus a DEFAULT partition
//! (`messages_default`), a safety net for a row whose month has no partition
//! (ingestion makes the month's partition before it writes). An
//! existing database is converted in place: the table is renamed, a
//! partitioned one with the same columns, keys, indexes and foreign keys is
//! created, the rows are copied, the old table is dropped.
//!
//! `charlie_ensure_month_partition(table, month)` (PL/pgSQL, created here)
//! is the one place that makes a partition: it takes a transaction-level
//! advisory lock, so instances creating the same month at once are safe,
//! and moves the rows of that month out of the DEFAULT partition before
//! attaching the new one. The service calls it at start and daily, and
//! ingestion calls it for a month it has not seen before.
//!
//! Both engines: the ledger `ingested_items` gains the item's own
//! `created_at` (back-filled from the raw rows), so retention can drop the
//! ledger rows of the months it drops, and `raw_retention` holds the single
//! row that says from when raw rows are kept.

use sea_orm::{DatabaseBackend, FromQueryResult, Statement};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The partitioned tables, each keyed on `(id, created_at)`.
pub const PARTITIONED: [&str; 3] = ["messages", "user_activity_events", "error_logs"];

/// Creates (if missing) the partition of `parent` for the UTC month that
/// holds `month`, moving that month's rows out of the DEFAULT partition.
/// Returns whether it created one.
const ENSURE_PARTITION: &str = r#"
CREATE OR REPLACE FUNCTION charlie_ensure_month_partition(parent TEXT, month DATE)
RETURNS BOOLEAN LANGUAGE plpgsql AS $fn$
DECLARE
    lo TIMESTAMPTZ := date_trunc('month', month::timestamp) AT TIME ZONE 'UTC';
    hi TIMESTAMPTZ := (date_trunc('month', month::timestamp) + INTERVAL '1 month') AT TIME ZONE 'UTC';
    part TEXT := parent || '_p' || to_char(month, 'YYYY_MM');
BEGIN
    -- One creator at a time across sessions and instances.
    PERFORM pg_advisory_xact_lock(1700, 16);
    -- A relation lock (the one ATTACH takes anyway; it lets inserts and
    -- reads through) also makes this session read the catalog as it is
    -- now, not as its caches last saw it.
    EXECUTE format('LOCK TABLE %I IN SHARE UPDATE EXCLUSIVE MODE', parent);
    IF to_regclass(quote_ident(part)) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    -- No row enters the DEFAULT partition until the new one is attached:
    -- a row committed there after the move (and missed by ATTACH's check,
    -- which reads an older snapshot) would be hidden by partition pruning.
    -- Each statement below takes a new snapshot, so the move sees every
    -- row committed before the lock was granted.
    IF to_regclass(quote_ident(parent || '_default')) IS NOT NULL THEN
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', parent || '_default');
    END IF;
    EXECUTE format(
        'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)',
        part, parent);
    IF to_regclass(quote_ident(parent || '_default')) IS NOT NULL THEN
        EXECUTE format(
            'WITH moved AS (DELETE FROM %I WHERE created_at >= $1 AND created_at < $2 RETURNING *) '
            'INSERT INTO %I SELECT * FROM moved',
            parent || '_default', part) USING lo, hi;
    END IF;
    EXECUTE format(
        'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
        parent, part, lo, hi);
    RETURN TRUE;
END
$fn$
"#;

#[derive(FromQueryResult)]
struct Def {
    name: String,
    def: String,
}

#[derive(FromQueryResult)]
struct Flag {
    yes: bool,
}

async fn defs(db: &SchemaManagerConnection<'_>, sql: &str, table: &str) -> Result<Vec<Def>, DbErr> {
    Def::find_by_statement(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        sql,
        [table.into()],
    ))
    .all(db)
    .await
}

/// The non-key indexes of a table: name and `CREATE INDEX` statement.
const INDEXES: &str = "SELECT CAST(i.relname AS TEXT) AS name, pg_get_indexdef(i.oid) AS def \
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
     WHERE x.indrelid = to_regclass($1) AND NOT x.indisprimary ORDER BY 1";

/// The foreign keys of a table: name and definition.
const FOREIGN_KEYS: &str = "SELECT CAST(conname AS TEXT) AS name, pg_get_constraintdef(oid) AS def \
     FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f' ORDER BY 1";

/// Rebuilds `table` under its own name, partitioned by month or plain,
/// with the same columns, primary key, indexes and foreign keys and rows.
async fn rebuild(
    db: &SchemaManagerConnection<'_>,
    table: &str,
    partitioned: bool,
) -> Result<(), DbErr> {
    let is_partitioned = Flag::find_by_statement(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT relkind = 'p' AS yes FROM pg_class WHERE oid = to_regclass($1)",
        [table.into()],
    ))
    .one(db)
    .await?
    .is_some_and(|f| f.yes);
    if is_partitioned == partitioned {
        return Ok(());
    }
    let indexes = defs(db, INDEXES, table).await?;
    let keys = defs(db, FOREIGN_KEYS, table).await?;
    let old = format!("{table}_unconverted");
    for k in &keys {
        db.execute_unprepared(&format!("ALTER TABLE {table} DROP CONSTRAINT {}", k.name))
            .await?;
    }
    for i in &indexes {
        db.execute_unprepared(&format!("DROP INDEX {}", i.name))
            .await?;
    }
    db.execute_unprepared(&format!("ALTER TABLE {table} RENAME TO {old}"))
        .await?;
    db.execute_unprepared(&format!(
        "ALTER TABLE {old} RENAME CONSTRAINT {table}_pkey TO {old}_pkey"
    ))
    .await?;
    let tail = if partitioned {
        " PARTITION BY RANGE (created_at)"
    } else {
        ""
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS \
         INCLUDING STORAGE){tail}"
    ))
    .await?;
    db.execute_unprepared(&format!(
        "ALTER TABLE {table} ADD CONSTRAINT {table}_pkey PRIMARY KEY (id, created_at)"
    ))
    .await?;
    if partitioned {
        db.execute_unprepared(&format!(
            "CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"
        ))
        .await?;
        // Every month that has rows, and this month and the next two.
        db.execute_unprepared(&format!(
            "SELECT charlie_ensure_month_partition('{table}', CAST(m AS DATE)) FROM generate_series( \
               date_trunc('month', LEAST((SELECT MIN(created_at) FROM {old}), now()) AT TIME ZONE 'UTC'), \
               date_trunc('month', GREATEST((SELECT MAX(created_at) FROM {old}), now()) AT TIME ZONE 'UTC') \
                 + INTERVAL '2 months', \
               INTERVAL '1 month') AS m"
        ))
        .await?;
    }
    db.execute_unprepared(&format!("INSERT INTO {table} SELECT * FROM {old}"))
        .await?;
    db.execute_unprepared(&format!("DROP TABLE {old}")).await?;
    for i in &indexes {
        db.execute_unprepared(&i.def).await?;
    }
    for k in &keys {
        db.execute_unprepared(&format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {}",
            k.name, k.def
        ))
        .await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let pg = m.get_database_backend() == DatabaseBackend::Postgres;
        if pg {
            db.execute_unprepared(ENSURE_PARTITION).await?;
            for table in PARTITIONED {
                rebuild(db, table, true).await?;
            }
        }
        // The ledger learns each item's own time, so retention can drop the
        // ledger rows of the months whose raw rows it drops.
        let ts = if pg { "TIMESTAMPTZ" } else { "TEXT" };
        db.execute_unprepared(&format!(
            "ALTER TABLE ingested_items ADD COLUMN created_at {ts} NULL"
        ))
        .await?;
        for table in PARTITIONED.iter().chain(&["pending_messages"]) {
            // A join, not a lookup per row: one pass over each table.
            db.execute_unprepared(&format!(
                "UPDATE ingested_items SET created_at = t.created_at FROM {table} t \
                 WHERE t.id = ingested_items.id AND ingested_items.created_at IS NULL"
            ))
            .await?;
        }
        // Items arrive roughly in time order, so on PostgreSQL a BRIN index
        // finds old ledger rows at almost no cost to each insert.
        db.execute_unprepared(if pg {
            "CREATE INDEX ix_ingested_items_created ON ingested_items USING brin (created_at)"
        } else {
            "CREATE INDEX ix_ingested_items_created ON ingested_items (created_at)"
        })
        .await?;
        db.execute_unprepared(&format!(
            "CREATE TABLE raw_retention (id SMALLINT PRIMARY KEY, kept_from {ts} NULL, \
             applied_at {ts} NULL)"
        ))
        .await?;
        db.execute_unprepared("INSERT INTO raw_retention (id) VALUES (1)")
            .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let pg = m.get_database_backend() == DatabaseBackend::Postgres;
        db.execute_unprepared("DROP TABLE raw_retention").await?;
        db.execute_unprepared("DROP INDEX ix_ingested_items_created")
            .await?;
        db.execute_unprepared("ALTER TABLE ingested_items DROP COLUMN created_at")
            .await?;
        if pg {
            for table in PARTITIONED {
                rebuild(db, table, false).await?;
            }
            db.execute_unprepared("DROP FUNCTION charlie_ensure_month_partition(TEXT, DATE)")
                .await?;
        }
        Ok(())
    }
}
