//! `POST /api/v1/ingest`: every item type, retries, out-of-order references,
//! concurrency and bad input, checked against the stored rows and rollups.

use crate::helpers::{TestApp, Vars, json, spawn_app, spawn_app_with};
use charlie_store::maintenance::RollupRange;
use serde_json::{Value, json};
use uuid::Uuid;

fn ts(s: &str) -> String {
    format!("2026-01-09T{s}Z")
}

fn item(id: Uuid, kind: &str, at: &str, body: Value) -> Value {
    json!({"id": id, "type": kind, "timestamp": ts(at), "body": body})
}

fn user(id: Uuid, external: &str, at: &str) -> Value {
    item(
        id,
        "user.upsert",
        at,
        json!({"external_id": external, "email": format!("{external}@example.com")}),
    )
}

fn conversation(id: Uuid, user: Uuid, workflow: Option<Uuid>, at: &str) -> Value {
    item(
        id,
        "conversation.upsert",
        at,
        json!({"user_id": user, "workflow_id": workflow, "langflow_session_id": "s-1"}),
    )
}

fn message(id: Uuid, conversation: Uuid, role: &str, at: &str, usage: Option<(u64, u64)>) -> Value {
    let mut body = json!({"conversation_id": conversation, "role": role});
    if let Some((i, o)) = usage {
        body["model"] = json!("gpt-4o-mini");
        body["usage"] = json!({"input_tokens": i, "output_tokens": o});
    }
    item(id, "message.create", at, body)
}

async fn post(app: &TestApp, key: &str, items: &[Value]) -> Value {
    let resp = app.ingest_with(key, items).await;
    assert_eq!(resp.status(), 207);
    json(resp).await
}

fn outcomes(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_owned())
        .collect()
}

async fn assert_rollups_match_raw_rows(app: &TestApp) {
    crate::helpers::assert_rollups_clean(app).await;
}

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    app.store.scalar_for_tests(sql).await.unwrap()
}

