//! Integration tests: the real application on a random port against a
//! throw-away database (SQLite by default, PostgreSQL when
//! `TEST_DATABASE_URL` is set). One binary, one module per area.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod helpers;

mod alerts;
mod analytics;
mod auth;
mod budget_reservations;
mod cli;
mod components;
mod crash;
mod demo;
mod faults;
mod fold;
mod health;
mod ingest;
mod instances;
mod observability;
mod openapi;
mod otel;
mod posthog;
mod ratelimit;
mod replica;
mod reports;
mod retention;
