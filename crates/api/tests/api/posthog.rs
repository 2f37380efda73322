//! Forwarding activity events to PostHog, against a receiver started here
//! that answers as told and records every request: the batch format and
//! its auth, retries, a crash in the middle of a backlog, refused events,
//! no key, person properties, and the backfill command.

use crate::helpers::{ServerProcess, TestApp, Vars, spawn_app_with};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use charlie_store::Store;
use serde_json::{Value, json};
use std::{
    collections::{BTreeSet, HashMap},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};
use uuid::Uuid;

const KEY: &str = "phc_test_project_key";
const DAY: &str = "2026-01-09";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    path: String,
    content_type: String,
    body: Value,
    status: u16,
}

impl Request {
    fn uuids(&self) -> Vec<String> {
        self.body["batch"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|e| e["uuid"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Decides the status of the `n`th request (from 0) from its body.
type Answer = dyn Fn(usize, &Value) -> u16 + Send + Sync;

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Request>>>,
    answer: Arc<Answer>,
    delay: Duration,
}

struct Receiver {
    host: String,
    got: Arc<Mutex<Vec<Request>>>,
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let n = state.got.lock().unwrap().len();
    let status = (state.answer)(n, &json);
    state.got.lock().unwrap().push(Request {
        path: req.path().to_owned(),
        content_type: req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        body: json,
        status,
    });
    tokio::time::sleep(state.delay).await;
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .json(json!({"status": if status == 200 { "Ok" } else { "error" }}))
}

impl Receiver {
    async fn start(
        delay: Duration,
        answer: impl Fn(usize, &Value) -> u16 + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = ReceiverState {
            got: Arc::new(Mutex::new(Vec::new())),
            answer: Arc::new(answer),
            delay,
        };
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .app_data(web::PayloadConfig::new(32 * 1024 * 1024))
                .default_service(web::to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            host,
            got: state.got,
        }
    }

    fn ok() -> impl Fn(usize, &Value) -> u16 + Send + Sync + 'static {
        |_, _| 200
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().unwrap().clone()
    }

    /// How many times each uuid was in a request answered 200.
    fn accepted(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for r in self.requests().iter().filter(|r| r.status == 200) {
            for id in r.uuids() {
                *out.entry(id).or_default() += 1;
            }
        }
        out
    }

    /// Waits until every id of `expected` was accepted (at most 30 s).
    async fn wait_for_all(&self, expected: &BTreeSet<String>) {
        for _ in 0..300 {
            let accepted = self.accepted();
            if expected.iter().all(|id| accepted.contains_key(id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "timed out waiting for {} events: {:#?}",
            expected.len(),
            self.requests()
        );
    }
}

fn ts(s: &str) -> String {
    format!("{DAY}T{s}Z")
}

fn item(id: Uuid, kind: &str, at: &str, body: Value) -> Value {
    json!({"id": id, "type": kind, "timestamp": ts(at), "body": body})
}

/// A user (with e-mail and time zone), a workflow and `n` tracked events:
/// `n` + 2 activity events (`user_signed_up`, `workflow_created`, then the
/// tracked ones).
fn items(user: Uuid, external: &str, n: usize, poison: Option<usize>) -> Vec<Value> {
    let workflow = Uuid::now_v7();
    let mut out = vec![
        item(
            user,
            "user.upsert",
            "08:00:00",
            json!({"external_id": external, "email": format!("{external}@example.com"), "timezone": "Europe/Paris"}),
        ),
        item(
            workflow,
            "workflow.upsert",
            "08:01:00",
            json!({"user_id": user, "name": "Support bot"}),
        ),
    ];
    for i in 0..n {
        out.push(item(
            Uuid::now_v7(),
            "event.track",
            &format!("09:{:02}:{:02}", i / 60, i % 60),
            json!({
                "user_id": user,
                "event_type": "canvas_opened",
                "event_category": "canvas",
                "workflow_id": workflow,
                "metadata": {"n": i, "poison": poison == Some(i)},
            }),
        ));
    }
    out
}

async fn ingest(address: &str, key: &str, items: &[Value]) {
    crate::helpers::post_batch(&reqwest::Client::new(), address, key, items).await;
}

/// Every stored activity event id of the test day.
async fn stored_ids(store: &Store) -> BTreeSet<String> {
    let day = time::Date::parse(
        DAY,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    store
        .activity_events_of_day(day, None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.to_string())
        .collect()
}

fn vars(receiver: &Receiver, extra: &[(&'static str, &str)]) -> Vars {
    let mut v: Vars = [
        ("POSTHOG_API_KEY", KEY.to_owned()),
        ("POSTHOG_HOST", receiver.host.clone()),
        ("POSTHOG_POLL_INTERVAL_MS", "50".to_owned()),
        ("POSTHOG_RETRY_BASE_MS", "100".to_owned()),
        ("POSTHOG_TIMEOUT_SECONDS", "1".to_owned()),
    ]
    .into_iter()
    .collect();
    for (k, val) in extra {
        v.insert(k, (*val).to_owned());
    }
    v
}

async fn metrics(app: &TestApp) -> String {
    app.get("/metrics").await.text().await.unwrap()
}

/// Waits until `/metrics` has every line of `lines` (at most 30 s).
async fn wait_for_metrics(app: &TestApp, lines: &[&str]) {
    let mut text = String::new();
    for _ in 0..300 {
        text = metrics(app).await;
        if lines.iter().all(|l| text.lines().any(|t| t == *l)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/metrics never showed {lines:?}:\n{text}");
}

#[tokio::test]
async fn events_and_milestones_reach_posthog_in_its_documented_batch_format() {
    let receiver = Receiver::start(Duration::ZERO, Receiver::ok()).await;
    let app = spawn_app_with(vars(&receiver, &[])).await;
    let key = app.api_key().await;
    let user = Uuid::now_v7();
    ingest(&app.address, &key, &items(user, "ph_ada", 3, None)).await;
    let expected = stored_ids(&app.store).await;
    assert_eq!(
        expected.len(),
        5,
        "user_signed_up, workflow_created and 3 tracked"
    );
    receiver.wait_for_all(&expected).await;

    let requests = receiver.requests();
    let mut events = Vec::new();
    for r in &requests {
        assert_eq!(r.path, "/batch/");
        assert!(r.content_type.starts_with("application/json"), "{r:?}");
        // PostHog's auth: the project key in the body.
        assert_eq!(r.body["api_key"], KEY);
        assert_eq!(r.body["historical_migration"], false);
        events.extend(r.body["batch"].as_array().unwrap().iter().cloned());
    }
    let by_type = |t: &str| events.iter().filter(|e| e["event"] == t).count();
    assert_eq!(
        (
            by_type("user_signed_up"),
            by_type("workflow_created"),
            by_type("canvas_opened")
        ),
        (1, 1, 3),
        "{events:#?}"
    );
    for e in &events {
        let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            BTreeSet::from(["event", "distinct_id", "timestamp", "uuid", "properties"])
        );
        assert_eq!(e["distinct_id"], "ph_ada");
        assert!(expected.contains(e["uuid"].as_str().unwrap()));
        let at = e["timestamp"].as_str().unwrap();
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
        assert!(at.starts_with(DAY), "{at}");
        assert_eq!(e["properties"]["charlie_user_id"], user.to_string());
        assert!(e["properties"].get("$set").is_none(), "{e}");
    }
    let tracked = events
        .iter()
        .find(|e| e["event"] == "canvas_opened")
        .unwrap();
    assert_eq!(tracked["properties"]["event_category"], "canvas");
    assert!(tracked["properties"]["workflow_id"].is_string());
    assert_eq!(tracked["properties"]["metadata"]["poison"], false);
    // No e-mail leaves without POSTHOG_SEND_PERSON_PROPERTIES.
    for r in &requests {
        assert!(!r.body.to_string().contains("ph_ada@example.com"));
    }
    wait_for_metrics(
        &app,
        &[
            "charlie_posthog_events_total{outcome=\"sent\"} 5",
            "charlie_posthog_events_total{outcome=\"failed\"} 0",
            "charlie_posthog_outbox_events{state=\"pending\"} 0",
        ],
    )
    .await;
    // The same item sent again is a duplicate: nothing new is queued.
    ingest(&app.address, &key, &items(user, "ph_ada", 0, None)[..1]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        receiver.accepted().values().all(|n| *n == 1),
        "{:?}",
        receiver.accepted()
    );
}

#[tokio::test]
async fn a_503_is_retried_with_backoff_and_every_event_arrives_once() {
    let receiver = Receiver::start(Duration::ZERO, |n, _| if n == 0 { 503 } else { 200 }).await;
    let app = spawn_app_with(vars(&receiver, &[])).await;
    let key = app.api_key().await;
    ingest(
        &app.address,
        &key,
        &items(Uuid::now_v7(), "ph_retry", 4, None),
    )
    .await;
    let expected = stored_ids(&app.store).await;
    receiver.wait_for_all(&expected).await;
    let requests = receiver.requests();
    assert_eq!(requests[0].status, 503);
    assert_eq!(
        requests[0].uuids().into_iter().collect::<BTreeSet<_>>(),
        expected,
        "one batch of everything"
    );
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), expected.len());
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    wait_for_metrics(
        &app,
        &[
            "charlie_posthog_events_total{outcome=\"sent\"} 6",
            "charlie_posthog_events_total{outcome=\"retried\"} 6",
            "charlie_posthog_outbox_events{state=\"pending\"} 0",
        ],
    )
    .await;
}

#[tokio::test]
async fn an_event_posthog_refuses_is_recorded_counted_and_never_retried() {
    // PostHog refuses a whole batch when one of its events is invalid.
    let receiver = Receiver::start(Duration::ZERO, |_, body| {
        let poisoned = body["batch"].as_array().is_some_and(|b| {
            b.iter()
                .any(|e| e["properties"]["metadata"]["poison"] == true)
        });
        if poisoned { 400 } else { 200 }
    })
    .await;
    let app = spawn_app_with(vars(&receiver, &[])).await;
    let key = app.api_key().await;
    ingest(
        &app.address,
        &key,
        &items(Uuid::now_v7(), "ph_bad", 6, Some(2)),
    )
    .await;
    let expected = stored_ids(&app.store).await;
    wait_for_metrics(
        &app,
        &[
            "charlie_posthog_events_total{outcome=\"sent\"} 7",
            "charlie_posthog_events_total{outcome=\"failed\"} 1",
            "charlie_posthog_outbox_events{state=\"pending\"} 0",
            "charlie_posthog_outbox_events{state=\"failed\"} 1",
        ],
    )
    .await;
    // Its neighbours were delivered (the refused batch was split).
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), expected.len() - 1);
    assert!(accepted.values().all(|n| *n == 1), "{accepted:?}");
    let failures = app.store.posthog_failures(10).await.unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let poisoned = failures[0].event_id.to_string();
    assert!(expected.contains(&poisoned) && !accepted.contains_key(&poisoned));
    assert_eq!(failures[0].attempts, 1);
    assert!(
        failures[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("400")),
        "{failures:?}"
    );
    // Never sent again.
    let sent = receiver.requests().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.requests().len(), sent);
}

#[tokio::test]
async fn nothing_is_queued_or_sent_without_a_key() {
    let receiver = Receiver::start(Duration::ZERO, Receiver::ok()).await;
    let mut v = vars(&receiver, &[]);
    v.remove("POSTHOG_API_KEY");
    let app = spawn_app_with(v).await;
    let key = app.api_key().await;
    ingest(
        &app.address,
        &key,
        &items(Uuid::now_v7(), "ph_off", 3, None),
    )
    .await;
    assert_eq!(stored_ids(&app.store).await.len(), 5);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(receiver.requests().is_empty());
    let backlog = app.store.posthog_backlog().await.unwrap();
    assert_eq!((backlog.pending, backlog.failed), (0, 0));
    let text = metrics(&app).await;
    assert!(text.contains("charlie_posthog_events_total{outcome=\"sent\"} 0"));
    assert!(!text.contains("charlie_posthog_outbox_events{"), "{text}");
}

#[tokio::test]
async fn person_properties_are_sent_only_when_asked() {
    let receiver = Receiver::start(Duration::ZERO, Receiver::ok()).await;
    let app = spawn_app_with(vars(
        &receiver,
        &[("POSTHOG_SEND_PERSON_PROPERTIES", "true")],
    ))
    .await;
    let key = app.api_key().await;
    ingest(
        &app.address,
        &key,
        &items(Uuid::now_v7(), "ph_person", 1, None),
    )
    .await;
    receiver.wait_for_all(&stored_ids(&app.store).await).await;
    for r in receiver.requests() {
        for e in r.body["batch"].as_array().unwrap() {
            assert_eq!(
                e["properties"]["$set"],
                json!({"email": "ph_person@example.com", "timezone": "Europe/Paris"}),
                "{e}"
            );
        }
    }
}

#[tokio::test]
async fn a_crash_in_the_middle_of_a_backlog_delivers_every_event_once_per_uuid_after_the_restart() {
    let db = charlie_store::testing::TestDatabase::create()
        .await
        .unwrap();
    let store = db.migrated_store().await.unwrap();
    let api_key = store.create_api_key("crash").await.unwrap().key;
    // A slow PostHog: each batch of 3 takes 300 ms to answer.
    let receiver = Receiver::start(Duration::from_millis(300), Receiver::ok()).await;
    let env: Vec<(&str, String)> = vars(&receiver, &[("POSTHOG_BATCH_SIZE", "3")])
        .into_iter()
        .collect();
    let (first, address) = ServerProcess::start(db.url(), &env).await;
    ingest(
        &address,
        &api_key,
        &items(Uuid::now_v7(), "ph_crash", 28, None),
    )
    .await;
    let expected = stored_ids(&store).await;
    assert_eq!(expected.len(), 30);
    for _ in 0..300 {
        if receiver.requests().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill_9();
    let backlog = store.posthog_backlog().await.unwrap();
    assert!(backlog.pending > 0, "killed after the backlog was sent");
    assert!(receiver.accepted().len() < expected.len());

    let (second, _) = ServerProcess::start(db.url(), &env).await;
    receiver.wait_for_all(&expected).await;
    // Let the last answer be recorded, then check nothing is left.
    for _ in 0..100 {
        if store.posthog_backlog().await.unwrap().pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.posthog_backlog().await.unwrap().pending, 0);
    second.kill_9();

    let accepted = receiver.accepted();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), expected);
    // At least once: only the batch in flight at the kill may come twice,
    // with the same uuids, which PostHog keeps once.
    let twice: Vec<_> = accepted.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.len() <= 3 && twice.iter().all(|(_, n)| **n == 2),
        "{twice:?}"
    );
}

#[tokio::test]
async fn backfill_sends_the_stored_events_of_a_range_with_the_same_uuids() {
    let receiver = Receiver::start(Duration::ZERO, Receiver::ok()).await;
    // Stored while forwarding was off: nothing queued.
    let mut v = vars(&receiver, &[]);
    v.remove("POSTHOG_API_KEY");
    let app = spawn_app_with(v).await;
    let key = app.api_key().await;
    ingest(
        &app.address,
        &key,
        &items(Uuid::now_v7(), "ph_backfill", 4, None),
    )
    .await;
    let expected = stored_ids(&app.store).await;

    // A dry run through the command line counts and samples, and sends nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charlie-stats"))
        .current_dir(std::env::temp_dir())
        .env_remove("TEST_DATABASE_URL")
        .env_remove("POSTHOG_API_KEY")
        .env("POSTHOG_HOST", &receiver.host)
        .args([
            "posthog",
            "backfill",
            "--from",
            DAY,
            "--to",
            DAY,
            "--dry-run",
            "--json",
            "--database-url",
            app._db.url(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["events"], 6);
    assert_eq!(report["sent"], 0);
    assert_eq!(report["sample"].as_array().unwrap().len(), 3);
    assert!(report["sample"][0]["uuid"].is_string());
    assert!(receiver.requests().is_empty());

    let mut settings = app_settings(&receiver, "2");
    let day = time::Date::parse(
        DAY,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .unwrap();
    let next = day.next_day().unwrap();
    // A range without events sends nothing.
    let none = charlie_api::jobs::posthog::backfill(&app.store, &settings, Some(next), None, false)
        .await
        .unwrap();
    assert_eq!((none.events, none.sent), (0, 0));
    for _ in 0..2 {
        let report = charlie_api::jobs::posthog::backfill(
            &app.store,
            &settings,
            Some(day),
            Some(day),
            false,
        )
        .await
        .unwrap();
        assert_eq!((report.events, report.sent, report.failed), (6, 6, 0));
    }
    // Twice, with the same uuids: PostHog keeps one copy of each.
    let accepted = receiver.accepted();
    assert_eq!(accepted.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(accepted.values().all(|n| *n == 2));
    assert!(receiver.requests().iter().all(|r| r.uuids().len() <= 2));
    // Without a key only a dry run is possible.
    settings.api_key = None;
    assert!(
        charlie_api::jobs::posthog::backfill(&app.store, &settings, None, None, false)
            .await
            .is_err()
    );
}

fn app_settings(receiver: &Receiver, batch: &str) -> charlie_api::jobs::posthog::PosthogSettings {
    let env: HashMap<&str, String> = [
        ("POSTHOG_API_KEY", KEY.to_owned()),
        ("POSTHOG_HOST", receiver.host.clone()),
        ("POSTHOG_BATCH_SIZE", batch.to_owned()),
    ]
    .into_iter()
    .collect();
    let env: HashMap<&str, &str> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    charlie_api::jobs::posthog::PosthogSettings::from_env(&env).unwrap()
}
