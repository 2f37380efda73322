//! Request ids, Sentry (a local listener stands in for Sentry's ingest
//! endpoint and receives the real envelopes), `error_logs` rows of 5xx
//! responses, and `/metrics`.

use crate::helpers::{TestApp, Vars, json, spawn_app, spawn_app_with};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
};
use uuid::Uuid;

/// One envelope item: its type and its JSON payload.
#[derive(Debug, Clone)]
struct EnvelopeItem {
    item_type: String,
    payload: Value,
}

/// A stand-in for Sentry's ingest endpoint that keeps every envelope.
struct FakeSentry {
    port: u16,
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl FakeSentry {
    /// Listens on a random port, on a thread of its own (blocking I/O keeps
    /// it independent of the test's runtime).
    fn start() -> FakeSentry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for socket in listener.incoming() {
                let Ok(mut socket) = socket else { continue };
                let kept = kept.clone();
                std::thread::spawn(move || {
                    let _ = socket.set_read_timeout(Some(Duration::from_secs(10)));
                    if let Some(body) = read_request(&mut socket) {
                        kept.lock().unwrap().push(body);
                    }
                    let _ = socket.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    let _ = socket.shutdown(Shutdown::Both);
                });
            }
        });
        FakeSentry { port, bodies }
    }

    fn dsn(&self) -> String {
        format!("http://public@127.0.0.1:{}/1", self.port)
    }

    /// Every envelope body received so far, as text.
    fn raw(&self) -> String {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every `event` item received so far.
    fn events(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| parse_envelope(b))
            .filter(|i| i.item_type == "event")
            .map(|i| i.payload)
            .collect()
    }

    /// Waits (up to 15 s) for an event whose `request_id` tag is `id`.
    async fn event_for(&self, request_id: &str) -> Value {
        for _ in 0..150 {
            if let Some(e) = self
                .events()
                .into_iter()
                .find(|e| e["tags"]["request_id"] == request_id)
            {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no Sentry event for request {request_id}; received: {}",
            self.raw()
        );
    }
}

/// Reads one HTTP/1.1 request and returns its body.
fn read_request(socket: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = socket.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < header_end + length {
        let n = socket.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[header_end..header_end + length].to_vec())
}

/// Splits an envelope: a header line, then items (a header line, then a
/// payload of `length` bytes or up to the next newline).
fn parse_envelope(body: &[u8]) -> Vec<EnvelopeItem> {
    let mut items = Vec::new();
    let Some(first) = body.iter().position(|b| *b == b'\n') else {
        return items;
    };
    let mut rest = &body[first + 1..];
    while !rest.is_empty() {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let header: Value = serde_json::from_slice(&rest[..end]).unwrap_or(Value::Null);
        rest = rest.get(end + 1..).unwrap_or_default();
        let len = header["length"]
            .as_u64()
            .map(|l| l as usize)
            .unwrap_or_else(|| rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len()));
        let payload = serde_json::from_slice(&rest[..len.min(rest.len())]).unwrap_or(Value::Null);
        rest = rest.get(len + 1..).unwrap_or_default();
        items.push(EnvelopeItem {
            item_type: header["type"].as_str().unwrap_or_default().to_owned(),
            payload,
        });
    }
    items
}

