//! `charlie-bench read`: latency of `my-stats` (random users, random
//! users with a token the server has never seen, one heavy user) and
//! `admin/overview` of the real server on a large database, at one client
//! and at `--concurrency`, beside `GET /health` (the floor of an HTTP
//! request) and `GET /ready` (one database round trip), and beside the
//! seed's own queries (its `get_user_stats` and `get_admin_overview`,
//! translated to SQL over our raw tables) run directly on the same
//! database. The report ends with the targets as ratios of rows of the
//! same run.
//!
//! Seeding writes users, workflows, components, conversations and errors
//! through [`Store::ingest`] in-process (the ingestion code path: rollups,
//! funnel milestones and events included). Messages go either the same way
//! (`--seed-with ingest`) or by `COPY` followed by
//! [`Store::rebuild_rollups`], which recomputes every rollup table exactly
//! from raw rows (`--seed-with copy`, for speed). Rollups are then checked
//! with `verify_rollups` (in full, or on sample weeks at large scale).

use super::{
    BenchDatabases, Latency, ServerChild, admin_url, bench_db_name, data, finish, load_average,
    machine_summary, mib, ms, thousands,
};
use charlie_api::{Settings, error::CliError};
use charlie_pricing::Catalog;
use charlie_store::{
    Store,
    bench::{self as sb, ConversationRow, MessageRow},
    maintenance::RollupRange,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// How messages are written when seeding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeedWith {
    /// `Store::ingest` in batches (the ingestion code path).
    Ingest,
    /// `COPY` into `messages`, then `Store::rebuild_rollups`.
    Copy,
}

/// Arguments of `bench read`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReadArgs {
    /// PostgreSQL server to create the benchmark database on; default
    /// DATABASE_URL when it is PostgreSQL, else the local server.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Messages of the ordinary users.
    #[arg(long, default_value_t = 10_000_000)]
    pub messages: usize,
    /// Ordinary users.
    #[arg(long, default_value_t = 100_000)]
    pub users: usize,
    /// Messages of the one heavy user.
    #[arg(long, default_value_t = 1_000_000)]
    pub heavy_messages: usize,
    /// Days of history, ending now.
    #[arg(long, default_value_t = 365)]
    pub days: i64,
    /// Timed requests per scenario.
    #[arg(long, default_value_t = 2000)]
    pub requests: usize,
    /// Timed runs of the seed's queries for random users.
    #[arg(long, default_value_t = 500)]
    pub seed_requests: usize,
    /// Timed runs of the seed's heavy-user and overview queries (slow).
    #[arg(long, default_value_t = 10)]
    pub seed_slow_requests: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// How messages are seeded.
    #[arg(long, value_enum, default_value_t = SeedWith::Ingest)]
    pub seed_with: SeedWith,
    /// Concurrent seeding tasks.
    #[arg(long, default_value_t = 3)]
    pub seed_tasks: usize,
    /// Items per `Store::ingest` call while seeding.
    #[arg(long, default_value_t = 5000)]
    pub seed_batch: usize,
    /// Reuse a database seeded by an earlier run (with `--keep`) instead of seeding.
    #[arg(long, value_name = "NAME")]
    pub reuse: Option<String>,
    /// Stop after seeding (and verifying); keeps the database.
    #[arg(long)]
    pub seed_only: bool,
    /// Keep the benchmark database.
    #[arg(long)]
    pub keep: bool,
}

/// Messages per conversation of ordinary users (mean) and of the heavy user.
const MESSAGES_PER_CONVERSATION: usize = 10;
const HEAVY_MESSAGES_PER_CONVERSATION: usize = 20;
/// Errors per message.
const ERROR_SHARE: f64 = 0.005;
/// Share of assistant messages that carry a raw provider response.
const RAW_SHARE: f64 = 0.55;

/// The seeded population.
#[derive(Debug, Clone, Copy)]
struct Plan {
    run: u64,
    users: usize,
    messages: usize,
    heavy_messages: usize,
    days: i64,
    now: OffsetDateTime,
}

impl Plan {
    fn heavy_index(&self) -> usize {
        self.users
    }

    fn user_id(&self, n: usize) -> Uuid {
        data::named_id(self.run, "user", n as u64)
    }

