//! `charlie-dev demo`: realistic data for newcomers, written through
//! [`charlie_api::service::ingest::ingest`] (the code path of `POST /api/v1/ingest`), then an
//! ingestion API key and two session tokens signed with the development key.
//!
//! The data is generated from a seeded RNG and named ids (UUID v5), per
//! absolute UTC day: running the command again the same day changes nothing
//! (every item comes back `duplicate`); on a later day it adds the new days.

use crate::samples::{self, Shape};
use charlie_api::service::ingest::BatchReport;
use charlie_api::{Settings, auth::jwt};
use charlie_domain::rfc3339 as ts;
use charlie_pricing::Catalog;
use charlie_store::{Store, StoreError, ingest::Outcome};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Map, Value, json};
use std::fmt::Write as _;
use time::{Date, Duration, OffsetDateTime, Time};
use uuid::Uuid;

/// Days of history, today included.
pub const DAYS: i64 = 60;
/// How long the printed tokens stay valid.
pub const TOKEN_LIFETIME: Duration = Duration::days(30);
/// Items per ingest call.
const BATCH: usize = 500;
/// Namespace of the demo's named ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_0c2e_9b7d_4f3a_8e51_d0c4_b2a9_7e13);
const SEED: u64 = 0x00c4_a71e;

/// A demo user: external id, name, e-mail, IANA zone, its rough UTC offset
/// in minutes (to place activity in local daytime), and how often they are
/// active (share of days).
struct DemoUser {
    external_id: &'static str,
    email: &'static str,
    timezone: Option<&'static str>,
    offset_minutes: i64,
    activity: f64,
    budget_usd: Option<&'static str>,
}

const fn user(
    external_id: &'static str,
    email: &'static str,
    timezone: Option<&'static str>,
    offset_minutes: i64,
    activity: f64,
    budget_usd: Option<&'static str>,
) -> DemoUser {
    DemoUser {
        external_id,
        email,
        timezone,
        offset_minutes,
        activity,
        budget_usd,
    }
}

/// The admin is the first user; the user token is for the second.
const USERS: [DemoUser; 20] = [
    user(
        "user_demo_admin",
        "admin@example.com",
        Some("America/New_York"),
        -300,
        0.5,
        None,
    ),
    user(
        "user_demo_priya",
        "priya.sharma@example.com",
        Some("Asia/Kolkata"),
        330,
        0.85,
        Some("25.00"),
    ),
    user(
        "user_demo_marcus",
        "marcus.johnson@example.com",
        Some("America/New_York"),
        -300,
        0.6,
        None,
    ),
    user(
        "user_demo_sofia",
        "sofia.garcia@example.com",
        Some("Europe/Madrid"),
        60,
        0.45,
        None,
    ),
    user(
        "user_demo_kenji",
        "kenji.tanaka@example.com",
        Some("Asia/Tokyo"),
        540,
        0.4,
        Some("10.00"),
    ),
    user(
        "user_demo_amara",
        "amara.okafor@example.com",
        Some("Africa/Lagos"),
        60,
        0.35,
        None,
    ),
    user(
        "user_demo_liam",
        "liam.murphy@example.com",
        Some("Europe/London"),
        0,
        0.3,
        None,
    ),
    user(
        "user_demo_chloe",
        "chloe.nguyen@example.com",
        Some("America/Los_Angeles"),
        -480,
        0.55,
        None,
    ),
    user(
        "user_demo_arjun",
        "arjun.mehta@example.com",
        Some("Asia/Kolkata"),
        330,
        0.5,
        None,
    ),
    user(
        "user_demo_sita",
        "sita.gurung@example.com",
        Some("Asia/Kathmandu"),
        345,
        0.3,
        None,
    ),
    user(
        "user_demo_noah",
        "noah.wilson@example.com",
        Some("Australia/Sydney"),
        600,
        0.25,
        None,
    ),
    user(
        "user_demo_lucas",
        "lucas.silva@example.com",
        Some("America/Sao_Paulo"),
        -180,
        0.35,
        None,
    ),
    user(
        "user_demo_emma",
        "emma.schmidt@example.com",
        Some("Europe/Berlin"),
        60,
        0.4,
        Some("50.00"),
    ),
    user(
        "user_demo_omar",
        "omar.haddad@example.com",
        Some("Asia/Dubai"),
        240,
        0.2,
        None,
    ),
    user(
        "user_demo_mei",
        "mei.chen@example.com",
        Some("Asia/Shanghai"),
        480,
        0.3,
        None,
    ),
    user(
        "user_demo_diego",
        "diego.ramirez@example.com",
        Some("America/Mexico_City"),
        -360,
        0.25,
        None,
    ),
    user(
        "user_demo_hannah",
        "hannah.lee@example.com",
        Some("America/Chicago"),
        -360,
        0.15,
        None,
    ),
    user(
        "user_demo_ravi",
        "ravi.iyer@example.com",
        Some("Asia/Kolkata"),
        330,
        0.2,
        None,
    ),
    user(
        "user_demo_zoe",
        "zoe.martin@example.com",
        Some("America/New_York"),
        -300,
        0.1,
        None,
    ),
    user(
        "user_demo_tom",
        "tom.baker@example.com",
        None,
        0,
        0.05,
        None,
    ),
];

