//! Development tools of Charlie Stats: not product code. Nothing in the
//! product depends on this crate (`.ci/check-layers`); it reaches the
//! product through the public API of `charlie-api` and `charlie-store`.
//!
//! - [`demo`]: `charlie-dev demo` seeds realistic data through the ingest
//!   service and prints development credentials.
//! - [`samples`]: realistic raw LLM responses, shared by the demo and the
//!   benchmarks (`charlie-bench`).

pub mod demo;
pub mod samples;