#[tokio::test]
async fn every_item_type_is_stored_and_counted_in_the_daily_rollup() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, w, c, conv) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    let body = post(
        &app,
        &key,
        &[
            user(u, "user_1", "08:00:00"),
            item(w, "workflow.upsert", "08:01:00", json!({"user_id": u, "name": "Support bot"})),
            item(c, "component.upsert", "08:02:00", json!({"user_id": u, "name": "FAQ"})),
            conversation(conv, u, Some(w), "09:00:00"),
            message(Uuid::now_v7(), conv, "user", "09:00:01", None),
            message(Uuid::now_v7(), conv, "assistant", "09:00:05", Some((1000, 200))),
            item(
                Uuid::now_v7(),
                "event.track",
                "09:01:00",
                json!({"user_id": u, "event_type": "canvas_opened", "event_category": "canvas", "workflow_id": w}),
            ),
            item(
                Uuid::now_v7(),
                "error.log",
                "09:02:00",
                json!({"service": "openai", "error_type": "RateLimitError", "error_message": "429", "user_id": u, "workflow_id": w}),
            ),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created"; 8], "{body:#}");
    assert_eq!(
        (body["created"].as_u64(), body["errors"].as_u64()),
        (Some(8), Some(0))
    );
    assert!(
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == 201)
    );

    let day = app.store.daily_rows_for_tests(u).await.unwrap();
    assert_eq!(day.len(), 1, "{day:?}");
    let d = &day[0];
    assert_eq!(d.workflow_id, Some(w));
    assert_eq!(
        (
            d.message_count,
            d.user_message_count,
            d.assistant_message_count
        ),
        (2, 1, 1)
    );
    assert_eq!((d.conversation_count, d.unique_sessions), (1, 1));
    assert_eq!(
        (d.input_tokens, d.output_tokens, d.total_tokens),
        (1000, 200, 1200)
    );
    assert_eq!(d.error_count, 1);
    assert_eq!(d.avg_messages_per_session, 2.0);
    // gpt-4o-mini: $0.15 per 1M input, $0.60 per 1M output.
    assert_eq!(d.estimated_cost_nano_usd, 1000 * 150 + 200 * 600);
    // The stored price reference names the catalog entry once.
    let priced = scalar(
        &app,
        "SELECT COUNT(*) FROM messages WHERE pricing_status = 'priced' \
         AND price_ref LIKE 'builtin:gpt-4o-mini@%' AND price_ref NOT LIKE '%@%@%'",
    )
    .await;
    assert_eq!(priced, 1);
    // Funnel milestones come from the entities themselves.
    for milestone in [
        "user_signed_up",
        "workflow_created",
        "component_created",
        "conversation_started",
        "message_sent",
    ] {
        let n = scalar(
            &app,
            &format!("SELECT COUNT(*) FROM user_activity_events WHERE event_type = '{milestone}'"),
        )
        .await;
        assert_eq!(n, 1, "{milestone}");
    }
    assert_rollups_match_raw_rows(&app).await;
}

#[tokio::test]
async fn retried_batches_create_nothing_twice() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, conv) = (Uuid::now_v7(), Uuid::now_v7());
    let batch = vec![
        user(u, "user_2", "08:00:00"),
        conversation(conv, u, None, "09:00:00"),
        message(Uuid::now_v7(), conv, "user", "09:00:01", Some((10, 0))),
        message(
            Uuid::now_v7(),
            conv,
            "assistant",
            "09:00:02",
            Some((100, 50)),
        ),
        item(
            Uuid::now_v7(),
            "error.log",
            "09:00:03",
            json!({"service": "langflow", "error_type": "Timeout", "error_message": "x", "user_id": u}),
        ),
    ];
    let first = post(&app, &key, &batch).await;
    assert_eq!(first["created"], 5);
    let before = app.store.daily_rows_for_tests(u).await.unwrap();
    let second = post(&app, &key, &batch).await;
    assert_eq!(outcomes(&second), vec!["duplicate"; 5], "{second:#}");
    assert_eq!(second["duplicates"], 5);
    assert_eq!(app.store.daily_rows_for_tests(u).await.unwrap(), before);
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM messages").await, 2);
    // The same id inside one batch is a duplicate too.
    let m = message(Uuid::now_v7(), conv, "user", "10:00:00", None);
    let third = post(&app, &key, &[m.clone(), m]).await;
    assert_eq!(outcomes(&third), vec!["created", "duplicate"]);
    assert_rollups_match_raw_rows(&app).await;
}

#[tokio::test]
async fn an_id_reused_for_different_content_is_refused() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, conv, m) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    post(
        &app,
        &key,
        &[
            user(u, "user_3", "08:00:00"),
            conversation(conv, u, None, "08:30:00"),
            message(m, conv, "user", "09:00:00", None),
        ],
    )
    .await;
    let body = post(
        &app,
        &key,
        &[message(m, conv, "assistant", "09:00:00", None)],
    )
    .await;
    assert_eq!(body["results"][0]["outcome"], "error");
    assert_eq!(body["results"][0]["status"], 409);
    assert_eq!(body["results"][0]["error"]["code"], "id_reused");
}