const WORKFLOW_NAMES: [&str; 8] = [
    "Homework Helper",
    "Lesson Planner",
    "Customer Support Bot",
    "Quiz Generator",
    "Reading Buddy",
    "Essay Feedback",
    "Science Explainer",
    "Parent Newsletter Writer",
];
const COMPONENT_NAMES: [&str; 6] = [
    "Web Search Tool",
    "PDF Reader",
    "Rubric Checker",
    "Vocabulary Lookup",
    "Google Drive Loader",
    "Math Solver",
];

/// The models the demo's assistants answer with, and the response shape
/// each provider returns. The last two have no built-in price.
const MODELS: [(&str, Shape); 9] = [
    ("gpt-4o-2024-08-06", Shape::OpenAi),
    ("gpt-4o-mini-2024-07-18", Shape::OpenAi),
    ("gpt-4o-mini-2024-07-18", Shape::LangChain),
    ("gpt-4.1-mini", Shape::OpenAi),
    ("claude-sonnet-4-20250514", Shape::Anthropic),
    ("claude-haiku-4-5-20251001", Shape::Anthropic),
    ("gemini-2.5-flash", Shape::Gemini),
    ("charlie-tutor-ft-v2", Shape::OpenAi),
    ("acme-edu-llm-7b", Shape::LangChain),
];

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "refusing to run with APP_ENV=production: the demo writes made-up data and prints tokens signed with the public development key"
    )]
    Production,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{count} demo items were refused, e.g. {first}")]
    Items { count: usize, first: String },
    #[error("cannot sign the demo tokens: {0}")]
    Token(String),
    #[error("{0}")]
    Setup(String),
}

/// Counts of one kind of item.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub duplicate: usize,
}

impl Counts {
    fn total(&self) -> usize {
        self.created + self.updated + self.duplicate
    }
}

/// What the demo wrote and the credentials it made.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// A token of the admin user (valid [`TOKEN_LIFETIME`]).
    pub admin_token: String,
    /// A token of a regular user ([`DemoReport::user_external_id`]).
    pub user_token: String,
    /// A new ingestion API key.
    pub api_key: String,
    pub admin_email: String,
    pub user_email: String,
    pub user_external_id: String,
    /// `users.id` of the regular user (the platform's id, as ingested).
    pub user_id: Uuid,
    /// Per item type (`user.upsert`, …), in ingestion order.
    pub counts: Vec<(&'static str, Counts)>,
    /// Messages priced with a built-in price, and messages whose model has
    /// no price (counted apart, never as $0).
    pub priced_messages: usize,
    pub unpriced_messages: usize,
}

