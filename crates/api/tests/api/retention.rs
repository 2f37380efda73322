//! Raw data's life (issue 16): monthly partitions made ahead, a back-dated
//! item that lands whatever its month, and retention that drops old months
//! while every dashboard keeps answering for them.

use crate::helpers::{TestApp, json, spawn_app, token};
use charlie_store::{Engine, Store, maintenance::RollupRange, retention};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

fn item(id: Uuid, kind: &str, at: OffsetDateTime, body: Value) -> Value {
    json!({"id": id, "type": kind, "timestamp": at.format(&Rfc3339).unwrap(), "body": body})
}

fn message(id: Uuid, conversation: Uuid, at: OffsetDateTime, input: u64) -> Value {
    item(
        id,
        "message.create",
        at,
        json!({"conversation_id": conversation, "role": "assistant", "model": "gpt-4o",
               "usage": {"input_tokens": input, "output_tokens": 7}}),
    )
}

fn event(user: Uuid, at: OffsetDateTime) -> Value {
    item(
        Uuid::now_v7(),
        "event.track",
        at,
        json!({"user_id": user, "event_type": "canvas_opened", "event_category": "canvas"}),
    )
}

fn error(user: Uuid, at: OffsetDateTime) -> Value {
    item(
        Uuid::now_v7(),
        "error.log",
        at,
        json!({"service": "openai", "error_type": "RateLimitError", "error_message": "429", "user_id": user}),
    )
}

/// Posts a batch and returns the item results.
async fn post(app: &TestApp, key: &str, items: &[Value]) -> Vec<Value> {
    let resp = app.ingest_with(key, items).await;
    assert_eq!(resp.status(), 207);
    let body = json(resp).await;
    body["results"].as_array().cloned().unwrap_or_default()
}

fn outcomes(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .map(|r| match r["error"]["code"].as_str() {
            Some(code) => code.to_owned(),
            None => r["outcome"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.store.scalar_for_tests(sql).await.unwrap()
}

fn partition(table: &str, at: OffsetDateTime) -> String {
    format!("{table}_p{:04}_{:02}", at.year(), u8::from(at.month()))
}

#[tokio::test]
async fn a_back_dated_item_lands_in_its_own_month_and_default_stays_empty() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let now = OffsetDateTime::now_utc();
    // Fourteen months back: no partition was made for it ahead of time.
    let old = now - Duration::days(430);
    let (user, conv) = (Uuid::now_v7(), Uuid::now_v7());
    let results = post(
        &app,
        &key,
        &[
            item(
                user,
                "user.upsert",
                old,
                json!({"external_id": "late", "email": "late@example.com"}),
            ),
            item(conv, "conversation.upsert", old, json!({"user_id": user})),
            message(Uuid::now_v7(), conv, old, 100),
            message(Uuid::now_v7(), conv, now - Duration::minutes(5), 200),
            event(user, old),
            error(user, old),
        ],
    )
    .await;
    assert_eq!(outcomes(&results), vec!["created"; 6]);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);

    if app.store.engine() == Engine::Postgres {
        for table in ["messages", "user_activity_events", "error_logs"] {
            // (Events: the tracked one and the milestones it reached.)
            assert!(
                count(
                    &app,
                    &format!("SELECT COUNT(*) FROM {}", partition(table, old))
                )
                .await
                    >= 1,
                "{table}: the old row is in its month's partition"
            );
            assert_eq!(
                count(&app, &format!("SELECT COUNT(*) FROM {table}_default")).await,
                0,
                "{table}: nothing waits in DEFAULT"
            );
        }
        // A row left in DEFAULT (written before this version, or by hand)
        // moves to its month when the partitions are kept; two instances
        // doing so at once make the month once.
        let older = now - Duration::days(800);
        let placed = count(
            &app,
            &format!(
                "WITH x AS (INSERT INTO error_logs (id, created_at, user_id, service, error_type, \
                 error_message, metadata) VALUES ('{}', '{}', '{user}', 'openai', 'Timeout', 'slow', '{{}}') \
                 RETURNING 1) SELECT COUNT(*) FROM x",
                Uuid::now_v7(),
                older.format(&Rfc3339).unwrap()
            ),
        )
        .await;
        assert_eq!(placed, 1);
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM error_logs_default").await,
            1
        );
        let other = Store::connect(app._db.url()).await.unwrap();
        let (a, b) = tokio::join!(app.store.keep_partitions(now), other.keep_partitions(now));
        let (a, b) = (a.unwrap(), b.unwrap());
        let older_month = partition("error_logs", older);
        assert_eq!(
            a.iter().chain(&b).filter(|p| **p == older_month).count(),
            1,
            "{a:?} {b:?}"
        );
        assert_eq!(
            count(&app, "SELECT COUNT(*) FROM error_logs_default").await,
            0
        );
        assert_eq!(
            count(&app, &format!("SELECT COUNT(*) FROM {older_month}")).await,
            1
        );
        let names: Vec<String> = app
            .store
            .partitions()
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        for ahead in [0, 31, 62] {
            let month = now + Duration::days(ahead);
            for table in ["messages", "user_activity_events", "error_logs"] {
                assert!(names.contains(&partition(table, month)), "{names:?}");
            }
        }
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);
    crate::helpers::assert_rollups_clean(&app).await;
}

