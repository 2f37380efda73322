//! Budgets, alerts and their webhook, against real servers: a local HTTP
//! receiver that checks every signature, the real binary killed with
//! SIGKILL between the alert's commit and its delivery, and concurrent
//! ingestion crossing the thresholds.

use crate::helpers::{ServerProcess, TestApp, Vars, json, spawn_app_with, token};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::{
    collections::HashMap,
    net::TcpListener,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

pub const SECRET: &str = "whsec_test_0123456789";

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// One webhook request as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub body: String,
    pub json: Value,
    /// What the receiver answered.
    pub status: u16,
}

/// A webhook receiver: checks the signature of every request (an invalid
/// one is recorded as a 401), answers 500 to the first `fail_first`
/// requests and while `accept` is false, 200 otherwise.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Delivery>>>,
    pub accept: Arc<AtomicBool>,
}

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Delivery>>>,
    accept: Arc<AtomicBool>,
    fail_first: Arc<AtomicUsize>,
}

/// The check a receiver makes, as the README describes it.
pub fn verify(secret: &str, timestamp: &str, signature: &str, body: &[u8]) -> bool {
    let Some(hex_sig) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(expected) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<ReceiverState>,
) -> HttpResponse {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let timestamp = header("X-Charlie-Timestamp");
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (OffsetDateTime::now_utc().unix_timestamp() - t).abs() < 300);
    let status = if !fresh || !verify(SECRET, &timestamp, &header("X-Charlie-Signature"), &body) {
        401
    } else if state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
        || !state.accept.load(Ordering::SeqCst)
    {
        500
    } else {
        200
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    state.got.lock().unwrap().push(Delivery {
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        body: text,
        status,
    });
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).finish()
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/hooks/charlie",
            listener.local_addr().unwrap().port()
        );
        let state = ReceiverState {
            got: Arc::new(Mutex::new(Vec::new())),
            accept: Arc::new(AtomicBool::new(true)),
            fail_first: Arc::new(AtomicUsize::new(fail_first)),
        };
        let data = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .default_service(web::to(receive))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        tokio::spawn(server);
        Receiver {
            url,
            got: state.got,
            accept: state.accept,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.got.lock().unwrap().clone()
    }

    /// Requests answered 200, per payload id.
    pub fn delivered_ids(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for d in self.deliveries().iter().filter(|d| d.status == 200) {
            *out.entry(d.json["id"].as_str().unwrap_or_default().to_owned())
                .or_default() += 1;
        }
        out
    }

    /// Waits until `f` holds (at most 30 s).
    pub async fn wait_for(&self, what: &str, f: impl Fn(&[Delivery]) -> bool) {
        for _ in 0..300 {
            if f(&self.deliveries()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.deliveries());
    }
}

/// Items for a user with a conversation.
pub fn user_items(
    user: Uuid,
    conversation: Uuid,
    external: &str,
    budget: Option<&str>,
    at: OffsetDateTime,
) -> Vec<Value> {
    let mut body = json!({"external_id": external, "email": format!("{external}@example.com")});
    if let Some(b) = budget {
        body["monthly_budget_usd"] = json!(b);
    }
    vec![
        json!({"id": user, "type": "user.upsert", "timestamp": rfc(at), "body": body}),
        json!({"id": conversation, "type": "conversation.upsert", "timestamp": rfc(at),
               "body": {"user_id": user, "langflow_session_id": format!("s-{conversation}")}}),
    ]
}

/// `n` assistant messages of gpt-4o with 40,000 input tokens each: $0.10 each.
pub fn dime_messages(conversation: Uuid, n: usize, at: OffsetDateTime) -> Vec<Value> {
    (0..n)
        .map(|_| {
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": rfc(at), "body": {
                "conversation_id": conversation, "role": "assistant", "model": "gpt-4o",
                "usage": {"input_tokens": 40_000, "output_tokens": 0}}})
        })
        .collect()
}