fn id(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

fn user_id(u: &DemoUser) -> Uuid {
    id(&format!("user/{}", u.external_id))
}

fn item(id: Uuid, kind: &str, at: OffsetDateTime, body: Value) -> Value {
    json!({"id": id, "type": kind, "timestamp": ts(at), "body": body})
}

/// The day a user signed up: spread over the first 50 days of the window, so
/// that recent periods have sign-ups too (the admin funnel).
fn signup_date(index: usize, today: Date) -> Date {
    today - Duration::days(DAYS - 1) + Duration::days(((index * 7) % 50) as i64)
}

/// `date` at local `hour:minute` of a user, as UTC.
fn local_time(u: &DemoUser, date: Date, seconds_of_day: i64) -> OffsetDateTime {
    date.with_time(Time::MIDNIGHT).assume_utc() + Duration::seconds(seconds_of_day)
        - Duration::minutes(u.offset_minutes)
}

/// A provider response for `model` in its own shape.
fn llm_response(rng: &mut StdRng, model: &str, shape: Shape) -> Value {
    let (input, output, cached) = samples::draw_usage(rng);
    samples::llm_response(rng, model, shape, input, output, cached)
}

const ERRORS: [(&str, &str, &str, Option<&str>, &str); 6] = [
    (
        "langflow",
        "RateLimitError",
        "Rate limit reached for gpt-4o on tokens per min (TPM): Limit 30000, Used 29847, Requested 1520.",
        Some("429"),
        "/api/v1/run",
    ),
    (
        "backend",
        "TimeoutError",
        "Langflow did not answer within 60 seconds",
        Some("504"),
        "/api/v1/chat",
    ),
    (
        "backend",
        "ValidationError",
        "Workflow has no Chat Output component; add one before publishing",
        Some("422"),
        "/api/v1/workflows/publish",
    ),
    (
        "frontend",
        "TypeError",
        "Cannot read properties of undefined (reading 'nodes')",
        None,
        "/canvas",
    ),
    (
        "langflow",
        "ComponentBuildError",
        "Error building Component OpenAI Embeddings: Incorrect API key provided",
        Some("500"),
        "/api/v1/build",
    ),
    (
        "backend",
        "DatabaseError",
        "could not obtain a connection from the pool within 10 s",
        Some("503"),
        "/api/v1/flows",
    ),
];

/// Every demo item up to `now`, in ingestion phases (users; workflows and
/// components; conversations; messages; events and errors).
pub fn items(now: OffsetDateTime) -> Vec<Vec<Value>> {
    let today = now.date();
    let mut users = Vec::new();
    let mut named = Vec::new();
    let mut conversations = Vec::new();
    let mut messages = Vec::new();
    let mut rest = Vec::new();
    let push_if_past = |list: &mut Vec<Value>, v: Value, at: OffsetDateTime| {
        if at <= now {
            list.push(v);
        }
    };
    for (index, u) in USERS.iter().enumerate() {
        let uid = user_id(u);
        let signup = signup_date(index, today);
        let signed_up_at = local_time(u, signup, 10 * 3600 + 7 * 60);
        if signed_up_at > now {
            continue;
        }
        let mut body = json!({"external_id": u.external_id, "email": u.email});
        if let Some(tz) = u.timezone {
            body["timezone"] = json!(tz);
        }
        if let Some(budget) = u.budget_usd {
            body["monthly_budget_usd"] = json!(budget);
        }
        users.push(item(uid, "user.upsert", signed_up_at, body));
        let mut rng = StdRng::seed_from_u64(SEED ^ (index as u64) << 40);
        let event = |name: &str, kind: &str, at: OffsetDateTime, extra: Value| {
            let mut body = json!({"user_id": uid, "event_type": kind});
            if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
                b.extend(x);
            }
            item(
                id(&format!("event/{}/{signup}/{name}", u.external_id)),
                "event.track",
                at,
                body,
            )
        };
        push_if_past(
            &mut rest,
            event(
                "onboarding_started",
                "onboarding_started",
                signed_up_at + Duration::minutes(2),
                json!({}),
            ),
            signed_up_at + Duration::minutes(2),
        );
        if rng.random_bool(0.75) {
            let at = signed_up_at + Duration::minutes(rng.random_range(8..40));
            push_if_past(
                &mut rest,
                event(
                    "onboarding_completed",
                    "onboarding_completed",
                    at,
                    json!({}),
                ),
                at,
            );
        }
        let workflow_count = 1 + index % 3 + usize::from(index == 1);
        let mut workflows = Vec::new();
        for w in 0..workflow_count {
            let wid = id(&format!("workflow/{}/{w}", u.external_id));
            let at = signed_up_at + Duration::hours(1) + Duration::days(w as i64 * 4);
            let name = WORKFLOW_NAMES[(index + w * 3) % WORKFLOW_NAMES.len()];
            push_if_past(
                &mut named,
                item(
                    wid,
                    "workflow.upsert",
                    at,
                    json!({"user_id": uid, "name": name}),
                ),
                at,
            );
            if at <= now {
                workflows.push(wid);
            }
            let published = at + Duration::days(2);
            if w == 0 && index % 4 != 3 {
                push_if_past(
                    &mut rest,
                    event(
                        &format!("publish/{w}"),
                        "workflow_published",
                        published,
                        json!({"workflow_id": wid}),
                    ),
                    published,
                );
            }
        }
        for c in 0..(index % 3) {
            let cid = id(&format!("component/{}/{c}", u.external_id));
            let at = signed_up_at + Duration::hours(3) + Duration::days(c as i64 * 6);
            let name = COMPONENT_NAMES[(index + c) % COMPONENT_NAMES.len()];
            push_if_past(
                &mut named,
                item(
                    cid,
                    "component.upsert",
                    at,
                    json!({"user_id": uid, "name": name}),
                ),
                at,
            );
        }
        if workflows.is_empty() {
            continue;
        }
        let preferred = index % MODELS.len().saturating_sub(2);
        for offset in 0..=(today - signup).whole_days() {
            let date = signup + Duration::days(offset);
            let day = date.to_julian_day() as u64;
            let mut rng = StdRng::seed_from_u64(SEED ^ (day << 8) ^ index as u64);
            let weekend = date.weekday().number_from_monday() >= 6;
            let p = if weekend {
                u.activity * 0.5
            } else {
                u.activity
            };
            if date == signup || rng.random_bool(p) {
                day_activity(
                    &mut rng,
                    u,
                    index,
                    date,
                    &workflows,
                    preferred,
                    now,
                    (&mut conversations, &mut messages, &mut rest),
                );
            }
        }
    }
    // A few failures no user caused (health checks, background jobs).
    for offset in 0..DAYS {
        let date = today - Duration::days(DAYS - 1 - offset);
        let day = date.to_julian_day() as u64;
        let mut rng = StdRng::seed_from_u64(SEED ^ (day << 8) ^ 0xff);
        if rng.random_bool(0.2) {
            let at = date.with_time(Time::MIDNIGHT).assume_utc()
                + Duration::seconds(rng.random_range(0..86_400));
            let (service, kind, message, code, endpoint) = ERRORS[5];
            push_if_past(
                &mut rest,
                item(
                    id(&format!("error/system/{date}")),
                    "error.log",
                    at,
                    json!({"service": service, "error_type": kind, "error_message": message,
                           "error_code": code, "endpoint": endpoint,
                           "request_id": format!("req_{:016x}", rng.random::<u64>())}),
                ),
                at,
            );
        }
    }
    vec![users, named, conversations, messages, rest]
}

