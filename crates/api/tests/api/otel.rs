//! The OpenTelemetry receiver: OTLP/HTTP traces (protobuf and JSON, gzip),
//! Langflow-shaped traces arriving whole or one span at a time, re-exports,
//! traces with no user, bad input, the Langfuse-compatible endpoints, and
//! (when the Python SDKs are installed, always in CI) real exporters.

use crate::helpers::{TestApp, Vars, assert_rollups_clean, json, spawn_app, spawn_app_with, token};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse},
    common::v1::{AnyValue, KeyValue, any_value::Value as Av},
    resource::v1::Resource,
    trace::v1::{ResourceSpans, ScopeSpans, Span},
};
use prost::Message;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;

fn kv(key: &str, value: Av) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn s(v: &str) -> Av {
    Av::StringValue(v.to_owned())
}

fn i(v: i64) -> Av {
    Av::IntValue(v)
}

/// A span of trace `trace` with id `[id; 8]`, `from`..`to` seconds after
/// `t0`.
fn span(
    trace: [u8; 16],
    id: u8,
    parent: Option<u8>,
    name: &str,
    t0: OffsetDateTime,
    (from, to): (i64, i64),
    attributes: Vec<KeyValue>,
) -> Span {
    let nanos = |s: i64| (t0.unix_timestamp_nanos() + i128::from(s) * 1_000_000_000) as u64;
    Span {
        trace_id: trace.to_vec(),
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: name.to_owned(),
        start_time_unix_nano: nanos(from),
        end_time_unix_nano: nanos(to),
        attributes,
        ..Span::default()
    }
}

