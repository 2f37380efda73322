//! OpenTelemetry: the second ingestion transport. OTLP/HTTP exports (from
//! Langflow's tracers, Traceloop/OpenLLMetry, OpenInference, Langfuse's SDK
//! or any OpenTelemetry SDK) become users, conversations, messages with
//! exact cost, and cost per Langflow component, through the same pipeline as
//! `POST /api/v1/ingest`.
//!
//! - `decode`: content types, compression, OTLP error and success bodies;
//! - `spans`: what a request gives to stage (LLM calls, component spans,
//!   each trace's user, session and flow);
//! - `resolve`: staged traces to ingest items, and the sweeper that resolves
//!   traces whose root never came.
//!
//! The routes are in `routes/otlp.rs`.

pub mod decode;
pub mod resolve;
pub mod spans;
