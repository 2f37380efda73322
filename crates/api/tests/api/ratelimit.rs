//! Rate limits per service key and per user: 429 with `Retry-After` and the
//! JSON error body, counted in `/metrics`; a retried batch loses nothing.

use crate::helpers::{Vars, json, spawn_app_with, token};
use serde_json::json;
use uuid::Uuid;

fn limited() -> Vars {
    Vars::from([
        ("RATE_LIMIT_ENABLED", "true".to_owned()),
        ("RATE_LIMIT_SERVICE_KEY_PER_SECOND", "1".to_owned()),
        ("RATE_LIMIT_SERVICE_KEY_BURST", "2".to_owned()),
        ("RATE_LIMIT_USER_PER_SECOND", "1".to_owned()),
        ("RATE_LIMIT_USER_BURST", "2".to_owned()),
    ])
}

fn user_item(n: u32) -> serde_json::Value {
    json!({"id": Uuid::now_v7(), "type": "user.upsert", "timestamp": "2026-12-01T10:00:00Z",
           "body": {"external_id": format!("rl-{n}"), "email": format!("rl-{n}@example.com")}})
}

#[tokio::test]
async fn a_service_key_over_its_rate_gets_429_and_its_retry_loses_nothing() {
    let app = spawn_app_with(limited()).await;
    let key = app.api_key().await;
    let batches: Vec<_> = (0..3).map(|n| vec![user_item(n)]).collect();
    for batch in &batches[..2] {
        assert_eq!(app.ingest_with(&key, batch).await.status(), 207);
    }
    let refused = app.ingest_with(&key, &batches[2]).await;
    assert_eq!(refused.status(), 429);
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(json(refused).await["code"], "rate_limited");
    // Nothing of the refused batch was written.
    assert_eq!(
        app.store
            .scalar_for_tests("SELECT COUNT(*) FROM users")
            .await
            .unwrap(),
        2
    );
    // Another key has its own budget of requests.
    let other = app.api_key().await;
    assert_eq!(app.ingest_with(&other, &[user_item(9)]).await.status(), 207);
    // After Retry-After the same batch goes through, once.
    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
    let retried = json(app.ingest_with(&key, &batches[2]).await).await;
    assert_eq!(retried["created"], 1, "{retried}");
    assert_eq!(
        app.store
            .scalar_for_tests("SELECT COUNT(*) FROM users")
            .await
            .unwrap(),
        4
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("charlie_rate_limited_total{caller=\"service_key\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_user_over_the_rate_gets_429_and_limits_are_off_by_default_in_development() {
    let app = spawn_app_with(limited()).await;
    let t = token("rl-user", false);
    let get = || {
        app.client
            .get(app.url("/api/v1/analytics/my-stats"))
            .bearer_auth(&t)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    assert_eq!(get().await.unwrap().status(), 200);
    let refused = get().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    assert_eq!(json(refused).await["code"], "rate_limited");

    // Without RATE_LIMIT_ENABLED, development has no limit.
    let open = spawn_app_with(Vars::new()).await;
    let t = token("rl-open", false);
    for _ in 0..40 {
        let resp = open
            .client
            .get(open.url("/api/v1/analytics/my-stats"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
}