fn request(service: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

async fn post_proto(
    app: &TestApp,
    key: &str,
    req: &ExportTraceServiceRequest,
) -> reqwest::Response {
    app.client
        .post(app.url("/v1/traces"))
        .bearer_auth(key)
        .header("Content-Type", "application/x-protobuf")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap()
}

async fn accepted(resp: reqwest::Response) -> ExportTraceServiceResponse {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    ExportTraceServiceResponse::decode(bytes.as_ref()).unwrap()
}

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(token("otel-admin", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    json(resp).await
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.store.scalar_for_tests(sql).await.unwrap()
}

/// A Langflow run as its tracers shape it: the run span (root, with the
/// generic tracer's `langflow.*` attributes and `flow_id`/`flow_name`), a
/// chat-input component, an OpenAI component with an LLM span under it
/// (current GenAI names), and an Anthropic component whose LLM span uses
/// the older names and is not its child (only its time says where it
/// belongs, as with Langflow's Traceloop tracer).
struct LangflowRun {
    trace: [u8; 16],
    user: Uuid,
    flow: Uuid,
    t0: OffsetDateTime,
}

impl LangflowRun {
    fn new() -> LangflowRun {
        LangflowRun {
            trace: *Uuid::new_v4().as_bytes(),
            user: Uuid::new_v4(),
            flow: Uuid::new_v4(),
            t0: OffsetDateTime::now_utc() - time::Duration::hours(1),
        }
    }

    /// In the order a one-span-per-request exporter sends them (as they end).
    fn spans(&self) -> Vec<Span> {
        let (t, t0) = (self.trace, self.t0);
        let openai = vec![
            kv("gen_ai.request.model", s("gpt-4o-mini")),
            kv("gen_ai.response.model", s("gpt-4o-mini-2024-07-18")),
            kv("gen_ai.usage.input_tokens", i(1200)),
            kv("gen_ai.usage.output_tokens", i(300)),
            kv("gen_ai.usage.cache_read.input_tokens", i(1000)),
        ];
        let anthropic = vec![
            kv("gen_ai.request.model", s("claude-haiku-4-5")),
            kv("gen_ai.usage.prompt_tokens", i(800)),
            kv("gen_ai.usage.completion_tokens", i(100)),
            kv("llm.usage.total_tokens", i(900)),
        ];
        let root = vec![
            kv("langflow.user_id", s(&self.user.to_string())),
            kv("langflow.session_id", s("session-42")),
            kv("langflow.project_name", s("Langflow")),
            kv("flow_id", s(&self.flow.to_string())),
            kv("flow_name", s("Support bot")),
        ];
        let run_name = format!("Support bot - {}", self.flow);
        vec![
            component(t, 2, "Chat Input", "ChatInput-x1", t0, (0, 1)),
            span(t, 4, Some(3), "openai.chat", t0, (2, 5), openai),
            component(t, 3, "OpenAI", "OpenAIModel-AbC12", t0, (1, 6)),
            // Parented to a span that is never exported.
            span(t, 6, Some(9), "anthropic.chat", t0, (7, 9), anthropic),
            component(t, 5, "Anthropic", "AnthropicModel-Zz9", t0, (6, 10)),
            span(t, 1, None, &run_name, t0, (0, 11), root),
        ]
    }
}

/// A Langflow component's span under the run span (id 1), as Langflow's
/// tracers write it: `"<name> (<component id>)"` with the id in `trace_id`
/// and `vertex_id`.
fn component(
    trace: [u8; 16],
    id: u8,
    name: &str,
    key: &str,
    t0: OffsetDateTime,
    range: (i64, i64),
) -> Span {
    let attributes = vec![
        kv("trace_id", s(key)),
        kv("trace_type", s("llm")),
        kv("vertex_id", s(key)),
    ];
    span(
        trace,
        id,
        Some(1),
        &format!("{name} ({key})"),
        t0,
        range,
        attributes,
    )
}

/// gpt-4o-mini: 200 uncached × $0.15/M + 1000 cached × $0.075/M + 300 × $0.6/M;
/// claude-haiku-4-5: 800 × $1/M + 100 × $5/M.
const RUN_COST_NANO: i64 = 285_000 + 1_300_000;

async fn assert_run_counted(app: &TestApp, run: &LangflowRun) {
    let days = app.store.daily_rows_for_tests(run.user).await.unwrap();
    let messages: i64 = days.iter().map(|d| d.message_count).sum();
    let input: i64 = days.iter().map(|d| d.input_tokens).sum();
    let output: i64 = days.iter().map(|d| d.output_tokens).sum();
    let cost: i64 = days.iter().map(|d| d.estimated_cost_nano_usd).sum();
    assert_eq!(
        (messages, input, output, cost),
        (2, 2000, 400, RUN_COST_NANO),
        "{days:?}"
    );
    // Every message sits in the flow's workflow, and the two LLM calls are
    // each in their own component.
    assert!(days.iter().all(|d| d.workflow_id.is_some()), "{days:?}");
    // Each test has a database of its own: every row is this run's.
    let with_component = scalar(app, "SELECT COUNT(DISTINCT component_id) FROM messages").await;
    assert_eq!(with_component, 2);
    let names = scalar(
        app,
        "SELECT COUNT(*) FROM agent_components WHERE name IN ('OpenAI', 'Anthropic')",
    )
    .await;
    assert_eq!(names, 2);
    let workflows = scalar(
        app,
        "SELECT COUNT(*) FROM workflows WHERE name = 'Support bot'",
    )
    .await;
    assert_eq!(workflows, 1);
    assert_rollups_clean(app).await;
}

#[tokio::test]
async fn a_langflow_trace_in_one_export_becomes_priced_messages_per_component() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let run = LangflowRun::new();
    let resp = accepted(post_proto(&app, &key, &request("langflow", run.spans())).await).await;
    assert_eq!(resp.partial_success, None);
    assert_run_counted(&app, &run).await;

    // The admin cost report sees both models, exactly.
    let today = OffsetDateTime::now_utc().date();
    let from = today - time::Duration::days(1);
    let costs = admin_get(
        &app,
        &format!("/api/v1/analytics/admin/costs?from={from}&to={today}&group_by=model"),
    )
    .await;
    let groups = costs["groups"].as_array().unwrap();
    let cost_of = |model: &str| {
        groups
            .iter()
            .find(|g| g["key"] == model)
            .map(|g| g["estimated_cost_usd"].to_string())
    };
    assert_eq!(
        cost_of("gpt-4o-mini-2024-07-18").as_deref(),
        Some("0.000285"),
        "{costs:#}"
    );
    assert_eq!(
        cost_of("claude-haiku-4-5").as_deref(),
        Some("0.0013"),
        "{costs:#}"
    );

    // Exported again (an exporter retrying after a lost answer): counted once.
    accepted(post_proto(&app, &key, &request("langflow", run.spans())).await).await;
    assert_run_counted(&app, &run).await;
}

#[tokio::test]
async fn spans_sent_one_at_a_time_wait_for_their_root() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let run = LangflowRun::new();
    let spans = run.spans();
    let (root, children) = spans.split_last().unwrap();
    for child in children {
        accepted(post_proto(&app, &key, &request("langflow", vec![child.clone()])).await).await;
    }
    // Nothing is counted before the root says whose run it is.
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM messages").await, 0);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM otel_spans WHERE kind = 2 AND resolved_at IS NULL"
        )
        .await,
        2
    );
    accepted(post_proto(&app, &key, &request("langflow", vec![root.clone()])).await).await;
    assert_run_counted(&app, &run).await;
}

