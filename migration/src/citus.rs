//! Where every table lives on a Citus cluster, and the step that puts it there.
//!
//! Citus (distributed PostgreSQL) spreads a *distributed* table's rows over
//! worker nodes by the hash of one column, copies a *reference* table to
//! every node, and leaves any other table on the coordinator. This module is
//! the one list of which table is which ([`placement`]); `migrate up` calls
//! [`distribute`] after the migrations, which on a database with the `citus`
//! extension makes the catalog match the list (idempotently: a table already
//! placed is left alone), and on any other database does nothing. The
//! schema tests of `charlie-store` read the same list on plain PostgreSQL and
//! fail when a table is missing from it or breaks a Citus rule.
//!
//! The choices:
//! - **By `user_id`, co-located**: every table that grows with usage and
//!   belongs to one user (messages, events, conversations, the per-user
//!   rollups, alerts, budgets, funnel milestones). A
//!   user's rows of all of them live in one shard group, so ingestion of a
//!   user's items and a user's stats touch one node, and joins between them
//!   on `user_id` run on the workers.
//! - **`error_logs` by its own `id`**: an error may have no user (`user_id`
//!   is NULL for platform errors), and Citus refuses NULL in a distribution
//!   column. Errors are read platform-wide (the admin errors page), never
//!   joined row by row with a user's tables.
//! - **Reference**: `users`, `workflows`, `agent_components`, `api_keys`,
//!   and the fold queue `rollup_queue` (below).
//!   Few rows per user, read by nearly every query (names, owners, time
//!   zones, budgets), written rarely, and with keys that must be unique
//!   platform-wide (`users.external_id`, a workflow or component id whose
//!   owner can change). A copy on each node lets every shard join them
//!   locally. Citus serializes writes to a reference table, so the hot path
//!   of ingestion reads them first and writes only what is missing.
//!   `rollup_queue` is a reference table because a budget check asks, in
//!   one statement on the user's shard, whether a message's cost is still
//!   waiting in it; ingestion only appends to it (inserts do not serialize),
//!   and one fold at a time deletes from it.
//! - **Coordinator**: queues and the service's own bookkeeping (the
//!   idempotency ledger, outboxes, weekly report deliveries (senders claim
//!   them with `FOR UPDATE SKIP LOCKED` across users, which Citus runs only
//!   on one shard), pending messages and
//!   spans, report and reprice runs, retention state) and the platform-wide
//!   counters (one row per hour or per bucket, rewritten by every fold).
//!   They are read and written by one place, under one lock, and a copy per
//!   node would only multiply their writes.

use sea_orm_migration::prelude::DbErr;
use sea_orm_migration::sea_orm::{
    self, ConnectionTrait, DatabaseBackend, FromQueryResult, Statement,
};

/// Where one table lives on Citus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Hash-distributed by `user_id`, co-located with every other such table.
    ByUser,
    /// Hash-distributed by the named column, in a co-location group of its own.
    ByOwnKey(&'static str),
    /// A copy on every node.
    Reference,
    /// On the coordinator only.
    Coordinator,
}

/// Every table of the schema (partitions follow their parent) and where it lives.
pub const TABLES: [(&str, Placement); 35] = [
    ("users", Placement::Reference),
    ("workflows", Placement::Reference),
    ("agent_components", Placement::Reference),
    ("api_keys", Placement::Reference),
    ("messages", Placement::ByUser),
    ("user_activity_events", Placement::ByUser),
    ("conversations", Placement::ByUser),
    ("conversation_days", Placement::ByUser),
    ("daily_metrics", Placement::ByUser),
    ("usage_buckets", Placement::ByUser),
    ("component_buckets", Placement::ByUser),
    ("user_buckets", Placement::ByUser),
    ("user_days", Placement::ByUser),
    ("user_month_usage", Placement::ByUser),
    ("alerts", Placement::ByUser),
    ("budget_accounts", Placement::ByUser),
    ("budget_reservations", Placement::ByUser),
    ("report_deliveries", Placement::Coordinator),
    ("funnel_milestones", Placement::ByUser),
    ("error_logs", Placement::ByOwnKey("id")),
    ("ingested_items", Placement::Coordinator),
    ("rollup_queue", Placement::Reference),
    ("outbox", Placement::Coordinator),
    ("posthog_outbox", Placement::Coordinator),
    ("pending_messages", Placement::Coordinator),
    ("otel_spans", Placement::Coordinator),
    ("otel_traces", Placement::Coordinator),
    ("platform_buckets", Placement::Coordinator),
    ("platform_totals", Placement::Coordinator),
    ("active_user_buckets", Placement::Coordinator),
    ("funnel_cohorts", Placement::Coordinator),
    ("raw_retention", Placement::Coordinator),
    ("report_runs", Placement::Coordinator),
    ("reprice_runs", Placement::Coordinator),
    ("seaql_migrations", Placement::Coordinator),
];