/// One active day of a user: conversations with messages, events, errors.
#[allow(clippy::too_many_arguments)]
fn day_activity(
    rng: &mut StdRng,
    u: &DemoUser,
    index: usize,
    date: Date,
    workflows: &[Uuid],
    preferred: usize,
    now: OffsetDateTime,
    (conversations, messages, rest): (&mut Vec<Value>, &mut Vec<Value>, &mut Vec<Value>),
) {
    let uid = user_id(u);
    let key = format!("{}/{date}", u.external_id);
    let max_conversations = if index == 1 { 4 } else { 2 };
    let count = rng.random_range(1..=max_conversations);
    let mut start = rng.random_range(8 * 3600..20 * 3600);
    if rng.random_bool(0.3) {
        let wid = workflows[rng.random_range(0..workflows.len())];
        let at = local_time(u, date, start - 600);
        if at <= now {
            rest.push(item(
                id(&format!("event/{key}/canvas")),
                "event.track",
                at,
                json!({"user_id": uid, "event_type": "canvas_opened", "workflow_id": wid}),
            ));
            for n in 0..rng.random_range(0..4) {
                let node_at = at + Duration::seconds(40 * (n + 1));
                // Opened minutes before now: its later nodes are not there yet.
                if node_at > now {
                    continue;
                }
                rest.push(item(
                    id(&format!("event/{key}/node/{n}")),
                    "event.track",
                    node_at,
                    json!({"user_id": uid, "event_type": "node_added", "workflow_id": wid,
                           "metadata": {"node_type": COMPONENT_NAMES[(n as usize + index) % COMPONENT_NAMES.len()]}}),
                ));
            }
        }
    }
    for k in 0..count {
        let conv = id(&format!("conversation/{key}/{k}"));
        let wid = workflows[rng.random_range(0..workflows.len())];
        let first = local_time(u, date, start);
        if first > now {
            return;
        }
        conversations.push(item(
            conv,
            "conversation.upsert",
            first,
            json!({"user_id": uid, "workflow_id": wid,
                   "langflow_session_id": format!("session-{}", id(&format!("session/{key}/{k}")).simple())}),
        ));
        let mut t = first;
        let exchanges = rng.random_range(1..=4);
        for m in 0..exchanges {
            if t > now {
                break;
            }
            messages.push(item(
                id(&format!("message/{key}/{k}/{m}/user")),
                "message.create",
                t,
                json!({"conversation_id": conv, "role": "user"}),
            ));
            let answered = t + Duration::seconds(rng.random_range(2..40));
            let (model, shape) = if rng.random_bool(0.04) {
                MODELS[MODELS.len() - 1 - rng.random_range(0..2)]
            } else if rng.random_bool(0.7) {
                MODELS[preferred]
            } else {
                MODELS[rng.random_range(0..MODELS.len() - 2)]
            };
            let response = llm_response(rng, model, shape);
            if answered <= now {
                messages.push(item(
                    id(&format!("message/{key}/{k}/{m}/assistant")),
                    "message.create",
                    answered,
                    json!({"conversation_id": conv, "role": "assistant", "llm_response": response}),
                ));
            }
            if rng.random_bool(0.03) && answered <= now {
                let (service, kind, message, code, endpoint) = ERRORS[rng.random_range(0..5)];
                rest.push(item(
                    id(&format!("error/{key}/{k}/{m}")),
                    "error.log",
                    answered,
                    json!({"service": service, "error_type": kind, "error_message": message,
                           "error_code": code, "endpoint": endpoint, "user_id": uid, "workflow_id": wid,
                           "request_id": format!("req_{:016x}", rng.random::<u64>()),
                           "sentry_event_id": format!("{:016x}{:016x}", rng.random::<u64>(), rng.random::<u64>())}),
                ));
            }
            t = answered + Duration::seconds(rng.random_range(30..400));
        }
        if rng.random_bool(0.5) && t <= now {
            rest.push(item(
                id(&format!("event/{key}/{k}/completed")),
                "event.track",
                t,
                json!({"user_id": uid, "event_type": "conversation_completed", "workflow_id": wid,
                       "conversation_id": conv}),
            ));
        }
        start += rng.random_range(1800..4 * 3600);
    }
}

