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

#[tokio::test]
async fn get_docs_redirects_to_swagger_ui() {
    let app = spawn_app().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_redirects.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(resp.status(), 308, "GET /docs must redirect permanently");
    assert_eq!(resp.headers()["location"], "/docs/");
    // Followed, as a browser does, it lands on Swagger UI.
    let ui = app.get("/docs").await;
    assert_eq!(ui.status(), 200);
    assert_eq!(ui.url().path(), "/docs/");
    assert!(ui.text().await.unwrap().contains("swagger"));
}

/// The 200 response's content map of `GET path` in the generated spec.
fn ok_content(spec: &serde_json::Value, path: &str) -> serde_json::Map<String, serde_json::Value> {
    spec["paths"][path]["get"]["responses"]["200"]["content"]
        .as_object()
        .unwrap_or_else(|| panic!("GET {path} declares no 200 content"))
        .clone()
}

#[test]
fn csv_endpoints_declare_their_json_schema_and_csv() {
    let spec: serde_json::Value = serde_json::from_str(&charlie_api::openapi::spec_json()).unwrap();
    for (path, schema) in [
        ("/api/v1/analytics/admin/errors", "RecentErrorsResponse"),
        ("/api/v1/analytics/admin/costs", "CostsResponse"),
    ] {
        let content = ok_content(&spec, path);
        let mut types: Vec<&str> = content.keys().map(String::as_str).collect();
        types.sort_unstable();
        assert_eq!(types, ["application/json", "text/csv"], "GET {path}");
        assert_eq!(
            content["application/json"]["schema"]["$ref"],
            format!("#/components/schemas/{schema}"),
            "GET {path}: the JSON 200 must reference its schema"
        );
        assert_eq!(
            content["text/csv"]["schema"]["type"], "string",
            "GET {path}"
        );
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema} is missing from components"
        );
    }
    let preview = ok_content(&spec, "/api/v1/analytics/admin/reports/preview");
    let mut types: Vec<&str> = preview.keys().map(String::as_str).collect();
    types.sort_unstable();
    assert_eq!(types, ["text/html", "text/plain"]);
}

#[tokio::test]
async fn a_method_a_path_does_not_serve_is_405_with_allow_and_an_unknown_path_404() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    #[rustfmt::skip]
    let cases = [
        (reqwest::Method::TRACE, "/ready", 405, Some("GET")),
        (reqwest::Method::DELETE, "/api/v1/ingest", 405, Some("POST")),
        (reqwest::Method::POST, "/api/v1/analytics/my-stats", 405, Some("GET")),
        (reqwest::Method::PATCH, "/api/v1/analytics/admin/users/0190b6d0-0000-7000-8000-000000000000/budget", 405, Some("PUT")),
        (reqwest::Method::GET, "/api/v1/nothing-here", 404, None),
    ];
    for (method, path, status, allow) in cases {
        let resp = client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
        assert_eq!(
            resp.headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_owned()),
            allow.map(str::to_owned),
            "{method} {path}"
        );
        let body = json(resp).await;
        let code = if status == 405 {
            "method_not_allowed"
        } else {
            "not_found"
        };
        assert_eq!(body["code"], code, "{method} {path}");
    }
}

/// Every route a handler attribute (`#[get("…")]`, `#[post("…")]`, …)
/// declares under `src/`, as `(METHOD, path)`; admin handlers declare their
/// path within the admin scope.
fn declared_routes() -> std::collections::BTreeSet<(String, String)> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut files,
    );
    let mut routes = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for line in text.lines().map(str::trim) {
            for method in ["get", "post", "put", "delete", "patch"] {
                if let Some(rest) = line.strip_prefix(&format!("#[{method}(\"")) {
                    let path = rest.split('"').next().unwrap_or_default();
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

/// `(METHOD, path)` of every operation of the spec.
fn documented_routes() -> std::collections::BTreeSet<(String, String)> {
    let spec: serde_json::Value = serde_json::from_str(&charlie_api::openapi::spec_json()).unwrap();
    let mut routes = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "delete", "patch"] {
            if item.get(method).is_some() {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// Handlers are registered with their OpenAPI entry in one place (the
/// route table takes only documented handlers), so what is left to check is
/// that every handler the sources declare is registered once, under the
/// scope its path is written for, and that the spec has nothing else.
#[test]
fn every_served_route_is_in_the_spec_and_the_reverse() {
    let (declared, documented) = (declared_routes(), documented_routes());
    assert!(declared.len() > 20, "{declared:?}");
    let admin = charlie_api::routes::ADMIN_SCOPE;
    let mut registered = std::collections::BTreeSet::new();
    for (method, path) in &declared {
        let full = [path.clone(), format!("{admin}{path}")]
            .into_iter()
            .filter(|p| documented.contains(&(method.clone(), p.clone())))
            .collect::<Vec<_>>();
        assert_eq!(
            full.len(),
            1,
            "{method} {path}: declared by a handler but not served and documented exactly once"
        );
        registered.insert((method.clone(), full[0].clone()));
    }
    let unserved: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unserved.is_empty(),
        "in the spec but no handler declares them: {unserved:?}"
    );
}

/// Each operation of the spec, called without credentials on the running
/// app, is answered by its handler (or its auth check): never by the
/// fallback that answers unknown routes.
#[tokio::test]
async fn every_operation_of_the_spec_reaches_a_handler() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    for (method, path) in documented_routes() {
        let concrete = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "0190b6d0-0000-7000-8000-000000000000"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = client
            .request(method.clone(), app.url(&concrete))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            status != 405 && !body.contains("no route for"),
            "{method} {concrete} fell through to the fallback: {status} {body}"
        );
    }
}
