//! SeaORM entities of the plain CRUD tables: each table's columns and types
//! declared once, read and written through typed models instead of SQL text
//! and `try_get` by column name. Hand-written SQL stays where it is tuned
//! (ingestion, rollups, analytics); it reads its rows into structs that
//! derive `FromQueryResult`. Repositories map models to the types they
//! return; no model leaves this crate.

pub mod agent_components;
pub mod alerts;
pub mod api_keys;
pub mod conversations;
pub mod error_logs;
pub mod report_deliveries;
pub mod users;
pub mod workflows;