async fn spawn_app_reporting_to(sentry: &FakeSentry, extra: &[(&'static str, &str)]) -> TestApp {
    let mut vars = Vars::new();
    vars.insert("SENTRY_DSN", sentry.dsn());
    vars.insert("SENTRY_ENVIRONMENT", "obs-test".into());
    vars.insert("SENTRY_TRACES_SAMPLE_RATE", "0".into());
    for (k, v) in extra {
        vars.insert(k, (*v).to_owned());
    }
    spawn_app_with(vars).await
}

/// Rolls the schema back to the core migration: the database answers, and
/// `error_logs` exists, but ingestion's own tables are gone, so an ingest
/// batch fails with a 500 whose row can still be written.
async fn break_ingestion(app: &TestApp) {
    let applied = app
        .store
        .migration_status()
        .await
        .unwrap()
        .iter()
        .filter(|m| m.applied)
        .count();
    app.store
        .migrate_down(Some(u32::try_from(applied - 1).unwrap()))
        .await
        .unwrap();
}

fn ts() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn unique_request_id(tag: &str) -> String {
    format!("{tag}-{}", Uuid::now_v7().simple())
}

async fn wait_for_error_rows(
    app: &TestApp,
    request_id: &str,
) -> Vec<charlie_store::errors::ErrorLogEntry> {
    for _ in 0..100 {
        let rows = app.store.errors_by_request_id(request_id).await.unwrap();
        if !rows.is_empty() {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no error_logs row for request {request_id}");
}

#[tokio::test]
async fn a_5xx_reaches_sentry_with_environment_release_and_request_id_and_no_pii() {
    let sentry = FakeSentry::start();
    let app = spawn_app_reporting_to(&sentry, &[]).await;
    let key = app.api_key().await;
    break_ingestion(&app).await;
    let request_id = unique_request_id("obs-5xx");
    let email = "private.person@example.com";
    let batch = json!({"batch": [
        {"id": Uuid::now_v7(), "type": "user.upsert", "timestamp": ts(),
         "body": {"external_id": "ext-obs", "email": email}},
        {"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts(),
         "body": {"conversation_id": Uuid::now_v7(), "role": "user",
                  "usage": {"input_tokens": 3, "output_tokens": 4}}},
    ]});
    let resp = app
        .client
        .post(app.url("/api/v1/ingest?token=query-secret"))
        .bearer_auth(&key)
        .header("X-Request-Id", &request_id)
        .header("Cookie", "__session=cookie-secret")
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    assert_eq!(resp.headers()["x-request-id"], request_id.as_str());
    assert_eq!(json(resp).await["code"], "internal_error");

    let event = sentry.event_for(&request_id).await;
    assert_eq!(event["environment"], "obs-test");
    assert_eq!(event["release"], charlie_api::observability::RELEASE);
    assert!(
        event["release"]
            .as_str()
            .unwrap()
            .ends_with(env!("CARGO_PKG_VERSION"))
    );
    // `error` is the protocol's default level, which the SDK leaves out.
    assert!(
        event["level"].is_null() || event["level"] == "error",
        "{event}"
    );
    assert_eq!(event["tags"]["route"], "/api/v1/ingest");
    assert_eq!(event["tags"]["status"], "500");
    assert_eq!(event["transaction"], "POST /api/v1/ingest");
    assert_eq!(event["exception"]["values"][0]["type"], "internal_error");
    assert_eq!(event["request"]["method"], "POST");
    assert!(
        event["request"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/api/v1/ingest"),
        "{}",
        event["request"]
    );
    // No PII and no secrets anywhere in what reached Sentry.
    let raw = sentry.raw();
    for secret in [email, key.as_str(), "query-secret", "cookie-secret"] {
        assert!(!raw.contains(secret), "`{secret}` reached Sentry: {raw}");
    }
    assert!(event.get("user").is_none_or(Value::is_null), "{event}");

    // The error_logs row carries the same request and the event id.
    let rows = wait_for_error_rows(&app, &request_id).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.service, "charlie-stats");
    assert_eq!(row.error_type, "internal_error");
    assert_eq!(row.error_code.as_deref(), Some("500"));
    assert_eq!(row.endpoint.as_deref(), Some("/api/v1/ingest"));
    assert_eq!(row.metadata["method"], "POST");
    assert!(!row.error_message.is_empty());
    let event_id = event["event_id"].as_str().unwrap().replace('-', "");
    assert_eq!(row.sentry_event_id.as_deref(), Some(event_id.as_str()));
}

#[tokio::test]
async fn a_failing_probe_is_not_sent_to_sentry_nor_logged_as_an_error_row() {
    let sentry = FakeSentry::start();
    let app = spawn_app_reporting_to(&sentry, &[]).await;
    app.store.clone().close().await.unwrap();

    let probe_id = unique_request_id("obs-probe");
    let resp = app
        .client
        .get(app.url("/ready"))
        .header("X-Request-Id", &probe_id)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["x-request-id"], probe_id.as_str());

    // A later failure elsewhere is sent: once it has arrived, anything the
    // probe could have sent (through the same queue, earlier) has too.
    let marker = unique_request_id("obs-marker");
    let resp = app
        .client
        .post(app.url("/api/v1/ingest"))
        .bearer_auth("cs_not_a_real_key")
        .header("X-Request-Id", &marker)
        .json(&json!({"batch": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    sentry.event_for(&marker).await;
    for event in sentry.events() {
        assert_ne!(event["tags"]["request_id"], probe_id.as_str(), "{event}");
        assert_ne!(event["tags"]["route"], "/ready", "{event}");
    }
}

#[tokio::test]
async fn without_a_dsn_a_5xx_still_gets_an_error_row_without_event_id() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    break_ingestion(&app).await;
    let request_id = unique_request_id("obs-nodsn");
    let resp = app
        .client
        .post(app.url("/api/v1/ingest"))
        .bearer_auth(&key)
        .header("X-Request-Id", &request_id)
        .json(&json!({"batch": [
            {"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts(),
             "body": {"conversation_id": Uuid::now_v7(), "role": "user"}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 500);
    let rows = wait_for_error_rows(&app, &request_id).await;
    assert_eq!(rows[0].sentry_event_id, None);
    assert_eq!(rows[0].endpoint.as_deref(), Some("/api/v1/ingest"));
}

#[tokio::test]
async fn x_request_id_is_echoed_when_valid_and_replaced_otherwise() {
    let app = spawn_app().await;
    let get = |id: Option<String>| {
        let mut req = app.client.get(app.url("/health"));
        if let Some(id) = id {
            req = req.header("X-Request-Id", id);
        }
        req.send()
    };
    let resp = get(Some("abc.DEF_123-x".into())).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc.DEF_123-x");

    let mut generated = Vec::new();
    for bad in [None, Some("has spaces".to_owned()), Some("a".repeat(101))] {
        let resp = get(bad.clone()).await.unwrap();
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let uuid = Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{bad:?} -> {id}: {e}"));
        assert_eq!(uuid.get_version_num(), 7, "{id}");
        generated.push(id);
    }
    generated.dedup();
    assert_eq!(generated.len(), 3, "ids are fresh per request");

    // Errors carry it too.
    let resp = get(Some("err-1".into())).await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app
        .client
        .get(app.url("/no/such/route"))
        .header("X-Request-Id", "err-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-request-id"], "err-2");
}

/// Parses the text exposition format strictly enough to catch mistakes:
/// every sample belongs to a declared family and has a numeric value.
/// Returns `series -> value`, the series written as in the text.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in `{line}`: {e}"));
        let name = series.split('{').next().unwrap();
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        let labels = &series[name.len()..];
        assert!(
            labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
            "{line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "undeclared family: {line}");
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn metrics_of(app: &TestApp) -> (String, HashMap<String, f64>) {
    let resp = app.get("/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.unwrap();
    let parsed = parse_prometheus(&text);
    (text, parsed)
}

fn value(samples: &HashMap<String, f64>, series: &str) -> f64 {
    samples.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_traffic() {
    let app = spawn_app().await;
    let health = r#"http_requests_total{method="GET",route="/health",status="200"}"#;
    let health_count =
        r#"http_request_duration_seconds_count{method="GET",route="/health",status="200"}"#;
    let (_, before) = metrics_of(&app).await;

    for _ in 0..3 {
        assert_eq!(app.get("/health").await.status(), 200);
    }
    assert_eq!(app.get("/api/v1/nothing/here-123").await.status(), 404);
    let key = app.api_key().await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let resp = app
        .ingest_with(
            &key,
            &[
                json!({"id": u, "type": "user.upsert", "timestamp": ts(),
                       "body": {"external_id": "ext-m", "email": "m@example.com"}}),
                json!({"id": c, "type": "conversation.upsert", "timestamp": ts(),
                       "body": {"user_id": u}}),
                json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts(),
                       "body": {"conversation_id": c, "role": "assistant", "model": "gpt-4o",
                                "usage": {"input_tokens": 10, "output_tokens": 5}}}),
                json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts(),
                       "body": {"conversation_id": c, "role": "assistant",
                                "model": "house-model-without-price",
                                "usage": {"input_tokens": 10, "output_tokens": 5}}}),
                json!({"id": "not-a-uuid", "type": "event.track", "timestamp": ts(), "body": {}}),
            ],
        )
        .await;
    assert_eq!(resp.status(), 207);

    let (text, after) = metrics_of(&app).await;
    assert_eq!(
        value(&after, health) - value(&before, health),
        3.0,
        "{text}"
    );
    assert_eq!(value(&after, health_count), value(&after, health), "{text}");
    let inf = r#"http_request_duration_seconds_bucket{method="GET",route="/health",status="200",le="+Inf"}"#;
    assert_eq!(value(&after, inf), value(&after, health), "{text}");
    // Unknown paths are one series, never their raw path.
    assert_eq!(
        value(
            &after,
            r#"http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        1.0,
        "{text}"
    );
    assert!(!text.contains("here-123"), "{text}");
    assert_eq!(
        value(
            &after,
            r#"http_requests_total{method="POST",route="/api/v1/ingest",status="207"}"#
        ),
        1.0,
        "{text}"
    );
    for (series, n) in [
        (
            r#"charlie_ingest_items_total{type="message.create",outcome="created"}"#,
            2.0,
        ),
        (
            r#"charlie_ingest_items_total{type="user.upsert",outcome="created"}"#,
            1.0,
        ),
        (
            r#"charlie_ingest_items_total{type="event.track",outcome="error"}"#,
            1.0,
        ),
        (
            r#"charlie_usages_total{model="gpt-4o",pricing_status="priced"}"#,
            1.0,
        ),
        (
            r#"charlie_usages_total{model="house-model-without-price",pricing_status="unpriced"}"#,
            1.0,
        ),
    ] {
        assert_eq!(value(&after, series), n, "{series} in\n{text}");
    }

    // A retry stores nothing new: item outcomes move, usages do not.
    let resp = app
        .ingest_with(
            &key,
            &[
                json!({"id": c, "type": "conversation.upsert", "timestamp": ts(),
                     "body": {"user_id": u}}),
            ],
        )
        .await;
    assert_eq!(resp.status(), 207);
    let (_, again) = metrics_of(&app).await;
    assert_eq!(
        value(
            &again,
            r#"charlie_usages_total{model="gpt-4o",pricing_status="priced"}"#
        ),
        1.0
    );
}

#[tokio::test]
async fn metrics_want_the_token_when_one_is_configured() {
    let mut vars = Vars::new();
    vars.insert("METRICS_TOKEN", "metrics-s3cret".into());
    let app = spawn_app_with(vars).await;
    assert_eq!(app.get("/metrics").await.status(), 401);
    let wrong = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth("metrics-s3cret")
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 200);
    assert!(
        right
            .text()
            .await
            .unwrap()
            .contains("# TYPE http_requests_total counter")
    );
}
