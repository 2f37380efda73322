//! Forwarding activity events to PostHog: the settings (`POSTHOG_*`), the
//! event as PostHog's batch capture API takes it, the outbox worker and the
//! `posthog backfill` command.
//!
//! Every request is `POST {POSTHOG_HOST}/batch/` with the JSON body
//! `{"api_key", "historical_migration": false, "batch": [event, …]}`, each
//! event being `{"event", "distinct_id", "timestamp", "uuid", "properties"}`.
//! The `uuid` is our event id, so PostHog keeps one copy of an event sent
//! twice (after a crash between its answer and our bookkeeping, or by a
//! backfill).
//!
//! Answers: a 2xx delivers the batch. 408, 429, 5xx, 401/403 (a wrong or
//! revoked key says nothing about the events) and no answer are retried after
//! `POSTHOG_RETRY_BASE_MS × 2^(attempt−1)`, capped at one hour, until
//! `POSTHOG_MAX_ATTEMPTS`. Any other 4xx refuses the batch: a batch of one
//! is recorded as failed (with the answer) and not retried; a larger batch
//! is split in halves and each half sent again at once, so one bad event
//! does not sink its neighbours.

use crate::config::env::{ConfigError, Env, Secret, parse_bool, parse_var};
use crate::observability::Metrics;
use charlie_store::{Store, StoreError, posthog::ForwardedEvent};
use serde_json::{Map, Value, json};
use std::{collections::BTreeMap, time::Duration};
use time::Date;
use uuid::Uuid;

/// PostHog Cloud US, the default `POSTHOG_HOST`.
pub const DEFAULT_HOST: &str = "https://us.i.posthog.com";

/// PostHog drops an event larger than 1 MB; such an event is recorded as
/// failed here instead of being sent.
pub const MAX_EVENT_BYTES: usize = 1_000_000;

/// PostHog's capture takes request bodies up to 20 MB; batches are cut to
/// stay well below.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// `POSTHOG_*`.
#[derive(Debug, Clone)]
pub struct PosthogSettings {
    /// `POSTHOG_API_KEY`: the project API key (`phc_…`). Forwarding is off
    /// without it.
    pub api_key: Option<Secret>,
    /// `POSTHOG_HOST` (default PostHog Cloud US), without trailing slashes.
    pub host: String,
    /// `POSTHOG_SEND_PERSON_PROPERTIES` (default false): add `$set` with the
    /// user's e-mail and time zone to each event.
    pub send_person_properties: bool,
    /// `POSTHOG_BATCH_SIZE` (1–1000, default 100): events per request.
    pub batch_size: u32,
    /// `POSTHOG_TIMEOUT_SECONDS` (default 10).
    pub timeout_seconds: u64,
    /// `POSTHOG_RETRY_BASE_MS` (default 1000): the first retry's delay;
    /// each next one doubles, up to one hour.
    pub retry_base_ms: u64,
    /// `POSTHOG_MAX_ATTEMPTS` (default 30, about a day of retries): then
    /// the event is marked failed.
    pub max_attempts: u32,
    /// `POSTHOG_POLL_INTERVAL_MS` (default 1000): how often the worker looks
    /// for due events.
    pub poll_interval_ms: u64,
}

impl PosthogSettings {
    pub fn from_env(env: &dyn Env) -> Result<PosthogSettings, ConfigError> {
        let raw_host = env
            .get("POSTHOG_HOST")
            .unwrap_or_else(|| DEFAULT_HOST.to_owned());
        let host = raw_host.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(host)
            .map_err(|e| ConfigError::new("POSTHOG_HOST", format!("`{host}`: {e}")))?;
        if !["http", "https"].contains(&parsed.scheme()) || parsed.host_str().is_none() {
            return Err(ConfigError::new(
                "POSTHOG_HOST",
                format!("`{host}` is not an http(s):// URL"),
            ));
        }
        let batch_size = parse_var(env, "POSTHOG_BATCH_SIZE", 100u32)?;
        if !(1..=1000).contains(&batch_size) {
            return Err(ConfigError::new(
                "POSTHOG_BATCH_SIZE",
                format!("{batch_size} is not from 1 to 1000"),
            ));
        }
        let max_attempts = parse_var(env, "POSTHOG_MAX_ATTEMPTS", 30u32)?;
        if max_attempts == 0 {
            return Err(ConfigError::new(
                "POSTHOG_MAX_ATTEMPTS",
                "must be at least 1",
            ));
        }
        Ok(PosthogSettings {
            api_key: env
                .get("POSTHOG_API_KEY")
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty())
                .map(Secret::new),
            host: host.to_owned(),
            send_person_properties: parse_bool(env, "POSTHOG_SEND_PERSON_PROPERTIES", false)?,
            batch_size,
            timeout_seconds: parse_var(env, "POSTHOG_TIMEOUT_SECONDS", 10u64)?.max(1),
            retry_base_ms: parse_var(env, "POSTHOG_RETRY_BASE_MS", 1000u64)?.max(1),
            max_attempts,
            poll_interval_ms: parse_var(env, "POSTHOG_POLL_INTERVAL_MS", 1000u64)?.max(10),
        })
    }

    /// Whether events are forwarded (`POSTHOG_API_KEY` is set).
    pub fn enabled(&self) -> bool {
        self.api_key.is_some()
    }

    /// Where batches go.
    pub fn batch_url(&self) -> String {
        format!("{}/batch/", self.host)
    }
}

