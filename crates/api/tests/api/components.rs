//! Cost and tokens per Langflow component: `message.create` with
//! `component_id`, placeholders, ownership, waiting messages, the admin's
//! `costs?group_by=component`, `my-stats/components` and its admin mirror,
//! against expectations computed here from what was sent, in zones with
//! 45-minute offsets and with DST.

use crate::helpers::{TestApp, assert_rollups_clean, json, spawn_app, token};
use charlie_store::{calendar::Zone, maintenance::RollupRange};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use time::{Duration, OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339};
use uuid::Uuid;

fn rfc(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

/// A message as sent, with what it should cost.
#[derive(Debug, Clone)]
struct Sent {
    at: OffsetDateTime,
    user: Uuid,
    workflow: Option<Uuid>,
    component: Option<Uuid>,
    input: i64,
    output: i64,
    /// `None`: a model without a price.
    nanos: Option<i64>,
}

/// Figures of a set of messages, as the API names them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Figures {
    messages: i64,
    input: i64,
    output: i64,
    nanos: i64,
    unpriced: i64,
    unpriced_tokens: i64,
}

impl Figures {
    fn add(&mut self, m: &Sent) {
        self.messages += 1;
        self.input += m.input;
        self.output += m.output;
        match m.nanos {
            Some(n) => self.nanos += n,
            None => {
                self.unpriced += 1;
                self.unpriced_tokens += m.input + m.output;
            }
        }
    }

    fn of(v: &Value) -> Figures {
        let n = |f: &str| v[f].as_i64().unwrap_or_else(|| panic!("{f} in {v}"));
        let cost = v["estimated_cost_usd"].to_string();
        Figures {
            messages: n("messages"),
            input: n("input_tokens"),
            output: n("output_tokens"),
            nanos: cost
                .parse::<charlie_domain::Usd>()
                .unwrap()
                .to_nanos()
                .unwrap(),
            unpriced: n("unpriced_messages"),
            unpriced_tokens: n("unpriced_tokens"),
        }
    }
}

struct World {
    app: TestApp,
    key: String,
    sent: Vec<Sent>,
}

impl World {
    async fn new() -> World {
        let app = spawn_app().await;
        let key = app.api_key().await;
        World {
            app,
            key,
            sent: Vec::new(),
        }
    }

    async fn post(&self, items: Vec<Value>) -> Value {
        let resp = self.app.ingest_with(&self.key, &items).await;
        assert_eq!(resp.status(), 207);
        json(resp).await
    }

    async fn ingest(&self, items: Vec<Value>) {
        let body = self.post(items).await;
        assert_eq!(body["errors"], 0, "{body:#}");
    }

    async fn entity(&self, kind: &str, at: OffsetDateTime, body: Value) -> Uuid {
        let id = Uuid::now_v7();
        self.ingest(vec![
            json!({"id": id, "type": kind, "timestamp": rfc(at), "body": body}),
        ])
        .await;
        id
    }

    async fn user(&self, external: &str, tz: &str, at: OffsetDateTime) -> Uuid {
        self.entity(
            "user.upsert",
            at,
            json!({"external_id": external, "email": format!("{external}@example.com"), "timezone": tz}),
        )
        .await
    }

    fn message_item(conversation: Uuid, m: &Sent, id: Uuid) -> Value {
        let model = if m.nanos.is_some() {
            "gpt-4o-mini"
        } else {
            "my-private-model"
        };
        let mut body = json!({"conversation_id": conversation, "role": "assistant", "model": model,
            "usage": {"input_tokens": m.input, "output_tokens": m.output}});
        if let Some(c) = m.component {
            body["component_id"] = json!(c);
        }
        json!({"id": id, "type": "message.create", "timestamp": rfc(m.at), "body": body})
    }

    /// Sends one message and remembers it. gpt-4o-mini costs $0.15 / $0.60
    /// per million input / output tokens: 150 / 600 nano-dollars a token.
    #[allow(clippy::too_many_arguments)]
    async fn message(
        &mut self,
        conversation: (Uuid, Uuid, Option<Uuid>),
        component: Option<Uuid>,
        at: OffsetDateTime,
        input: i64,
        output: i64,
        priced: bool,
    ) {
        let (conversation, user, workflow) = conversation;
        let m = Sent {
            at,
            user,
            workflow,
            component,
            input,
            output,
            nanos: priced.then_some(input * 150 + output * 600),
        };
        self.ingest(vec![Self::message_item(conversation, &m, Uuid::now_v7())])
            .await;
        self.sent.push(m);
    }

