//! SeaORM entities of the plain CRUD tables: each table's columns and types
//! declared once, read and written through typed models instead of SQL text
//! and `try_get("", "column")`. Hand-written SQL stays where it is tuned
//! (ingestion, rollups, analytics). Repositories map models to the types
//! they return; no model leaves this crate.

pub mod api_keys;
