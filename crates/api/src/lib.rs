//! The HTTP service and command line of Charlie Stats.
//!
//! This is the only crate that knows HTTP: actix-web handlers, status codes,
//! the OpenAPI document (utoipa) and Swagger UI live here. Handlers parse and
//! check requests, call `charlie-store` (and `charlie-pricing`), and shape
//! responses; they hold no SQL and no pricing rules.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
pub mod jobs;
pub mod observability;
pub mod openapi;
pub mod otlp;
pub mod pricing;
pub mod ratelimit;
pub mod reconcile;
pub mod routes;
pub mod service;
pub mod telemetry;

pub use app::{AppState, Application};
pub use config::Settings;
pub use error::{ApiError, ErrorBody};