    fn external_id(n: usize) -> String {
        format!("bench_user_{n}")
    }

    /// Messages of user `n` (the mean is `messages / users`, uniform from 1 to twice that).
    fn messages_of(&self, n: usize, rng: &mut StdRng) -> usize {
        if n == self.heavy_index() {
            return self.heavy_messages;
        }
        let mean = (self.messages / self.users.max(1)).max(1);
        rng.random_range(1..=(2 * mean - 1).max(1))
    }
}

/// What the seeding of one user produced.
#[derive(Debug, Default, Clone, Copy)]
struct Seeded {
    items: usize,
    messages: usize,
}

/// Writes items through `Store::ingest` (and, with `copy`, message rows by COPY).
struct Sink<'a> {
    store: &'a Store,
    catalog: &'a Catalog,
    now: OffsetDateTime,
    batch: usize,
    items: Vec<Value>,
    copy: bool,
    rows: Vec<MessageRow>,
    conversations: Vec<ConversationRow>,
    written: Seeded,
}

impl Sink<'_> {
    async fn push(&mut self, v: Value) -> Result<(), CliError> {
        self.items.push(v);
        if self.items.len() >= self.batch {
            self.flush_items().await?;
        }
        Ok(())
    }

    async fn push_message(
        &mut self,
        v: Value,
        user: Uuid,
        workflow: Option<Uuid>,
    ) -> Result<(), CliError> {
        if self.copy {
            let row = data::message_row(&v, self.now, self.catalog, user, workflow)
                .ok_or_else(|| CliError(format!("a generated message is refused: {v}")))?;
            self.rows.push(row);
            if self.rows.len() >= 50_000 {
                self.flush_rows().await?;
            }
            Ok(())
        } else {
            self.written.messages += 1;
            self.push(v).await
        }
    }

    async fn flush_items(&mut self) -> Result<(), CliError> {
        if self.items.is_empty() {
            return Ok(());
        }
        let report =
            charlie_api::service::ingest::ingest(self.store, &self.items, self.catalog, self.now)
                .await?;
        let errors = report.count(charlie_store::ingest::Outcome::Error);
        if errors > 0 {
            let first = report
                .results
                .iter()
                .find_map(|r| {
                    r.error
                        .as_ref()
                        .map(|e| format!("{}: {}", e.code, e.message))
                })
                .unwrap_or_default();
            return Err(CliError(format!(
                "{errors} seed items refused, e.g. {first}"
            )));
        }
        self.written.items += self.items.len();
        self.items.clear();
        Ok(())
    }

    /// A conversation: ingested, or with `copy` loaded by COPY.
    async fn push_conversation(&mut self, c: ConversationRow) -> Result<(), CliError> {
        if self.copy {
            self.conversations.push(c);
            return Ok(());
        }
        self.push(data::conversation_item(
            c.id,
            c.user_id,
            c.workflow_id,
            c.created_at,
        ))
        .await
    }

    async fn flush_rows(&mut self) -> Result<(), CliError> {
        // Users first (conversations reference them), then conversations.
        self.flush_items().await?;
        if !self.conversations.is_empty() {
            sb::copy_conversations(self.store, &self.conversations).await?;
            self.written.items += self.conversations.len();
            self.conversations.clear();
        }
        if self.rows.is_empty() {
            return Ok(());
        }
        sb::copy_messages(self.store, &self.rows, 1).await?;
        self.written.messages += self.rows.len();
        self.rows.clear();
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), CliError> {
        self.flush_rows().await?;
        self.flush_items().await
    }
}

