//! A small Prometheus registry: counters and one histogram behind mutexes,
//! rendered in the text exposition format (version 0.0.4) by `GET /metrics`.
//!
//! Labels are bounded on purpose: routes are templates (`/users/{id}`, never
//! a raw path), methods outside the standard set become `OTHER`, and model
//! names stop getting their own series after [`MAX_MODEL_LABELS`].

use crate::service::ingest::BatchReport;
use charlie_store::ingest::Outcome;
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

/// Upper bounds (seconds) of the request latency histogram.
const LATENCY_BUCKETS: [(f64, &str); 11] = [
    (0.005, "0.005"),
    (0.01, "0.01"),
    (0.025, "0.025"),
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1"),
    (2.5, "2.5"),
    (5.0, "5"),
    (10.0, "10"),
];

/// Distinct `model` label values kept; later models are counted as `other`.
pub const MAX_MODEL_LABELS: usize = 500;

/// The `route` label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct HttpKey {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Debug, Default, Clone)]
struct Latency {
    /// Non-cumulative counts per bucket; the last slot is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_seconds: f64,
    count: u64,
}

/// Every metric the service exposes. One per application.
#[derive(Debug, Default)]
pub struct Metrics {
    http: Mutex<BTreeMap<HttpKey, Latency>>,
    ingested: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    usages: Mutex<BTreeMap<(String, String), u64>>,
    models_seen: Mutex<BTreeSet<String>>,
    /// Requests refused by a rate limit, by caller kind.
    rate_limited: Mutex<BTreeMap<&'static str, u64>>,
    /// OpenTelemetry spans by what became of them.
    otel_spans: Mutex<BTreeMap<&'static str, u64>>,
    /// PostHog forwarding: events by outcome, and the outbox's last count.
    posthog: Mutex<PosthogCounts>,
}

#[derive(Debug, Default)]
struct PosthogCounts {
    sent: u64,
    retried: u64,
    failed: u64,
    backlog: Option<charlie_store::posthog::PosthogBacklog>,
}

/// Locks a mutex; a panic while it was held leaves only counters behind,
/// which are still worth reporting.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("OTHER")
}