/// A moment safely inside the current UTC month.
fn this_month() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let start = now
        .replace_day(1)
        .unwrap()
        .replace_time(time::Time::MIDNIGHT);
    if now - start < time::Duration::minutes(10) {
        now
    } else {
        now - time::Duration::minutes(5)
    }
}

async fn ingest_ok(app: &TestApp, key: &str, items: &[Value]) {
    let resp = app.ingest_with(key, items).await;
    assert_eq!(resp.status(), 207);
    let body = json(resp).await;
    assert_eq!(body["errors"], 0, "{body:#}");
}

async fn get_json(app: &TestApp, path: &str, token: &str) -> Value {
    let (status, body) = app.get_as(path, token).await;
    assert_eq!(status, 200, "{path}: {body:#}");
    body
}

fn webhook_vars(receiver: &Receiver) -> Vars {
    let mut vars = Vars::new();
    vars.insert("ALERT_WEBHOOK_URL", receiver.url.clone());
    vars.insert("ALERT_WEBHOOK_SECRET", SECRET.into());
    vars.insert("ALERT_WEBHOOK_RETRY_BASE_MS", "200".into());
    vars.insert("OUTBOX_POLL_INTERVAL_MS", "100".into());
    vars
}

#[tokio::test]
async fn my_usage_reports_month_to_date_cost_against_the_default_budget() {
    let mut vars = Vars::new();
    vars.insert("DEFAULT_MONTHLY_BUDGET_USD", "1.00".into());
    let app = spawn_app_with(vars).await;
    let key = app.api_key().await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let at = this_month();
    ingest_ok(&app, &key, &user_items(u, c, "usage_default", None, at)).await;
    let t = token("usage_default", false);

    let empty = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(empty["cost_usd"], json!(0));
    assert_eq!(empty["budget_usd"], json!(1));
    assert_eq!(empty["budget_source"], "default");
    assert_eq!(empty["percent_used"], json!(0.0));
    assert_eq!(empty["alerts"], json!([]));

    // $0.70: below 80 %.
    ingest_ok(&app, &key, &dime_messages(c, 7, at)).await;
    let u70 = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(u70["cost_usd"].to_string(), "0.7");
    assert_eq!(u70["percent_used"], json!(70.0));
    assert_eq!(u70["message_count"], 7);
    assert_eq!(u70["input_tokens"], 280_000);
    assert_eq!(u70["total_tokens"], 280_000);
    assert_eq!(
        u70["month"],
        at.format(time::macros::format_description!("[year]-[month]"))
            .unwrap()
    );
    assert_eq!(u70["timezone"], "UTC");
    assert_eq!(u70["alerts"], json!([]));
    // The projection is at least the cost so far, and exact to the nano-dollar.
    let projected: f64 = u70["projected_month_end_cost_usd"].as_f64().unwrap();
    assert!(projected >= 0.7, "{u70:#}");

    // $0.90: the 80 % warning, once.
    ingest_ok(&app, &key, &dime_messages(c, 2, at)).await;
    ingest_ok(&app, &key, &dime_messages(c, 1, at)).await; // $1.00: exceeded.
    ingest_ok(&app, &key, &dime_messages(c, 1, at)).await; // $1.10: nothing new.
    let over = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(over["cost_usd"].to_string(), "1.1");
    assert_eq!(over["percent_used"], json!(110.0));
    let alerts = over["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{over:#}");
    assert_eq!(alerts[0]["threshold_percent"], 100);
    assert_eq!(alerts[0]["level"], "exceeded");
    assert_eq!(alerts[0]["cost_usd"].to_string(), "1");
    assert_eq!(alerts[1]["threshold_percent"], 80);
    assert_eq!(alerts[1]["level"], "warning");
    assert_eq!(alerts[1]["cost_usd"].to_string(), "0.9");
    assert_eq!(alerts[1]["budget_usd"].to_string(), "1");
    // No webhook configured: nothing queued.
    assert_eq!(alerts[1]["webhook_status"], Value::Null);

    // Admins list them; others may not.
    let admin = token("usage_admin", true);
    let listed = get_json(
        &app,
        &format!("/api/v1/analytics/admin/alerts?user_id={u}"),
        &admin,
    )
    .await;
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 2);
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/admin/alerts"))
        .bearer_auth(&t)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/admin/alerts?month=2026-13"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The month counter agrees with the buckets, and survives a rebuild.
    let report = app.store.verify_rollups(Default::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    app.store.rebuild_rollups(Default::default()).await.unwrap();
    let again = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(again["cost_usd"].to_string(), "1.1");
    assert!(
        app.store
            .verify_rollups(Default::default())
            .await
            .unwrap()
            .differences
            .is_empty()
    );
}