#[tokio::test]
async fn references_may_arrive_before_what_they_reference() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, w, conv, m1, m2) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );

    // Messages first: kept, not yet counted.
    let body = post(
        &app,
        &key,
        &[
            message(m1, conv, "user", "09:00:00", None),
            message(m2, conv, "assistant", "09:00:02", Some((5, 5))),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created", "created"]);
    assert!(
        body["results"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("not known yet")
    );
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM messages").await, 0);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM pending_messages").await,
        2
    );
    // A retry while waiting is still a duplicate.
    let retry = post(&app, &key, &[message(m1, conv, "user", "09:00:00", None)]).await;
    assert_eq!(outcomes(&retry), vec!["duplicate"]);

    // Then the conversation, naming a user and a workflow nobody has sent yet.
    let body = post(&app, &key, &[conversation(conv, u, Some(w), "08:59:00")]).await;
    assert_eq!(outcomes(&body), vec!["created"]);
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM messages").await, 2);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM pending_messages").await,
        0
    );
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM users WHERE is_placeholder").await,
        1
    );
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM workflows WHERE is_placeholder").await,
        1
    );
    let day = app.store.daily_rows_for_tests(u).await.unwrap();
    assert_eq!(
        (
            day[0].message_count,
            day[0].conversation_count,
            day[0].unique_sessions
        ),
        (2, 1, 1)
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM user_activity_events WHERE event_type = 'user_signed_up'"
        )
        .await,
        0
    );

    // Finally the user and the workflow fill their placeholders: created, with their milestones.
    let body = post(
        &app,
        &key,
        &[
            user(u, "late_user", "08:00:00"),
            item(
                w,
                "workflow.upsert",
                "08:10:00",
                json!({"user_id": u, "name": "Late"}),
            ),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created", "created"]);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM users WHERE is_placeholder").await,
        0
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM user_activity_events WHERE event_type = 'user_signed_up'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM user_activity_events WHERE event_type = 'workflow_created'"
        )
        .await,
        1
    );
    assert_rollups_match_raw_rows(&app).await;
}

#[tokio::test]
async fn upserts_update_once_and_ignore_older_versions() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, w) = (Uuid::now_v7(), Uuid::now_v7());
    post(
        &app,
        &key,
        &[
            user(u, "u4", "08:00:00"),
            item(
                w,
                "workflow.upsert",
                "08:00:00",
                json!({"user_id": u, "name": "v1"}),
            ),
        ],
    )
    .await;
    let renamed = item(
        w,
        "workflow.upsert",
        "10:00:00",
        json!({"user_id": u, "name": "v2"}),
    );
    assert_eq!(
        outcomes(&post(&app, &key, std::slice::from_ref(&renamed)).await),
        vec!["updated"]
    );
    assert_eq!(
        outcomes(&post(&app, &key, &[renamed]).await),
        vec!["duplicate"]
    );
    let stale = post(
        &app,
        &key,
        &[item(
            w,
            "workflow.upsert",
            "09:00:00",
            json!({"user_id": u, "name": "v1.5"}),
        )],
    )
    .await;
    assert_eq!(outcomes(&stale), vec!["duplicate"]);
    assert!(
        stale["results"][0]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("older")
    );
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM workflows WHERE name = 'v2'").await,
        1
    );
    // A second signup of the same user is not a second milestone.
    let again = post(&app, &key, &[user(u, "u4", "11:00:00")]).await;
    assert_eq!(outcomes(&again), vec!["duplicate"]);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM user_activity_events WHERE event_type = 'user_signed_up'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn explicit_funnel_events_do_not_double_the_automatic_ones() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, w) = (Uuid::now_v7(), Uuid::now_v7());
    let explicit = |id| {
        item(
            id,
            "event.track",
            "08:05:00",
            json!({"user_id": u, "event_type": "workflow_created", "event_category": "workflows", "workflow_id": w, "metadata": {"template": "support_bot"}}),
        )
    };
    let body = post(
        &app,
        &key,
        &[
            user(u, "u5", "08:00:00"),
            item(
                w,
                "workflow.upsert",
                "08:05:00",
                json!({"user_id": u, "name": "W"}),
            ),
            explicit(Uuid::now_v7()),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created", "created", "created"]);
    // The same milestone reported again under a new event id is a duplicate.
    let again = post(&app, &key, &[explicit(Uuid::now_v7())]).await;
    assert_eq!(outcomes(&again), vec!["duplicate"]);
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM user_activity_events WHERE event_type = 'workflow_created'"
        )
        .await,
        1
    );
    // The platform's own event (with its metadata) is the one kept.
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM user_activity_events WHERE event_type = 'workflow_created' AND CAST(metadata AS TEXT) LIKE '%support_bot%'").await,
        1
    );
}