/// The PostHog person of an event: the platform's user id (what the
/// frontend's `posthog.identify` uses), or our user id for a placeholder
/// user the platform has not described yet.
pub fn distinct_id(e: &ForwardedEvent) -> String {
    e.external_id
        .clone()
        .unwrap_or_else(|| e.user_id.to_string())
}

/// One event as PostHog's batch capture takes it. Never carries message
/// text; carries the e-mail only with `person_properties`.
pub fn event_json(e: &ForwardedEvent, person_properties: bool) -> Value {
    let mut props = Map::new();
    props.insert("event_category".into(), e.event_category.clone().into());
    for (key, id) in [
        ("workflow_id", e.workflow_id),
        ("component_id", e.component_id),
        ("conversation_id", e.conversation_id),
    ] {
        if let Some(id) = id {
            props.insert(key.into(), id.to_string().into());
        }
    }
    // Nested, so the platform's keys can never collide with ours or with
    // PostHog's `$` properties (a `$set` in metadata stays inert).
    props.insert("metadata".into(), e.metadata.clone());
    props.insert("charlie_user_id".into(), e.user_id.to_string().into());
    props.insert("$lib".into(), "charlie-stats".into());
    props.insert("$lib_version".into(), env!("CARGO_PKG_VERSION").into());
    if person_properties {
        let mut set = Map::new();
        if let Some(email) = &e.email {
            set.insert("email".into(), email.clone().into());
        }
        if let Some(tz) = &e.timezone {
            set.insert("timezone".into(), tz.clone().into());
        }
        if !set.is_empty() {
            props.insert("$set".into(), Value::Object(set));
        }
    }
    json!({
        "event": e.event_type,
        "distinct_id": distinct_id(e),
        "timestamp": charlie_domain::rfc3339(e.at),
        "uuid": e.id,
        "properties": props,
    })
}

/// What became of the events of one delivery.
#[derive(Debug, Default)]
pub struct Delivery {
    /// Accepted by PostHog.
    pub sent: Vec<Uuid>,
    /// Not delivered for a passing reason (to retry), with the last reason.
    pub transient: Vec<Uuid>,
    pub transient_error: Option<String>,
    /// Refused for good, each with PostHog's answer.
    pub rejected: Vec<(Uuid, String)>,
}

enum Answer {
    Accepted,
    Transient(String),
    Refused(String),
}

async fn post(client: &reqwest::Client, url: &str, key: &str, events: &[(Uuid, String)]) -> Answer {
    let mut body = format!(
        "{{\"api_key\":{},\"historical_migration\":false,\"batch\":[",
        Value::from(key)
    );
    for (i, (_, e)) in events.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(e);
    }
    body.push_str("]}");
    let resp = match client
        .post(url)
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Answer::Transient(format!("request failed: {e}")),
    };
    let status = resp.status();
    if status.is_success() {
        return Answer::Accepted;
    }
    let text: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(300)
        .collect();
    let error = format!("PostHog answered {status}: {text}");
    let code = status.as_u16();
    if status.is_client_error() && !matches!(code, 401 | 403 | 408 | 429) {
        Answer::Refused(error)
    } else {
        Answer::Transient(error)
    }
}