    async fn ok(&self, path: &str, token: &str) -> Value {
        let resp = self
            .app
            .client
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = json(resp).await;
        assert_eq!(status, 200, "{path}: {body:#}");
        body
    }

    async fn text(&self, path: &str, token: &str) -> String {
        let resp = self
            .app
            .client
            .get(self.app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap()
    }

    /// Expected figures of the messages sent in `[lo, hi)`, by a key.
    fn expected<K: Ord>(
        &self,
        lo: OffsetDateTime,
        hi: OffsetDateTime,
        key: impl Fn(&Sent) -> Option<K>,
    ) -> BTreeMap<K, Figures> {
        let mut out: BTreeMap<K, Figures> = BTreeMap::new();
        for m in self.sent.iter().filter(|m| m.at >= lo && m.at < hi) {
            if let Some(k) = key(m) {
                out.entry(k).or_default().add(m);
            }
        }
        out
    }

    async fn assert_rollups_verify(&self) {
        assert_rollups_clean(&self.app).await;
    }
}

/// The instant of local midnight starting `date` at a fixed offset.
fn midnight(date: time::Date, offset: UtcOffset) -> OffsetDateTime {
    date.midnight()
        .assume_offset(offset)
        .to_offset(UtcOffset::UTC)
}

fn groups_by_key(costs: &Value) -> BTreeMap<String, Value> {
    costs["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["key"].as_str().unwrap().to_owned(), g.clone()))
        .collect()
}

#[tokio::test]
async fn component_costs_are_exact_in_any_zone_and_add_up_to_the_workflow_totals() {
    let mut w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let long_ago = now - Duration::days(10);
    let kathmandu = UtcOffset::from_hms(5, 45, 0).unwrap();
    let kat = w.user("kat", "Asia/Kathmandu", long_ago).await;
    let nyc = w.user("nyc", "America/New_York", long_ago).await;
    let named = |user: Uuid, name: &str| json!({"user_id": user, "name": name});
    let wk = w
        .entity("workflow.upsert", long_ago, named(kat, "Kat flow"))
        .await;
    let k1 = w
        .entity("component.upsert", long_ago, named(kat, "Planner"))
        .await;
    let k2 = w
        .entity("component.upsert", long_ago, named(kat, "Writer"))
        .await;
    let wn = w
        .entity("workflow.upsert", long_ago, named(nyc, "NY flow"))
        .await;
    let n1 = w
        .entity("component.upsert", long_ago, named(nyc, "Agent"))
        .await;
    let conv = |user: Uuid, workflow: Option<Uuid>| json!({"user_id": user, "workflow_id": workflow, "langflow_session_id": Uuid::now_v7().to_string()});
    let ck = (
        w.entity("conversation.upsert", long_ago, conv(kat, Some(wk)))
            .await,
        kat,
        Some(wk),
    );
    let ck0 = (
        w.entity("conversation.upsert", long_ago, conv(kat, None))
            .await,
        kat,
        None,
    );
    let cn = (
        w.entity("conversation.upsert", long_ago, conv(nyc, Some(wn)))
            .await,
        nyc,
        Some(wn),
    );

    // Kathmandu (+05:45): a two-day period starts at local midnight yesterday.
    let kat_today = now.to_offset(kathmandu).date();
    let kat_start = midnight(kat_today - Duration::days(1), kathmandu);
    let minute = Duration::minutes(1);
    w.message(ck, Some(k1), kat_start - minute, 1000, 100, true)
        .await;
    w.message(ck, Some(k1), kat_start + minute, 1234, 567, true)
        .await;
    w.message(ck, Some(k2), kat_start + Duration::hours(2), 2000, 10, true)
        .await;
    // A message without a component counts for its workflow only.
    w.message(ck, None, kat_start + Duration::hours(3), 500, 500, true)
        .await;
    // The same component outside any workflow, on an unpriced model.
    w.message(
        ck0,
        Some(k2),
        kat_start + Duration::hours(4),
        300,
        200,
        false,
    )
    .await;
    // New York: the same around its own local midnight (DST-aware, from the calendar).
    let ny = Zone::get("America/New_York").unwrap();
    let ny_days = ny.days_ending(now, 2).unwrap();
    let ny_start = OffsetDateTime::from_unix_timestamp(ny_days[0].first_bucket * 900).unwrap();
    w.message(cn, Some(n1), ny_start - minute, 777, 333, true)
        .await;
    w.message(cn, Some(n1), ny_start + minute, 4321, 1234, true)
        .await;
    w.message(cn, Some(n1), ny_start + Duration::hours(5), 11, 13, true)
        .await;
    // The message before today's window of everything: ten days ago.
    w.message(cn, Some(n1), now - Duration::days(9), 5, 7, true)
        .await;

    let admin = token("root", true);
    // Costs by component over Kathmandu's yesterday and today.
    let (from, to) = (kat_today - Duration::days(1), kat_today);
    let (lo, hi) = (
        kat_start,
        midnight(kat_today + Duration::days(1), kathmandu),
    );
    let path = |group: &str, tz: &str, from: time::Date, to: time::Date| {
        format!("/api/v1/analytics/admin/costs?group_by={group}&tz={tz}&from={from}&to={to}")
    };
    let costs = w
        .ok(&path("component", "Asia/Kathmandu", from, to), &admin)
        .await;
    assert_eq!(costs["group_by"], "component");
    let got = groups_by_key(&costs);
    let want = w.expected(lo, hi, |m| m.component.map(|c| c.to_string()));
    assert_eq!(got.len(), want.len(), "{costs:#}");
    for (key, figures) in &want {
        assert_eq!(Figures::of(&got[key]), *figures, "component {key}");
    }
    assert_eq!(got[&k1.to_string()]["label"], "Planner");
    assert_eq!(got[&k1.to_string()]["workflow_id"], wk.to_string());
    assert_eq!(got[&k1.to_string()]["workflow_name"], "Kat flow");
    // Writer ran in a workflow and outside any: no single workflow.
    assert_eq!(got[&k2.to_string()]["label"], "Writer");
    assert!(got[&k2.to_string()].get("workflow_id").is_none());
    // Largest cost first.
    let order: Vec<i64> = costs["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| Figures::of(g).nanos)
        .collect();
    assert!(order.windows(2).all(|p| p[0] >= p[1]), "{order:?}");

    // Consistent with the workflow grouping: each workflow's total is its
    // components' messages plus those that named none.
    let by_workflow = groups_by_key(
        &w.ok(&path("workflow", "Asia/Kathmandu", from, to), &admin)
            .await,
    );
    let want_workflows = w.expected(lo, hi, |m| {
        Some(m.workflow.map(|x| x.to_string()).unwrap_or_default())
    });
    for (key, figures) in &want_workflows {
        assert_eq!(Figures::of(&by_workflow[key]), *figures, "workflow `{key}`");
    }
    let in_components: Figures = want.values().fold(Figures::default(), |mut a, f| {
        a.messages += f.messages;
        a.nanos += f.nanos;
        a
    });
    let all = Figures::of(&costs["totals"]);
    let without: Vec<&Sent> = w
        .sent
        .iter()
        .filter(|m| m.at >= lo && m.at < hi && m.component.is_none())
        .collect();
    assert_eq!(
        all.nanos,
        in_components.nanos + without.iter().filter_map(|m| m.nanos).sum::<i64>()
    );
    assert_eq!(all.messages, in_components.messages + without.len() as i64);

    // The same in New York's days: other edges, other sums.
    let ny_to = ny_days[1].date;
    let ny_hi = OffsetDateTime::from_unix_timestamp(ny_days[1].end_bucket * 900).unwrap();
    let ny_costs = w
        .ok(
            &path("component", "America/New_York", ny_days[0].date, ny_to),
            &admin,
        )
        .await;
    let got = groups_by_key(&ny_costs);
    let want_ny = w.expected(ny_start, ny_hi, |m| m.component.map(|c| c.to_string()));
    assert_eq!(got.len(), want_ny.len());
    for (key, figures) in &want_ny {
        assert_eq!(Figures::of(&got[key]), *figures, "NY component {key}");
    }
    // Checked in New York's window, which always holds its messages:
    // Kathmandu's two days hold them only part of the day (from 18:15 UTC,
    // Kathmandu's yesterday starts after New York's messages; the test
    // failed then).
    assert_eq!(got[&n1.to_string()]["workflow_name"], "NY flow");

    // CSV: the key, then the component's name and workflow.
    let csv = w
        .text(
            &format!(
                "{}&format=csv",
                path("component", "Asia/Kathmandu", from, to)
            ),
            &admin,
        )
        .await;
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "component,component_name,workflow_id,workflow_name,messages,input_tokens,output_tokens,cache_read_tokens,cache_write_tokens,reasoning_tokens,total_tokens,estimated_cost_usd,unpriced_messages,unpriced_tokens"
        )
    );
    let planner = lines
        .find(|l| l.starts_with(&k1.to_string()))
        .expect("Planner's line");
    let f = want[&k1.to_string()];
    assert_eq!(
        planner,
        format!(
            "{k1},Planner,{wk},Kat flow,{},{},{},0,0,0,{},{},0,0",
            f.messages,
            f.input,
            f.output,
            f.input + f.output,
            charlie_domain::Usd::from_nanos(f.nanos)
        )
    );

    // The user's own breakdown, in their stored zone: per workflow, its components.
    let mine = w
        .ok(
            "/api/v1/analytics/my-stats/components?days=2",
            &token("kat", false),
        )
        .await;
    assert_eq!(mine["timezone"], "Asia/Kathmandu");
    assert_eq!(mine["from"], from.to_string());
    assert_eq!(mine["to"], to.to_string());
    let workflows = mine["workflows"].as_array().unwrap();
    let want_kat = w.expected(lo, hi, |m| {
        (m.user == kat)
            .then_some(
                m.component
                    .map(|c| (m.workflow.map(|x| x.to_string()), c.to_string())),
            )
            .flatten()
    });
    let mut seen = 0;
    for wf in workflows {
        let id = wf["workflow_id"].as_str().map(str::to_owned);
        let mut sum = Figures::default();
        for c in wf["components"].as_array().unwrap() {
            let key = (id.clone(), c["component_id"].as_str().unwrap().to_owned());
            assert_eq!(Figures::of(&c["usage"]), want_kat[&key], "{key:?}");
            let f = Figures::of(&c["usage"]);
            sum.messages += f.messages;
            sum.input += f.input;
            sum.output += f.output;
            sum.nanos += f.nanos;
            sum.unpriced += f.unpriced;
            sum.unpriced_tokens += f.unpriced_tokens;
            seen += 1;
        }
        assert_eq!(Figures::of(&wf["usage"]), sum);
    }
    assert_eq!(seen, want_kat.len());
    assert_eq!(workflows[0]["workflow_id"], wk.to_string());
    assert_eq!(workflows[0]["workflow_name"], "Kat flow");
    assert_eq!(workflows[1]["workflow_id"], Value::Null);
    assert_eq!(workflows[1]["components"][0]["name"], "Writer");
    // The admin sees exactly the same.
    let mirror = w
        .ok(
            &format!("/api/v1/analytics/admin/users/{kat}/components?days=2"),
            &admin,
        )
        .await;
    assert_eq!(mirror, mine);
    // New York's user: the message before their local midnight is not in it.
    let theirs = w
        .ok(
            "/api/v1/analytics/my-stats/components?days=2",
            &token("nyc", false),
        )
        .await;
    assert_eq!(
        Figures::of(&theirs["totals"]),
        w.expected(ny_start, ny_hi, |m| (m.user == nyc).then_some(()))[&()]
    );

    // The rollups agree with a recount; a rebuild changes nothing.
    w.assert_rollups_verify().await;
    w.app
        .store
        .rebuild_rollups(RollupRange::default())
        .await
        .unwrap();
    w.app
        .store
        .rebuild_rollups(RollupRange::default())
        .await
        .unwrap();
    w.assert_rollups_verify().await;
    assert_eq!(
        w.ok(&path("component", "Asia/Kathmandu", from, to), &admin)
            .await,
        costs
    );
    assert_eq!(
        w.ok(
            "/api/v1/analytics/my-stats/components?days=2",
            &token("kat", false)
        )
        .await,
        mine
    );
}

#[tokio::test]
async fn unknown_components_get_a_placeholder_and_waiting_messages_keep_theirs() {
    let mut w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let ago = now - Duration::hours(2);
    let ann = w.user("ann", "UTC", ago).await;
    let wf = w
        .entity(
            "workflow.upsert",
            ago,
            json!({"user_id": ann, "name": "Flow"}),
        )
        .await;
    let conv = w
        .entity(
            "conversation.upsert",
            ago,
            json!({"user_id": ann, "workflow_id": wf}),
        )
        .await;
    // A component nobody has described yet.
    let ghost = Uuid::now_v7();
    w.message(
        (conv, ann, Some(wf)),
        Some(ghost),
        ago + Duration::minutes(1),
        100,
        10,
        true,
    )
    .await;
    assert_eq!(
        w.app
            .store
            .scalar_for_tests(
                "SELECT COUNT(*) FROM agent_components WHERE is_placeholder AND name = ''"
            )
            .await
            .unwrap(),
        1
    );
    let admin = token("root", true);
    let today = now.date();
    let costs_path = format!(
        "/api/v1/analytics/admin/costs?group_by=component&tz=UTC&from={}&to={today}",
        today - Duration::days(1)
    );
    let groups = groups_by_key(&w.ok(&costs_path, &admin).await);
    assert_eq!(groups[&ghost.to_string()]["label"], "");
    // Its own upsert names it (and it is the component's creation).
    let body = w
        .post(vec![
            json!({"id": ghost, "type": "component.upsert", "timestamp": rfc(now),
            "body": {"user_id": ann, "name": "Late name"}}),
        ])
        .await;
    assert_eq!(body["results"][0]["outcome"], "created", "{body:#}");
    let groups = groups_by_key(&w.ok(&costs_path, &admin).await);
    assert_eq!(groups[&ghost.to_string()]["label"], "Late name");
    assert_eq!(groups[&ghost.to_string()]["messages"], 1);

    // A message whose conversation is not known yet waits with its component.
    let later_conv = Uuid::now_v7();
    let waiting = Sent {
        at: ago + Duration::minutes(5),
        user: ann,
        workflow: None,
        component: Some(ghost),
        input: 40,
        output: 4,
        nanos: Some(40 * 150 + 4 * 600),
    };
    let body = w
        .post(vec![World::message_item(
            later_conv,
            &waiting,
            Uuid::now_v7(),
        )])
        .await;
    assert_eq!(body["results"][0]["outcome"], "created");
    assert_eq!(
        groups_by_key(&w.ok(&costs_path, &admin).await)[&ghost.to_string()]["messages"],
        1
    );
    w.ingest(vec![
        json!({"id": later_conv, "type": "conversation.upsert", "timestamp": rfc(ago),
        "body": {"user_id": ann}}),
    ])
    .await;
    w.sent.push(waiting);
    let groups = groups_by_key(&w.ok(&costs_path, &admin).await);
    let want = w.expected(now - Duration::days(2), now + Duration::days(1), |m| {
        m.component
    });
    assert_eq!(Figures::of(&groups[&ghost.to_string()]), want[&ghost]);
    // The user's breakdown has it under "no workflow" too. Two days, not
    // one: the message is 1h55m old, which is yesterday just after midnight.
    let mine = w
        .ok(
            "/api/v1/analytics/my-stats/components?days=2",
            &token("ann", false),
        )
        .await;
    let none = mine["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["workflow_id"].is_null())
        .expect("the no-workflow group");
    assert_eq!(none["components"][0]["name"], "Late name");
    assert_eq!(none["usage"]["messages"], 1);
    w.assert_rollups_verify().await;
}

#[tokio::test]
async fn a_component_of_another_user_refuses_the_message_with_conflict() {
    let w = World::new().await;
    let now = OffsetDateTime::now_utc();
    let ago = now - Duration::hours(1);
    let ann = w.user("ann2", "UTC", ago).await;
    let ben = w.user("ben2", "UTC", ago).await;
    let bens = w
        .entity(
            "component.upsert",
            ago,
            json!({"user_id": ben, "name": "Ben's"}),
        )
        .await;
    let conv = w
        .entity("conversation.upsert", ago, json!({"user_id": ann}))
        .await;
    let m = Sent {
        at: now - Duration::minutes(5),
        user: ann,
        workflow: None,
        component: Some(bens),
        input: 10,
        output: 10,
        nanos: Some(10 * 150 + 10 * 600),
    };
    let id = Uuid::now_v7();
    let item = World::message_item(conv, &m, id);
    let ok = Sent {
        component: None,
        ..m.clone()
    };
    let body = w
        .post(vec![
            item.clone(),
            World::message_item(conv, &ok, Uuid::now_v7()),
        ])
        .await;
    assert_eq!(body["results"][0]["outcome"], "error", "{body:#}");
    assert_eq!(body["results"][0]["error"]["code"], "conflict");
    assert_eq!(body["results"][1]["outcome"], "created");
    // Nothing of it was kept: the same item is refused again, not a duplicate.
    let body = w.post(vec![item]).await;
    assert_eq!(body["results"][0]["error"]["code"], "conflict", "{body:#}");
    assert_eq!(
        w.app
            .store
            .scalar_for_tests("SELECT COUNT(*) FROM messages")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        w.app
            .store
            .scalar_for_tests("SELECT COUNT(*) FROM component_buckets")
            .await
            .unwrap(),
        0
    );
    w.assert_rollups_verify().await;
}