/// Seeds user `n`: signup, workflows, components, conversations with their
/// messages, and errors, in time order per conversation.
async fn seed_user(plan: &Plan, n: usize, sink: &mut Sink<'_>) -> Result<(), CliError> {
    let mut rng = StdRng::seed_from_u64(plan.run ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let heavy = n == plan.heavy_index();
    let span = plan.days * 86_400;
    let user = plan.user_id(n);
    let total = plan.messages_of(n, &mut rng);
    // Signed up somewhere in the period (the heavy user at its start).
    let signup_ago = if heavy {
        span
    } else {
        rng.random_range(span / 50..=span)
    };
    let signup = plan.now - time::Duration::seconds(signup_ago);
    sink.push(data::item(
        user,
        "user.upsert",
        signup,
        json!({"external_id": Plan::external_id(n), "email": format!("bench.user.{n}@example.com")}),
    ))
    .await?;
    let n_workflows = if heavy {
        20
    } else if rng.random_bool(0.8) {
        rng.random_range(1..=3)
    } else {
        0
    };
    let mut workflows = Vec::new();
    for k in 0..n_workflows {
        let w = data::named_id(plan.run, &format!("workflow-{n}"), k);
        let at = signup + time::Duration::seconds(60 + 60 * k as i64);
        sink.push(data::named_item(
            "workflow.upsert",
            w,
            user,
            format!("Workflow {k} of user {n}"),
            at,
        ))
        .await?;
        workflows.push(w);
    }
    let n_components = if heavy {
        10
    } else if rng.random_bool(0.7) {
        rng.random_range(1..=4)
    } else {
        0
    };
    for k in 0..n_components {
        let c = data::named_id(plan.run, &format!("component-{n}"), k);
        let at = signup + time::Duration::seconds(30 + 60 * k as i64);
        sink.push(data::named_item(
            "component.upsert",
            c,
            user,
            format!("Component {k}"),
            at,
        ))
        .await?;
    }
    let per = if heavy {
        HEAVY_MESSAGES_PER_CONVERSATION
    } else {
        MESSAGES_PER_CONVERSATION
    };
    let active_span = (plan.now - signup).whole_seconds().max(7200) - 3600;
    let mut left = total;
    let mut k = 0u64;
    while left > 0 {
        let size = if heavy {
            per
        } else {
            rng.random_range(1..=2 * per - 1)
        }
        .min(left);
        left -= size;
        let conversation = data::named_id(plan.run, &format!("conversation-{n}"), k);
        k += 1;
        let workflow = if !workflows.is_empty() && rng.random_bool(0.67) {
            Some(workflows[rng.random_range(0..workflows.len())])
        } else {
            None
        };
        let start = signup + time::Duration::seconds(600 + rng.random_range(0..active_span - 600));
        sink.push_conversation(ConversationRow {
            id: conversation,
            user_id: user,
            workflow_id: workflow,
            langflow_session_id: Some(format!("session-{}", conversation.simple())),
            created_at: start,
        })
        .await?;
        let mut at = start;
        for m in 0..size {
            at += time::Duration::seconds(rng.random_range(5..90))
                + time::Duration::microseconds(rng.random_range(0..1_000_000));
            let at = at.min(plan.now - time::Duration::seconds(1));
            let body = data::message_body(&mut rng, conversation, m % 2 == 0, RAW_SHARE);
            let id = data::named_id(plan.run, &format!("message-{n}"), (k << 24) | m as u64);
            sink.push_message(data::item(id, "message.create", at, body), user, workflow)
                .await?;
            if rng.random_bool(ERROR_SHARE) {
                let e = Uuid::new_v4();
                sink.push(data::item(
                    e,
                    "error.log",
                    at,
                    json!({"service": "langflow", "error_type": "RateLimitError",
                           "error_message": "Rate limit reached for gpt-4o on tokens per min (TPM)",
                           "error_code": "429", "user_id": user, "workflow_id": workflow,
                           "endpoint": "/api/v1/run"}),
                ))
                .await?;
            }
        }
    }
    Ok(())
}

/// Seeds the whole plan from `tasks` concurrent tasks.
async fn seed(
    plan: &Plan,
    store: &Store,
    catalog: &Catalog,
    args: &ReadArgs,
) -> Result<Seeded, CliError> {
    let next = AtomicUsize::new(0);
    let done_messages = AtomicUsize::new(0);
    let started = Instant::now();
    let expected = plan.messages + plan.heavy_messages;
    let worker = |first: Option<usize>| {
        let next = &next;
        let done_messages = &done_messages;
        async move {
            let mut sink = Sink {
                store,
                catalog,
                now: plan.now,
                batch: args.seed_batch,
                items: Vec::new(),
                copy: args.seed_with == SeedWith::Copy,
                rows: Vec::new(),
                conversations: Vec::new(),
                written: Seeded::default(),
            };
            let mut reported = 0;
            if let Some(n) = first {
                seed_user(plan, n, &mut sink).await?;
            }
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= plan.users {
                    break;
                }
                let before = sink.written.messages;
                seed_user(plan, n, &mut sink).await?;
                let total =
                    done_messages.fetch_add(sink.written.messages - before, Ordering::Relaxed);
                if total / 500_000 > reported {
                    reported = total / 500_000;
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "  seeded ~{} of {} messages in {:.0} s ({} msg/s)",
                        thousands(total as f64),
                        thousands(expected as f64),
                        secs,
                        thousands(total as f64 / secs)
                    );
                }
            }
            sink.flush().await?;
            Ok::<_, CliError>(sink.written)
        }
    };
    // The heavy user goes first in its own task, beside the others.
    let mut futures = vec![worker(Some(plan.heavy_index()))];
    for _ in 1..args.seed_tasks.max(2) {
        futures.push(worker(None));
    }
    let results = futures_util::future::try_join_all(futures).await?;
    Ok(results.iter().fold(Seeded::default(), |a, s| Seeded {
        items: a.items + s.items,
        messages: a.messages + s.messages,
    }))
}