/// Sends `events` in batches of at most `MAX_BODY_BYTES`, splitting a
/// refused batch until the refused events are alone.
pub async fn deliver(
    client: &reqwest::Client,
    settings: &PosthogSettings,
    key: &str,
    events: &[ForwardedEvent],
) -> Delivery {
    let mut out = Delivery::default();
    let mut chunks: Vec<Vec<(Uuid, String)>> = Vec::new();
    let mut current: Vec<(Uuid, String)> = Vec::new();
    let mut size = 0;
    for e in events {
        let text = event_json(e, settings.send_person_properties).to_string();
        if text.len() > MAX_EVENT_BYTES {
            out.rejected.push((
                e.id,
                format!(
                    "the event is {} bytes, over PostHog's 1 MB event limit",
                    text.len()
                ),
            ));
            continue;
        }
        if !current.is_empty() && size + text.len() + 1 > MAX_BODY_BYTES - 1024 {
            chunks.push(std::mem::take(&mut current));
            size = 0;
        }
        size += text.len() + 1;
        current.push((e.id, text));
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    let url = settings.batch_url();
    // Last in, first out: the halves of a refused batch go next.
    chunks.reverse();
    while let Some(mut chunk) = chunks.pop() {
        match post(client, &url, key, &chunk).await {
            Answer::Accepted => out.sent.extend(chunk.iter().map(|(id, _)| *id)),
            Answer::Transient(error) => {
                out.transient.extend(chunk.iter().map(|(id, _)| *id));
                out.transient_error = Some(error);
            }
            Answer::Refused(error) if chunk.len() == 1 => {
                out.rejected
                    .extend(chunk.iter().map(|(id, _)| (*id, error.clone())));
            }
            Answer::Refused(_) => {
                let second = chunk.split_off(chunk.len() / 2);
                chunks.push(second);
                chunks.push(chunk);
            }
        }
    }
    out
}

/// The HTTP client of the worker and the backfill.
pub fn client(settings: &PosthogSettings) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(settings.timeout_seconds))
        .user_agent(concat!("charlie-stats/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the PostHog client: {e}"))
}

fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// How long claimed events are reserved for the worker that claimed them:
/// longer than a request (timeout included), so a live worker finishes
/// first; a dead worker's events are sent again once it ends (PostHog
/// dedupes them by `uuid`).
fn lease_ms(settings: &PosthogSettings) -> i64 {
    i64::try_from(
        settings
            .timeout_seconds
            .saturating_mul(2000)
            .saturating_add(1000),
    )
    .unwrap_or(i64::MAX)
}

/// Claims and delivers one batch of due events; returns how many were claimed.
pub async fn drain_once(
    store: &Store,
    client: &reqwest::Client,
    settings: &PosthogSettings,
    metrics: &Metrics,
) -> Result<usize, StoreError> {
    let Some(key) = &settings.api_key else {
        return Ok(0);
    };
    let events = store
        .claim_posthog(settings.batch_size, lease_ms(settings), now_ms())
        .await?;
    if events.is_empty() {
        return Ok(0);
    }
    let d = deliver(client, settings, key.expose(), &events).await;
    store.posthog_delivered(&d.sent).await?;
    for (id, error) in &d.rejected {
        tracing::warn!(event_id = %id, %error, "PostHog refused an event; it will not be retried");
        store
            .posthog_attempt_failed(&[*id], error, None, now_ms())
            .await?;
    }
    let mut retried = 0;
    let mut gave_up = 0;
    if !d.transient.is_empty() {
        let error = d.transient_error.as_deref().unwrap_or("not delivered");
        let attempts: BTreeMap<Uuid, i32> = events.iter().map(|e| (e.id, e.attempts)).collect();
        // Events claimed together usually share their attempt count; one
        // update per distinct retry time.
        let mut by_retry: BTreeMap<Option<i64>, Vec<Uuid>> = BTreeMap::new();
        for id in &d.transient {
            let n = u32::try_from(attempts.get(id).copied().unwrap_or(1)).unwrap_or(u32::MAX);
            let retry_at = (n < settings.max_attempts).then(|| {
                now_ms().saturating_add(
                    i64::try_from(super::webhook::backoff_ms(settings.retry_base_ms, n))
                        .unwrap_or(i64::MAX),
                )
            });
            by_retry.entry(retry_at).or_default().push(*id);
        }
        for (retry_at, ids) in by_retry {
            match retry_at {
                Some(_) => retried += ids.len(),
                None => gave_up += ids.len(),
            }
            tracing::warn!(events = ids.len(), %error, will_retry = retry_at.is_some(), "PostHog batch not delivered");
            store
                .posthog_attempt_failed(&ids, error, retry_at, now_ms())
                .await?;
        }
    }
    if !d.sent.is_empty() {
        tracing::debug!(events = d.sent.len(), "events forwarded to PostHog");
    }
    metrics.observe_posthog(d.sent.len(), retried, d.rejected.len() + gave_up);
    Ok(events.len())
}