#[tokio::test]
async fn admins_set_budgets_and_users_set_their_report_preference() {
    let app = spawn_app_with(Vars::new()).await;
    let key = app.api_key().await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let at = this_month();
    ingest_ok(&app, &key, &user_items(u, c, "budget_user", Some("5"), at)).await;
    let t = token("budget_user", false);
    let admin = token("budget_admin", true);
    let usage = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(
        (usage["budget_usd"].clone(), usage["budget_source"].clone()),
        (json!(5), json!("user"))
    );

    let put = |path: String, tok: String, body: Value| {
        let client = app.client.clone();
        let url = app.url(&path);
        async move {
            client
                .put(url)
                .bearer_auth(tok)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let path = format!("/api/v1/analytics/admin/users/{u}/budget");
    assert_eq!(
        put(path.clone(), t.clone(), json!({"monthly_budget_usd": "1"}))
            .await
            .status(),
        403
    );
    for bad in [
        json!({"monthly_budget_usd": "-1"}),
        json!({"monthly_budget_usd": "ten"}),
        json!({}),
        json!({"monthly_budget_usd": true}),
    ] {
        let resp = put(path.clone(), admin.clone(), bad.clone()).await;
        assert_eq!(resp.status(), 400, "{bad}");
        assert_eq!(json(resp).await["code"], "invalid_value");
    }
    let missing = put(
        format!("/api/v1/analytics/admin/users/{}/budget", Uuid::now_v7()),
        admin.clone(),
        json!({"monthly_budget_usd": "1"}),
    )
    .await;
    assert_eq!(missing.status(), 404);
    let resp = put(
        path.clone(),
        admin.clone(),
        json!({"monthly_budget_usd": "0.20"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body = json(resp).await;
    assert_eq!(body["monthly_budget_usd"].to_string(), "0.2");
    assert_eq!(body["effective_budget_usd"].to_string(), "0.2");
    // A JSON number in exponent form is read exactly too.
    let resp = put(
        path.clone(),
        admin.clone(),
        json!({"monthly_budget_usd": 2.5e1}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["monthly_budget_usd"].to_string(), "25");
    let resp = put(
        path.clone(),
        admin.clone(),
        json!({"monthly_budget_usd": "0.20"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    // The new budget applies to the next usage: $0.20 reaches both thresholds.
    ingest_ok(&app, &key, &dime_messages(c, 2, at)).await;
    let usage = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(usage["alerts"].as_array().unwrap().len(), 2, "{usage:#}");
    assert_eq!(usage["percent_used"], json!(100.0));
    // Null clears it: no budget (no default configured).
    let resp = put(
        path.clone(),
        admin.clone(),
        json!({"monthly_budget_usd": null}),
    )
    .await;
    assert_eq!(json(resp).await["effective_budget_usd"], Value::Null);
    let usage = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(
        (usage["budget_usd"].clone(), usage["percent_used"].clone()),
        (Value::Null, Value::Null)
    );

    // Preferences.
    let resp = put(
        "/api/v1/analytics/me/preferences".into(),
        t.clone(),
        json!({"weekly_report_opt_out": true}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["weekly_report_opt_out"], true);
    assert!(
        app.store
            .budget_profile(u)
            .await
            .unwrap()
            .unwrap()
            .weekly_report_opt_out
    );
    let resp = put(
        "/api/v1/analytics/me/preferences".into(),
        t.clone(),
        json!({"weekly_report_opt_out": "yes"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let resp = app
        .client
        .put(app.url("/api/v1/analytics/me/preferences"))
        .json(&json!({"weekly_report_opt_out": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn alerts_reach_the_webhook_signed_and_are_retried_after_a_500() {
    let receiver = Receiver::start(1).await;
    let mut vars = webhook_vars(&receiver);
    vars.insert("DEFAULT_MONTHLY_BUDGET_USD", "1".into());
    let app = spawn_app_with(vars).await;
    let key = app.api_key().await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let at = this_month();
    ingest_ok(&app, &key, &user_items(u, c, "hook_user", None, at)).await;
    ingest_ok(&app, &key, &dime_messages(c, 8, at)).await;

    receiver
        .wait_for("the 80 % alert, retried once", |d| {
            d.iter().any(|d| d.status == 200)
        })
        .await;
    let got = receiver.deliveries();
    assert_eq!(got.len(), 2, "{got:#?}");
    assert_eq!(got[0].status, 500);
    // The retry carries the same alert id (and body).
    assert_eq!(got[0].body, got[1].body);
    let body = &got[1].json;
    let month = at
        .format(time::macros::format_description!("[year]-[month]"))
        .unwrap();
    assert_eq!(body["type"], "usage.alert");
    assert_eq!(body["user_id"], u.to_string());
    assert_eq!(body["threshold_percent"], 80);
    assert_eq!(body["level"], "warning");
    assert_eq!(body["month"], month);
    assert_eq!(body["cost_usd"].to_string(), "0.8");
    assert_eq!(body["budget_usd"].to_string(), "1");
    assert!(Uuid::parse_str(body["id"].as_str().unwrap()).is_ok());

    let admin = token("hook_admin", true);
    let mut listed = Value::Null;
    for _ in 0..50 {
        listed = get_json(&app, "/api/v1/analytics/admin/alerts", &admin).await;
        if listed["alerts"][0]["webhook_status"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(listed["alerts"][0]["id"], body["id"]);
    assert_eq!(
        listed["alerts"][0]["webhook_status"], "delivered",
        "{listed:#}"
    );
    assert_eq!(listed["alerts"][0]["webhook_attempts"], 2);

    // Crossing 100 % sends the second alert; nothing is sent twice.
    ingest_ok(&app, &key, &dime_messages(c, 3, at)).await;
    receiver
        .wait_for("the 100 % alert", |d| {
            d.iter().filter(|d| d.status == 200).count() == 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = receiver.delivered_ids();
    assert_eq!(ids.len(), 2);
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}

#[tokio::test]
async fn concurrent_batches_crossing_the_thresholds_raise_each_alert_once() {
    let receiver = Receiver::start(0).await;
    let mut vars = webhook_vars(&receiver);
    vars.insert("DEFAULT_MONTHLY_BUDGET_USD", "1".into());
    let app = spawn_app_with(vars).await;
    let key = app.api_key().await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let at = this_month();
    ingest_ok(&app, &key, &user_items(u, c, "race_user", None, at)).await;
    // Twelve concurrent batches of $0.10: the total passes 80 % and 100 %
    // while other batches are in flight.
    let batches: Vec<Vec<Value>> = (0..12).map(|_| dime_messages(c, 1, at)).collect();
    let sends = batches.iter().map(|b| ingest_ok(&app, &key, b));
    futures_util::future::join_all(sends).await;

    let t = token("race_user", false);
    let usage = get_json(&app, "/api/v1/analytics/my-usage", &t).await;
    assert_eq!(usage["cost_usd"].to_string(), "1.2");
    let alerts = usage["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{usage:#}");
    // Each alert recorded the total of the fold that crossed it: at least
    // its threshold, at most everything sent (batches may be folded into the
    // totals together, and one fold may cross both thresholds).
    let cost = |a: &Value| a["cost_usd"].as_f64().unwrap();
    assert_eq!(alerts[0]["threshold_percent"], 100, "{usage:#}");
    assert_eq!(alerts[1]["threshold_percent"], 80, "{usage:#}");
    assert!((1.0..=1.2).contains(&cost(&alerts[0])), "{usage:#}");
    assert!((0.8..=1.2).contains(&cost(&alerts[1])), "{usage:#}");
    assert!(cost(&alerts[1]) <= cost(&alerts[0]), "{usage:#}");
    receiver
        .wait_for("two deliveries", |d| {
            d.iter().filter(|d| d.status == 200).count() >= 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ids = receiver.delivered_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.values().all(|n| *n == 1), "{ids:?}");
}

#[tokio::test]
async fn an_alert_committed_before_a_crash_is_delivered_exactly_once_after_the_restart() {
    let db = charlie_store::testing::TestDatabase::create()
        .await
        .unwrap();
    let store = db.migrated_store().await.unwrap();
    let key = store.create_api_key("crash").await.unwrap().key;
    let receiver = Receiver::start(0).await;
    // While the first process lives, the receiver refuses everything, and
    // that process's worker, after its first look at start-up, sleeps for
    // an hour: the alert is committed and cannot be delivered before the kill.
    receiver.accept.store(false, Ordering::SeqCst);
    let common = vec![
        ("ALERT_WEBHOOK_URL", receiver.url.clone()),
        ("ALERT_WEBHOOK_SECRET", SECRET.to_owned()),
        ("ALERT_WEBHOOK_RETRY_BASE_MS", "100".to_owned()),
        ("DEFAULT_MONTHLY_BUDGET_USD", "1".to_owned()),
    ];
    let mut first_vars = common.clone();
    first_vars.push(("OUTBOX_POLL_INTERVAL_MS", "3600000".to_owned()));
    let (first, first_address) = ServerProcess::start(db.url(), &first_vars).await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let at = this_month();
    let client = reqwest::Client::new();
    let mut items = user_items(u, c, "crash_user", None, at);
    items.extend(dime_messages(c, 10, at));
    let resp = client
        .post(format!("{first_address}/api/v1/ingest"))
        .bearer_auth(&key)
        .json(&json!({"batch": items}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);
    let alerts = store
        .alerts(&charlie_store::budgets::AlertFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        alerts.len(),
        2,
        "both thresholds were committed with the batch"
    );
    assert!(
        alerts
            .iter()
            .all(|a| a.delivery.as_ref().is_some_and(|d| d.status == "pending"))
    );
    first.kill_9();
    assert!(receiver.delivered_ids().is_empty());

    receiver.accept.store(true, Ordering::SeqCst);
    let mut second_vars = common.clone();
    second_vars.push(("OUTBOX_POLL_INTERVAL_MS", "100".to_owned()));
    let (second, _) = ServerProcess::start(db.url(), &second_vars).await;
    receiver
        .wait_for("both alerts after the restart", |d| {
            d.iter().filter(|d| d.status == 200).count() >= 2
        })
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    second.kill_9();
    // A third start finds nothing left to send.
    let (third, _) = ServerProcess::start(db.url(), &second_vars).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    drop(third);

    let ids = receiver.delivered_ids();
    let expected: HashMap<String, usize> = alerts.iter().map(|a| (a.id.to_string(), 1)).collect();
    assert_eq!(ids, expected);
    let after = store
        .alerts(&charlie_store::budgets::AlertFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        after
            .iter()
            .all(|a| a.delivery.as_ref().is_some_and(|d| d.status == "delivered")),
        "{after:?}"
    );
}
