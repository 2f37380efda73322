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
//! - **By user, co-located**: `users` (by its `id`) and every table that
//!   grows with usage and belongs to one user (messages, events,
//!   conversations, the per-user rollups, alerts, budgets, funnel
//!   milestones), by `user_id`. A user's row and their rows of all of these
//!   live in one shard group, so ingestion of a user's items, the fold's
//!   writes of a user's counters and a user's stats touch one node, and
//!   joins between them on the user's id run on the workers. (Until
//!   migration 18, `users` was a reference table; every write of a counter
//!   or funnel stamp was then a cluster-wide write Citus serializes.)
//! - **`error_logs` by its own `id`**: an error may have no user (`user_id`
//!   is NULL for platform errors), and Citus refuses NULL in a distribution
//!   column. Errors are read platform-wide (the admin errors page), never
//!   joined row by row with a user's tables.
//! - **`user_subjects` by `external_id`**: the guard that keeps a session
//!   subject (`users.external_id`) unique platform-wide, which a distributed
//!   `users` cannot do itself. Written when a user is created or renamed.
//! - **Reference**: `workflows`, `agent_components`, `api_keys`, and the
//!   fold queue `rollup_queue` (below). Few rows, read by nearly every query
//!   (names, owners, budgets), written rarely, and with keys that must be
//!   unique platform-wide (a workflow or component id whose owner can
//!   change). A copy on each node lets every shard join them locally. Citus
//!   serializes writes to a reference table, so the hot path of ingestion
//!   reads them first and writes only what is missing.
//!   `rollup_queue` is a reference table because a budget check asks, in
//!   one statement on the user's shard, whether a message's cost is still
//!   waiting in it. Batches only append to it, as their last write (inserts
//!   do not serialize); each fold shard's one transaction at a time reads
//!   its rows, and deletes what it folded as its last write, so the
//!   exclusive lock Citus takes for that delete is held only for the commit
//!   and never waited for by a batch or another shard's fold that holds
//!   something this fold needs.
//! - **Coordinator**: queues and the service's own bookkeeping (the
//!   idempotency ledger, outboxes, weekly report deliveries (senders claim
//!   them with `FOR UPDATE SKIP LOCKED` across users, which Citus runs only
//!   on one shard), pending messages and
//!   spans, report and reprice runs, retention state) and the platform-wide
//!   counters (one row per hour or per bucket, rewritten by every fold).
//!   They are read and written by one place, under one lock, and a copy per
//!   node would only multiply their writes.
//!
//! A database placed by an older list is placed again: [`distribute`] turns
//! a table whose placement changed back into a plain table (with the tables
//! its foreign keys reach) and places them all as the list says.

use sea_orm_migration::prelude::DbErr;
use sea_orm_migration::sea_orm::{
    self, ConnectionTrait, DatabaseBackend, FromQueryResult, Statement,
};

/// Where one table lives on Citus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// `users` itself: hash-distributed by `id`, the group every [`ByUser`]
    /// table is co-located with.
    ///
    /// [`ByUser`]: Placement::ByUser
    User,
    /// Hash-distributed by `user_id`, co-located with `users`.
    ByUser,
    /// Hash-distributed by the named column, in a co-location group of its own.
    ByOwnKey(&'static str),
    /// A copy on every node.
    Reference,
    /// On the coordinator only.
    Coordinator,
}

/// Every table of the schema (partitions follow their parent) and where it lives.
pub const TABLES: [(&str, Placement); 36] = [
    ("users", Placement::User),
    ("user_subjects", Placement::ByOwnKey("external_id")),
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
        Placement::User => Some("id"),
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
    // A table placed otherwise by an older list (a reference `users`, say)
    // goes back to a plain table first, with every table its foreign keys
    // reach; the steps below place them all again.
    for (table, p) in TABLES {
        let now = current(db, table).await?;
        if now.is_some() && now.as_deref() != Some(kind(p)) {
            make_plain(db, table).await?;
        }
    }
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
    // `users` first: the per-user tables are co-located with it, and their
    // foreign keys to it need it distributed already. Per-user tables still
    // distributed from an earlier placement keep their shards: `users` joins
    // their co-location group.
    let mut group = "none";
    for (table, _) in TABLES.iter().filter(|(_, p)| *p == Placement::ByUser) {
        if current(db, table).await?.as_deref() == Some("distributed") {
            group = table;
            break;
        }
    }
    for (table, p) in TABLES.iter().filter(|(_, p)| *p == Placement::User).chain(
        TABLES
            .iter()
            .filter(|(_, p)| *p != Placement::User && distribution_column(*p).is_some()),
    ) {
        let Some(column) = distribution_column(*p) else {
            continue;
        };
        if current(db, table).await?.as_deref() != Some("distributed") {
            let colocate = match p {
                Placement::User => group,
                Placement::ByUser => "users",
                _ => "none",
            };
            db.execute_unprepared(&format!(
                "SELECT create_distributed_table('{table}', '{column}', colocate_with => '{colocate}')"
            ))
            .await?;
            placed += 1;
        }
    }
    Ok(placed)
}

/// What [`current`] says of a table placed as `p`.
pub fn kind(p: Placement) -> &'static str {
    match p {
        Placement::User | Placement::ByUser | Placement::ByOwnKey(_) => "distributed",
        Placement::Reference => "reference",
        Placement::Coordinator => "local",
    }
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

/// On a Citus database, turns `table` (placed any way) back into a plain
/// table, with every table its foreign keys reach. Anywhere else, or for a
/// table Citus does not know, it does nothing.
pub async fn make_plain<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    if is_citus(db).await? && current(db, table).await?.is_some() {
        db.execute_unprepared(&format!(
            "SELECT undistribute_table('{table}', cascade_via_foreign_keys => true)"
        ))
        .await?;
    }
    Ok(())
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