/// Runs the worker forever (spawned by the server when `POSTHOG_API_KEY` is set).
pub async fn run(store: Store, settings: PosthogSettings, metrics: std::sync::Arc<Metrics>) {
    let client = match client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "events will not be forwarded to PostHog");
            return;
        }
    };
    let idle = Duration::from_millis(settings.poll_interval_ms);
    let mut counted_at: Option<std::time::Instant> = None;
    loop {
        let busy = match drain_once(&store, &client, &settings, &metrics).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!(error = %e, "PostHog worker: database error; retrying");
                false
            }
        };
        // The backlog gauge: after every idle pass, and once a second while busy.
        if !busy || counted_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            match store.posthog_backlog().await {
                Ok(b) => metrics.set_posthog_backlog(b),
                Err(e) => tracing::warn!(error = %e, "PostHog worker: cannot count the outbox"),
            }
            counted_at = Some(std::time::Instant::now());
        }
        if !busy {
            tokio::time::sleep(idle).await;
        }
    }
}

/// What a backfill did (or, with `--dry-run`, would do).
#[derive(Debug, Default, serde::Serialize)]
pub struct BackfillReport {
    pub from: Option<Date>,
    pub to: Option<Date>,
    pub events: u64,
    pub sent: u64,
    pub failed: u64,
    /// The first events as they are (or would be) sent.
    pub sample: Vec<Value>,
    /// Up to 20 failures: event id and reason.
    pub errors: Vec<(Uuid, String)>,
}

const SAMPLE_SIZE: usize = 3;

/// Sends the stored activity events of the UTC days `from..=to` (default:
/// the first to the last stored event) to PostHog, one day at a time in
/// batches of `POSTHOG_BATCH_SIZE`, with the same `uuid`s as the worker, so
/// events PostHog already has are not counted twice. Passing failures are
/// retried with backoff up to `POSTHOG_MAX_ATTEMPTS` times. `dry_run` only
/// counts and samples, and needs no key.
pub async fn backfill(
    store: &Store,
    settings: &PosthogSettings,
    from: Option<Date>,
    to: Option<Date>,
    dry_run: bool,
) -> Result<BackfillReport, String> {
    let key = match (&settings.api_key, dry_run) {
        (Some(k), _) => Some(k.expose().to_owned()),
        (None, true) => None,
        (None, false) => {
            return Err("set POSTHOG_API_KEY to send events (or pass --dry-run)".into());
        }
    };
    if let (Some(a), Some(b)) = (from, to)
        && a > b
    {
        return Err(format!("--from {a} is after --to {b}"));
    }
    let mut report = BackfillReport {
        from,
        to,
        ..Default::default()
    };
    let Some((first, last)) = store
        .activity_event_days()
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(report);
    };
    let start = from.map_or(first, |d| d.max(first));
    let end = to.map_or(last, |d| d.min(last));
    let client = client(settings)?;
    let mut day = start;
    while day <= end {
        if dry_run {
            report.events += store
                .count_activity_events(day)
                .await
                .map_err(|e| e.to_string())?;
            if report.sample.len() < SAMPLE_SIZE {
                let events = store
                    .activity_events_of_day(day, None, SAMPLE_SIZE as u32)
                    .await
                    .map_err(|e| e.to_string())?;
                for e in events.iter().take(SAMPLE_SIZE - report.sample.len()) {
                    report
                        .sample
                        .push(event_json(e, settings.send_person_properties));
                }
            }
        } else if let Some(key) = &key {
            backfill_day(store, settings, &client, key, day, &mut report).await?;
        }
        let Some(next) = day.next_day() else { break };
        day = next;
    }
    Ok(report)
}