/// Where `table` lives, if the list names it.
pub fn placement(table: &str) -> Option<Placement> {
    TABLES.iter().find(|(t, _)| *t == table).map(|(_, p)| *p)
}

/// The column a table is distributed by, if it is distributed.
pub fn distribution_column(p: Placement) -> Option<&'static str> {
    match p {
        Placement::ByUser => Some("user_id"),
        Placement::ByOwnKey(c) => Some(c),
        Placement::Reference | Placement::Coordinator => None,
    }
}

#[derive(FromQueryResult)]
struct Flag {
    yes: bool,
}

#[derive(FromQueryResult)]
struct Placed {
    kind: String,
}

/// Whether the database has the `citus` extension.
pub async fn is_citus<C: ConnectionTrait>(db: &C) -> Result<bool, DbErr> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(false);
    }
    Ok(Flag::find_by_statement(Statement::from_string(
        DatabaseBackend::Postgres,
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS yes",
    ))
    .one(db)
    .await?
    .is_some_and(|f| f.yes))
}

/// On a Citus database, distributes the tables [`TABLES`] names and makes
/// the reference tables; a table already placed is left as it is. Returns
/// how many tables it placed. Anywhere else it does nothing.
pub async fn distribute<C: ConnectionTrait>(db: &C) -> Result<usize, DbErr> {
    if !is_citus(db).await? {
        return Ok(0);
    }
    let mut placed = 0;
    // Reference tables first: a distributed table's foreign key to one needs
    // it to be a reference table already.
    for (table, _) in TABLES.iter().filter(|(_, p)| *p == Placement::Reference) {
        if current(db, table).await?.as_deref() != Some("reference") {
            db.execute_unprepared(&format!("SELECT create_reference_table('{table}')"))
                .await?;
            placed += 1;
        }
    }
    // Coordinator tables join distributed ones only as Citus local tables.
    for (table, _) in TABLES.iter().filter(|(_, p)| *p == Placement::Coordinator) {
        if current(db, table).await?.is_none() {
            db.execute_unprepared(&format!(
                "SELECT citus_add_local_table_to_metadata('{table}')"
            ))
            .await?;
            placed += 1;
        }
    }
    let mut first_by_user: Option<&str> = None;
    for (table, p) in TABLES {
        let Some(column) = distribution_column(p) else {
            continue;
        };
        if current(db, table).await?.as_deref() != Some("distributed") {
            let colocate = match p {
                Placement::ByUser => first_by_user.unwrap_or("default"),
                _ => "none",
            };
            db.execute_unprepared(&format!(
                "SELECT create_distributed_table('{table}', '{column}', colocate_with => '{colocate}')"
            ))
            .await?;
            placed += 1;
        }
        if p == Placement::ByUser && first_by_user.is_none() {
            first_by_user = Some(table);
        }
    }
    Ok(placed)
}

/// On a Citus database, turns every distributed table back into a table
/// on the coordinator (rows and all), and with them the reference tables
/// their foreign keys point at, so that migrations older than the keys
/// Citus needs can be rolled back. Other reference and coordinator tables
/// stay as they are: older migrations only add columns to them or drop
/// them, which Citus propagates. Returns how many tables it turned back.
pub async fn undistribute<C: ConnectionTrait>(db: &C) -> Result<usize, DbErr> {
    if !is_citus(db).await? {
        return Ok(0);
    }
    let mut undone = 0;
    for (table, _) in TABLES
        .iter()
        .filter(|(_, p)| distribution_column(*p).is_some())
    {
        // A table already undone through another's foreign keys is skipped.
        if current(db, table).await?.as_deref() == Some("distributed") {
            db.execute_unprepared(&format!(
                "SELECT undistribute_table('{table}', cascade_via_foreign_keys => true)"
            ))
            .await?;
            undone += 1;
        }
    }
    Ok(undone)
}

/// `distributed`, `reference`, `local` (a Citus local table) or `None` (a
/// plain PostgreSQL table, or none at all).
pub async fn current<C: ConnectionTrait>(db: &C, table: &str) -> Result<Option<String>, DbErr> {
    Ok(Placed::find_by_statement(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "SELECT CASE WHEN partmethod = 'h' THEN 'distributed' \
           WHEN repmodel = 't' THEN 'reference' ELSE 'local' END AS kind \
         FROM pg_dist_partition WHERE logicalrelid = to_regclass($1)",
        [table.into()],
    ))
    .one(db)
    .await?
    .map(|p| p.kind))
}
