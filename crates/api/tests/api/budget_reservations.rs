//! Budgets that hold: reservations under concurrency, idempotency, expiry,
//! commit and release, workflow limits, repricing and reconciliation.

use crate::helpers::{TestApp, assert_rollups_clean, json, spawn_app, token};
use serde_json::{Value, json};
use std::time::Duration;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::seconds(5)
}

/// A user with a hard limit (and a conversation), ingested.
async fn user_with_limit(
    app: &TestApp,
    key: &str,
    external: &str,
    hard: Option<&str>,
) -> (Uuid, Uuid) {
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let mut body = json!({"external_id": external, "email": format!("{external}@example.com")});
    if let Some(h) = hard {
        body["monthly_hard_limit_usd"] = json!(h);
    }
    let resp = app
        .ingest_with(
            key,
            &[
                json!({"id": u, "type": "user.upsert", "timestamp": rfc(now()), "body": body}),
                json!({"id": c, "type": "conversation.upsert", "timestamp": rfc(now()),
                       "body": {"user_id": u, "langflow_session_id": format!("s-{c}")}}),
            ],
        )
        .await;
    assert!(resp.status().is_success());
    let body = json(resp).await;
    for r in body["results"].as_array().unwrap() {
        assert_eq!(r["error"], Value::Null, "{r}");
        assert!(r["warnings"].as_array().unwrap().is_empty(), "{r}");
    }
    (u, c)
}

async fn post(app: &TestApp, key: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, json(resp).await)
}

async fn reserve(app: &TestApp, key: &str, body: Value) -> Value {
    let (status, v) = post(app, key, "/api/v1/budget/reserve", body).await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn my_usage(app: &TestApp, external: &str) -> Value {
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/my-usage"))
        .bearer_auth(token(external, false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    json(resp).await
}

#[tokio::test]
async fn fifty_concurrent_reserves_against_a_budget_that_fits_ten_allow_exactly_ten() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, _) = user_with_limit(&app, &key, "fifty", Some("1.00")).await;
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/api/v1/budget/reserve"),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let resp = client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"user_id": u, "estimated_cost_usd": "0.10",
                              "idempotency_key": format!("call-{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), 200);
            resp.json::<Value>().await.unwrap()
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        let v = t.await.unwrap();
        match v["decision"].as_str() {
            Some("allowed") => allowed += 1,
            Some("denied") => {
                assert_eq!(v["reason"], "hard_limit_reached");
                assert_eq!(v["budget"], "user");
                assert_eq!(v["limit_usd"], json!(1));
            }
            other => panic!("{other:?}: {v}"),
        }
    }
    assert_eq!(allowed, 10);
    let usage = my_usage(&app, "fifty").await;
    assert_eq!(usage["reserved_usd"], json!(1));
    assert_eq!(usage["hard_limit_usd"], json!(1));
    assert_eq!(usage["open_reservations"].as_array().unwrap().len(), 10);
}

#[tokio::test]
async fn retries_with_the_same_idempotency_key_never_reserve_twice() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, _) = user_with_limit(&app, &key, "retry", Some("1.00")).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/api/v1/budget/reserve"),
            key.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&json!({"user_id": u, "estimated_cost_usd": 0.4, "idempotency_key": "same"}))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }));
    }
    let mut ids = std::collections::HashSet::new();
    let mut replayed = 0;
    for t in tasks {
        let v = t.await.unwrap();
        assert_eq!(v["decision"], "allowed", "{v}");
        ids.insert(v["reservation_id"].as_str().unwrap().to_owned());
        replayed += usize::from(v["replayed"] == json!(true));
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(replayed, 7);
    let usage = my_usage(&app, "retry").await;
    assert_eq!(usage["reserved_usd"], json!(0.4));
    // Another key still fits once (0.4 + 0.4 ≤ 1) and then not.
    let b = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.4", "idempotency_key": "b"}),
    )
    .await;
    assert_eq!(b["decision"], "allowed");
    assert_eq!(b["remaining_usd"], json!(0.2));
    let c = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.4", "idempotency_key": "c"}),
    )
    .await;
    assert_eq!(c["decision"], "denied");
    assert_eq!(c["reserved_usd"], json!(0.8));
}

