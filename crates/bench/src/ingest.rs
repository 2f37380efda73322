//! `charlie-bench ingest`: messages over HTTP into the real server,
//! beside (a) `COPY` of the same rows into `messages`, (a') `COPY` of every
//! row ingestion stores for them, and (b) the seed's design (one
//! transaction per message with a `daily_metrics` upsert), then a full
//! `rollups verify` of the ingested database.

use super::{
    BenchDatabases, Latency, ServerChild, admin_url, bench_db_name, data, finish, load_average,
    machine_summary, mib, ms, thousands,
};
use crate::cpu::{CpuSample, CpuUse};
use charlie_api::{Settings, error::CliError};
use charlie_store::{
    bench::{MessageRow, UserRow},
    maintenance::RollupRange,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Arguments of `bench ingest`.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// PostgreSQL server to create the benchmark databases on (any database
    /// of it); default DATABASE_URL when it is PostgreSQL, else
    /// postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Messages sent over HTTP (timed).
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: usize,
    /// Items per request.
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Users the messages are spread across.
    #[arg(long, default_value_t = 10_000)]
    pub users: usize,
    /// Days (ending now) the messages are spread across.
    #[arg(long, default_value_t = 30)]
    pub days: i64,
    /// Messages written with the seed's design (a subset: it is slow).
    #[arg(long, default_value_t = 20_000)]
    pub seed_messages: usize,
    /// Share of messages that carry a raw provider response.
    #[arg(long, default_value_t = 0.3)]
    pub raw_share: f64,
    /// How messages are spread: `sessions` (conversations of ~10 messages a
    /// few seconds to two minutes apart, sent in time order, as the platform
    /// sends them) or `random` (every message at an independent uniform time
    /// and conversation: the worst case for rollups).
    #[arg(long, value_enum, default_value_t = Pattern::Sessions)]
    pub pattern: Pattern,
    /// The server's `ROLLUP_WAIT_MS`: how long a request waits for its
    /// batch to be folded into the rollups (0: the background cycle folds).
    #[arg(long, default_value_t = 2_000)]
    pub rollup_wait_ms: u64,
    /// Keep the benchmark databases.
    #[arg(long)]
    pub keep: bool,
}

/// How the benchmark's messages are spread over users and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    Sessions,
    Random,
}

/// Mean messages per session with `--pattern sessions`.
const SESSION_MESSAGES: usize = 10;

/// Conversations per user; the first has no workflow.
const CONVERSATIONS_PER_USER: usize = 3;
/// Share of messages sent by the user (the rest are assistant answers).
const USER_TURN_SHARE: f64 = 0.45;

/// Counts of an ingest response.
#[derive(Debug, serde::Deserialize)]
struct IngestCounts {
    created: usize,
    errors: usize,
}

/// What sending the batches measured.
struct Sent {
    /// Each batch's latency.
    latencies: Vec<Duration>,
    /// When each batch was answered (since the first was sent), and how many
    /// items were created by it.
    answered: Vec<(Duration, usize)>,
    elapsed: Duration,
    created: usize,
}

/// Sends pre-rendered batches from `clients` concurrent tasks. Any refused
/// item or non-207 is an error.
async fn send_batches(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    bodies: Vec<Vec<u8>>,
    clients: usize,
) -> Result<Sent, CliError> {
    let queue = Arc::new(Mutex::new(bodies.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let queue = queue.clone();
        let client = client.clone();
        let url = url.to_owned();
        let auth = format!("Bearer {key}");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut answered = Vec::new();
            let mut created = 0;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.next());
                let Some(body) = next else { break };
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("authorization", &auth)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| CliError(format!("ingest request failed: {e}")))?;
                let status = resp.status();
                let bytes = resp
                    .bytes()
                    .await
                    .map_err(|e| CliError(format!("ingest response failed: {e}")))?;
                latencies.push(t.elapsed());
                if status.as_u16() != 207 {
                    return Err(CliError(format!(
                        "ingest answered {status}: {}",
                        String::from_utf8_lossy(&bytes)
                    )));
                }
                let counts: IngestCounts = serde_json::from_slice(&bytes)?;
                if counts.errors > 0 {
                    let v: Value = serde_json::from_slice(&bytes)?;
                    let first = v["results"]
                        .as_array()
                        .and_then(|r| r.iter().find(|x| x["outcome"] == "error"))
                        .cloned()
                        .unwrap_or_default();
                    return Err(CliError(format!(
                        "{} items refused, e.g. {first}",
                        counts.errors
                    )));
                }
                created += counts.created;
                answered.push((started.elapsed(), counts.created));
            }
            Ok::<_, CliError>((latencies, answered, created))
        }));
    }
    let mut sent = Sent {
        latencies: Vec::new(),
        answered: Vec::new(),
        elapsed: Duration::ZERO,
        created: 0,
    };
    for t in tasks {
        let (l, a, c) = t
            .await
            .map_err(|e| CliError(format!("client task failed: {e}")))??;
        sent.latencies.extend(l);
        sent.answered.extend(a);
        sent.created += c;
    }
    sent.elapsed = started.elapsed();
    Ok(sent)
}