fn outcome_label(o: Outcome) -> &'static str {
    match o {
        Outcome::Created => "created",
        Outcome::Updated => "updated",
        Outcome::Duplicate => "duplicate",
        Outcome::Error => "error",
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Counts one answered request.
    pub fn observe_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let key = HttpKey {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        let mut http = lock(&self.http);
        let entry = http.entry(key).or_default();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|(le, _)| seconds <= *le)
            .unwrap_or(LATENCY_BUCKETS.len());
        entry.buckets[slot] += 1;
        entry.sum_seconds += seconds;
        entry.count += 1;
    }

    /// Counts the items of an ingested batch by type and outcome, and the
    /// usages of newly stored messages by model and pricing status.
    pub fn observe_ingest(&self, report: &BatchReport) {
        {
            let mut ingested = lock(&self.ingested);
            for r in &report.results {
                let item_type = r.item_type.map(|t| t.as_str()).unwrap_or("unknown");
                *ingested
                    .entry((item_type, outcome_label(r.outcome)))
                    .or_default() += 1;
            }
        }
        let mut usages = lock(&self.usages);
        let mut models = lock(&self.models_seen);
        for r in &report.results {
            let (Outcome::Created, Some(p)) = (r.outcome, &r.pricing) else {
                continue;
            };
            let model = p.model.as_deref().unwrap_or("unknown");
            let model = if models.contains(model) {
                model
            } else if models.len() < MAX_MODEL_LABELS {
                models.insert(model.to_owned());
                model
            } else {
                "other"
            };
            *usages
                .entry((model.to_owned(), p.status.clone()))
                .or_default() += 1;
        }
    }

    /// The text exposition format.
    /// Counts the spans of an OTLP export: received, staged (LLM calls and
    /// component spans) and rejected.
    pub fn observe_otel_received(&self, staged: &crate::otlp::spans::Staged) {
        let llm = staged
            .spans
            .iter()
            .filter(|s| s.kind == charlie_store::otel::StagedKind::Llm)
            .count();
        let mut spans = lock(&self.otel_spans);
        *spans.entry("received").or_default() += staged.total as u64;
        *spans.entry("staged_llm").or_default() += llm as u64;
        *spans.entry("staged_component").or_default() += (staged.spans.len() - llm) as u64;
        *spans.entry("rejected").or_default() += staged.rejected.len() as u64;
    }

    /// Counts a request refused by a rate limit.
    pub fn observe_rate_limited(&self, caller: crate::ratelimit::Caller) {
        *lock(&self.rate_limited).entry(caller.as_str()).or_default() += 1;
    }

    /// Counts what a resolution pass did with waiting LLM spans.
    pub fn observe_otel_resolved(&self, r: crate::otlp::resolve::Resolved) {
        let mut spans = lock(&self.otel_spans);
        *spans.entry("counted").or_default() += r.messages as u64;
        *spans.entry("duplicate").or_default() += r.duplicates as u64;
        *spans.entry("refused").or_default() += r.refused as u64;
    }

    /// Counts what one PostHog delivery pass did with its events.
    pub fn observe_posthog(&self, sent: usize, retried: usize, failed: usize) {
        let mut p = lock(&self.posthog);
        p.sent += sent as u64;
        p.retried += retried as u64;
        p.failed += failed as u64;
    }

    /// The PostHog outbox's size, as last counted by its worker.
    pub fn set_posthog_backlog(&self, backlog: charlie_store::posthog::PosthogBacklog) {
        lock(&self.posthog).backlog = Some(backlog);
    }

    /// The registry in Prometheus text format (what the database must be
    /// asked for at scrape time, the rollup lag, is added by the handler).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.render_into(&mut out);
        out
    }

    fn render_into(&self, out: &mut String) -> std::fmt::Result {
        let http = lock(&self.http).clone();
        writeln!(
            out,
            "# HELP http_requests_total HTTP requests answered, by method, route template and status."
        )?;
        writeln!(out, "# TYPE http_requests_total counter")?;
        for (k, v) in &http {
            writeln!(
                out,
                "http_requests_total{{method=\"{}\",route=\"{}\",status=\"{}\"}} {}",
                k.method,
                escape(&k.route),
                k.status,
                v.count
            )?;
        }
        writeln!(
            out,
            "# HELP http_request_duration_seconds Time to answer HTTP requests, by method, route template and status."
        )?;
        writeln!(out, "# TYPE http_request_duration_seconds histogram")?;
        for (k, v) in &http {
            let labels = format!(
                "method=\"{}\",route=\"{}\",status=\"{}\"",
                k.method,
                escape(&k.route),
                k.status
            );
            let mut cumulative = 0;
            for (i, (_, le)) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += v.buckets[i];
                writeln!(
                    out,
                    "http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {cumulative}"
                )?;
            }
            writeln!(
                out,
                "http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                v.count
            )?;
            writeln!(
                out,
                "http_request_duration_seconds_sum{{{labels}}} {}",
                v.sum_seconds
            )?;
            writeln!(
                out,
                "http_request_duration_seconds_count{{{labels}}} {}",
                v.count
            )?;
        }
        writeln!(
            out,
            "# HELP charlie_ingest_items_total Ingested items, by item type and outcome."
        )?;
        writeln!(out, "# TYPE charlie_ingest_items_total counter")?;
        for ((item_type, outcome), n) in lock(&self.ingested).iter() {
            writeln!(
                out,
                "charlie_ingest_items_total{{type=\"{item_type}\",outcome=\"{outcome}\"}} {n}"
            )?;
        }
        writeln!(
            out,
            "# HELP charlie_usages_total Stored messages with token usage, by model and pricing status (priced, partial, unpriced). Unpriced usages mean a model has no price."
        )?;
        writeln!(out, "# TYPE charlie_usages_total counter")?;
        for ((model, status), n) in lock(&self.usages).iter() {
            writeln!(
                out,
                "charlie_usages_total{{model=\"{}\",pricing_status=\"{}\"}} {n}",
                escape(model),
                escape(status)
            )?;
        }
        writeln!(
            out,
            "# HELP charlie_rate_limited_total Requests answered 429 by a rate limit, by caller (service_key, user)."
        )?;
        writeln!(out, "# TYPE charlie_rate_limited_total counter")?;
        for (caller, n) in lock(&self.rate_limited).iter() {
            writeln!(out, "charlie_rate_limited_total{{caller=\"{caller}\"}} {n}")?;
        }
        writeln!(
            out,
            "# HELP charlie_otel_spans_total OpenTelemetry spans by what became of them: received, staged_llm, staged_component, rejected (unreadable), counted (stored as a message), duplicate (re-exported), refused (by the ingestion checks)."
        )?;
        writeln!(out, "# TYPE charlie_otel_spans_total counter")?;
        for (outcome, n) in lock(&self.otel_spans).iter() {
            writeln!(out, "charlie_otel_spans_total{{outcome=\"{outcome}\"}} {n}")?;
        }
        let posthog = lock(&self.posthog);
        writeln!(
            out,
            "# HELP charlie_posthog_events_total Activity events forwarded to PostHog, by outcome: sent (accepted), retried (an attempt failed and will be retried), failed (refused for good or out of attempts)."
        )?;
        writeln!(out, "# TYPE charlie_posthog_events_total counter")?;
        for (outcome, n) in [
            ("sent", posthog.sent),
            ("retried", posthog.retried),
            ("failed", posthog.failed),
        ] {
            writeln!(
                out,
                "charlie_posthog_events_total{{outcome=\"{outcome}\"}} {n}"
            )?;
        }
        if let Some(backlog) = posthog.backlog {
            writeln!(
                out,
                "# HELP charlie_posthog_outbox_events Events in the PostHog outbox: pending (waiting for delivery) and failed (given up on, kept with their error)."
            )?;
            writeln!(out, "# TYPE charlie_posthog_outbox_events gauge")?;
            writeln!(
                out,
                "charlie_posthog_outbox_events{{state=\"pending\"}} {}",
                backlog.pending
            )?;
            writeln!(
                out,
                "charlie_posthog_outbox_events{{state=\"failed\"}} {}",
                backlog.failed
            )?;
        }
        Ok(())
    }
}