/// Sets `value` at a dotted `path` of `claims` (`public_metadata.role`).
fn set_claim(claims: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            claims.insert(path.to_owned(), value);
        }
        Some((head, tail)) => {
            let entry = claims
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                set_claim(inner, tail, value);
            }
        }
    }
}

/// A development token for `sub`, shaped for this server's settings
/// (issuer, audience, e-mail and role claims).
pub fn demo_token(
    settings: &Settings,
    sub: &str,
    email: &str,
    admin: bool,
    now: OffsetDateTime,
) -> Result<String, DemoError> {
    let auth = &settings.auth;
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(sub));
    claims.insert(
        "iss".into(),
        json!(auth.issuer.as_deref().unwrap_or("charlie-stats-demo")),
    );
    if let Some(aud) = auth.audience.first() {
        claims.insert("aud".into(), json!(aud));
    }
    claims.insert("iat".into(), json!(now.unix_timestamp()));
    claims.insert("nbf".into(), json!(now.unix_timestamp()));
    claims.insert("exp".into(), json!((now + TOKEN_LIFETIME).unix_timestamp()));
    set_claim(&mut claims, &auth.email_claim, json!(email));
    if admin {
        set_claim(&mut claims, &auth.role_claim, json!(auth.admin_role));
    }
    jwt::sign_demo_token(&Value::Object(claims)).map_err(DemoError::Token)
}