/// The rate of each successive `window` of created items, in the order they
/// were answered: how ingestion keeps up as the tables grow. A last partial
/// window is left out.
/// The rollup lag seen while the batches were sent.
struct LagSamples {
    max: f64,
    samples: usize,
}

/// Reads `charlie_rollup_lag_seconds` from the server every 250 ms while
/// `running` holds.
async fn sample_lag(
    client: reqwest::Client,
    url: String,
    running: Arc<std::sync::atomic::AtomicBool>,
) -> LagSamples {
    let mut lag = LagSamples {
        max: 0.0,
        samples: 0,
    };
    while running.load(std::sync::atomic::Ordering::SeqCst) {
        if let Some(v) = gauge(&client, &url, "charlie_rollup_lag_seconds").await {
            lag.max = lag.max.max(v);
            lag.samples += 1;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    lag
}

/// The value of an unlabelled gauge in the server's `/metrics`.
async fn gauge(client: &reqwest::Client, url: &str, name: &str) -> Option<f64> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn window_rates(answered: &[(Duration, usize)], window: usize) -> Vec<f64> {
    let mut by_time = answered.to_vec();
    by_time.sort_by_key(|(at, _)| *at);
    let (mut rates, mut done, mut window_start) = (Vec::new(), 0usize, Duration::ZERO);
    let mut next = window.max(1);
    for (at, n) in by_time {
        done += n;
        while done >= next {
            let secs = (at - window_start).as_secs_f64();
            rates.push(if secs > 0.0 {
                window as f64 / secs
            } else {
                0.0
            });
            window_start = at;
            next += window.max(1);
        }
    }
    rates
}

fn render(items: &[Value], batch: usize) -> Result<Vec<Vec<u8>>, CliError> {
    items
        .chunks(batch.max(1))
        .map(|c| Ok(serde_json::to_vec(&json!({ "batch": c }))?))
        .collect()
}

/// The generated world: users, their workflow and conversations.
pub(super) struct World {
    pub(super) run: u64,
    users: Vec<Uuid>,
    workflows: Vec<Uuid>,
    /// `(conversation, user, workflow)`.
    pub(super) conversations: Vec<(Uuid, Uuid, Option<Uuid>)>,
}

impl World {
    pub(super) fn new(run: u64, users: usize) -> World {
        let user_ids: Vec<Uuid> = (0..users as u64)
            .map(|n| data::named_id(run, "user", n))
            .collect();
        let workflows: Vec<Uuid> = (0..users as u64)
            .map(|n| data::named_id(run, "workflow", n))
            .collect();
        let mut conversations = Vec::new();
        for (n, (u, w)) in user_ids.iter().zip(&workflows).enumerate() {
            for k in 0..CONVERSATIONS_PER_USER {
                let id =
                    data::named_id(run, "conversation", (n * CONVERSATIONS_PER_USER + k) as u64);
                conversations.push((id, *u, (k > 0).then_some(*w)));
            }
        }
        World {
            run,
            users: user_ids,
            workflows,
            conversations,
        }
    }

    pub(super) fn setup_items(&self, since: OffsetDateTime) -> [Vec<Value>; 3] {
        let users = self
            .users
            .iter()
            .enumerate()
            .map(|(n, id)| data::user_item(*id, n as u64, since))
            .collect();
        let workflows = self
            .workflows
            .iter()
            .zip(&self.users)
            .enumerate()
            .map(|(n, (w, u))| {
                data::named_item(
                    "workflow.upsert",
                    *w,
                    *u,
                    format!("Bench workflow {n}"),
                    since + time::Duration::seconds(1),
                )
            })
            .collect();
        let conversations = self
            .conversations
            .iter()
            .map(|(c, u, w)| {
                data::conversation_item(*c, *u, *w, since + time::Duration::seconds(2))
            })
            .collect();
        [users, workflows, conversations]
    }
}

/// (a′): a COPY of every row ingestion stores for `rows` into a fresh
/// database `name` (with its users first, untimed). Returns the time, the
/// rows copied, and the CPU the timed COPY used.
async fn copy_everything_into(
    dbs: &mut BenchDatabases,
    name: String,
    users: &[UserRow],
    rows: &[MessageRow],
    clients: usize,
) -> Result<(Duration, u64, Option<CpuUse>), CliError> {
    let (_, store) = dbs.create(name).await?;
    charlie_store::bench::copy_users(&store, users).await?;
    let (time, copied, cpu) = charlie_store::bench::copy_everything(
        &store,
        rows,
        clients,
        OffsetDateTime::now_utc(),
        || CpuSample::now(None),
    )
    .await?;
    let cpu = cpu.zip(CpuSample::now(None)).map(|(a, b)| a.until(&b));
    store.close().await?;
    Ok((time, copied, cpu))
}

/// Where the CPU went during ours and during (a′), for the report: a run
/// that leaves the CPU idle is waiting; one that does not is bound by its
/// CPU per message, which this compares with (a′)'s.
fn cpu_report(
    ours: Option<CpuUse>,
    before: Option<CpuUse>,
    after: Option<CpuUse>,
    messages: usize,
) -> String {
    let Some(ours) = ours else {
        return "CPU: not measured (no /proc on this system)".into();
    };
    let mut text = format!(
        "CPU over the timed part (/proc): {:.1} CPU-s busy of {:.1} (idle {:.1}%): server {:.1}, benchmark client {:.1}, the rest (PostgreSQL and anything else running) {:.1}; {:.0} µs busy per message",
        ours.busy,
        ours.available,
        ours.idle_share() * 100.0,
        ours.server,
        ours.client,
        ours.rest(),
        ours.busy_per(messages)
    );
    if let (Some(b), Some(a)) = (before, after) {
        let copy_per = (b.busy_per(messages) + a.busy_per(messages)) / 2.0;
        text.push_str(&format!(
            "\nCPU of (a'): {:.1} CPU-s busy before ours (idle {:.1}%), {:.1} after (idle {:.1}%); {:.0} µs busy per message (mean); ours / (a') busy CPU per message = {:.2}×",
            b.busy,
            b.idle_share() * 100.0,
            a.busy,
            a.idle_share() * 100.0,
            copy_per,
            if copy_per > 0.0 {
                ours.busy_per(messages) / copy_per
            } else {
                0.0
            }
        ));
    }
    text
}

/// Runs the benchmark and prints its report.
pub async fn run(args: IngestArgs, settings: Settings) -> Result<(), CliError> {
    if args.messages == 0 || args.users == 0 || args.days < 1 || args.batch == 0 {
        return Err(CliError(
            "--messages, --users, --batch and --days must be positive".into(),
        ));
    }
    let admin = admin_url(args.database_url.clone(), &settings)?;
    let catalog = charlie_api::pricing::load_catalog(&settings)?;
    let load_before = load_average();
    let now = OffsetDateTime::now_utc();
    let run_id = now.unix_timestamp();
    let mut dbs = BenchDatabases::new(admin.clone(), args.keep);
    let result = run_inner(&args, &catalog, &mut dbs, run_id, now).await;
    finish(dbs, result).await?;
    println!(
        "load average before: {load_before}, after: {}",
        load_average()
    );
    Ok(())
}

async fn run_inner(
    args: &IngestArgs,
    catalog: &charlie_pricing::Catalog,
    dbs: &mut BenchDatabases,
    run_id: i64,
    now: OffsetDateTime,
) -> Result<String, CliError> {
    let world = World::new(run_id as u64, args.users);
    let since = now - time::Duration::days(args.days + 1);
    eprintln!(
        "bench ingest: {} messages, batch {}, {} clients, {} users, {} days",
        thousands(args.messages as f64),
        args.batch,
        args.clients,
        thousands(args.users as f64),
        args.days
    );

    // Messages, generated and priced before anything is timed.
    let t = Instant::now();
    let mut rng = StdRng::seed_from_u64(run_id as u64);
    let span_secs = args.days * 86_400 - 3600;
    // (time, conversation index, user turn) of every message.
    let mut plan: Vec<(OffsetDateTime, usize, bool)> = Vec::with_capacity(args.messages);
    match args.pattern {
        Pattern::Random => {
            for _ in 0..args.messages {
                let at = now
                    - time::Duration::seconds(60 + rng.random_range(0..span_secs))
                    - time::Duration::microseconds(rng.random_range(0..1_000_000));
                plan.push((
                    at,
                    rng.random_range(0..world.conversations.len()),
                    rng.random_bool(USER_TURN_SHARE),
                ));
            }
        }
        Pattern::Sessions => {
            while plan.len() < args.messages {
                let conversation = rng.random_range(0..world.conversations.len());
                let len = rng
                    .random_range(2..=2 * SESSION_MESSAGES - 2)
                    .min(args.messages - plan.len());
                let mut at = now - time::Duration::seconds(3600 + rng.random_range(0..span_secs));
                for k in 0..len {
                    at += time::Duration::seconds(rng.random_range(3..120))
                        + time::Duration::microseconds(rng.random_range(0..1_000_000));
                    plan.push((at, conversation, k % 2 == 0));
                }
            }
            plan.sort_by_key(|p| p.0);
        }
    }
    // Rendered a batch at a time: only the request bodies and the rows stay
    // in memory (a 5M run would not fit with every item as a JSON value).
    let mut pending: Vec<Value> = Vec::with_capacity(args.batch.max(1));
    let mut bodies: Vec<Vec<u8>> = Vec::with_capacity(args.messages / args.batch.max(1) + 1);
    let mut rows: Vec<MessageRow> = Vec::with_capacity(args.messages);
    for (n, (at, conversation, user_turn)) in plan.into_iter().enumerate() {
        let (conversation, user, workflow) = world.conversations[conversation];
        let body = data::message_body(
            &mut rng,
            conversation,
            user_turn,
            (args.raw_share / (1.0 - USER_TURN_SHARE)).min(1.0),
        );
        let v = data::item(
            data::named_id(world.run, "message", n as u64),
            "message.create",
            at,
            body,
        );
        let row = data::message_row(&v, now, catalog, user, workflow)
            .ok_or_else(|| CliError(format!("a generated message is refused: {v}")))?;
        rows.push(row);
        pending.push(v);
        if pending.len() >= args.batch.max(1) {
            bodies.extend(render(&pending, args.batch)?);
            pending.clear();
        }
    }
    if !pending.is_empty() {
        bodies.extend(render(&pending, args.batch)?);
    }
    let payload_bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!("generated in {:.1} s", t.elapsed().as_secs_f64());

    let users: Vec<UserRow> = world
        .users
        .iter()
        .enumerate()
        .map(|(n, id)| UserRow {
            id: *id,
            external_id: format!("bench_user_{n}"),
            email: format!("bench.user.{n}@example.com"),
            created_at: since,
        })
        .collect();

    // (a') before ours: the VM's speed drifts by a third within the hour,
    // so (a') runs on both sides of ours and the ratio is to their mean.
    let (before_time, _, cpu_before) = copy_everything_into(
        dbs,
        bench_db_name(run_id, "copyall0"),
        &users,
        &rows,
        args.clients,
    )
    .await?;
    let before_rate = rows.len() as f64 / before_time.as_secs_f64();
    eprintln!(
        "COPY of every stored row, before ours: {} messages/s",
        thousands(before_rate)
    );

    // (0) Our ingestion, over HTTP.
    let (ingest_url, ingest_store) = dbs.create(bench_db_name(run_id, "ingest")).await?;
    let key = ingest_store.create_api_key("bench").await?.key;
    let batch_limit = args.batch.max(1000).to_string();
    let rollup_wait = args.rollup_wait_ms.to_string();
    let server = ServerChild::start(
        &ingest_url,
        &[
            ("INGEST_MAX_ITEMS", &batch_limit),
            ("INGEST_MAX_BYTES", "67108864"),
            ("ROLLUP_WAIT_MS", &rollup_wait),
        ],
    )
    .await?;
    let endpoint = format!("{}/api/v1/ingest", server.base_url());
    let client = crate::http_client(args.clients, Duration::from_secs(300))?;
    let t = Instant::now();
    let mut setup_items = 0;
    for phase in world.setup_items(since) {
        setup_items += phase.len();
        send_batches(
            &client,
            &endpoint,
            &key,
            render(&phase, args.batch)?,
            args.clients,
        )
        .await?;
    }
    eprintln!(
        "setup: {} users, workflows and conversations in {:.1} s",
        thousands(setup_items as f64),
        t.elapsed().as_secs_f64()
    );
    let rss_before = server.rss().unwrap_or(0);
    let batches = bodies.len();
    eprintln!("timed: sending {batches} batches…");
    let metrics_url = format!("{}/metrics", server.base_url());
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = tokio::spawn(sample_lag(
        client.clone(),
        metrics_url.clone(),
        sampling.clone(),
    ));
    let cpu_start = CpuSample::now(Some(server.pid()));
    let Sent {
        latencies,
        answered,
        elapsed,
        created,
    } = send_batches(&client, &endpoint, &key, bodies, args.clients).await?;
    let cpu_ours = cpu_start
        .zip(CpuSample::now(Some(server.pid())))
        .map(|(a, b)| a.until(&b));
    sampling.store(false, std::sync::atomic::Ordering::SeqCst);
    let lag = sampler
        .await
        .map_err(|e| CliError(format!("the lag sampler failed: {e}")))?;
    // How long after the last answer the rollups count everything.
    let t = Instant::now();
    let mut drained = None;
    while t.elapsed() < Duration::from_secs(120) {
        if gauge(&client, &metrics_url, "charlie_rollup_queue_rows").await == Some(0.0) {
            drained = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Per million messages; a shorter run is cut in fifths.
    let window = if args.messages >= 2_000_000 {
        1_000_000
    } else {
        (args.messages / 5).max(1)
    };
    let rates = window_rates(&answered, window);
    let peak_rss = server.peak_rss().unwrap_or(0);
    let load_during = load_average();
    drop(server);
    if created != args.messages {
        return Err(CliError(format!(
            "{created} messages created of {}",
            args.messages
        )));
    }
    let ours_rate = args.messages as f64 / elapsed.as_secs_f64();
    let lat = Latency::of(latencies);
    eprintln!(
        "ours: {} messages/s (p50 {}, p99 {})",
        thousands(ours_rate),
        ms(lat.p50),
        ms(lat.p99)
    );
    let rates_text = rates
        .iter()
        .map(|r| thousands(*r))
        .collect::<Vec<_>>()
        .join(" → ");
    let flatness = match (rates.first(), rates.last()) {
        (Some(first), Some(last)) if *first > 0.0 => last / first,
        _ => 0.0,
    };
    eprintln!(
        "rate per {} messages as the tables grow: {rates_text} (last / first {:.0}%)",
        thousands(window as f64),
        flatness * 100.0
    );

    // Rollups must agree with raw rows.
    let t = Instant::now();
    let verify = ingest_store.verify_rollups(RollupRange::default()).await?;
    let verify_time = t.elapsed();
    let verify_ok = verify.differences.is_empty() && verify.stuck_pending.is_empty();
    let stored_messages = ingest_store
        .scalar_for_tests("SELECT COUNT(*) FROM messages")
        .await?;
    let db_size = charlie_store::bench::database_size(&ingest_store).await?;
    let pg_version = charlie_store::bench::server_version(&ingest_store).await?;
    ingest_store.close().await?;

    // (a) COPY of the same rows into `messages`.
    let (_, copy_store) = dbs.create(bench_db_name(run_id, "copy")).await?;
    charlie_store::bench::copy_users(&copy_store, &users).await?;
    let copy_time = charlie_store::bench::copy_messages(&copy_store, &rows, args.clients).await?;
    copy_store.close().await?;
    let copy_rate = rows.len() as f64 / copy_time.as_secs_f64();
    eprintln!("COPY: {} rows/s", thousands(copy_rate));

    // (a') again, after ours.
    let (all_time, all_rows, cpu_after) = copy_everything_into(
        dbs,
        bench_db_name(run_id, "copyall"),
        &users,
        &rows,
        args.clients,
    )
    .await?;
    let after_rate = rows.len() as f64 / all_time.as_secs_f64();
    let all_rate = (before_rate + after_rate) / 2.0;
    eprintln!(
        "COPY of every stored row: {} messages/s (before ours {}, after {})",
        thousands(all_rate),
        thousands(before_rate),
        thousands(after_rate)
    );

    // (b) The seed's design, on a subset.
    let seed_n = args.seed_messages.min(rows.len());
    let (_, seed_store) = dbs.create(bench_db_name(run_id, "seed")).await?;
    charlie_store::bench::copy_users(&seed_store, &users).await?;
    let seed_time =
        charlie_store::bench::seed_design_insert(&seed_store, &rows[..seed_n], args.clients)
            .await?;
    seed_store.close().await?;
    let seed_rate = seed_n as f64 / seed_time.as_secs_f64();
    eprintln!("seed design: {} messages/s", thousands(seed_rate));

    let mut out = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(out, "## bench ingest");
    let _ = writeln!(out);
    let _ = writeln!(out, "machine:  {}", machine_summary());
    let _ = writeln!(out, "postgres: {pg_version}");
    let _ = writeln!(
        out,
        "command:  target/release/charlie-bench ingest --messages {} --batch {} --clients {} --users {} --days {} --seed-messages {} --rollup-wait-ms {} --pattern {}",
        args.messages,
        args.batch,
        args.clients,
        args.users,
        args.days,
        args.seed_messages,
        args.rollup_wait_ms,
        match args.pattern {
            Pattern::Sessions => "sessions",
            Pattern::Random => "random",
        }
    );
    let _ = writeln!(
        out,
        "data:     {} messages ({:.0}% user turns, {:.0}% raw llm_response), {} users, {} conversations, {} days; {:.1} MB of JSON in {} batches",
        thousands(args.messages as f64),
        USER_TURN_SHARE * 100.0,
        args.raw_share * 100.0,
        thousands(args.users as f64),
        thousands(world.conversations.len() as f64),
        args.days,
        payload_bytes as f64 / 1e6,
        batches
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "| what | rows | time | rate | notes |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- |");
    let _ = writeln!(
        out,
        "| ours: POST /api/v1/ingest | {} | {:.1} s | **{} msg/s** | batch p50 {}, p95 {}, p99 {}, max {}; server peak RSS {} (before: {}) |",
        thousands(args.messages as f64),
        elapsed.as_secs_f64(),
        thousands(ours_rate),
        ms(lat.p50),
        ms(lat.p95),
        ms(lat.p99),
        ms(lat.max),
        mib(peak_rss),
        mib(rss_before)
    );
    let _ = writeln!(
        out,
        "| (a) COPY into messages | {} | {:.1} s | {} rows/s | {} parallel COPY streams, same rows, same table and indexes |",
        thousands(rows.len() as f64),
        copy_time.as_secs_f64(),
        thousands(copy_rate),
        args.clients.max(1)
    );
    let _ = writeln!(
        out,
        "| (a') COPY of everything stored | {} ({} rows) | {:.1} s after ours | {} msg/s (mean of {} before ours and {} after) | the messages, their ledger rows, conversation_days and the final daily_metrics / usage_buckets / user_buckets / user_days / platform_buckets rows, {} parallel COPY streams, each time into a fresh database |",
        thousands(rows.len() as f64),
        thousands(all_rows as f64),
        all_time.as_secs_f64(),
        thousands(all_rate),
        thousands(before_rate),
        thousands(after_rate),
        args.clients.max(1)
    );
    let _ = writeln!(
        out,
        "| (b) seed design | {} (subset) | {:.1} s | {} msg/s | one transaction per message: INSERT + daily_metrics upsert, {} clients |",
        thousands(seed_n as f64),
        seed_time.as_secs_f64(),
        thousands(seed_rate),
        args.clients.max(1)
    );
    let _ = writeln!(out);
    let vs_copy = ours_rate / copy_rate;
    let vs_all = ours_rate / all_rate;
    let vs_seed = ours_rate / seed_rate;
    let _ = writeln!(
        out,
        "ours / COPY = {:.1}% (target ≥ 50%: {})",
        vs_copy * 100.0,
        if vs_copy >= 0.5 { "met" } else { "MISSED" }
    );
    let _ = writeln!(
        out,
        "ours / COPY of everything stored = {:.1}% (to the (a') before ours: {:.1}%, after: {:.1}%)",
        vs_all * 100.0,
        ours_rate / before_rate * 100.0,
        ours_rate / after_rate * 100.0
    );
    let _ = writeln!(
        out,
        "rate per {} messages as the tables grow: {rates_text} msg/s; last / first = {:.0}% (target ≥ 70% over 5M)",
        thousands(window as f64),
        flatness * 100.0
    );
    let _ = writeln!(
        out,
        "ours / seed = {:.1}× (target ≥ 20×: {})",
        vs_seed,
        if vs_seed >= 20.0 { "met" } else { "MISSED" }
    );
    let _ = writeln!(
        out,
        "rollups verify on the ingested database: {} ({} rollup rows compared, {} differences, {} stuck pending; {} messages stored; {:.1} s); database size {}",
        if verify_ok { "clean" } else { "DIFFERENCES" },
        thousands(verify.rows as f64),
        verify.differences.len(),
        verify.stuck_pending.len(),
        thousands(stored_messages as f64),
        verify_time.as_secs_f64(),
        mib(u64::try_from(db_size).unwrap_or(0))
    );
    let _ = writeln!(
        out,
        "rollup lag (ROLLUP_WAIT_MS={}): max {:.2} s over {} samples of charlie_rollup_lag_seconds every 250 ms; queue empty {} after the last answer",
        args.rollup_wait_ms,
        lag.max,
        lag.samples,
        drained.map_or("not within 120 s".to_owned(), |d| format!(
            "{:.2} s",
            d.as_secs_f64()
        ))
    );
    let _ = writeln!(out, "load average during the timed run: {load_during}");
    let _ = writeln!(
        out,
        "{}",
        cpu_report(cpu_ours, cpu_before, cpu_after, args.messages)
    );
    if !verify_ok {
        for d in verify.differences.iter().take(10) {
            let _ = writeln!(
                out,
                "  {} {}: stored {:?} recounted {:?}",
                d.table, d.key, d.stored, d.recounted
            );
        }
        return Err(CliError(format!("{out}\nrollups disagree with raw rows")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_has_three_conversations_per_user_two_with_a_workflow() {
        let w = World::new(1, 10);
        assert_eq!(w.conversations.len(), 30);
        assert_eq!(w.conversations.iter().filter(|c| c.2.is_some()).count(), 20);
        let [users, workflows, conversations] = w.setup_items(OffsetDateTime::now_utc());
        assert_eq!(
            (users.len(), workflows.len(), conversations.len()),
            (10, 10, 30)
        );
    }

    #[test]
    fn window_rates_follow_the_answers_in_time_order() {
        let secs = Duration::from_secs;
        // 4 batches of 5: windows of 10 end at 2 s and at 6 s.
        let answered = [(secs(2), 5), (secs(1), 5), (secs(6), 5), (secs(3), 5)];
        assert_eq!(window_rates(&answered, 10), vec![5.0, 2.5]);
        // A partial last window is left out.
        assert_eq!(window_rates(&answered[..3], 10), vec![5.0]);
    }

    #[test]
    fn batches_hold_every_item() {
        let items: Vec<Value> = (0..1001).map(|n| json!({"n": n})).collect();
        let bodies = render(&items, 500).unwrap_or_default();
        assert_eq!(bodies.len(), 3);
    }
}