#[tokio::test]
async fn an_expired_reservation_no_longer_counts() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, _) = user_with_limit(&app, &key, "expiry", Some("1.00")).await;
    // A crash between reserve and commit: the reservation is never closed.
    let a = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.9",
                                        "idempotency_key": "crash", "ttl_seconds": 1}),
    )
    .await;
    assert_eq!(a["decision"], "allowed");
    let b = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.9", "idempotency_key": "b1"}),
    )
    .await;
    assert_eq!(b["decision"], "denied");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let c = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.9", "idempotency_key": "b2"}),
    )
    .await;
    assert_eq!(c["decision"], "allowed", "{c}");
    let usage = my_usage(&app, "expiry").await;
    assert_eq!(usage["open_reservations"].as_array().unwrap().len(), 1);
    // A retry of the crashed request's key gets its (expired) reservation
    // back, not a new one that would hold the budget again.
    let retry = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.9",
                                        "idempotency_key": "crash", "ttl_seconds": 1}),
    )
    .await;
    assert_eq!(retry["reservation_id"], a["reservation_id"], "{retry}");
    assert_eq!(
        my_usage(&app, "expiry").await["open_reservations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The server's sweeper keeps expired rows (and their keys) for a day...
    let now = OffsetDateTime::now_utc();
    let kept = charlie_api::jobs::reservations::sweep_once(&app.store, now)
        .await
        .unwrap();
    assert_eq!(kept, 0);
    // ...and deletes them a day later (both have expired by then).
    let later = now + charlie_api::jobs::reservations::KEEP + time::Duration::hours(1);
    let swept = charlie_api::jobs::reservations::sweep_once(&app.store, later)
        .await
        .unwrap();
    assert_eq!(swept, 2);
    // A TTL out of bounds is refused.
    let (status, _) = post(&app, &key, "/api/v1/budget/reserve",
        json!({"user_id": u, "estimated_cost_usd": "0.1", "idempotency_key": "x", "ttl_seconds": 0})).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn commit_holds_the_actual_cost_until_its_message_is_ingested_and_release_frees_it() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, c) = user_with_limit(&app, &key, "commit", Some("10.00")).await;
    // Priced from a token estimate with the catalog: gpt-4o, 1M input tokens.
    let a = reserve(
        &app,
        &key,
        json!({"user_id": u, "model": "gpt-4o", "input_tokens": 1_000_000,
                                        "output_tokens": 0, "idempotency_key": "a"}),
    )
    .await;
    assert_eq!(a["decision"], "allowed", "{a}");
    let estimate = a["amount_usd"].as_f64().unwrap();
    assert!(estimate > 0.0);
    let id = a["reservation_id"].as_str().unwrap().to_owned();

    // Released: nothing held; releasing again is a no-op.
    let b = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "1", "idempotency_key": "b"}),
    )
    .await;
    let b_id = b["reservation_id"].as_str().unwrap().to_owned();
    let (s, r) = post(
        &app,
        &key,
        "/api/v1/budget/release",
        json!({"reservation_id": b_id}),
    )
    .await;
    assert_eq!((s, r["state"].as_str()), (200, Some("released")));
    let (s, _) = post(
        &app,
        &key,
        "/api/v1/budget/release",
        json!({"reservation_id": b_id}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        &app,
        &key,
        "/api/v1/budget/commit",
        json!({"reservation_id": b_id, "actual_cost_usd": "1"}),
    )
    .await;
    assert_eq!(s, 400);

    // Committed with its message id before the message arrives: the actual
    // cost stays held (not counted twice once ingested).
    let message = Uuid::now_v7();
    let (s, r) = post(
        &app,
        &key,
        "/api/v1/budget/commit",
        json!({"reservation_id": id,
        "message_id": message, "model": "gpt-4o", "input_tokens": 400_000, "output_tokens": 0}),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["state"], "committed");
    let actual = r["actual_usd"].as_f64().unwrap();
    assert!(actual < estimate);
    let usage = my_usage(&app, "commit").await;
    assert_eq!(usage["reserved_usd"], r["held_usd"]);
    assert_eq!(usage["cost_usd"], json!(0));
    // Committing again changes nothing; releasing a committed one is refused.
    let (s, again) = post(
        &app,
        &key,
        "/api/v1/budget/commit",
        json!({"reservation_id": id, "actual_cost_usd": "5"}),
    )
    .await;
    assert_eq!((s, &again["actual_usd"]), (200, &r["actual_usd"]));
    let (s, _) = post(
        &app,
        &key,
        "/api/v1/budget/release",
        json!({"reservation_id": id}),
    )
    .await;
    assert_eq!(s, 400);

    // The message is ingested: its cost is spend, the hold is gone.
    let resp = app
        .ingest_with(
            &key,
            &[
                json!({"id": message, "type": "message.create", "timestamp": rfc(now()),
        "body": {"conversation_id": c, "role": "assistant", "model": "gpt-4o",
                 "usage": {"input_tokens": 400_000, "output_tokens": 0}}}),
            ],
        )
        .await;
    assert!(resp.status().is_success());
    let usage = my_usage(&app, "commit").await;
    assert_eq!(usage["reserved_usd"], json!(0));
    assert_eq!(usage["cost_usd"], r["actual_usd"]);
    assert!(usage["open_reservations"].as_array().unwrap().is_empty());

    // A commit naming an already ingested message settles at once.
    let d = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "0.5", "idempotency_key": "d"}),
    )
    .await;
    let (s, r) = post(
        &app,
        &key,
        "/api/v1/budget/commit",
        json!({
        "reservation_id": d["reservation_id"], "message_id": message}),
    )
    .await;
    assert_eq!((s, r["state"].as_str()), (200, Some("settled")));
    let (s, _) = post(
        &app,
        &key,
        "/api/v1/budget/commit",
        json!({"reservation_id": Uuid::now_v7(), "actual_cost_usd": "1"}),
    )
    .await;
    assert_eq!(s, 404);
    // Without a service key: 401.
    let (s, _) = post(
        &app,
        "nope",
        "/api/v1/budget/reserve",
        json!({"user_id": u, "estimated_cost_usd": "1", "idempotency_key": "z"}),
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn workflow_and_platform_default_hard_limits_deny_and_admins_set_them() {
    let mut vars = crate::helpers::Vars::new();
    vars.insert("BUDGET_DEFAULT_HARD_LIMIT_USD", "2".into());
    let app = crate::helpers::spawn_app_with(vars).await;
    let key = app.api_key().await;
    let (u, _) = user_with_limit(&app, &key, "wf", None).await;
    let w = Uuid::now_v7();
    let resp = app
        .ingest_with(
            &key,
            &[
                json!({"id": w, "type": "workflow.upsert", "timestamp": rfc(now()),
        "body": {"user_id": u, "name": "Essay grader"}}),
            ],
        )
        .await;
    assert!(resp.status().is_success());
    let admin = token("boss", true);
    let put = |path: String, body: Value| {
        let (client, url, admin) = (app.client.clone(), app.url(&path), admin.clone());
        async move {
            let r = client
                .put(url)
                .bearer_auth(admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (s, v) = put(
        format!("/api/v1/analytics/admin/workflows/{w}/budget"),
        json!({"monthly_budget_usd": "0.5", "monthly_hard_limit_usd": "1"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["monthly_hard_limit_usd"], json!(1));
    let a = reserve(&app, &key, json!({"user_id": u, "workflow_id": w, "estimated_cost_usd": "0.6", "idempotency_key": "a"})).await;
    assert_eq!(a["decision"], "allowed");
    assert_eq!(a["soft_limit_reached"], json!(["workflow"]));
    let b = reserve(&app, &key, json!({"user_id": u, "workflow_id": w, "estimated_cost_usd": "0.6", "idempotency_key": "b"})).await;
    assert_eq!(
        (b["decision"].as_str(), b["budget"].as_str()),
        (Some("denied"), Some("workflow"))
    );
    // Outside the workflow, the platform default ($2) applies.
    let c = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "1.5", "idempotency_key": "c"}),
    )
    .await;
    assert_eq!(
        (c["decision"].as_str(), c["budget"].as_str()),
        (Some("denied"), Some("platform_default"))
    );
    // The user's own hard limit, set by an admin, replaces the default.
    let (s, v) = put(
        format!("/api/v1/analytics/admin/users/{u}/budget"),
        json!({"monthly_hard_limit_usd": "5"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["effective_hard_limit_usd"], json!(5));
    assert_eq!(v["monthly_budget_usd"], Value::Null);
    let d = reserve(
        &app,
        &key,
        json!({"user_id": u, "estimated_cost_usd": "1.5", "idempotency_key": "d"}),
    )
    .await;
    assert_eq!(
        (d["decision"].as_str(), d["budget"].as_str()),
        (Some("allowed"), Some("user"))
    );
    assert_eq!(d["remaining_usd"], json!(2.9));
}

#[tokio::test]
async fn repricing_changes_costs_and_rollups_and_writes_the_audit_row() {
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (_, c) = user_with_limit(&app, &key, "reprice", None).await;
    let at = now();
    let msg = |model: &str| {
        json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": rfc(at),
        "body": {"conversation_id": c, "role": "assistant", "model": model,
                 "usage": {"input_tokens": 1_000_000, "output_tokens": 1_000_000}}})
    };
    let resp = app
        .ingest_with(&key, &[msg("gpt-4o"), msg("gpt-4o"), msg("tutor-model")])
        .await;
    assert!(resp.status().is_success());
    let before = my_usage(&app, "reprice").await;
    // A corrected catalog: gpt-4o at $1/$2 per million, and a price for the
    // model that had none.
    let catalog = charlie_pricing::Catalog::builtin()
        .with_custom_prices(
            r#"
            [[prices]]
            model = "gpt-4o"
            input = "1"
            output = "2"
            [[prices]]
            model = "tutor-model"
            input = "0.5"
            output = "0.5"
            "#,
        )
        .unwrap();
    let req = charlie_store::reprice::RepriceRequest {
        from: at.date().previous_day().unwrap(),
        to: at.date(),
        model: None,
        dry_run: true,
        actor: "tester".into(),
    };
    let dry = app
        .store
        .reprice(&req, &catalog, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(dry.run.messages_changed, 3);
    assert_eq!(
        my_usage(&app, "reprice").await["cost_usd"],
        before["cost_usd"]
    );
    let real = charlie_store::reprice::RepriceRequest {
        dry_run: false,
        ..req.clone()
    };
    let run = app
        .store
        .reprice(&real, &catalog, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(run.run.messages_changed, 3);
    assert_eq!(
        run.run.new_total_nano_usd,
        2 * 3_000_000_000 + 1_000_000_000
    );
    assert_eq!(run.by_model["tutor-model"].old_nano_usd, 0);
    let after = my_usage(&app, "reprice").await;
    assert_eq!(after["cost_usd"], json!(7));
    assert_rollups_clean(&app).await;
    // Running it again changes nothing.
    let again = app
        .store
        .reprice(&real, &catalog, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(again.run.messages_changed, 0);
    assert_rollups_clean(&app).await;

    let resp = app
        .client
        .get(app.url("/api/v1/analytics/admin/reprice-runs"))
        .bearer_auth(token("boss", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let runs = json(resp).await;
    let runs = runs["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    let real_run = runs.iter().find(|r| r["id"] == json!(run.run.id)).unwrap();
    assert_eq!(real_run["actor"], "tester");
    assert_eq!(real_run["dry_run"], json!(false));
    assert_eq!(real_run["new_total_usd"], json!(7));
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/admin/reprice-runs"))
        .bearer_auth(token("reprice", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/reconcile/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[tokio::test]
async fn reconcile_compares_provider_exports_with_our_costs_per_day_and_model() {
    use charlie_api::reconcile::{Provider, compare, model_key, parse};
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (_, c) = user_with_limit(&app, &key, "reconcile", None).await;
    let day = time::macros::datetime!(2026-01-09 12:00 UTC);
    let resp = app
        .ingest_with(
            &key,
            &[
                json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": rfc(day),
        "body": {"conversation_id": c, "role": "assistant", "model": "gpt-4o",
                 "usage": {"input_tokens": 2_000_000, "output_tokens": 0}}}),
            ],
        )
        .await;
    assert!(resp.status().is_success());
    let ours_raw = app
        .store
        .cost_by_day_and_model(day.date(), day.date().next_day().unwrap())
        .await
        .unwrap();
    let mut ours = charlie_api::reconcile::Costs::new();
    for ((d, m), n) in ours_raw {
        *ours.entry((d, model_key(&m))).or_default() += n;
    }
    let gpt = ours[&(day.date(), "gpt-4o".to_owned())];
    assert!(gpt > 0);

    for file in ["openai_costs.json", "openai_costs.csv"] {
        let theirs = parse(
            Provider::Openai,
            &std::fs::read_to_string(fixture(file)).unwrap(),
        )
        .unwrap();
        let lines = compare(&theirs, &ours);
        assert_eq!(lines.len(), 2, "{file}: {lines:?}");
        assert_eq!(
            (lines[0].date.as_str(), lines[0].model.as_str()),
            ("2026-01-09", "gpt-4o")
        );
        assert_eq!(lines[0].provider_usd, "5.1");
        assert_eq!(
            lines[0].ours_usd,
            charlie_domain::Usd::from_nanos(gpt).to_string()
        );
        assert_eq!(
            lines[0].difference_usd,
            charlie_domain::Usd::from_nanos(gpt - 5_100_000_000).to_string()
        );
        assert_eq!(
            (
                lines[1].model.as_str(),
                lines[1].provider_usd.as_str(),
                lines[1].ours_usd.as_str()
            ),
            ("gpt-4o-mini", "0.015", "0")
        );
    }
    // OpenAI's export without a line-item breakdown: one figure per day for
    // every model (and an empty row for a day without spend), compared with
    // our total of that day.
    let theirs = parse(
        Provider::Openai,
        &std::fs::read_to_string(fixture("openai_costs_daily.csv")).unwrap(),
    )
    .unwrap();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    let lines = compare(&theirs, &ours);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].model, charlie_api::reconcile::ALL_MODELS);
    assert_eq!(lines[0].provider_usd, "5.115");
    let day_total: i64 = ours
        .iter()
        .filter(|((d, _), _)| *d == day.date())
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        lines[0].ours_usd,
        charlie_domain::Usd::from_nanos(day_total).to_string()
    );
    for file in ["anthropic_cost_report.json", "anthropic_cost.csv"] {
        let theirs = parse(
            Provider::Anthropic,
            &std::fs::read_to_string(fixture(file)).unwrap(),
        )
        .unwrap();
        let lines = compare(&theirs, &ours);
        // Our gpt-4o cost that day appears beside the provider's Claude line.
        let claude = lines.iter().find(|l| l.model == "claude-sonnet-4").unwrap();
        assert_eq!(
            (
                claude.provider_usd.as_str(),
                claude.ours_usd.as_str(),
                claude.difference_usd.as_str()
            ),
            ("1.5395", "0", "-1.5395"),
            "{file}"
        );
    }
    // The console export's non-token costs have no model: a line of their own.
    let theirs = parse(
        Provider::Anthropic,
        &std::fs::read_to_string(fixture("anthropic_cost.csv")).unwrap(),
    )
    .unwrap();
    let lines = compare(&theirs, &ours);
    let search = lines.iter().find(|l| l.model == "(web_search)").unwrap();
    assert_eq!(
        (search.provider_usd.as_str(), search.ours_usd.as_str()),
        ("0.02", "0")
    );

    // The command, end to end, as JSON.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_charlie-stats"))
        .args([
            "reconcile",
            "--provider",
            "openai",
            &fixture("openai_costs.json"),
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
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["provider_usd"], "5.1");
    assert_eq!(
        v[0]["ours_usd"],
        json!(charlie_domain::Usd::from_nanos(gpt).to_string())
    );
}

/// Sets a user's time zone through ingestion.
async fn set_zone(app: &TestApp, key: &str, u: Uuid, external: &str, tz: &str) {
    let resp = app
        .ingest_with(
            key,
            &[
                json!({"id": u, "type": "user.upsert", "timestamp": rfc(OffsetDateTime::now_utc()),
                     "body": {"external_id": external, "email": format!("{external}@example.com"), "timezone": tz}}),
            ],
        )
        .await;
    assert!(resp.status().is_success());
    let body = json(resp).await;
    assert_eq!(body["results"][0]["error"], Value::Null, "{body}");
}

#[tokio::test]
async fn a_reservation_counts_in_the_users_local_month_even_when_the_zone_changes() {
    use charlie_store::reservations::{ReserveOutcome, ReservePolicy, ReserveRequest};
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, _) = user_with_limit(&app, &key, "zone", Some("1.00")).await;
    let policy = ReservePolicy {
        default_hard_limit_nano_usd: None,
        commit_hold_seconds: 600,
    };
    // 12:00 UTC on 31 January is already February in Kiritimati (UTC+14).
    let at = time::macros::datetime!(2026-01-31 12:00 UTC);
    let month_of = |key: &str, tz_expected: &str| {
        let (store, req) = (
            app.store.clone(),
            ReserveRequest {
                user_id: u,
                workflow_id: None,
                amount_nano_usd: 100_000_000,
                model: None,
                idempotency_key: key.to_owned(),
                ttl_seconds: 60,
            },
        );
        let tz_expected = tz_expected.to_owned();
        async move {
            match store.reserve_budget(&req, &policy, at).await.unwrap() {
                ReserveOutcome::Allowed { reservation, .. } => reservation.month,
                other => panic!("{tz_expected}: {other:?}"),
            }
        }
    };
    assert_eq!(month_of("utc", "UTC").await, "2026-01");
    set_zone(&app, &key, u, "zone", "Pacific/Kiritimati").await;
    assert_eq!(
        month_of("kiritimati", "Pacific/Kiritimati").await,
        "2026-02"
    );
    assert_eq!(
        month_of("kiritimati-2", "Pacific/Kiritimati").await,
        "2026-02"
    );
    set_zone(&app, &key, u, "zone", "UTC").await;
    assert_eq!(month_of("utc-2", "UTC").await, "2026-01");
}

#[tokio::test]
async fn held_reservations_never_exceed_the_hard_limit_while_reserves_and_releases_race() {
    use charlie_store::reservations::{ReserveOutcome, ReservePolicy, ReserveRequest};
    let app = spawn_app().await;
    let key = app.api_key().await;
    let (u, _) = user_with_limit(&app, &key, "race", Some("1.00")).await;
    let policy = ReservePolicy {
        default_hard_limit_nano_usd: None,
        commit_hold_seconds: 600,
    };
    let limit: i64 = 1_000_000_000;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let checker = {
        let (store, done) = (app.store.clone(), done.clone());
        tokio::spawn(async move {
            let mut checks = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let held: i64 = store
                    .held_reservations(u, OffsetDateTime::now_utc())
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| r.amount_nano_usd)
                    .sum();
                assert!(held <= limit, "held {held} > limit {limit}");
                checks += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            checks
        })
    };
    let mut tasks = Vec::new();
    for client in 0..8 {
        let store = app.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut allowed = 0;
            for i in 0..15 {
                let req = ReserveRequest {
                    user_id: u,
                    workflow_id: None,
                    amount_nano_usd: 300_000_000,
                    model: None,
                    idempotency_key: format!("race-{client}-{i}"),
                    ttl_seconds: 60,
                };
                match store
                    .reserve_budget(&req, &policy, OffsetDateTime::now_utc())
                    .await
                    .unwrap()
                {
                    ReserveOutcome::Allowed {
                        reservation,
                        limits,
                        ..
                    } => {
                        allowed += 1;
                        let s = limits[0];
                        assert!(s.spent_nano_usd + s.reserved_nano_usd <= limit, "{s:?}");
                        store
                            .release_reservation(reservation.id, OffsetDateTime::now_utc())
                            .await
                            .unwrap();
                    }
                    ReserveOutcome::Denied { standing, .. } => {
                        assert!(
                            standing.reserved_nano_usd + 300_000_000 > limit,
                            "{standing:?}"
                        );
                    }
                }
            }
            allowed
        }));
    }
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(checker.await.unwrap() > 0);
    assert!(allowed >= 3, "{allowed}");
    assert!(
        app.store
            .held_reservations(u, OffsetDateTime::now_utc())
            .await
            .unwrap()
            .is_empty()
    );
}
