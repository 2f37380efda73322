use crate::helpers::{json, spawn_app};

#[tokio::test]
async fn health_answers_ok_without_touching_the_database() {
    let app = spawn_app().await;
    app.store.clone().close().await.unwrap();
    let resp = app.get("/health").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["status"], "ok");
}

#[tokio::test]
async fn ready_answers_ok_when_the_database_is_reachable() {
    let app = spawn_app().await;
    let resp = app.get("/ready").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(json(resp).await["status"], "ok");
}

#[tokio::test]
async fn ready_answers_503_with_a_json_reason_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.store.clone().close().await.unwrap();
    let resp = app.get("/ready").await;
    assert_eq!(resp.status(), 503);
    let body = json(resp).await;
    assert_eq!(body["code"], "database_unavailable");
    assert!(body["message"].as_str().unwrap().contains("database"));
}

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = spawn_app().await;
    let resp = app.get("/api/v1/nothing-here").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(json(resp).await["code"], "not_found");
}