/// Seeds the demo data up to `now`, creates an API key and signs the
/// tokens. Refuses to run in production.
pub async fn run(
    store: &Store,
    settings: &Settings,
    catalog: &Catalog,
    now: OffsetDateTime,
) -> Result<DemoReport, DemoError> {
    if settings.is_production() {
        return Err(DemoError::Production);
    }
    let names = [
        "user.upsert",
        "workflow.upsert",
        "component.upsert",
        "conversation.upsert",
        "message.create",
        "event.track",
        "error.log",
    ];
    let mut counts: Vec<(&'static str, Counts)> =
        names.iter().map(|n| (*n, Counts::default())).collect();
    let (mut priced, mut unpriced) = (0, 0);
    let mut refused = Vec::new();
    for phase in items(now) {
        for chunk in phase.chunks(BATCH) {
            let report: BatchReport =
                charlie_api::service::ingest::ingest(store, chunk, catalog, now).await?;
            for (raw, result) in chunk.iter().zip(&report.results) {
                let kind = raw["type"].as_str().unwrap_or_default();
                let Some((_, c)) = counts.iter_mut().find(|(n, _)| *n == kind) else {
                    continue;
                };
                match result.outcome {
                    Outcome::Created => c.created += 1,
                    Outcome::Updated => c.updated += 1,
                    Outcome::Duplicate => c.duplicate += 1,
                    Outcome::Error => refused.push(format!(
                        "{kind} {}: {}",
                        raw["id"],
                        result
                            .error
                            .as_ref()
                            .map(|e| e.message.as_str())
                            .unwrap_or("refused")
                    )),
                }
                match result.pricing.as_ref().map(|p| p.status.as_str()) {
                    Some("priced") => priced += 1,
                    Some("unpriced") => unpriced += 1,
                    _ => {}
                }
            }
        }
    }
    if let Some(first) = refused.first() {
        return Err(DemoError::Items {
            count: refused.len(),
            first: first.clone(),
        });
    }
    let key = store.create_api_key(&format!("demo {}", ts(now))).await?;
    let admin = &USERS[0];
    let regular = &USERS[1];
    Ok(DemoReport {
        admin_token: demo_token(settings, admin.external_id, admin.email, true, now)?,
        user_token: demo_token(settings, regular.external_id, regular.email, false, now)?,
        api_key: key.key,
        admin_email: admin.email.into(),
        user_email: regular.email.into(),
        user_external_id: regular.external_id.into(),
        user_id: user_id(regular),
        counts,
        priced_messages: priced,
        unpriced_messages: unpriced,
    })
}

/// The text `charlie-dev demo` prints: what was written, the
/// credentials, and curl lines against `base_url`.
pub fn render(report: &DemoReport, base_url: &str, now: OffsetDateTime) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Demo data ({DAYS} days up to {}):",
        ts(now.replace_nanosecond(0).unwrap_or(now))
    );
    for (kind, c) in &report.counts {
        let _ = writeln!(
            out,
            "  {kind:<20} {:>6} items ({} new, {} updated, {} already there)",
            c.total(),
            c.created,
            c.updated,
            c.duplicate
        );
    }
    let _ = writeln!(
        out,
        "  messages with usage: {} priced, {} with no known price (counted apart, never as $0)",
        report.priced_messages, report.unpriced_messages
    );
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let expires = ts(now + TOKEN_LIFETIME);
    let _ = write!(
        out,
        "
Credentials (the tokens are signed with the development key, which the server
accepts only when APP_ENV=development; they are valid until {expires}):

  # ingestion API key (shown once; only its hash is stored)
  export API_KEY='{api_key}'
  # admin: {admin_email} (admin role claim)
  export ADMIN_TOKEN='{admin_token}'
  # user: {user_email} (sub {user_sub})
  export USER_TOKEN='{user_token}'

Start the server in another terminal (`cargo run`), then:

  curl -s {base}/api/v1/analytics/me -H \"Authorization: Bearer $USER_TOKEN\"
  curl -s '{base}/api/v1/analytics/my-stats?days=30' -H \"Authorization: Bearer $USER_TOKEN\"
  curl -s {base}/api/v1/analytics/me -H \"Authorization: Bearer $ADMIN_TOKEN\"
  curl -s '{base}/api/v1/analytics/admin/overview?days=30' -H \"Authorization: Bearer $ADMIN_TOKEN\"
  curl -s '{base}/api/v1/analytics/admin/errors?limit=20' -H \"Authorization: Bearer $ADMIN_TOKEN\"
  curl -s -X POST {base}/api/v1/ingest -H \"Authorization: Bearer $API_KEY\" \\
    -H 'Content-Type: application/json' \\
    -d '{{\"batch\": [{{\"id\": \"{event_id}\", \"type\": \"event.track\", \"timestamp\": \"{now}\", \"body\": {{\"user_id\": \"{user_id}\", \"event_type\": \"canvas_opened\"}}}}]}}'
",
        api_key = report.api_key,
        admin_email = report.admin_email,
        admin_token = report.admin_token,
        user_email = report.user_email,
        user_sub = report.user_external_id,
        user_token = report.user_token,
        base = base_url,
        event_id = Uuid::new_v4(),
        now = ts(now),
        user_id = report.user_id,
    );
    out
}

