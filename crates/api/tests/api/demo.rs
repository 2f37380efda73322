//! `charlie-dev demo` (crates/devtools): its data goes through ingestion without item
//! errors, reruns change nothing, and what it prints works against the app.

use crate::helpers::{TestApp, Vars, json, spawn_app_with};
use charlie_api::Settings;
use charlie_devtools::demo::{self, DemoError};
use reqwest::StatusCode;
use std::collections::HashMap;

fn settings_of(app: &TestApp, vars: &[(&'static str, &str)]) -> Settings {
    let mut env: HashMap<&str, &str> = vars.iter().copied().collect();
    env.insert("DATABASE_URL", app._db.url());
    Settings::from_env(&env).unwrap()
}

async fn me(app: &TestApp, token: &str) -> (StatusCode, serde_json::Value) {
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (resp.status(), json(resp).await)
}

#[tokio::test]
async fn the_demo_seeds_through_ingestion_and_its_credentials_work() {
    let app = spawn_app_with(Vars::new()).await;
    let settings = settings_of(&app, &[]);
    let catalog = charlie_pricing::Catalog::builtin();
    let now = time::OffsetDateTime::now_utc();
    let report = demo::run(&app.store, &settings, &catalog, now)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let count = |kind: &str| {
        report
            .counts
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, c)| c.clone())
            .unwrap()
    };
    assert_eq!(count("user.upsert").created, 20);
    assert!(count("message.create").created > 1000);
    assert!(count("error.log").created > 0);
    assert!(count("event.track").created > 0);
    assert!(report.priced_messages > 0 && report.unpriced_messages > 0);
    let users = app
        .store
        .scalar_for_tests("SELECT COUNT(*) FROM users WHERE timezone = 'Asia/Kolkata'")
        .await
        .unwrap();
    assert!(users >= 2);
    let messages = app
        .store
        .scalar_for_tests("SELECT COUNT(*) FROM messages")
        .await
        .unwrap();
    assert_eq!(messages as usize, count("message.create").created);

    // The tokens are accepted by the app: the admin is an admin (by role
    // claim: ADMIN_EMAILS is empty here), the user is the ingested user.
    let (status, body) = me(&app, &report.admin_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_admin"], true);
    assert_eq!(body["email"], report.admin_email);
    let (status, body) = me(&app, &report.user_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_admin"], false);
    assert_eq!(body["user_id"], report.user_id.to_string());

    // The API key ingests.
    let resp = app
        .client
        .post(app.url("/api/v1/ingest"))
        .bearer_auth(&report.api_key)
        .json(&serde_json::json!({"batch": [{
            "id": uuid::Uuid::new_v4(), "type": "event.track",
            "timestamp": "2026-01-01T00:00:00Z",
            "body": {"user_id": report.user_id, "event_type": "canvas_opened"}
        }]}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    assert_eq!(json(resp).await["created"], 1);

    // The text names every credential and endpoint.
    let text = demo::render(&report, &app.address, now);
    for needle in [
        report.admin_token.as_str(),
        report.user_token.as_str(),
        report.api_key.as_str(),
        "/api/v1/analytics/me",
        "/api/v1/analytics/my-stats",
        "/api/v1/analytics/admin/overview",
        "/api/v1/analytics/admin/errors",
        "/api/v1/ingest",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    let json = demo::render_json(&report);
    assert_eq!(json["admin_token"], report.admin_token);
    assert_eq!(json["user_token"], report.user_token);
    assert_eq!(json["api_key"], report.api_key);

    // A rerun writes nothing new.
    let again = demo::run(&app.store, &settings, &catalog, now)
        .await
        .unwrap();
    for (kind, c) in &again.counts {
        assert_eq!(c.created + c.updated, 0, "{kind}: {c:?}");
    }
}

#[tokio::test]
async fn demo_tokens_follow_the_configured_claims() {
    let vars: Vars = HashMap::from([
        ("AUTH_ROLE_CLAIM", "public_metadata.role".to_owned()),
        ("AUTH_ADMIN_ROLE", "founder".to_owned()),
        ("AUTH_ISSUER", "https://clerk.example.com".to_owned()),
        ("AUTH_AUDIENCE", "charlie-stats".to_owned()),
    ]);
    let app = spawn_app_with(vars).await;
    let settings = settings_of(
        &app,
        &[
            ("AUTH_ROLE_CLAIM", "public_metadata.role"),
            ("AUTH_ADMIN_ROLE", "founder"),
            ("AUTH_ISSUER", "https://clerk.example.com"),
            ("AUTH_AUDIENCE", "charlie-stats"),
        ],
    );
    let now = time::OffsetDateTime::now_utc();
    let token = demo::demo_token(&settings, "user_x", "x@example.com", true, now).unwrap();
    let (status, body) = me(&app, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["is_admin"], true);
}

#[tokio::test]
async fn the_demo_refuses_to_run_in_production() {
    let app = spawn_app_with(Vars::new()).await;
    let settings = settings_of(
        &app,
        &[
            ("APP_ENV", "production"),
            (
                "AUTH_JWKS_URL",
                "https://clerk.example.com/.well-known/jwks.json",
            ),
        ],
    );
    let catalog = charlie_pricing::Catalog::builtin();
    let err = demo::run(
        &app.store,
        &settings,
        &catalog,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DemoError::Production), "{err}");
    let users = app
        .store
        .scalar_for_tests("SELECT COUNT(*) FROM users")
        .await
        .unwrap();
    assert_eq!(users, 0, "nothing was written");
}
