//! The read API against independently computed expectations: my-stats,
//! admin overview, errors, costs, funnel and a user's stats, in UTC and in
//! zones with DST and with 30- and 45-minute offsets.

use crate::helpers::{TestApp, json, spawn_app};
use serde_json::{Value, json};
use time::{
    Date, Duration, OffsetDateTime, Time, Weekday, format_description::well_known::Rfc3339,
};
use uuid::Uuid;

fn token(sub: &str, email: &str, admin: bool) -> String {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let mut claims =
        json!({"sub": sub, "email": email, "iat": now, "nbf": now - 5, "exp": now + 3600});
    if admin {
        claims["role"] = json!("admin");
    }
    charlie_api::auth::jwt::sign_demo_token(&claims).unwrap()
}

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

struct World {
    app: TestApp,
    key: String,
}

impl World {
    async fn new() -> World {
        let app = spawn_app().await;
        let key = app.api_key().await;
        World { app, key }
    }

    async fn ingest(&self, items: Vec<Value>) {
        let resp = self.app.ingest_with(&self.key, &items).await;
        assert_eq!(resp.status(), 207);
        let body = json(resp).await;
        assert_eq!(body["errors"], 0, "{body:#}");
    }

    async fn user(&self, external: &str, tz: Option<&str>, at: OffsetDateTime) -> Uuid {
        let id = Uuid::now_v7();
        let mut body = json!({"external_id": external, "email": format!("{external}@example.com")});
        if let Some(tz) = tz {
            body["timezone"] = json!(tz);
        }
        self.ingest(vec![
            json!({"id": id, "type": "user.upsert", "timestamp": rfc(at), "body": body}),
        ])
        .await;
        id
    }

    async fn conversation(&self, user: Uuid, workflow: Option<Uuid>, at: OffsetDateTime) -> Uuid {
        let id = Uuid::now_v7();
        self.ingest(vec![json!({"id": id, "type": "conversation.upsert", "timestamp": rfc(at),
            "body": {"user_id": user, "workflow_id": workflow, "langflow_session_id": format!("sess-{id}")}})])
        .await;
        id
    }

    async fn messages(
        &self,
        conversation: Uuid,
        at: &[OffsetDateTime],
        model: &str,
        usage: (u64, u64),
    ) {
        let items = at
            .iter()
            .enumerate()
            .map(|(n, t)| {
                json!({"id": Uuid::now_v7(), "type": "message.create", "timestamp": rfc(*t), "body": {
                    "conversation_id": conversation, "role": if n % 2 == 0 { "user" } else { "assistant" },
                    "model": model, "usage": {"input_tokens": usage.0, "output_tokens": usage.1}}})
            })
            .collect();
        self.ingest(items).await;
    }

    async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.app
            .client
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn ok(&self, path: &str, token: &str) -> Value {
        let resp = self.get(path, token).await;
        let status = resp.status();
        let body = json(resp).await;
        assert_eq!(status, 200, "{path}: {body:#}");
        body
    }
}