/// `charlie-dev demo [--json]`: opens and migrates the database, seeds,
/// and prints.
pub async fn command(settings: Settings, json: bool) -> Result<(), DemoError> {
    if settings.is_production() {
        return Err(DemoError::Production);
    }
    let catalog = charlie_api::pricing::load_catalog(&settings)
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let store = Store::connect(settings.database_url.expose()).await?;
    store.migrate_up().await?;
    let now = OffsetDateTime::now_utc();
    let report = run(&store, &settings, &catalog, now).await?;
    if json {
        println!("{}", render_json(&report));
    } else {
        let addr = settings.bind_addr;
        let host = if addr.ip().is_unspecified() {
            std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
        } else {
            addr
        };
        print!("{}", render(&report, &format!("http://{host}"), now));
    }
    Ok(())
}

/// `--json`: `{"admin_token", "user_token", "api_key"}`.
pub fn render_json(report: &DemoReport) -> Value {
    json!({
        "admin_token": report.admin_token,
        "user_token": report.user_token,
        "api_key": report.api_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn items_are_deterministic_and_never_in_the_future() {
        let now = OffsetDateTime::now_utc();
        let a = items(now);
        let b = items(now);
        assert_eq!(a, b);
        let all: Vec<&Value> = a.iter().flatten().collect();
        assert!(all.len() > 1000, "{}", all.len());
        for v in &all {
            let at = OffsetDateTime::parse(v["timestamp"].as_str().unwrap_or_default(), &Rfc3339)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH);
            assert!(at <= now && at > now - Duration::days(DAYS + 1), "{v}");
        }
        let mut ids: Vec<&str> = all.iter().filter_map(|v| v["id"].as_str()).collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "ids are unique");
    }

    #[test]
    fn role_claims_nest_along_their_path() {
        let mut claims = Map::new();
        set_claim(&mut claims, "public_metadata.role", json!("admin"));
        set_claim(&mut claims, "email", json!("a@example.com"));
        assert_eq!(
            Value::Object(claims),
            json!({"public_metadata": {"role": "admin"}, "email": "a@example.com"})
        );
    }
}