async fn backfill_day(
    store: &Store,
    settings: &PosthogSettings,
    client: &reqwest::Client,
    key: &str,
    day: Date,
    report: &mut BackfillReport,
) -> Result<(), String> {
    let mut after = None;
    loop {
        let events = store
            .activity_events_of_day(day, after, settings.batch_size)
            .await
            .map_err(|e| e.to_string())?;
        let Some(last) = events.last() else {
            return Ok(());
        };
        after = Some(last.id);
        report.events += events.len() as u64;
        for e in events
            .iter()
            .take(SAMPLE_SIZE.saturating_sub(report.sample.len()))
        {
            report
                .sample
                .push(event_json(e, settings.send_person_properties));
        }
        let mut pending: Vec<ForwardedEvent> = events;
        let mut attempt = 0u32;
        while !pending.is_empty() {
            attempt += 1;
            let d = deliver(client, settings, key, &pending).await;
            report.sent += d.sent.len() as u64;
            report.failed += d.rejected.len() as u64;
            for (id, error) in d.rejected {
                if report.errors.len() < 20 {
                    report.errors.push((id, error));
                }
            }
            if d.transient.is_empty() {
                break;
            }
            let error = d.transient_error.unwrap_or_default();
            if attempt >= settings.max_attempts {
                report.failed += d.transient.len() as u64;
                for id in d
                    .transient
                    .iter()
                    .take(20usize.saturating_sub(report.errors.len()))
                {
                    report.errors.push((*id, error.clone()));
                }
                break;
            }
            tracing::warn!(events = d.transient.len(), %error, attempt, "PostHog batch not delivered; retrying");
            tokio::time::sleep(Duration::from_millis(super::webhook::backoff_ms(
                settings.retry_base_ms,
                attempt,
            )))
            .await;
            pending.retain(|e| d.transient.contains(&e.id));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&'static str, &'static str)]) -> Result<PosthogSettings, ConfigError> {
        let env: HashMap<&str, &str> = vars.iter().copied().collect();
        PosthogSettings::from_env(&env)
    }

    fn event() -> ForwardedEvent {
        ForwardedEvent {
            id: Uuid::from_u128(7),
            at: time::macros::datetime!(2026-12-03 10:15:00.25 UTC),
            user_id: Uuid::from_u128(1),
            external_id: None,
            email: Some("ada@example.com".into()),
            timezone: Some("Europe/Paris".into()),
            event_type: "workflow_created".into(),
            event_category: "workflow".into(),
            workflow_id: Some(Uuid::from_u128(2)),
            component_id: None,
            conversation_id: None,
            metadata: json!({"$set": {"email": "x"}, "template": "faq"}),
            attempts: 1,
        }
    }

    #[test]
    fn defaults_are_off_us_cloud_and_batches_of_100() {
        let s = settings(&[]).unwrap();
        assert!(!s.enabled() && !s.send_person_properties);
        assert_eq!(s.batch_url(), "https://us.i.posthog.com/batch/");
        assert_eq!((s.batch_size, s.max_attempts), (100, 30));
        let s = settings(&[
            ("POSTHOG_API_KEY", "phc_x"),
            ("POSTHOG_HOST", "http://posthog.internal:8000/"),
        ])
        .unwrap();
        assert!(s.enabled());
        assert_eq!(s.batch_url(), "http://posthog.internal:8000/batch/");
        for (vars, var) in [
            (vec![("POSTHOG_HOST", "ftp://x")], "POSTHOG_HOST"),
            (vec![("POSTHOG_BATCH_SIZE", "0")], "POSTHOG_BATCH_SIZE"),
            (vec![("POSTHOG_MAX_ATTEMPTS", "0")], "POSTHOG_MAX_ATTEMPTS"),
            (
                vec![("POSTHOG_SEND_PERSON_PROPERTIES", "maybe")],
                "POSTHOG_SEND_PERSON_PROPERTIES",
            ),
        ] {
            assert_eq!(settings(&vars).err().map(|e| e.var), Some(var), "{vars:?}");
        }
    }

    #[test]
    fn events_carry_ids_and_metadata_nested_and_person_properties_only_when_asked() {
        let e = event();
        let plain = event_json(&e, false);
        assert_eq!(plain["event"], "workflow_created");
        assert_eq!(plain["uuid"], Uuid::from_u128(7).to_string());
        assert_eq!(plain["distinct_id"], Uuid::from_u128(1).to_string());
        assert_eq!(plain["timestamp"], "2026-12-03T10:15:00.25Z");
        assert_eq!(
            plain["properties"]["workflow_id"],
            Uuid::from_u128(2).to_string()
        );
        assert!(plain["properties"].get("component_id").is_none());
        assert!(plain["properties"].get("$set").is_none());
        assert_eq!(plain["properties"]["metadata"]["template"], "faq");
        assert!(!plain.to_string().contains("ada@example.com"));
        let person = event_json(
            &ForwardedEvent {
                external_id: Some("u-42".into()),
                ..e
            },
            true,
        );
        assert_eq!(person["distinct_id"], "u-42");
        assert_eq!(
            person["properties"]["$set"],
            json!({"email": "ada@example.com", "timezone": "Europe/Paris"})
        );
    }
}
