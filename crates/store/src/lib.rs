//! SeaORM entities and repositories of Charlie Stats.
//!
//! Everything that touches the database lives here, for PostgreSQL and
//! SQLite alike. Repository functions take the [`Store`] and return domain
//! types (or plain structs defined here), never SeaORM `Model`s.
//!
//! This crate must not know HTTP, actix or utoipa: the API crate maps
//! [`StoreError`] to status codes.

pub mod analytics;
#[cfg(feature = "bench")]
pub mod bench;
pub mod budgets;
pub mod calendar;
pub mod dashboard;
mod db;
mod entity;
mod error;
pub mod errors;
pub mod ingest;
mod keys;
pub mod maintenance;
pub mod otel;
pub mod outbox;
pub mod posthog;
pub mod reports;
pub mod reprice;
pub mod reservations;
pub mod retention;
pub mod rollup;
mod sql;
pub mod testing;
mod users;

#[cfg(test)]
mod schema_tests;

pub use db::{DEFAULT_READ_TIMEOUT, Engine, MigrationState, READS_APPLICATION_NAME, Store};
pub use error::{StoreError, StoreResult};
pub use keys::{ApiKeyInfo, NewApiKey};
pub use users::{AuthUser, MAX_EXTERNAL_ID_CHARS};