/// Batches of many past months sent at once, to two servers' stores, while
/// the partitions are kept: every month's partition is made once, every
/// item lands and is counted once, and nothing is left in DEFAULT.
#[tokio::test]
async fn back_dated_months_made_under_concurrent_ingestion_lose_nothing() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let now = OffsetDateTime::now_utc();
    let (user, conv) = (Uuid::now_v7(), Uuid::now_v7());
    let setup = post(
        &app,
        &key,
        &[
            item(
                user,
                "user.upsert",
                now - Duration::days(2000),
                json!({"external_id": "many", "email": "many@example.com"}),
            ),
            item(
                conv,
                "conversation.upsert",
                now - Duration::days(2000),
                json!({"user_id": user}),
            ),
        ],
    )
    .await;
    assert_eq!(outcomes(&setup), vec!["created"; 2]);
    // 8 batches; batch b holds months 3..=14 back, shifted by b, so
    // batches share months and race to make them.
    let batches: Vec<Vec<Value>> = (0..8)
        .map(|b| {
            (0..12)
                .flat_map(|k| {
                    let at = now - Duration::days(31 * (3 + k + b) + 1);
                    [
                        message(Uuid::now_v7(), conv, at, 10),
                        event(user, at),
                        error(user, at),
                    ]
                })
                .collect()
        })
        .collect();
    let keeper = async {
        for _ in 0..5 {
            app.store.keep_partitions(now).await.unwrap();
        }
    };
    let posts = futures_util::future::join_all(batches.iter().map(|b| post(&app, &key, b)));
    let (results, ()) = tokio::join!(posts, keeper);
    for r in &results {
        assert_eq!(outcomes(r), vec!["created"; 36]);
    }
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 96);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM error_logs").await, 96);
    if app.store.engine() == Engine::Postgres {
        for table in ["messages", "user_activity_events", "error_logs"] {
            assert_eq!(
                count(&app, &format!("SELECT COUNT(*) FROM {table}_default")).await,
                0,
                "{table}"
            );
        }
        // Months 3..=21 back, each in its own partition (a day's margin:
        // stored times have whole microseconds).
        let first = now - Duration::days(31 * 3);
        let last = now - Duration::days(31 * 21 + 2);
        assert_eq!(
            count(
                &app,
                &format!(
                    "SELECT COUNT(*) FROM messages WHERE created_at <= '{}' AND created_at >= '{}'",
                    first.format(&Rfc3339).unwrap(),
                    last.format(&Rfc3339).unwrap()
                )
            )
            .await,
            96
        );
    }
    crate::helpers::assert_rollups_clean(&app).await;
}

