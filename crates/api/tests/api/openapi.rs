//! The committed spec is what the code generates; the frontend's client is
//! generated from the committed file, so drift would break it silently.

use crate::helpers::{json, spawn_app};

const REGENERATE: &str =
    "just openapi   (or: cargo run -q -p charlie-api -- openapi > openapi/openapi.json)";

#[test]
fn committed_openapi_json_matches_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../openapi/openapi.json");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let generated = charlie_api::openapi::spec_json();
    if committed != generated {
        panic!(
            "openapi/openapi.json is out of date with the code.\nRegenerate it with:\n    {REGENERATE}\n"
        );
    }
}

#[tokio::test]
async fn the_served_spec_is_the_generated_one_and_swagger_ui_is_served() {
    let app = spawn_app().await;
    let served = json(app.get("/api-docs/openapi.json").await).await;
    let generated: serde_json::Value =
        serde_json::from_str(&charlie_api::openapi::spec_json()).unwrap();
    assert_eq!(served, generated);
    let ui = app.get("/docs/").await;
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
}