#[tokio::test]
async fn a_trace_with_no_root_and_no_user_is_counted_after_the_wait() {
    let app = spawn_app_with(Vars::from([("OTEL_TRACE_WAIT_SECONDS", "0.3".to_owned())])).await;
    let key = app.api_key().await;
    let trace = *Uuid::new_v4().as_bytes();
    let t0 = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let llm = span(
        trace,
        7,
        Some(8),
        "openai.chat",
        t0,
        (0, 2),
        vec![
            kv("gen_ai.request.model", s("gpt-4o-mini")),
            kv("gen_ai.usage.input_tokens", i(1000)),
            kv("gen_ai.usage.output_tokens", i(100)),
        ],
    );
    accepted(post_proto(&app, &key, &request("my-agent", vec![llm])).await).await;
    // The sweeper writes the message, then marks its span resolved in a
    // transaction of its own: wait for both.
    let mut counted = 0;
    for _ in 0..100 {
        counted = scalar(&app, "SELECT COUNT(*) FROM messages").await;
        let waiting = scalar(
            &app,
            "SELECT COUNT(*) FROM otel_spans WHERE resolved_at IS NULL",
        )
        .await;
        if counted > 0 && waiting == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(counted, 1, "the sweeper did not count the waiting span");
    // It belongs to the exporting service's own user, priced.
    let cost = scalar(
        &app,
        "SELECT CAST(SUM(cost_nano_usd) AS BIGINT) FROM messages",
    )
    .await;
    assert_eq!(cost, 1000 * 150 + 100 * 600);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM otel_spans WHERE resolved_at IS NULL"
        )
        .await,
        0
    );
    assert_rollups_clean(&app).await;
}

#[tokio::test]
async fn otlp_json_with_gzip_is_accepted_and_bad_spans_are_a_partial_success() {
    use std::io::Write;
    let app = spawn_app().await;
    let key = app.api_key().await;
    let trace = "5b8efff798038103d269b633813fc60c";
    let now = OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
    let body = json!({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-app"}}]},
        "scopeSpans": [{"spans": [
            {"traceId": trace, "spanId": "eee19b7ec3c1b174", "name": "root",
             "startTimeUnixNano": (now - 3_000_000_000).to_string(), "endTimeUnixNano": now.to_string(),
             "attributes": [{"key": "user.id", "value": {"stringValue": "alice"}}]},
            {"traceId": trace, "spanId": "eee19b7ec3c1b175", "parentSpanId": "eee19b7ec3c1b174",
             "name": "llm", "startTimeUnixNano": (now - 2_000_000_000).to_string(),
             "endTimeUnixNano": (now - 1_000_000_000).to_string(),
             "attributes": [
                {"key": "llm.model_name", "value": {"stringValue": "gpt-4o-mini"}},
                {"key": "llm.token_count.prompt", "value": {"intValue": "500"}},
                {"key": "llm.token_count.completion", "value": {"intValue": 50}}]},
            {"traceId": trace, "spanId": "eee19b7ec3c1b176", "parentSpanId": "eee19b7ec3c1b174",
             "name": "broken", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
             "attributes": [{"key": "gen_ai.usage.input_tokens", "value": {"intValue": "-5"}}]}
        ]}]
    }]});
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(body.to_string().as_bytes()).unwrap();
    let resp = app
        .client
        .post(app.url("/v1/traces"))
        .bearer_auth(&key)
        .header("Content-Type", "application/json")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let answer = json(resp).await;
    assert_eq!(answer["partialSuccess"]["rejectedSpans"], 1, "{answer}");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("gen_ai.usage.input_tokens"),
        "{answer}"
    );
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM messages").await, 1);
    assert_eq!(
        scalar(
            &app,
            "SELECT CAST(SUM(input_tokens) AS BIGINT) FROM messages"
        )
        .await,
        500
    );
}