fn breakdown_sum(stats: &Value, field: &str) -> i64 {
    stats["daily_breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d[field].as_i64().unwrap())
        .sum()
}

fn day_messages(stats: &Value, date: Date) -> i64 {
    stats["daily_breakdown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["date"] == date.to_string())
        .map(|d| d["messages"].as_i64().unwrap())
        .unwrap_or_else(|| panic!("{date} not in the breakdown"))
}

#[tokio::test]
async fn my_stats_in_utc_match_a_recount_of_what_was_sent() {
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let u = w.user("stats_utc", None, now - Duration::days(50)).await;
    let wf = Uuid::now_v7();
    w.ingest(vec![json!({"id": wf, "type": "workflow.upsert", "timestamp": rfc(now - Duration::days(50)), "body": {"user_id": u, "name": "Tutor"}})]).await;
    let c1 = w.conversation(u, Some(wf), now - Duration::days(45)).await;
    let c2 = w.conversation(u, None, now - Duration::days(3)).await;
    // (days ago, count) per conversation.
    let plan1 = [(40, 2), (10, 4), (0, 2)];
    let plan2 = [(3, 3), (0, 1)];
    let mut sent: Vec<OffsetDateTime> = Vec::new();
    for (conv, plan) in [(c1, &plan1[..]), (c2, &plan2[..])] {
        for (ago, n) in plan {
            let at: Vec<_> = (0..*n)
                .map(|i| now - Duration::days(*ago) - Duration::seconds(i))
                .collect();
            w.messages(conv, &at, "gpt-4o-mini", (1000, 100)).await;
            sent.extend(at);
        }
    }
    let t = token("stats_utc", "stats_utc@example.com", false);
    let s = w.ok("/api/v1/analytics/my-stats?days=30", &t).await;

    let today = now.date();
    let in_days = |d: i64| {
        sent.iter()
            .filter(|t| (today - t.date()).whole_days() < d)
            .count() as i64
    };
    assert_eq!(s["total_messages"], sent.len() as i64);
    assert_eq!(s["total_conversations"], 2);
    assert_eq!(s["messages_this_week"], in_days(7));
    assert_eq!(s["conversations_this_week"], 1);
    assert_eq!(s["period_days"], 30);
    assert_eq!(s["timezone"], "UTC");
    let days = s["daily_breakdown"].as_array().unwrap();
    assert_eq!(days.len(), 30);
    assert_eq!(days.last().unwrap()["date"], today.to_string());
    assert_eq!(
        days.first().unwrap()["date"],
        (today - Duration::days(29)).to_string()
    );
    assert_eq!(s["period_messages"], in_days(30));
    assert_eq!(breakdown_sum(&s, "messages"), in_days(30));
    for d in [0, 3, 10] {
        let date = today - Duration::days(d);
        let expected = sent.iter().filter(|t| t.date() == date).count() as i64;
        assert_eq!(day_messages(&s, date), expected, "{date}");
    }
    // Conversation 1 has more messages in the period than conversation 2 (no workflow).
    assert_eq!(s["most_active_workflow"]["id"], wf.to_string());
    assert_eq!(s["most_active_workflow"]["name"], "Tutor");
    assert_eq!(s["most_active_workflow"]["message_count"], 6);
    let avg = (sent.len() as f64 / 2.0 * 10.0).round() / 10.0;
    assert_eq!(s["avg_messages_per_conversation"].as_f64(), Some(avg));
    let n = in_days(30);
    assert_eq!(s["period_input_tokens"], n * 1000);
    assert_eq!(s["period_total_tokens"], n * 1100);
    // gpt-4o-mini: $0.15 / $0.60 per million tokens.
    let nanos = n * (1000 * 150 + 100 * 600);
    let cost = charlie_domain::Usd::from_nanos(nanos).to_string();
    assert_eq!(s["period_estimated_cost_usd"].to_string(), cost);
    assert_eq!(s["period_unpriced_messages"], 0);
}

#[tokio::test]
async fn an_empty_database_gives_zero_filled_stats_and_an_empty_overview() {
    let w = World::new().await;
    let t = token("nobody_yet", "nobody@example.com", false);
    let s = w.ok("/api/v1/analytics/my-stats?days=7", &t).await;
    assert_eq!(s["daily_breakdown"].as_array().unwrap().len(), 7);
    assert_eq!(breakdown_sum(&s, "messages"), 0);
    assert_eq!(
        (
            s["total_messages"].as_i64(),
            s["total_conversations"].as_i64()
        ),
        (Some(0), Some(0))
    );
    assert!(s["most_active_workflow"].is_null());
    assert_eq!(s["avg_messages_per_conversation"].as_f64(), Some(0.0));
    let admin = token("root", "root@example.com", true);
    let o = w.ok("/api/v1/analytics/admin/overview", &admin).await;
    // The two token holders were created on first sight.
    assert_eq!(o["total_users"], 2);
    for field in [
        "active_users_today",
        "total_workflows",
        "total_messages_today",
        "error_count_today",
    ] {
        assert_eq!(o[field], 0, "{field}");
    }
    assert_eq!(o["error_rate"].as_f64(), Some(0.0));
    assert_eq!(o["estimated_cost_today_usd"].as_f64(), Some(0.0));
    assert_eq!(
        o["funnel"],
        json!({"signed_up": 0, "created_component": 0, "created_workflow": 0, "sent_message": 0})
    );
}

/// The latest first Sunday of November (US fall-back day) not after `today`.
fn last_fall_back(today: Date) -> Date {
    let mut year = today.year();
    loop {
        let mut d = Date::from_calendar_date(year, time::Month::November, 1).unwrap();
        while d.weekday() != Weekday::Sunday {
            d = d.next_day().unwrap();
        }
        if d < today {
            return d;
        }
        year -= 1;
    }
}

#[tokio::test]
async fn days_follow_the_time_zone_across_dst_and_odd_offsets() {
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let u = w
        .user("zones", Some("Asia/Kathmandu"), now - Duration::days(400))
        .await;
    let c = w.conversation(u, None, now - Duration::days(400)).await;

    // Kathmandu (UTC+05:45, no DST): local midnight of day D is D-1 18:15 UTC.
    let kathmandu_today = (now + Duration::minutes(345)).date();
    let d = kathmandu_today - Duration::days(3);
    let midnight = d.with_time(Time::MIDNIGHT).assume_utc() - Duration::minutes(345);
    // Kolkata (UTC+05:30): midnight of D is D-1 18:30 UTC, 15 minutes later.
    // New York: on the fall-back Sunday, 00:30 EDT is 04:30 UTC and 23:30 EST is 04:30 UTC the next day.
    let sunday = last_fall_back(now.date());
    let ny_sunday_start = sunday
        .with_time(Time::from_hms(4, 30, 0).unwrap())
        .assume_utc();
    let at = vec![
        midnight - Duration::minutes(5), // Kathmandu: D-1 23:55; Kolkata: D-1 23:40
        midnight + Duration::minutes(5), // Kathmandu: D 00:05;   Kolkata: D-1 23:50
        midnight + Duration::minutes(20), // Kathmandu: D 00:20;   Kolkata: D 00:05
        ny_sunday_start,                 // New York: Sunday 00:30 EDT
        ny_sunday_start + Duration::hours(24), // New York: Sunday 23:30 EST (a 25-hour day)
        ny_sunday_start + Duration::hours(25), // New York: Monday 00:30 EST
    ];
    w.messages(c, &at, "gpt-4o", (10, 10)).await;
    let t = token("zones", "zones@example.com", false);

    // Default: the user's stored zone.
    let s = w.ok("/api/v1/analytics/my-stats?days=10", &t).await;
    assert_eq!(s["timezone"], "Asia/Kathmandu");
    assert_eq!(day_messages(&s, d - Duration::days(1)), 1);
    assert_eq!(day_messages(&s, d), 2);
    assert_eq!(
        breakdown_sum(&s, "messages"),
        s["period_messages"].as_i64().unwrap()
    );

    let s = w
        .ok("/api/v1/analytics/my-stats?days=10&tz=Asia/Kolkata", &t)
        .await;
    assert_eq!(s["timezone"], "Asia/Kolkata");
    assert_eq!(day_messages(&s, d - Duration::days(1)), 2);
    assert_eq!(day_messages(&s, d), 1);

    let s = w
        .ok(
            "/api/v1/analytics/my-stats?days=365&tz=America/New_York",
            &t,
        )
        .await;
    assert_eq!(day_messages(&s, sunday), 2);
    assert_eq!(day_messages(&s, sunday.next_day().unwrap()), 1);
    assert_eq!(
        breakdown_sum(&s, "messages"),
        s["period_messages"].as_i64().unwrap()
    );
    assert_eq!(s["period_messages"], 6);

    // The same messages in UTC land on UTC dates.
    let s = w.ok("/api/v1/analytics/my-stats?days=365&tz=UTC", &t).await;
    let utc_sum: i64 = at
        .iter()
        .map(|t| t.date())
        .collect::<std::collections::BTreeSet<_>>()
        .iter()
        .map(|d| day_messages(&s, *d))
        .sum();
    assert_eq!(utc_sum, 6);
}

#[tokio::test]
async fn the_admin_overview_counts_today_the_week_errors_cost_and_the_funnel() {
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let ada = w.user("ada", None, now - Duration::days(2)).await;
    let bob = w.user("bob", None, now - Duration::days(60)).await;
    let _carol = w.user("carol", None, now - Duration::days(1)).await;
    let wf = Uuid::now_v7();
    w.ingest(vec![
        json!({"id": wf, "type": "workflow.upsert", "timestamp": rfc(now - Duration::days(2)), "body": {"user_id": ada, "name": "W"}}),
        json!({"id": Uuid::now_v7(), "type": "component.upsert", "timestamp": rfc(now - Duration::days(2)), "body": {"user_id": ada, "name": "C"}}),
    ])
    .await;
    let ca = w.conversation(ada, Some(wf), now - Duration::days(2)).await;
    let cb = w.conversation(bob, None, now - Duration::days(5)).await;
    // ada: 4 messages today (2 from her); bob: 2 messages 5 days ago.
    w.messages(ca, &[now, now, now, now], "gpt-4o-mini", (2000, 500))
        .await;
    w.messages(
        cb,
        &[now - Duration::days(5), now - Duration::days(5)],
        "my-private-model",
        (100, 100),
    )
    .await;
    w.ingest(vec![
        json!({"id": Uuid::now_v7(), "type": "error.log", "timestamp": rfc(now), "body": {"service": "openai", "error_type": "RateLimit", "error_message": "429", "sentry_event_id": "abc123"}}),
        json!({"id": Uuid::now_v7(), "type": "error.log", "timestamp": rfc(now - Duration::days(3)), "body": {"service": "langflow", "error_type": "Timeout", "error_message": "slow"}}),
    ])
    .await;

    let admin = token("admin_1", "admin@example.com", true);
    let o = w
        .ok("/api/v1/analytics/admin/overview?days=30", &admin)
        .await;
    assert_eq!(o["total_users"], 4); // ada, bob, carol and the admin
    assert_eq!(o["active_users_today"], 1);
    assert_eq!(o["active_users_week"], 2);
    assert_eq!(o["total_workflows"], 1);
    assert_eq!(o["total_messages_today"], 4);
    assert_eq!(o["total_messages_week"], 6);
    assert_eq!(o["error_count_today"], 1);
    assert_eq!(o["error_rate"].as_f64(), Some(0.25));
    let cost = charlie_domain::Usd::from_nanos(4 * (2000 * 150 + 500 * 600)).to_string();
    assert_eq!(o["estimated_cost_today_usd"].to_string(), cost);
    assert_eq!(o["unpriced_messages_today"], 0);
    // Cohort of the last 30 days: ada and carol signed up (bob 60 days ago);
    // ada created a component and a workflow and sent a message.
    assert_eq!(
        o["funnel"],
        json!({"signed_up": 2, "created_component": 1, "created_workflow": 1, "sent_message": 1})
    );

    let f = w.ok("/api/v1/analytics/admin/funnel?days=30", &admin).await;
    assert_eq!(f["steps"][0]["step"], "signed_up");
    assert!(f["steps"][0]["conversion_from_previous"].is_null());
    assert_eq!(
        f["steps"][1]["conversion_from_previous"].as_f64(),
        Some(0.5)
    );
    assert_eq!(f["steps"][3]["conversion_from_signup"].as_f64(), Some(0.5));

    // Errors, newest first, with the Sentry link of the plan.
    let e = w.ok("/api/v1/analytics/admin/errors?limit=1", &admin).await;
    assert_eq!(e["total"], 1);
    assert_eq!(e["total_matching"], 2);
    assert_eq!(e["errors"][0]["service"], "openai");
    assert_eq!(
        e["errors"][0]["sentry_url"],
        "https://sentry.io/issues/?query=abc123"
    );
    let e = w
        .ok("/api/v1/analytics/admin/errors?service=langflow", &admin)
        .await;
    assert_eq!(e["total"], 1);
    assert!(e["errors"][0]["sentry_url"].is_null());
    let csv = w
        .get("/api/v1/analytics/admin/errors?format=csv", &admin)
        .await;
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.starts_with("id,created_at,service"));

    // Costs by model: the unknown model is unpriced, never $0-priced.
    let c = w
        .ok("/api/v1/analytics/admin/costs?group_by=model", &admin)
        .await;
    let groups = c["groups"].as_array().unwrap();
    let mini = groups.iter().find(|g| g["key"] == "gpt-4o-mini").unwrap();
    assert_eq!(mini["messages"], 4);
    assert_eq!(mini["estimated_cost_usd"].to_string(), cost);
    let private = groups
        .iter()
        .find(|g| g["key"] == "my-private-model")
        .unwrap();
    assert_eq!(
        (
            private["unpriced_messages"].as_i64(),
            private["unpriced_tokens"].as_i64()
        ),
        (Some(2), Some(400))
    );
    assert_eq!(c["totals"]["messages"], 6);
    assert_eq!(c["totals"]["unpriced_messages"], 2);
    let by_day = w
        .ok("/api/v1/analytics/admin/costs?group_by=day", &admin)
        .await;
    assert_eq!(by_day["groups"].as_array().unwrap().len(), 30);
    // A one-day range (it once built an SQLite CASE without a WHEN).
    let last = by_day["groups"][29]["key"].as_str().unwrap().to_owned();
    let one_day = w
        .ok(
            &format!("/api/v1/analytics/admin/costs?group_by=day&from={last}&to={last}"),
            &admin,
        )
        .await;
    assert_eq!(one_day["groups"].as_array().unwrap().len(), 1, "{one_day}");
    assert_eq!(one_day["groups"][0], by_day["groups"][29]);
    // An empty date is not a date.
    let resp = w.get("/api/v1/analytics/admin/costs?to=", &admin).await;
    assert_eq!(resp.status(), 400);
    let by_user = w
        .ok("/api/v1/analytics/admin/costs?group_by=user", &admin)
        .await;
    assert_eq!(by_user["groups"][0]["key"], ada.to_string());
    let csv = w
        .get(
            "/api/v1/analytics/admin/costs?group_by=workflow&format=csv",
            &admin,
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("workflow,messages"));
    assert!(csv.contains(&wf.to_string()));

    // Any user's stats: what that user sees, plus their conversations.
    let u = w
        .ok(
            &format!("/api/v1/analytics/admin/users/{ada}/stats"),
            &admin,
        )
        .await;
    assert_eq!(u["user"]["email"], "ada@example.com");
    assert_eq!(u["stats"]["total_messages"], 4);
    assert_eq!(u["recent_conversations"][0]["id"], ca.to_string());
    let mine = w
        .ok(
            "/api/v1/analytics/my-stats",
            &token("ada", "ada@example.com", false),
        )
        .await;
    assert_eq!(mine["daily_breakdown"], u["stats"]["daily_breakdown"]);
    let missing = w
        .get(
            &format!("/api/v1/analytics/admin/users/{}/stats", Uuid::now_v7()),
            &admin,
        )
        .await;
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn admin_routes_need_an_admin_and_analytics_need_a_session() {
    let w = World::new().await;
    let user = token("plain_user", "plain@example.com", false);
    for path in [
        "/api/v1/analytics/admin/overview",
        "/api/v1/analytics/admin/errors",
        "/api/v1/analytics/admin/costs",
        "/api/v1/analytics/admin/funnel",
        "/api/v1/analytics/admin/users/0192f0c4-0000-7000-8000-000000000001/stats",
    ] {
        let resp = w.get(path, &user).await;
        assert_eq!(resp.status(), 403, "{path}");
        assert_eq!(json(resp).await["code"], "forbidden");
        let resp = w.app.get(path).await;
        assert_eq!(resp.status(), 401, "{path}");
    }
    assert_eq!(w.app.get("/api/v1/analytics/my-stats").await.status(), 401);
}

#[tokio::test]
async fn bad_parameters_get_400_with_a_stable_code() {
    let w = World::new().await;
    let user = token("validator", "v@example.com", false);
    let admin = token("validator_admin", "va@example.com", true);
    for (path, t) in [
        ("/api/v1/analytics/my-stats?days=0", &user),
        ("/api/v1/analytics/my-stats?days=366", &user),
        ("/api/v1/analytics/my-stats?days=abc", &user),
        ("/api/v1/analytics/my-stats?tz=Mars/Olympus", &user),
        ("/api/v1/analytics/admin/errors?limit=0", &admin),
        ("/api/v1/analytics/admin/errors?limit=201", &admin),
        ("/api/v1/analytics/admin/errors?format=xml", &admin),
        (
            "/api/v1/analytics/admin/costs?from=2026-02-01&to=2026-01-01",
            &admin,
        ),
        (
            "/api/v1/analytics/admin/costs?from=2020-01-01&to=2026-01-01",
            &admin,
        ),
        ("/api/v1/analytics/admin/costs?group_by=country", &admin),
        ("/api/v1/analytics/admin/costs?from=yesterday", &admin),
        ("/api/v1/analytics/admin/overview?days=400", &admin),
        ("/api/v1/analytics/admin/users/not-a-uuid/stats", &admin),
    ] {
        let resp = w.get(path, t).await;
        assert_eq!(resp.status(), 400, "{path}");
        let body = json(resp).await;
        assert_eq!(body["code"], "invalid_parameter", "{path}: {body}");
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
}

/// The flat read model (`user_buckets`, per-workflow counts from whole UTC
/// days plus edge buckets, the active-user histogram, funnel cohorts and
/// platform totals) against counts made here, then `rollups verify` and a
/// rebuild that changes nothing.
#[tokio::test]
async fn flat_counters_follow_moves_edges_and_odd_offsets() {
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let admin = token("admin_flat", "admin.flat@example.com", true);
    let overview = |tz: &'static str| {
        let w = &w;
        let admin = admin.clone();
        async move {
            w.ok(
                &format!("/api/v1/analytics/admin/overview?days=30&tz={tz}"),
                &admin,
            )
            .await
        }
    };

    // Kathmandu (UTC+05:45): the period of `days=3` starts at local midnight
    // two days ago, a quarter-hour-aligned instant inside a UTC day.
    let kathmandu_today = (now + Duration::minutes(345)).date();
    let start = (kathmandu_today - Duration::days(2))
        .with_time(Time::MIDNIGHT)
        .assume_utc()
        - Duration::minutes(345);
    let u = w
        .user("edges", Some("Asia/Kathmandu"), now - Duration::days(40))
        .await;
    let (wa, wb) = (Uuid::now_v7(), Uuid::now_v7());
    w.ingest(vec![
        json!({"id": wa, "type": "workflow.upsert", "timestamp": rfc(now - Duration::days(40)), "body": {"user_id": u, "name": "A"}}),
        json!({"id": wb, "type": "workflow.upsert", "timestamp": rfc(now - Duration::days(40)), "body": {"user_id": u, "name": "B"}}),
    ])
    .await;
    let ca = w.conversation(u, Some(wa), now - Duration::days(40)).await;
    let cb = w.conversation(u, Some(wb), now - Duration::days(40)).await;
    // A: 4 messages in the quarter-hour just before the period (same UTC day
    // as its start), 1 inside. B: 3 inside, right after the start.
    let before = start - Duration::minutes(10);
    w.messages(ca, &[before, before, before, before], "gpt-4o", (1, 1))
        .await;
    w.messages(ca, &[start + Duration::minutes(1)], "gpt-4o", (1, 1))
        .await;
    w.messages(
        cb,
        &[start, start + Duration::minutes(14), now],
        "gpt-4o",
        (1, 1),
    )
    .await;
    let t = token("edges", "edges@example.com", false);
    let s = w.ok("/api/v1/analytics/my-stats?days=3", &t).await;
    assert_eq!(s["period_messages"], 4);
    assert_eq!(
        s["most_active_workflow"],
        json!({"id": wb.to_string(), "name": "B", "message_count": 3})
    );
    // Over 7 days (whole UTC days in the middle), A leads with 5.
    let s = w.ok("/api/v1/analytics/my-stats?days=7", &t).await;
    assert_eq!(s["period_messages"], 8);
    assert_eq!(s["most_active_workflow"]["id"], wa.to_string());
    assert_eq!(s["most_active_workflow"]["message_count"], 5);
    // In UTC, the same instants, counted here.
    let utc_start = (now.date() - Duration::days(2))
        .with_time(Time::MIDNIGHT)
        .assume_utc();
    let in_utc = |ts: &[OffsetDateTime]| ts.iter().filter(|t| **t >= utc_start).count() as i64;
    let a = in_utc(&[before, before, before, before, start + Duration::minutes(1)]);
    let b = in_utc(&[start, start + Duration::minutes(14), now]);
    let s = w.ok("/api/v1/analytics/my-stats?days=3&tz=UTC", &t).await;
    assert_eq!(s["period_messages"].as_i64(), Some(a + b));
    let best = if a > b || (a == b && wa < wb) {
        (wa, a)
    } else {
        (wb, b)
    };
    if best.1 > 0 {
        assert_eq!(s["most_active_workflow"]["id"], best.0.to_string());
        assert_eq!(s["most_active_workflow"]["message_count"], best.1);
    }

    // Active users: the user's latest own message moves forward, never back,
    // and each user is counted once.
    let o = overview("UTC").await;
    assert_eq!(o["active_users_today"], 1);
    assert_eq!(o["active_users_week"], 1);
    let v = w.user("mover", None, now - Duration::days(20)).await;
    let cv = w.conversation(v, None, now - Duration::days(20)).await;
    w.messages(cv, &[now - Duration::days(5)], "gpt-4o", (1, 1))
        .await;
    let o = overview("UTC").await;
    assert_eq!(
        (
            o["active_users_today"].as_i64(),
            o["active_users_week"].as_i64()
        ),
        (Some(1), Some(2))
    );
    w.messages(cv, &[now], "gpt-4o", (1, 1)).await;
    let o = overview("UTC").await;
    assert_eq!(
        (
            o["active_users_today"].as_i64(),
            o["active_users_week"].as_i64()
        ),
        (Some(2), Some(2))
    );
    // A late message from before does not move anyone back.
    w.messages(cv, &[now - Duration::days(6)], "gpt-4o", (1, 1))
        .await;
    let o = overview("UTC").await;
    assert_eq!(
        (
            o["active_users_today"].as_i64(),
            o["active_users_week"].as_i64()
        ),
        (Some(2), Some(2))
    );

    // Totals: the admin (created on sign-in), edges, mover; a user who signs
    // in before the platform sends them is replaced, not counted twice; a
    // placeholder user and workflow created by a conversation count.
    assert_eq!(
        (o["total_users"].as_i64(), o["total_workflows"].as_i64()),
        (Some(3), Some(2))
    );
    w.ok(
        "/api/v1/analytics/me",
        &token("early", "early@example.com", false),
    )
    .await;
    assert_eq!(overview("UTC").await["total_users"], 4);
    w.user("early", None, now - Duration::days(1)).await;
    let o = overview("UTC").await;
    assert_eq!(o["total_users"], 4);
    let ghost = Uuid::now_v7();
    let cg = w.conversation(ghost, Some(Uuid::now_v7()), now).await;
    let o = overview("UTC").await;
    assert_eq!(
        (o["total_users"].as_i64(), o["total_workflows"].as_i64()),
        (Some(5), Some(3))
    );

    // Funnel cohorts: signed up in the last 30 days are mover and early (edges
    // 40 days ago; the admin and the ghost have no sign-up). mover sent a
    // message.
    assert_eq!(
        o["funnel"],
        json!({"signed_up": 2, "created_component": 0, "created_workflow": 0, "sent_message": 1})
    );
    // The ghost sends a message before their record arrives: not in any
    // cohort yet. When it arrives they join it with the step already reached.
    w.messages(cg, &[now], "gpt-4o", (1, 1)).await;
    assert_eq!(overview("UTC").await["funnel"], o["funnel"]);
    w.ingest(vec![json!({"id": ghost, "type": "user.upsert", "timestamp": rfc(now), "body": {"external_id": "ghost", "email": "ghost@example.com"}})])
        .await;
    let o = overview("UTC").await;
    assert_eq!(
        o["funnel"],
        json!({"signed_up": 3, "created_component": 0, "created_workflow": 0, "sent_message": 2})
    );
    assert_eq!(
        (o["active_users_today"].as_i64(), o["total_users"].as_i64()),
        (Some(3), Some(5))
    );
    // Kolkata's today starts 5:30 before UTC's next midnight: same figures
    // here (every fact is at least a day old or now).
    let k = overview("Asia/Kolkata").await;
    assert_eq!(k["total_users"], o["total_users"]);

    // Everything agrees with a recount, and a rebuild changes nothing.
    let range = charlie_store::maintenance::RollupRange::default();
    let report = w.app.store.verify_rollups(range).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    w.app.store.rebuild_rollups(range).await.unwrap();
    let again = overview("UTC").await;
    assert_eq!(again, o);
    let s2 = w.ok("/api/v1/analytics/my-stats?days=3", &t).await;
    assert_eq!(s2["most_active_workflow"]["id"], wb.to_string());
    let report = w.app.store.verify_rollups(range).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

/// The dashboard reads are one statement each on PostgreSQL; SQLite runs
/// them as several statements. Both must give the same figures, for every
/// zone (heads and tails of partial UTC days, DST) and period length,
/// including ties between workflows and a workflow whose record is missing.
#[tokio::test]
async fn the_one_statement_dashboard_reads_equal_the_step_by_step_reads() {
    use charlie_store::{calendar::Zone, dashboard::OverviewWindow};
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let u = w
        .user("dash", Some("Asia/Kathmandu"), now - Duration::days(80))
        .await;
    let other = w.user("other", None, now - Duration::days(3)).await;
    let (wa, wb, ghost) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    w.ingest(vec![
        json!({"id": wa, "type": "workflow.upsert", "timestamp": rfc(now - Duration::days(70)), "body": {"user_id": u, "name": "A"}}),
        json!({"id": wb, "type": "workflow.upsert", "timestamp": rfc(now - Duration::days(70)), "body": {"user_id": u, "name": "B"}}),
    ])
    .await;
    // Messages every 7 h 13 min over 75 days, spread over three workflows
    // (one never upserted) and none; the other user in the same minutes.
    let (ca, cb) = (
        w.conversation(u, Some(wa), now - Duration::days(75)).await,
        w.conversation(u, Some(wb), now - Duration::days(75)).await,
    );
    let (cg, cn) = (
        w.conversation(u, Some(ghost), now - Duration::days(75))
            .await,
        w.conversation(u, None, now - Duration::days(75)).await,
    );
    let co = w.conversation(other, None, now - Duration::days(3)).await;
    let mut at: Vec<OffsetDateTime> = Vec::new();
    let mut t = now - Duration::days(75);
    while t < now {
        at.push(t);
        t += Duration::minutes(7 * 60 + 13);
    }
    for (i, chunk) in at.chunks(9).enumerate() {
        let c = [ca, cb, cg, cn][i % 4];
        w.messages(c, chunk, "gpt-4o-mini", (100 + i as u64, 30))
            .await;
    }
    w.messages(co, &at[at.len() - 4..], "no-such-model", (10, 1))
        .await;
    w.ingest(vec![
        json!({"id": Uuid::now_v7(), "type": "error.log", "timestamp": rfc(now - Duration::hours(1)), "body": {"service": "openai", "error_type": "RateLimit", "error_message": "429"}}),
    ])
    .await;
    let store = &w.app.store;
    for tz in [
        "UTC",
        "Asia/Kathmandu",
        "Pacific/Kiritimati",
        "Pacific/Niue",
        "America/St_Johns",
        "Europe/Paris",
    ] {
        let zone = Zone::get(tz).unwrap();
        for period in [1u16, 7, 30, 60] {
            let days = zone.days_ending(now, period.max(7)).unwrap();
            for user in [u, other, Uuid::now_v7()] {
                let one = store
                    .user_dashboard(user, &days, usize::from(period))
                    .await
                    .unwrap();
                let steps = store
                    .user_dashboard_by_steps(user, &days, usize::from(period))
                    .await
                    .unwrap();
                assert_eq!(one, steps, "{tz}, {period} days, user {user}");
            }
            let period_days = zone.days_ending(now, period).unwrap();
            let week = zone.days_ending(now, 7).unwrap();
            let window = OverviewWindow {
                today: week[6].first_bucket,
                week: week[0].first_bucket,
                end: week[6].end_bucket,
                funnel_from: period_days[0].first_bucket,
            };
            for admin in [u, Uuid::now_v7()] {
                let one = store.platform_overview(window, admin).await.unwrap();
                let steps = store
                    .platform_overview_by_steps(window, admin)
                    .await
                    .unwrap();
                assert_eq!(one, steps, "overview {tz}, {period} days");
            }
        }
    }
    // The reads are not trivially equal: the user has a top workflow, all
    // three named workflows and the ghost compete, and the week has data.
    let zone = Zone::get("Asia/Kathmandu").unwrap();
    let days = zone.days_ending(now, 60).unwrap();
    let d = store.user_dashboard(u, &days, 60).await.unwrap();
    assert!(d.top_workflow.is_some());
    assert_eq!(d.total_messages, i64::try_from(at.len()).unwrap());
    assert_eq!(d.user.unwrap().timezone.as_deref(), Some("Asia/Kathmandu"));
    assert!(d.usage.total_last(7).message_count > 0);
}