#[tokio::test]
async fn retention_drops_old_months_keeps_every_dashboard_and_refuses_older_items() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let now = OffsetDateTime::now_utc();
    let months = 6;
    let kept = retention::kept_from(now, months);
    let (old, mid) = (kept - Duration::days(10), kept + Duration::days(20));
    let (user, conv) = (Uuid::now_v7(), Uuid::now_v7());
    let old_message = message(Uuid::now_v7(), conv, old, 100);
    let mid_message = message(Uuid::now_v7(), conv, mid, 300);
    let results = post(
        &app,
        &key,
        &[
            item(
                user,
                "user.upsert",
                old,
                json!({"external_id": "keeper", "email": "keeper@example.com"}),
            ),
            item(conv, "conversation.upsert", old, json!({"user_id": user})),
            old_message.clone(),
            mid_message.clone(),
            message(Uuid::now_v7(), conv, now - Duration::minutes(5), 500),
            event(user, old),
            error(user, old),
            error(user, mid),
        ],
    )
    .await;
    assert_eq!(outcomes(&results), vec!["created"; 8]);
    app.store.keep_partitions(now).await.unwrap();

    let admin = token("root", true);
    let from = (old - Duration::days(2)).date();
    let today = now.date();
    let paths = [
        format!("/api/v1/analytics/admin/costs?group_by=model&tz=UTC&from={from}&to={today}"),
        format!(
            "/api/v1/analytics/admin/costs?group_by=user&tz=Asia/Kathmandu&from={from}&to={today}"
        ),
        format!("/api/v1/analytics/admin/users/{user}/components?days=365"),
    ];
    let mut before = Vec::new();
    for p in &paths {
        let (status, body) = app.get_as(p, &admin).await;
        assert_eq!(status, 200, "{p}: {body:#}");
        before.push(body);
    }

    // A dry run says what would go and changes nothing.
    let plan = app.store.apply_retention(months, now, true).await.unwrap();
    assert_eq!(plan.kept_from, Some(kept));
    assert_eq!(plan.ledger_rows, 3, "the old message, event and error");
    assert_eq!(app.store.raw_kept_from().await.unwrap(), None);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 3);

    let report = app.store.apply_retention(months, now, false).await.unwrap();
    assert_eq!(report.ledger_rows, 3);
    if app.store.engine() == Engine::Postgres {
        assert_eq!(report.partitions, plan.partitions);
        assert!(
            report.partitions.contains(&partition("messages", old)),
            "{report:?}"
        );
        assert!(
            app.store
                .partitions()
                .await
                .unwrap()
                .iter()
                .all(|p| p.month >= kept.date())
        );
    } else {
        assert!(report.partitions.is_empty());
        assert!(report.rows >= 3, "{report:?}");
    }
    assert_eq!(app.store.raw_kept_from().await.unwrap(), Some(kept));
    assert_eq!(count(&app, "SELECT COUNT(*) FROM messages").await, 2);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM error_logs").await, 1);

    // The dashboards answer for the dropped months as before.
    for (p, was) in paths.iter().zip(&before) {
        let (_, now_body) = app.get_as(p, &admin).await;
        assert_eq!(&now_body, was, "{p}");
    }
    let report = app
        .store
        .verify_rollups(RollupRange::default())
        .await
        .unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert_eq!(report.retained_from, Some(kept.date()));
    // A rebuild recounts what is kept and leaves older rollups alone.
    app.store
        .rebuild_rollups(RollupRange::default())
        .await
        .unwrap();
    for (p, was) in paths.iter().zip(&before) {
        let (_, now_body) = app.get_as(p, &admin).await;
        assert_eq!(&now_body, was, "{p} after a rebuild");
    }

    // Re-sent: a retained item is a duplicate; an older one is refused, so
    // it can never be counted twice; so is a new item that old.
    let results = post(
        &app,
        &key,
        &[
            old_message,
            mid_message,
            error(user, old - Duration::days(1)),
        ],
    )
    .await;
    assert_eq!(
        outcomes(&results),
        vec!["beyond_retention", "duplicate", "beyond_retention"]
    );
    assert_eq!(results[0]["status"], 400);
    for (p, was) in paths.iter().zip(&before) {
        let (_, now_body) = app.get_as(p, &admin).await;
        assert_eq!(&now_body, was, "{p} after the re-send");
    }
    // Applying again changes nothing; the horizon never moves back.
    let again = app.store.apply_retention(12, now, false).await.unwrap();
    assert_eq!(again.kept_from, Some(kept));
    assert_eq!((again.rows, again.ledger_rows), (0, 0));
    assert!(again.partitions.is_empty());
    crate::helpers::assert_rollups_clean(&app).await;
}