#[tokio::test]
async fn bad_otlp_requests_get_otlp_errors_never_500() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let post = |body: Vec<u8>, content_type: &'static str, encoding: Option<&'static str>| {
        let mut req = app
            .client
            .post(app.url("/v1/traces"))
            .bearer_auth(&key)
            .header("Content-Type", content_type)
            .body(body);
        if let Some(e) = encoding {
            req = req.header("Content-Encoding", e);
        }
        req.send()
    };
    #[rustfmt::skip]
    let cases: Vec<(Vec<u8>, &str, Option<&str>, u16)> = vec![
        (b"\xff\xff\xff not protobuf".to_vec(), "application/x-protobuf", None, 400),
        (b"{\"resourceSpans\": 7}".to_vec(), "application/json", None, 400),
        (b"x".to_vec(), "text/plain", None, 415),
        (b"not gzip".to_vec(), "application/x-protobuf", Some("gzip"), 400),
        (b"x".to_vec(), "application/x-protobuf", Some("br"), 415),
    ];
    for (body, content_type, encoding, want) in cases {
        let resp = post(body, content_type, encoding).await.unwrap();
        assert_eq!(resp.status(), want, "{content_type} {encoding:?}");
        let bytes = resp.bytes().await.unwrap();
        if content_type == "application/json" {
            let status: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(status["code"], 3, "{status}");
        } else {
            assert!(!bytes.is_empty());
        }
    }
    // An empty export is a success; no key is a 401 with the usual body.
    let resp = post(Vec::new(), "application/x-protobuf", None)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = app.client.post(app.url("/v1/traces")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["code"], "unauthorized");
    // Metrics are acknowledged.
    let resp = app
        .client
        .post(app.url("/v1/metrics"))
        .bearer_auth(&key)
        .header("Content-Type", "application/json")
        .body("{\"resourceMetrics\": []}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn langfuse_s_sdk_finds_its_project_and_sends_traces_with_basic_auth() {
    let app = spawn_app().await;
    let key = app.store.create_api_key("langflow").await.unwrap();
    let public = charlie_api::auth::langfuse_public_key(key.id);
    let projects = app
        .client
        .get(app.url("/api/public/projects"))
        .basic_auth(&public, Some(&key.key))
        .send()
        .await
        .unwrap();
    assert_eq!(projects.status(), 200);
    let body = json(projects).await;
    assert_eq!(body["data"][0]["id"], key.id.to_string());
    assert_eq!(body["data"][0]["name"], "langflow");
    assert!(body["data"][0]["organization"]["id"].is_string());
    // The secret of another key, or a made-up public key, is refused.
    let other = app.api_key().await;
    for (user, secret) in [
        (public.as_str(), other.as_str()),
        ("pk-lf-x", key.key.as_str()),
    ] {
        let resp = app
            .client
            .get(app.url("/api/public/projects"))
            .basic_auth(user, Some(secret))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    // A Langfuse-style generation: usage_details in Langfuse's own keys.
    let trace = *Uuid::new_v4().as_bytes();
    let user = Uuid::new_v4();
    let t0 = OffsetDateTime::now_utc() - time::Duration::minutes(30);
    let spans = vec![
        span(
            trace,
            1,
            None,
            "Support bot",
            t0,
            (0, 5),
            vec![
                kv("user.id", s(&user.to_string())),
                kv("session.id", s("s-1")),
            ],
        ),
        span(
            trace,
            2,
            Some(1),
            "OpenAI",
            t0,
            (1, 4),
            vec![kv(
                "langfuse.observation.metadata.component_id",
                s("OpenAIModel-AbC12"),
            )],
        ),
        span(
            trace,
            3,
            Some(2),
            "ChatOpenAI",
            t0,
            (2, 3),
            vec![
                kv("langfuse.observation.type", s("generation")),
                kv("langfuse.observation.model.name", s("gpt-4o-mini")),
                kv(
                    "langfuse.observation.usage_details",
                    s(r#"{"input":200,"input_cache_read":1000,"output":300,"total":1500}"#),
                ),
            ],
        ),
    ];
    let resp = app
        .client
        .post(app.url("/api/public/otel/v1/traces"))
        .basic_auth(&public, Some(&key.key))
        .header("Content-Type", "application/x-protobuf")
        .body(request("langfuse", spans).encode_to_vec())
        .send()
        .await
        .unwrap();
    accepted(resp).await;
    let days = app.store.daily_rows_for_tests(user).await.unwrap();
    let cost: i64 = days.iter().map(|d| d.estimated_cost_nano_usd).sum();
    let input: i64 = days.iter().map(|d| d.input_tokens).sum();
    assert_eq!((input, cost), (1200, 285_000), "{days:?}");
}

/// The Python that runs `crates/api/tests/otel/export_trace.py` (real
/// OpenTelemetry, Traceloop and Langfuse SDKs): `CHARLIE_OTEL_PYTHON`, made
/// by `.ci/otel-venv`. Unset outside CI, these tests say why and do nothing;
/// in CI (`CI` set) an unset variable fails them.
fn exporter_python(test: &str) -> Option<String> {
    match std::env::var("CHARLIE_OTEL_PYTHON") {
        Ok(p) if !p.trim().is_empty() => Some(p),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{test}: CI must set CHARLIE_OTEL_PYTHON (see .ci/otel-venv)")
        }
        _ => {
            eprintln!(
                "{test}: skipped: CHARLIE_OTEL_PYTHON is not set; run `export CHARLIE_OTEL_PYTHON=$(bash .ci/otel-venv | tail -n 1)` to run it"
            );
            None
        }
    }
}

/// Runs the exporter script against `app` and returns what it says it sent.
async fn export_with_python(python: String, args: Vec<String>) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otel/export_trace.py");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(args)
            .env("TRACELOOP_TELEMETRY", "false")
            .env("OTEL_SDK_DISABLED", "false")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exporter failed:\n{stdout}\n{stderr}");
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    serde_json::from_str(last.unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// What the exporter says it sent is what the service counted, once.
async fn assert_counted_as_sent(app: &TestApp, sent: &Value) {
    let user: Uuid = sent["user_id"].as_str().unwrap().parse().unwrap();
    let calls = sent["calls"].as_array().unwrap();
    let want = |field: &str| {
        calls
            .iter()
            .map(|c| c[field].as_i64().unwrap())
            .sum::<i64>()
    };
    let days = app.store.daily_rows_for_tests(user).await.unwrap();
    let messages: i64 = days.iter().map(|d| d.message_count).sum();
    let input: i64 = days.iter().map(|d| d.input_tokens).sum();
    let output: i64 = days.iter().map(|d| d.output_tokens).sum();
    let cost: i64 = days.iter().map(|d| d.estimated_cost_nano_usd).sum();
    assert_eq!(
        (messages, input, output),
        (
            calls.len() as i64,
            want("input_tokens"),
            want("output_tokens")
        ),
        "{sent:#}\n{days:?}"
    );
    assert!(cost > 0, "{days:?}");
    // Each test has a database of its own: every row is this export's.
    let cached = scalar(
        app,
        "SELECT CAST(SUM(cache_read_tokens) AS BIGINT) FROM messages",
    )
    .await;
    assert_eq!(cached, want("cache_read_tokens"), "{sent:#}");
    let components: std::collections::BTreeSet<&str> = calls
        .iter()
        .filter_map(|c| c["component_id"].as_str())
        .collect();
    let stored = scalar(app, "SELECT COUNT(DISTINCT component_id) FROM messages").await;
    assert_eq!(stored, components.len() as i64, "{sent:#}");
    assert_rollups_clean(app).await;
}

#[tokio::test]
async fn the_python_opentelemetry_sdk_s_export_is_counted_once() {
    let Some(python) = exporter_python("otel sdk") else {
        return;
    };
    let app = spawn_app().await;
    let key = app.api_key().await;
    let sent = export_with_python(
        python,
        vec![
            "--mode".into(),
            "otel".into(),
            "--base-url".into(),
            app.address.clone(),
            "--api-key".into(),
            key,
            "--user-id".into(),
            Uuid::new_v4().to_string(),
            "--repeat-export".into(),
        ],
    )
    .await;
    assert_counted_as_sent(&app, &sent).await;
}

#[tokio::test]
async fn traceloop_instrumenting_a_real_openai_client_is_counted() {
    let Some(python) = exporter_python("traceloop") else {
        return;
    };
    let app = spawn_app().await;
    let key = app.api_key().await;
    let sent = export_with_python(
        python,
        vec![
            "--mode".into(),
            "traceloop".into(),
            "--base-url".into(),
            app.address.clone(),
            "--api-key".into(),
            key,
            "--user-id".into(),
            Uuid::new_v4().to_string(),
        ],
    )
    .await;
    assert_counted_as_sent(&app, &sent).await;
}

#[tokio::test]
async fn langfuse_s_python_sdk_is_counted() {
    let Some(python) = exporter_python("langfuse") else {
        return;
    };
    let app = spawn_app().await;
    let key = app.store.create_api_key("langflow").await.unwrap();
    let sent = export_with_python(
        python,
        vec![
            "--mode".into(),
            "langfuse".into(),
            "--base-url".into(),
            app.address.clone(),
            "--langfuse-public".into(),
            charlie_api::auth::langfuse_public_key(key.id),
            "--langfuse-secret".into(),
            key.key,
            "--user-id".into(),
            Uuid::new_v4().to_string(),
        ],
    )
    .await;
    assert_counted_as_sent(&app, &sent).await;
}