/// Appends the rollup lag gauges (see `GET /metrics`).
pub fn render_rollup_lag(out: &mut String, lag: &charlie_store::ingest::fold::RollupLag) {
    let _ = writeln!(
        out,
        "# HELP charlie_rollup_lag_seconds Age of the oldest acknowledged batch not yet folded into the rollups (0: the rollups count everything acknowledged)."
    );
    let _ = writeln!(out, "# TYPE charlie_rollup_lag_seconds gauge");
    let _ = writeln!(out, "charlie_rollup_lag_seconds {:.3}", lag.seconds);
    let _ = writeln!(
        out,
        "# HELP charlie_rollup_queue_rows Rows of acknowledged batches waiting to be folded into the rollups (a batch appends one per fold shard it changes)."
    );
    let _ = writeln!(out, "# TYPE charlie_rollup_queue_rows gauge");
    let _ = writeln!(out, "charlie_rollup_queue_rows {}", lag.rows);
}

/// Appends whether analytics reads go to the read replica now (only when
/// `DATABASE_READ_URL` is set).
pub fn render_replica(out: &mut String, up: bool) {
    let _ = writeln!(
        out,
        "# HELP charlie_read_replica_up 1 while analytics reads go to the read replica (DATABASE_READ_URL), 0 while it does not answer and they go to the primary."
    );
    let _ = writeln!(out, "# TYPE charlie_read_replica_up gauge");
    let _ = writeln!(out, "charlie_read_replica_up {}", u8::from(up));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::ingest::{ItemPricing, ItemResult};
    use charlie_domain::ingest::ItemType;

    fn result(t: Option<ItemType>, outcome: Outcome, pricing: Option<(&str, &str)>) -> ItemResult {
        ItemResult {
            id: None,
            outcome,
            error: None,
            warnings: Vec::new(),
            item_type: t,
            pricing: pricing.map(|(m, s)| ItemPricing {
                model: Some(m.to_owned()),
                status: s.to_owned(),
            }),
        }
    }

    #[test]
    fn requests_are_counted_with_cumulative_latency_buckets() {
        let m = Metrics::new();
        m.observe_request("GET", "/users/{id}", 200, Duration::from_millis(3));
        m.observe_request("GET", "/users/{id}", 200, Duration::from_millis(300));
        m.observe_request("BREW", "unmatched", 404, Duration::from_secs(30));
        let text = m.render();
        assert!(text.contains(
            "http_requests_total{method=\"GET\",route=\"/users/{id}\",status=\"200\"} 2"
        ));
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/users/{id}\",status=\"200\",le=\"0.005\"} 1"));
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/users/{id}\",status=\"200\",le=\"0.25\"} 1"));
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"GET\",route=\"/users/{id}\",status=\"200\",le=\"0.5\"} 2"));
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"OTHER\",route=\"unmatched\",status=\"404\",le=\"10\"} 0"));
        assert!(text.contains("http_request_duration_seconds_bucket{method=\"OTHER\",route=\"unmatched\",status=\"404\",le=\"+Inf\"} 1"));
    }

    #[test]
    fn ingestion_counts_types_outcomes_and_pricing_of_new_messages_only() {
        let m = Metrics::new();
        m.observe_ingest(&BatchReport {
            results: vec![
                result(
                    Some(ItemType::Message),
                    Outcome::Created,
                    Some(("gpt-4o", "priced")),
                ),
                result(
                    Some(ItemType::Message),
                    Outcome::Duplicate,
                    Some(("gpt-4o", "priced")),
                ),
                result(
                    Some(ItemType::Message),
                    Outcome::Created,
                    Some(("my \"model\"", "unpriced")),
                ),
                result(None, Outcome::Error, None),
            ],
        });
        let text = m.render();
        assert!(
            text.contains(
                "charlie_ingest_items_total{type=\"message.create\",outcome=\"created\"} 2"
            )
        );
        assert!(text.contains(
            "charlie_ingest_items_total{type=\"message.create\",outcome=\"duplicate\"} 1"
        ));
        assert!(text.contains("charlie_ingest_items_total{type=\"unknown\",outcome=\"error\"} 1"));
        assert!(
            text.contains("charlie_usages_total{model=\"gpt-4o\",pricing_status=\"priced\"} 1")
        );
        assert!(text.contains(
            "charlie_usages_total{model=\"my \\\"model\\\"\",pricing_status=\"unpriced\"} 1"
        ));
    }

    #[test]
    fn model_labels_are_bounded() {
        let m = Metrics::new();
        let names: Vec<String> = (0..MAX_MODEL_LABELS + 5).map(|i| format!("m{i}")).collect();
        m.observe_ingest(&BatchReport {
            results: names
                .iter()
                .map(|n| {
                    result(
                        Some(ItemType::Message),
                        Outcome::Created,
                        Some((n, "unpriced")),
                    )
                })
                .collect(),
        });
        let text = m.render();
        assert!(
            text.contains("charlie_usages_total{model=\"other\",pricing_status=\"unpriced\"} 5")
        );
    }
}
