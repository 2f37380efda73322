//! Schema migrations of Charlie Stats, for PostgreSQL and SQLite.
//!
//! Migrations declare their own identifiers (`DeriveIden` enums) and never
//! import `charlie-store`: an old migration must not change when today's
//! entities do. Every migration has a working `down`.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_core_schema;
mod m20261128_000002_ingestion;
mod m20261128_000003_read_model;
mod m20261128_000005_budgets_alerts_reports;
mod m20261128_000006_user_totals;
mod m20261128_000008_lean_rollup_writes;
mod m20261128_000009_flat_reads;
mod m20261129_000010_user_days;
mod m20261203_000011_component_costs;
mod m20261203_000012_otel_spans;
mod m20261203_000013_posthog_outbox;
mod m20261203_000014_budget_reservations;
mod m20261203_000015_rollup_queue;
mod m20261204_000016_partitions;
mod m20261207_000017_citus_keys;
mod m20261208_000018_users_by_id;
mod m20261209_000019_lookups_by_id;
mod m20261210_000020_fold_shards;
mod m20261211_000021_lean_message_indexes;

pub mod citus;

pub use m20261204_000016_partitions::PARTITIONED;

/// Applies the migrations in order.
#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_core_schema::Migration),
            Box::new(m20261128_000002_ingestion::Migration),
            Box::new(m20261128_000003_read_model::Migration),
            Box::new(m20261128_000005_budgets_alerts_reports::Migration),
            Box::new(m20261128_000006_user_totals::Migration),
            Box::new(m20261128_000008_lean_rollup_writes::Migration),
            Box::new(m20261128_000009_flat_reads::Migration),
            Box::new(m20261129_000010_user_days::Migration),
            Box::new(m20261203_000011_component_costs::Migration),
            Box::new(m20261203_000012_otel_spans::Migration),
            Box::new(m20261203_000013_posthog_outbox::Migration),
            Box::new(m20261203_000014_budget_reservations::Migration),
            Box::new(m20261203_000015_rollup_queue::Migration),
            Box::new(m20261204_000016_partitions::Migration),
            Box::new(m20261207_000017_citus_keys::Migration),
            Box::new(m20261208_000018_users_by_id::Migration),
            Box::new(m20261209_000019_lookups_by_id::Migration),
            Box::new(m20261210_000020_fold_shards::Migration),
            Box::new(m20261211_000021_lean_message_indexes::Migration),
        ]
    }
}