#[tokio::test]
async fn bad_items_get_clear_errors_and_never_stop_the_good_ones() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, conv) = (Uuid::now_v7(), Uuid::now_v7());
    post(
        &app,
        &key,
        &[
            user(u, "u6", "08:00:00"),
            conversation(conv, u, None, "08:30:00"),
        ],
    )
    .await;
    let future = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"id": Uuid::now_v7(), "type": "message.delete", "timestamp": ts("09:00:00"), "body": {}}),
            "unknown_type",
        ),
        (
            json!({"id": "not-a-uuid", "type": "user.upsert", "timestamp": ts("09:00:00"), "body": {}}),
            "invalid_id",
        ),
        (
            json!({"type": "user.upsert", "timestamp": ts("09:00:00"), "body": {}}),
            "missing_field",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "user.upsert", "timestamp": ts("09:00:00"), "body": {"email": "a@b.c"}}),
            "missing_field",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "workflow.upsert", "timestamp": ts("09:00:00"), "body": {"user_id": 42, "name": "x"}}),
            "invalid_id",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "workflow.upsert", "timestamp": ts("09:00:00"), "body": {"user_id": u, "name": 7}}),
            "invalid_field",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": future, "body": {"conversation_id": conv, "role": "user"}}),
            "timestamp_in_future",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": "yesterday", "body": {"conversation_id": conv, "role": "user"}}),
            "invalid_timestamp",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts("09:00:00"), "body": {"conversation_id": conv, "role": "user", "usage": {"input_tokens": -5}}}),
            "invalid_usage",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts("09:00:00"), "body": {"conversation_id": conv, "role": "robot"}}),
            "unknown_role",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": ts("09:00:00"), "body": {"conversation_id": conv, "role": "assistant", "llm_response": {"usage": {"prompt_tokens": "12"}}}}),
            "invalid_llm_response",
        ),
        (
            json!({"id": Uuid::now_v7(), "type": "user.upsert", "timestamp": ts("09:00:00"), "body": {"external_id": "x", "email": "x@y.z", "timezone": "Mars/Olympus"}}),
            "invalid_field",
        ),
        (json!("just a string"), "invalid_item"),
    ];
    let good = message(Uuid::now_v7(), conv, "user", "09:30:00", None);
    let mut items: Vec<Value> = cases.iter().map(|(v, _)| v.clone()).collect();
    items.push(good);
    let body = post(&app, &key, &items).await;
    let results = body["results"].as_array().unwrap();
    for ((_, code), result) in cases.iter().zip(results) {
        assert_eq!(result["outcome"], "error", "{result:#}");
        assert_eq!(result["status"], 400);
        assert_eq!(result["error"]["code"], *code, "{result:#}");
        assert!(!result["error"]["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(results.last().unwrap()["outcome"], "created");
    assert_eq!(body["errors"].as_u64(), Some(cases.len() as u64));
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM messages").await, 1);
    assert_rollups_match_raw_rows(&app).await;
}

#[tokio::test]
async fn unknown_vocabulary_is_accepted_with_a_warning_and_long_errors_are_truncated() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let u = Uuid::now_v7();
    let body = post(
        &app,
        &key,
        &[
            item(Uuid::now_v7(), "event.track", "09:00:00", json!({"user_id": u, "event_type": "template_cloned", "event_category": "marketplace"})),
            item(Uuid::now_v7(), "error.log", "09:00:00", json!({"service": "backend", "error_type": "Big", "error_message": "x".repeat(6000)})),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created", "created"]);
    let w0 = body["results"][0]["warnings"].to_string();
    assert!(
        w0.contains("template_cloned") && w0.contains("marketplace"),
        "{w0}"
    );
    assert!(
        body["results"][1]["warnings"][0]
            .as_str()
            .unwrap()
            .contains("truncated")
    );
    assert_eq!(
        scalar(&app, "SELECT MAX(LENGTH(error_message)) FROM error_logs").await,
        5000
    );
}

#[tokio::test]
async fn whole_request_problems_get_json_errors() {
    let mut vars = Vars::new();
    vars.insert("INGEST_MAX_ITEMS", "3".into());
    vars.insert("INGEST_MAX_BYTES", "2000".into());
    let app = spawn_app_with(vars).await;
    let key = app.api_key().await;
    let url = app.url("/api/v1/ingest");

    let resp = app
        .client
        .post(&url)
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["code"], "invalid_json");

    let resp = app
        .client
        .post(&url)
        .bearer_auth(&key)
        .json(&json!({"items": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(json(resp).await["code"], "invalid_body");

    let four: Vec<Value> = (0..4).map(|_| json!({})).collect();
    let resp = app.ingest_with(&key, &four).await;
    assert_eq!(resp.status(), 413);
    assert_eq!(json(resp).await["code"], "payload_too_large");

    let resp = app
        .client
        .post(&url)
        .bearer_auth(&key)
        .body(format!("{{\"batch\": [\"{}\"]}}", "x".repeat(3000)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(json(resp).await["code"], "payload_too_large");
}

#[tokio::test]
async fn ingestion_needs_a_valid_unrevoked_key() {
    let app = spawn_app().await;
    let url = app.url("/api/v1/ingest");
    let resp = app
        .client
        .post(&url)
        .json(&json!({"batch": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["code"], "unauthorized");
    let resp = app.ingest_with("cs_not_a_key", &[]).await;
    assert_eq!(resp.status(), 401);
    let key = app.store.create_api_key("to revoke").await.unwrap();
    assert_eq!(app.ingest_with(&key.key, &[]).await.status(), 207);
    app.store.revoke_api_key(key.id).await.unwrap();
    let resp = app.ingest_with(&key.key, &[]).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(json(resp).await["code"], "unauthorized");
}

#[tokio::test]
async fn concurrent_batches_for_one_user_and_day_keep_rollups_exact() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, w) = (Uuid::now_v7(), Uuid::now_v7());
    let conversations: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut setup = vec![user(u, "busy", "00:00:00")];
    for (n, c) in conversations.iter().enumerate() {
        setup.push(conversation(
            *c,
            u,
            if n % 2 == 0 { Some(w) } else { None },
            "00:10:00",
        ));
    }
    post(&app, &key, &setup).await;

    // 8 clients, 6 batches each of 40 messages spread over the day and the
    // conversations; every client also re-sends one of its batches.
    let clients = 8;
    let mut handles = Vec::new();
    for client in 0..clients {
        let (client_http, url, key, conversations) = (
            app.client.clone(),
            app.url("/api/v1/ingest"),
            key.clone(),
            conversations.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut batches = Vec::new();
            for b in 0..6 {
                let batch: Vec<Value> = (0..40)
                    .map(|n| {
                        let minute = (client * 97 + b * 13 + n) % 1440;
                        let at = format!("{:02}:{:02}:{:02}", minute / 60, minute % 60, n % 60);
                        let role = if n % 2 == 0 { "user" } else { "assistant" };
                        message(
                            Uuid::now_v7(),
                            conversations[(n + b) % 4],
                            role,
                            &at,
                            Some((n as u64 + 1, 7)),
                        )
                    })
                    .collect();
                batches.push(batch);
            }
            batches.push(batches[client % 6].clone());
            let mut created = 0;
            for batch in batches {
                let resp = client_http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&json!({"batch": batch}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 207);
                let body: Value = resp.json().await.unwrap();
                assert_eq!(body["errors"], 0, "{body:#}");
                created += body["created"].as_u64().unwrap();
            }
            created
        }));
    }
    let mut created = 0;
    for h in handles {
        created += h.await.unwrap();
    }
    let expected = (clients * 6 * 40) as u64;
    assert_eq!(created, expected);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM messages").await,
        expected as i64
    );
    let day = app.store.daily_rows_for_tests(u).await.unwrap();
    let total: i64 = day.iter().map(|d| d.message_count).sum();
    assert_eq!(total, expected as i64);
    let tokens: i64 = day.iter().map(|d| d.input_tokens).sum();
    let expected_tokens: i64 = (clients * 6) as i64 * (1..=40).sum::<i64>();
    assert_eq!(tokens, expected_tokens);
    assert_rollups_match_raw_rows(&app).await;
}

#[tokio::test]
async fn rebuilding_rollups_is_idempotent_and_repairs_damage() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, conv) = (Uuid::now_v7(), Uuid::now_v7());
    post(
        &app,
        &key,
        &[
            user(u, "u7", "08:00:00"),
            conversation(conv, u, None, "08:00:00"),
            message(Uuid::now_v7(), conv, "user", "23:59:59.999", Some((3, 0))),
            message(
                Uuid::now_v7(),
                conv,
                "assistant",
                "00:00:00.5",
                Some((4, 4)),
            ),
        ],
    )
    .await;
    let before = app.store.daily_rows_for_tests(u).await.unwrap();
    app.store
        .scalar_for_tests("UPDATE daily_metrics SET message_count = message_count + 5")
        .await
        .unwrap();
    let broken = app
        .store
        .verify_rollups(RollupRange::default())
        .await
        .unwrap();
    assert!(!broken.differences.is_empty());
    app.store
        .rebuild_rollups(RollupRange::default())
        .await
        .unwrap();
    app.store
        .rebuild_rollups(RollupRange::default())
        .await
        .unwrap();
    let after = app.store.daily_rows_for_tests(u).await.unwrap();
    let strip = |rows: Vec<charlie_store::testing::DailyRow>| -> Vec<_> {
        rows.into_iter()
            .map(|r| {
                (
                    r.date,
                    r.workflow_id,
                    r.message_count,
                    r.unique_sessions,
                    r.input_tokens,
                    r.estimated_cost_nano_usd,
                )
            })
            .collect()
    };
    assert_eq!(strip(after), strip(before));
    assert_rollups_match_raw_rows(&app).await;
}

#[tokio::test]
async fn a_user_who_signed_in_before_the_platform_sent_them_keeps_one_record() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    // First sight from a session token creates a placeholder with the external id.
    let early = app
        .store
        .user_for_subject("early_bird", Some("early@example.com"))
        .await
        .unwrap();
    let platform_id = Uuid::now_v7();
    assert_ne!(early.id, platform_id);
    let body = post(&app, &key, &[user(platform_id, "early_bird", "08:00:00")]).await;
    assert_eq!(outcomes(&body), vec!["created"], "{body:#}");
    assert_eq!(
        scalar(
            &app,
            "SELECT COUNT(*) FROM users WHERE external_id = 'early_bird'"
        )
        .await,
        1
    );
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM users").await, 1);
    // The next sign-in maps to the platform's record.
    let again = app
        .store
        .user_for_subject("early_bird", None)
        .await
        .unwrap();
    assert_eq!(again.id, platform_id);
    // A real user's external id still cannot be taken by another id.
    let thief = post(
        &app,
        &key,
        &[user(Uuid::now_v7(), "early_bird", "09:00:00")],
    )
    .await;
    assert_eq!(thief["results"][0]["error"]["code"], "conflict");
}

#[tokio::test]
async fn a_renamed_user_frees_the_old_external_id_and_cannot_take_anothers() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let body = post(
        &app,
        &key,
        &[
            user(a, "old_name", "08:00:00"),
            user(b, "taken", "08:00:00"),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created", "created"], "{body:#}");
    // Renamed: sessions of the new subject are this user.
    let body = post(&app, &key, &[user(a, "new_name", "09:00:00")]).await;
    assert_eq!(outcomes(&body), vec!["updated"], "{body:#}");
    let signed_in = app.store.user_for_subject("new_name", None).await.unwrap();
    assert_eq!(signed_in.id, a);
    // The old subject is free: another user takes it.
    let c = Uuid::now_v7();
    let body = post(&app, &key, &[user(c, "old_name", "09:30:00")]).await;
    assert_eq!(outcomes(&body), vec!["created"], "{body:#}");
    assert_eq!(
        app.store
            .user_for_subject("old_name", None)
            .await
            .unwrap()
            .id,
        c
    );
    // Another real user's subject cannot be taken by a rename, and the
    // refused rename changes nothing.
    let body = post(&app, &key, &[user(a, "taken", "10:00:00")]).await;
    assert_eq!(body["results"][0]["error"]["code"], "conflict", "{body:#}");
    assert_eq!(
        app.store.user_for_subject("taken", None).await.unwrap().id,
        b
    );
    assert_eq!(
        app.store
            .user_for_subject("new_name", None)
            .await
            .unwrap()
            .id,
        a
    );
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM users").await, 3);
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM user_subjects").await, 3);
}

#[tokio::test]
async fn the_server_starts_with_litellm_s_whole_table_and_prices_by_it() {
    let table = crate::helpers::litellm_table_file();
    let app = spawn_app_with(Vars::from([("PRICING_FILE", table.display().to_string())])).await;
    let key = app.api_key().await;
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    // An Anthropic response: 30k uncached input, 50k cache reads, 20k cache
    // writes (half of them with a one-hour lifetime), 10k output.
    let llm_response = json!({
        "type": "message", "model": "claude-sonnet-4-5",
        "usage": {"input_tokens": 30000, "cache_read_input_tokens": 50000,
                  "cache_creation_input_tokens": 20000,
                  "cache_creation": {"ephemeral_5m_input_tokens": 10000, "ephemeral_1h_input_tokens": 10000},
                  "output_tokens": 10000}
    });
    let body = post(
        &app,
        &key,
        &[
            user(u, "litellm-user", "09:00:00"),
            conversation(c, u, None, "09:00:01"),
            item(
                Uuid::now_v7(),
                "message.create",
                "09:00:02",
                json!({"conversation_id": c, "role": "assistant", "llm_response": llm_response}),
            ),
        ],
    )
    .await;
    assert_eq!(outcomes(&body), vec!["created"; 3], "{body:#}");
    let day = app.store.daily_rows_for_tests(u).await.unwrap();
    assert_eq!(day.len(), 1, "{day:?}");
    // LiteLLM 1.110.2's claude-sonnet-4-5: input 3e-06, cache read 3e-07,
    // cache write 3.75e-06 (5 minutes) and 6e-06 (1 hour), output 1.5e-05:
    // 30k × 3e-6 + 50k × 3e-7 + 10k × 3.75e-6 + 10k × 6e-6 + 10k × 1.5e-5 = $0.3525.
    assert_eq!(day[0].estimated_cost_nano_usd, 352_500_000);
    assert_eq!(day[0].input_tokens, 100_000);
    let _ = std::fs::remove_file(table);
}

/// A stored row this service cannot read back is its own fault: the batch
/// that meets it answers 500 (`internal_error`) and writes nothing, never a
/// 400 that would tell the platform to drop its items.
#[tokio::test]
async fn a_corrupt_pending_message_is_a_500_not_the_batchs_fault() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, conv, m) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let body = post(&app, &key, &[message(m, conv, "user", "09:00:00", None)]).await;
    assert_eq!(outcomes(&body), vec!["created"]);
    assert_eq!(
        scalar(
            &app,
            "UPDATE pending_messages SET payload = '{\"not\": \"a message\"}'"
        )
        .await,
        1
    );
    let resp = app
        .ingest_with(&key, &[conversation(conv, u, None, "08:59:00")])
        .await;
    assert_eq!(resp.status(), 500);
    let body = json(resp).await;
    assert_eq!(body["code"], "internal_error", "{body}");
    assert!(
        !body["message"].as_str().unwrap().contains("pending"),
        "{body}"
    );
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM conversations").await, 0);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM pending_messages").await,
        1
    );
}