/// Runs `requests` calls of `call` from `concurrency` tasks; returns latencies.
async fn load<F, Fut>(
    requests: usize,
    concurrency: usize,
    call: F,
) -> Result<Vec<Duration>, CliError>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    let next = AtomicUsize::new(0);
    let worker = || async {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= requests {
                break;
            }
            let t = Instant::now();
            call(i).await?;
            out.push(t.elapsed());
        }
        Ok::<_, CliError>(out)
    };
    let all = futures_util::future::try_join_all((0..concurrency.max(1)).map(|_| worker())).await?;
    Ok(all.into_iter().flatten().collect())
}

pub(super) async fn get_ok(
    client: &reqwest::Client,
    url: &str,
    token: &str,
) -> Result<(), CliError> {
    // One retry when a pooled keep-alive connection was closed under us.
    let mut attempt = 0;
    let resp = loop {
        attempt += 1;
        match client.get(url).bearer_auth(token).send().await {
            Ok(r) => break r,
            Err(e) if attempt < 2 && (e.is_request() || e.is_connect()) => continue,
            Err(e) => return Err(CliError(charlie_api::error::chain(&e))),
        }
    };
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| CliError(charlie_api::error::chain(&e)))?;
    if !status.is_success() {
        return Err(CliError(format!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(())
}

/// One row of the report.
struct Row {
    what: String,
    clients: usize,
    lat: Latency,
}

fn row_line(r: &Row) -> String {
    format!(
        "| {} | {} | {} | {} | {} | {} | {} |",
        r.what,
        r.clients,
        r.lat.count,
        ms(r.lat.p50),
        ms(r.lat.p95),
        ms(r.lat.p99),
        ms(r.lat.max)
    )
}

/// Whose token each request of a scenario sends.
enum Who<'a> {
    /// Always this one.
    One(&'a str),
    /// One of a sample of users, spread by a stride.
    Sample(&'a [String]),
    /// Request `i` sends token `offset + i`: each token once.
    Each(&'a [String]),
}

impl Who<'_> {
    fn token(&self, i: usize, offset: usize) -> &str {
        match self {
            Who::One(t) => t,
            Who::Sample(ts) => &ts[(i * 7919) % ts.len().max(1)],
            Who::Each(ts) => &ts[(offset + i) % ts.len().max(1)],
        }
    }
}

/// The targets, each a ratio of two rows of the same run at
/// `clients` concurrent clients: ours against the seed's queries (p95), and
/// my-stats against `GET /health` (p50).
fn targets(rows: &[Row], clients: usize) -> String {
    let find = |prefix: &str| {
        rows.iter()
            .filter(|r| r.what == prefix)
            .max_by_key(|r| usize::from(r.clients == clients))
            .map(|r| &r.lat)
    };
    let mut out = String::from(
        "| target | ours | reference | ratio | verdict |\n| --- | ---: | ---: | ---: | --- |\n",
    );
    let checks: [(&str, &str, &str, f64, bool); 4] = [
        (
            "my-stats p95, random users ≤ 1/3 of the seed's",
            "ours: my-stats, random users",
            "seed: get_user_stats, random users",
            1.0 / 3.0,
            true,
        ),
        (
            "my-stats p95, heavy user ≤ 1/50 of the seed's",
            "ours: my-stats, heavy user",
            "seed: get_user_stats, heavy user",
            1.0 / 50.0,
            true,
        ),
        (
            "admin/overview p95 ≤ 1/20 of the seed's",
            "ours: admin/overview",
            "seed: get_admin_overview (+ funnel)",
            1.0 / 20.0,
            true,
        ),
        (
            "my-stats p50, random users ≤ 3 × GET /health p50",
            "ours: my-stats, random users",
            "ours: GET /health (the floor of a request)",
            3.0,
            false,
        ),
    ];
    for (what, ours, reference, limit, p95) in checks {
        let (Some(a), Some(b)) = (find(ours), find(reference)) else {
            continue;
        };
        let (a, b) = if p95 { (a.p95, b.p95) } else { (a.p50, b.p50) };
        let ratio = a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        let shown = if ratio < 1.0 {
            format!("1/{:.1}", 1.0 / ratio.max(1e-9))
        } else {
            format!("{ratio:.2}×")
        };
        let _ = writeln!(
            out,
            "| {what} | {} | {} | {shown} | {} |",
            ms(a),
            ms(b),
            if ratio <= limit { "met" } else { "MISSED" }
        );
    }
    out
}

/// Runs the benchmark and prints its report.
pub async fn run(args: ReadArgs, settings: Settings) -> Result<(), CliError> {
    if args.users == 0 || args.days < 2 || args.messages < args.users {
        return Err(CliError(
            "--users must be positive, --messages at least --users, --days at least 2".into(),
        ));
    }
    let admin = admin_url(args.database_url.clone(), &settings)?;
    let catalog = charlie_api::pricing::load_catalog(&settings)?;
    let now = OffsetDateTime::now_utc();
    let mut dbs = BenchDatabases::new(
        admin.clone(),
        args.keep || args.seed_only || args.reuse.is_some(),
    );
    let result = run_inner(&args, &settings, &catalog, &admin, &mut dbs, now).await;
    finish(dbs, result).await?;
    Ok(())
}

async fn run_inner(
    args: &ReadArgs,
    settings: &Settings,
    catalog: &Catalog,
    admin: &str,
    dbs: &mut BenchDatabases,
    now: OffsetDateTime,
) -> Result<String, CliError> {
    let mut out = String::new();
    let load_before = load_average();
    let (db_url, store, run_id, seed_note) = match &args.reuse {
        Some(name) => {
            let run_id: u64 = name
                .trim_start_matches("charlie_bench_")
                .split('_')
                .next()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| CliError(format!("`{name}` is not a database of `bench read`")))?;
            let url = sb::database_url(admin, name)?;
            let store = Store::connect(&url).await?;
            // Brought to this build's schema (migrations fill new rollups
            // from the existing ones), then planner statistics refreshed.
            store.migrate_up().await?;
            sb::analyze(&store).await?;
            (url, store, run_id, format!("reused database {name}"))
        }
        None => {
            let run_id = now.unix_timestamp() as u64;
            let name = bench_db_name(run_id as i64, "read");
            let (url, store) = dbs.create(name.clone()).await?;
            let plan = Plan {
                run: run_id,
                users: args.users,
                messages: args.messages,
                heavy_messages: args.heavy_messages,
                days: args.days,
                now,
            };
            eprintln!(
                "bench read: seeding {} + {} (heavy) messages, {} users, {} days into {name} ({:?})",
                thousands(args.messages as f64),
                thousands(args.heavy_messages as f64),
                thousands(args.users as f64),
                args.days,
                args.seed_with
            );
            let t = Instant::now();
            let seeded = seed(&plan, &store, catalog, args).await?;
            let seed_time = t.elapsed();
            let mut note = format!(
                "seeded {} messages and {} other items in {:.0} s ({} msg/s, {:?}, {} tasks, batches of {})",
                thousands(seeded.messages as f64),
                thousands(
                    seeded
                        .items
                        .saturating_sub(if args.seed_with == SeedWith::Ingest {
                            seeded.messages
                        } else {
                            0
                        }) as f64
                ),
                seed_time.as_secs_f64(),
                thousands(seeded.messages as f64 / seed_time.as_secs_f64()),
                args.seed_with,
                args.seed_tasks.max(2),
                args.seed_batch
            );
            if args.seed_with == SeedWith::Copy {
                let t = Instant::now();
                // Raw facts first (milestone events, latest buckets), then
                // every rollup and counter from them.
                sb::finish_bulk_messages(&store).await?;
                let rows = store.rebuild_rollups(RollupRange::default()).await?;
                let _ = write!(
                    note,
                    "; rollups rebuilt from raw rows ({} rows) in {:.0} s",
                    thousands(rows as f64),
                    t.elapsed().as_secs_f64()
                );
            }
            let t = Instant::now();
            sb::analyze(&store).await?;
            // Exactness: in full at small scale, else on sample weeks.
            let total = args.messages + args.heavy_messages;
            let ranges: Vec<RollupRange> = if total <= 2_000_000 {
                vec![RollupRange::default()]
            } else {
                let today = now.date();
                let mid = today - time::Duration::days(args.days / 2);
                vec![
                    RollupRange {
                        from: Some(today - time::Duration::days(6)),
                        to: Some(today),
                    },
                    RollupRange {
                        from: Some(mid - time::Duration::days(6)),
                        to: Some(mid),
                    },
                ]
            };
            for range in ranges {
                let v = store.verify_rollups(range).await?;
                let clean = v.differences.is_empty() && v.stuck_pending.is_empty();
                let what = match (range.from, range.to) {
                    (Some(f), Some(t)) => format!("{f}..{t}"),
                    _ => "all days".to_owned(),
                };
                let _ = write!(
                    note,
                    "; rollups verify {what}: {} ({} rows compared)",
                    if clean { "clean" } else { "DIFFERENCES" },
                    thousands(v.rows as f64)
                );
                if !clean {
                    return Err(CliError(format!(
                        "rollups disagree with raw rows over {what}: {:?}",
                        v.differences.first()
                    )));
                }
            }
            let _ = write!(
                note,
                " (analyze + verify {:.0} s)",
                t.elapsed().as_secs_f64()
            );
            eprintln!("{note}");
            (url, store, run_id, note)
        }
    };
    let plan = Plan {
        run: run_id,
        users: args.users,
        messages: args.messages,
        heavy_messages: args.heavy_messages,
        days: args.days,
        now,
    };
    if args.seed_only {
        return Ok(seed_note);
    }
    sb::create_seed_indexes(&store).await?;
    sb::analyze(&store).await?;
    let counts = sb::table_counts(&store).await?;
    let db_size = sb::database_size(&store).await?;
    let pg_version = sb::server_version(&store).await?;

    // Tokens: a sample of ordinary users, the heavy user, an admin.
    let token_issued_at = |n: usize, admin: bool, issued: OffsetDateTime| {
        charlie_devtools::demo::demo_token(
            settings,
            &Plan::external_id(n),
            &format!("bench.user.{n}@example.com"),
            admin,
            issued,
        )
        .map_err(|e| CliError(e.to_string()))
    };
    let token_of = |n: usize, admin: bool| token_issued_at(n, admin, OffsetDateTime::now_utc());
    let mut rng = StdRng::seed_from_u64(run_id ^ 0x5eed);
    let sample: Vec<usize> = (0..1000).map(|_| rng.random_range(0..plan.users)).collect();
    let tokens: Vec<String> = sample
        .iter()
        .map(|n| token_of(*n, false))
        .collect::<Result<_, _>>()?;
    let heavy_token = token_of(plan.heavy_index(), false)?;
    let admin_token = token_of(plan.heavy_index() + 1, true)?;

    let server = ServerChild::start(&db_url, &[]).await?;
    let base = server.base_url();
    let client = crate::http_client(args.concurrency, Duration::from_secs(120))?;
    let my_stats = format!("{base}/api/v1/analytics/my-stats?days=30");
    let overview = format!("{base}/api/v1/analytics/admin/overview?days=30");
    // Warm-up (untimed): the server's pools, and first-sight creation of the admin.
    let tokens = Arc::new(tokens);
    let warm = args.requests.min(200);
    load(warm, args.concurrency, |i| {
        let t = tokens[i % tokens.len()].clone();
        let c = client.clone();
        let u = my_stats.clone();
        async move { get_ok(&c, &u, &t).await }
    })
    .await?;
    get_ok(&client, &overview, &admin_token).await?;
    get_ok(&client, &my_stats, &heavy_token).await?;
    get_ok(
        &client,
        &format!("{my_stats}&tz=Pacific/Kiritimati"),
        &heavy_token,
    )
    .await?;

    // A token the server has never seen, per request: the cost of a new
    // session (RSA verification; the user lookup is cached by subject).
    let fresh_tokens: Vec<String> = (0..args.requests * 2)
        .map(|i| {
            token_issued_at(
                sample[i % sample.len()],
                false,
                OffsetDateTime::now_utc() - time::Duration::seconds(i as i64),
            )
        })
        .collect::<Result<_, _>>()?;
    let health = format!("{base}/health");
    let ready = format!("{base}/ready");
    // Outside UTC every local midnight adds a partial UTC day to read:
    // UTC+14 puts midnight at 10:00 UTC, 40 quarter-hours in (48 is the most).
    let my_stats_far = format!("{my_stats}&tz=Pacific/Kiritimati");
    let scenarios: [(&str, &str, Who<'_>); 7] = [
        (
            "ours: GET /health (the floor of a request)",
            &health,
            Who::One(&admin_token),
        ),
        (
            "ours: GET /ready (one database round trip)",
            &ready,
            Who::One(&admin_token),
        ),
        (
            "ours: my-stats, random users",
            &my_stats,
            Who::Sample(&tokens),
        ),
        (
            "ours: my-stats, random users, a new token each request",
            &my_stats,
            Who::Each(&fresh_tokens),
        ),
        (
            "ours: my-stats, heavy user",
            &my_stats,
            Who::One(&heavy_token),
        ),
        (
            "ours: my-stats, heavy user, tz=Pacific/Kiritimati",
            &my_stats_far,
            Who::One(&heavy_token),
        ),
        ("ours: admin/overview", &overview, Who::One(&admin_token)),
    ];
    let load_during_start = load_average();
    let mut rows = Vec::new();
    for clients in [1, args.concurrency.max(1)] {
        for (what, url, who) in &scenarios {
            // The new-token scenario takes the second half of its tokens
            // at the second concurrency: none is seen twice.
            let offset = if clients == 1 { 0 } else { args.requests };
            let lat = load(args.requests, clients, |i| {
                let t = who.token(i, offset).to_owned();
                let c = client.clone();
                let u = url.to_string();
                async move { get_ok(&c, &u, &t).await }
            })
            .await?;
            rows.push(Row {
                what: (*what).to_owned(),
                clients,
                lat: Latency::of(lat),
            });
        }
        if args.concurrency <= 1 {
            break;
        }
    }
    let peak_rss = server.peak_rss().unwrap_or(0);
    drop(server);

    // The seed's queries, directly on the same database.
    let seed_user_ids: Vec<Uuid> = sample.iter().map(|n| plan.user_id(*n)).collect();
    let heavy_id = plan.user_id(plan.heavy_index());
    let lat = load(args.seed_requests, args.concurrency, |i| {
        let id = seed_user_ids[(i * 7919) % seed_user_ids.len()];
        let store = &store;
        async move {
            sb::seed_user_stats(store, id, 30, OffsetDateTime::now_utc()).await?;
            Ok(())
        }
    })
    .await?;
    rows.push(Row {
        what: "seed: get_user_stats, random users".into(),
        clients: args.concurrency,
        lat: Latency::of(lat),
    });
    let slow_concurrency = args.concurrency.min(args.seed_slow_requests.max(1));
    let lat = load(args.seed_slow_requests, slow_concurrency, |_| async {
        sb::seed_user_stats(&store, heavy_id, 30, OffsetDateTime::now_utc()).await?;
        Ok(())
    })
    .await?;
    rows.push(Row {
        what: "seed: get_user_stats, heavy user".into(),
        clients: slow_concurrency,
        lat: Latency::of(lat),
    });
    let lat = load(args.seed_slow_requests, slow_concurrency, |_| async {
        sb::seed_admin_overview(&store, 30, OffsetDateTime::now_utc()).await?;
        Ok(())
    })
    .await?;
    rows.push(Row {
        what: "seed: get_admin_overview (+ funnel)".into(),
        clients: slow_concurrency,
        lat: Latency::of(lat),
    });
    let load_during_end = load_average();
    store.close().await?;

    let _ = writeln!(out, "## bench read");
    let _ = writeln!(out);
    let _ = writeln!(out, "machine:  {}", machine_summary());
    let _ = writeln!(out, "postgres: {pg_version}");
    let _ = writeln!(
        out,
        "command:  target/release/charlie-bench read --messages {} --users {} --heavy-messages {} --days {} --requests {} --concurrency {} {}",
        args.messages,
        args.users,
        args.heavy_messages,
        args.days,
        args.requests,
        args.concurrency,
        match (&args.reuse, args.seed_with) {
            (Some(name), _) => format!("--reuse {name}"),
            (None, SeedWith::Ingest) => "--seed-with ingest".to_owned(),
            (None, SeedWith::Copy) => "--seed-with copy".to_owned(),
        }
    );
    let _ = writeln!(out, "seeding:  {seed_note}");
    let _ = writeln!(
        out,
        "data:     {}; database {}",
        counts
            .iter()
            .map(|(t, n)| format!("{t} {}", thousands(*n as f64)))
            .collect::<Vec<_>>()
            .join(", "),
        mib(u64::try_from(db_size).unwrap_or(0))
    );
    let _ = writeln!(
        out,
        "load:     {} concurrent clients; latencies are client-side over loopback HTTP (ours) or one database round trip per query (seed); server peak RSS {}",
        args.concurrency,
        mib(peak_rss)
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| scenario | clients | n | p50 | p95 | p99 | max |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let _ = writeln!(out, "{}", row_line(r));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{}", targets(&rows, args.concurrency));
    let _ = writeln!(
        out,
        "load average before: {load_before}; at the start of the timed part: {load_during_start}; at its end: {load_during_end}"
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_average_the_requested_messages() {
        let plan = Plan {
            run: 1,
            users: 1000,
            messages: 100_000,
            heavy_messages: 5000,
            days: 365,
            now: OffsetDateTime::now_utc(),
        };
        let mut rng = StdRng::seed_from_u64(3);
        let total: usize = (0..plan.users).map(|n| plan.messages_of(n, &mut rng)).sum();
        let mean = total as f64 / plan.users as f64;
        assert!((90.0..110.0).contains(&mean), "mean {mean}");
        assert_eq!(plan.messages_of(plan.heavy_index(), &mut rng), 5000);
    }

    #[test]
    fn targets_compare_rows_of_the_same_run() {
        let row = |what: &str, clients: usize, ms: u64| Row {
            what: what.into(),
            clients,
            lat: Latency::of(vec![Duration::from_millis(ms); 10]),
        };
        let rows = [
            row("ours: my-stats, random users", 1, 1),
            row("ours: my-stats, random users", 4, 4),
            row("seed: get_user_stats, random users", 4, 10),
            row("ours: GET /health (the floor of a request)", 4, 1),
        ];
        let t = targets(&rows, 4);
        // 4 ms against 10 ms misses 1/3; 4 ms against 1 ms misses 3×.
        assert!(t.contains("| 1/2.5 | MISSED |"), "{t}");
        assert!(t.contains("| 4.00× | MISSED |"), "{t}");
        let rows = [
            row("ours: my-stats, random users", 4, 2),
            row("seed: get_user_stats, random users", 4, 10),
            row("ours: GET /health (the floor of a request)", 4, 1),
        ];
        let t = targets(&rows, 4);
        assert!(t.contains("| 1/5.0 | met |"), "{t}");
        assert!(t.contains("| 2.00× | met |"), "{t}");
        assert!(!t.contains("heavy"), "a missing row is left out: {t}");
    }
}
