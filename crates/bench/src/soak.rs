//! `charlie-bench soak`: the real server under a steady mix of
//! ingestion and dashboard reads for N minutes, at a fixed rate (open loop:
//! requests start on schedule whether or not earlier ones have answered).
//! Each minute it prints the requests made, the errors, p50/p99 latency of
//! ingestion and of reads, and the server's resident memory. At the end: the
//! RSS of the first ten minutes after warm-up against the last ten, the
//! error total, and a full `rollups verify` of what was ingested.

use super::{
    BenchDatabases, Latency, ServerChild, admin_url, bench_db_name, data, finish, ingest::World,
    load_average, machine_summary, mib, ms, read::get_ok, thousands,
};
use charlie_api::{Settings, error::CliError};
use charlie_store::maintenance::RollupRange;
use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::json;
use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;

/// Arguments of `bench soak`.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakArgs {
    /// PostgreSQL server to create the benchmark database on; default
    /// DATABASE_URL when it is PostgreSQL, else postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Minutes of load (after the setup).
    #[arg(long, default_value_t = 30)]
    pub minutes: u64,
    /// Minutes at the start left out of the RSS comparison.
    #[arg(long, default_value_t = 2)]
    pub warmup_minutes: u64,
    /// Messages ingested per second.
    #[arg(long, default_value_t = 200)]
    pub ingest_rate: u64,
    /// Messages per ingest request.
    #[arg(long, default_value_t = 50)]
    pub batch: u64,
    /// Dashboard reads per second (9 in 10 my-stats of a random user, 1 in
    /// 10 admin/overview).
    #[arg(long, default_value_t = 20)]
    pub read_rate: u64,
    /// Users the messages and reads are spread across.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Requests allowed in flight at once; a request due while that many
    /// are pending is counted as `late` (the server is not keeping up).
    #[arg(long, default_value_t = 64)]
    pub max_in_flight: usize,
    /// Keep the benchmark database.
    #[arg(long)]
    pub keep: bool,
}

/// What one minute saw.
#[derive(Debug, Default)]
struct Minute {
    ingest: Vec<Duration>,
    reads: Vec<Duration>,
    messages: u64,
    errors: u64,
    late: u64,
    first_error: Option<String>,
}

impl Minute {
    fn error(&mut self, e: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e);
        }
    }
}

/// One printed line per minute, kept for the summary.
#[derive(Debug, Clone, Copy)]
struct MinuteLine {
    rss: u64,
    errors: u64,
    late: u64,
}

/// Mean RSS of `lines` (bytes).
fn mean_rss(lines: &[MinuteLine]) -> f64 {
    if lines.is_empty() {
        return 0.0;
    }
    lines.iter().map(|l| l.rss as f64).sum::<f64>() / lines.len() as f64
}

/// The RSS verdict: the mean of the last ten minutes against the mean of the
/// first ten after warm-up (fewer when the run is shorter: halves).
fn rss_verdict(lines: &[MinuteLine], warmup: usize) -> (f64, f64, f64) {
    let steady = lines.get(warmup..).unwrap_or(&[]);
    let window = (steady.len() / 2).clamp(1, 10);
    let first = mean_rss(&steady[..window.min(steady.len())]);
    let last = mean_rss(&steady[steady.len().saturating_sub(window)..]);
    let change = if first > 0.0 {
        (last - first) / first
    } else {
        0.0
    };
    (first, last, change)
}

/// Runs the soak and prints its report.
pub async fn run(args: SoakArgs, settings: Settings) -> Result<(), CliError> {
    if args.minutes == 0 || args.ingest_rate == 0 || args.batch == 0 || args.users == 0 {
        return Err(CliError(
            "--minutes, --ingest-rate, --batch and --users must be positive".into(),
        ));
    }
    if args.warmup_minutes >= args.minutes {
        return Err(CliError(
            "--warmup-minutes must be less than --minutes".into(),
        ));
    }
    let admin = admin_url(args.database_url.clone(), &settings)?;
    let now = OffsetDateTime::now_utc();
    let run_id = now.unix_timestamp();
    let mut dbs = BenchDatabases::new(admin, args.keep);
    let result = run_inner(&args, &settings, &mut dbs, run_id).await;
    finish(dbs, result).await?;
    Ok(())
}

async fn run_inner(
    args: &SoakArgs,
    settings: &Settings,
    dbs: &mut BenchDatabases,
    run_id: i64,
) -> Result<String, CliError> {
    let machine = machine_summary();
    let (url, store) = dbs.create(bench_db_name(run_id, "soak")).await?;
    let key = store.create_api_key("soak").await?.key;
    // Rate limits off: the soak sets its own rate; they are tested elsewhere.
    let server = ServerChild::start(&url, &[("RATE_LIMIT_ENABLED", "false")]).await?;
    let base = server.base_url();
    let client = crate::http_client(args.max_in_flight, Duration::from_secs(60))?;
    let endpoint = format!("{base}/api/v1/ingest");

    // The world: users, a workflow each, three conversations each.
    let world = World::new(run_id as u64, args.users);
    let start = OffsetDateTime::now_utc();
    for phase in world.setup_items(start - time::Duration::minutes(5)) {
        for chunk in phase.chunks(500) {
            let body = serde_json::to_vec(&json!({ "batch": chunk }))?;
            post_batch(&client, &endpoint, &key, body).await?;
        }
    }
    let token_of = |n: usize, admin: bool| {
        charlie_devtools::demo::demo_token(
            settings,
            &format!("bench_user_{n}"),
            &format!("bench.user.{n}@example.com"),
            admin,
            OffsetDateTime::now_utc(),
        )
        .map_err(|e| CliError(e.to_string()))
    };
    let tokens: Arc<Vec<Arc<str>>> = Arc::new(
        (0..args.users)
            .map(|n| token_of(n, false).map(Arc::from))
            .collect::<Result<_, _>>()?,
    );
    let admin_token: Arc<str> = Arc::from(token_of(args.users, true)?);
    let my_stats = Arc::new(format!("{base}/api/v1/analytics/my-stats?days=30"));
    let overview = Arc::new(format!("{base}/api/v1/analytics/admin/overview?days=30"));
    eprintln!(
        "bench soak: {} min, {} msg/s in batches of {}, {} reads/s, {} users; {machine}",
        args.minutes, args.ingest_rate, args.batch, args.read_rate, args.users
    );

    let minute = Arc::new(Mutex::new(Minute::default()));
    let slots = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let ingest_every = Duration::from_secs_f64(args.batch as f64 / args.ingest_rate as f64);
    let read_every =
        (args.read_rate > 0).then(|| Duration::from_secs_f64(1.0 / args.read_rate as f64));
    let world = Arc::new(world);
    let mut rng = StdRng::seed_from_u64(run_id as u64);
    let mut next_message: u64 = 0;
    let mut ingest_tick = tokio::time::interval(ingest_every);
    ingest_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut read_tick = tokio::time::interval(read_every.unwrap_or(Duration::from_secs(3600)));
    read_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut minute_tick = tokio::time::interval(Duration::from_secs(60));
    minute_tick.tick().await;

    let mut lines: Vec<MinuteLine> = Vec::new();
    let mut all_ingest = Vec::new();
    let mut all_reads = Vec::new();
    let mut total_messages = 0u64;
    let mut report = String::new();
    let header = "| minute | messages | ingest p50 / p99 | reads | read p50 / p99 | errors | late | server RSS | load |";
    println!("{header}");
    println!("| ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | --- |");
    let _ = writeln!(report, "{header}");
    let _ = writeln!(
        report,
        "| ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | --- |"
    );
    let t0 = Instant::now();
    while lines.len() < args.minutes as usize {
        tokio::select! {
            _ = ingest_tick.tick() => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    lock(&minute).late += 1;
                    continue;
                };
                let at = OffsetDateTime::now_utc();
                let mut items = Vec::with_capacity(args.batch as usize);
                for _ in 0..args.batch {
                    let (conversation, _, _) =
                        world.conversations[rng.random_range(0..world.conversations.len())];
                    let user_turn = rng.random_bool(0.45);
                    let body = data::message_body(&mut rng, conversation, user_turn, 0.5);
                    items.push(data::item(
                        data::named_id(world.run, "message", next_message),
                        "message.create",
                        at,
                        body,
                    ));
                    next_message += 1;
                }
                let body = serde_json::to_vec(&json!({ "batch": items }))?;
                let (client, endpoint, key, minute) =
                    (client.clone(), endpoint.clone(), key.clone(), minute.clone());
                let n = args.batch;
                tokio::spawn(async move {
                    let t = Instant::now();
                    let result = post_batch(&client, &endpoint, &key, body).await;
                    let took = t.elapsed();
                    let mut m = lock(&minute);
                    match result {
                        Ok(()) => {
                            m.ingest.push(took);
                            m.messages += n;
                        }
                        Err(e) => m.error(e.0),
                    }
                    drop(permit);
                });
            }
            _ = read_tick.tick(), if read_every.is_some() => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    lock(&minute).late += 1;
                    continue;
                };
                let (url, token) = if rng.random_ratio(1, 10) {
                    (overview.clone(), admin_token.clone())
                } else {
                    let n = rng.random_range(0..tokens.len());
                    (my_stats.clone(), tokens[n].clone())
                };
                let (client, minute) = (client.clone(), minute.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let result = get_ok(&client, &url, &token).await;
                    let took = t.elapsed();
                    let mut m = lock(&minute);
                    match result {
                        Ok(()) => m.reads.push(took),
                        Err(e) => m.error(e.0),
                    }
                    drop(permit);
                });
            }
            _ = minute_tick.tick() => {
                let m = std::mem::take(&mut *lock(&minute));
                let rss = server.rss().unwrap_or(0);
                let (i, r) = (Latency::of(m.ingest.clone()), Latency::of(m.reads.clone()));
                let line = format!(
                    "| {} | {} | {} / {} | {} | {} / {} | {} | {} | {} | {} |",
                    lines.len() + 1,
                    thousands(m.messages as f64),
                    ms(i.p50), ms(i.p99),
                    thousands(r.count as f64),
                    ms(r.p50), ms(r.p99),
                    m.errors, m.late, mib(rss), load_average()
                );
                println!("{line}");
                if let Some(e) = &m.first_error {
                    println!("  first error this minute: {e}");
                }
                let _ = writeln!(report, "{line}");
                total_messages += m.messages;
                all_ingest.extend(m.ingest);
                all_reads.extend(m.reads);
                lines.push(MinuteLine { rss, errors: m.errors, late: m.late });
            }
        }
    }
    // Let what is in flight finish before counting.
    let _ = tokio::time::timeout(
        Duration::from_secs(60),
        slots.acquire_many(args.max_in_flight.max(1) as u32),
    )
    .await;
    let tail = std::mem::take(&mut *lock(&minute));
    let elapsed = t0.elapsed();
    let errors: u64 = lines.iter().map(|l| l.errors).sum::<u64>() + tail.errors;
    let late: u64 = lines.iter().map(|l| l.late).sum::<u64>() + tail.late;
    total_messages += tail.messages;
    all_ingest.extend(tail.ingest);
    all_reads.extend(tail.reads);
    let (first, last, change) = rss_verdict(&lines, args.warmup_minutes as usize);
    let (i, r) = (Latency::of(all_ingest), Latency::of(all_reads));

    let verify = store.verify_rollups(RollupRange::default()).await?;
    let clean = verify.differences.is_empty() && verify.stuck_pending.is_empty();
    let _ = writeln!(report);
    let _ = writeln!(
        report,
        "{:.1} min: {} messages in {} requests (ingest p50 {} / p99 {}), {} reads (p50 {} / p99 {}); \
         {errors} errors, {late} late",
        elapsed.as_secs_f64() / 60.0,
        thousands(total_messages as f64),
        thousands(i.count as f64),
        ms(i.p50),
        ms(i.p99),
        thousands(r.count as f64),
        ms(r.p50),
        ms(r.p99),
    );
    let window = ((lines.len() - args.warmup_minutes as usize) / 2).clamp(1, 10);
    let _ = writeln!(
        report,
        "server RSS: first {window} min after {} min warm-up {}, last {window} min {} ({:+.1}%): {}; peak {}",
        args.warmup_minutes,
        mib(first as u64),
        mib(last as u64),
        change * 100.0,
        if change.abs() <= 0.10 {
            "flat (within 10%)"
        } else {
            "NOT flat"
        },
        mib(server.peak_rss().unwrap_or(0)),
    );
    let _ = writeln!(
        report,
        "rollups verify (all days): {} ({} rows compared); errors: {}",
        if clean { "clean" } else { "DIFFERENCES" },
        thousands(verify.rows as f64),
        if errors == 0 { "none" } else { "SOME" },
    );
    let _ = writeln!(
        report,
        "machine: {machine}; load average at the end {}",
        load_average()
    );
    drop(server);
    if !clean {
        return Err(CliError(format!(
            "{report}\nrollups disagree with raw rows"
        )));
    }
    Ok(report)
}

fn lock(m: &Mutex<Minute>) -> std::sync::MutexGuard<'_, Minute> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One ingest request; an answer other than 207 with every item accepted
/// is an error.
async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: Vec<u8>,
) -> Result<(), CliError> {
    let resp = client
        .post(url)
        .bearer_auth(key)
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
    if status.as_u16() != 207 {
        return Err(CliError(format!(
            "ingest answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    if v["errors"].as_u64().unwrap_or(0) > 0 {
        return Err(CliError(format!("items refused: {v}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(mib: u64) -> MinuteLine {
        MinuteLine {
            rss: mib * 1024 * 1024,
            errors: 0,
            late: 0,
        }
    }

    #[test]
    fn rss_compares_the_first_and_last_ten_minutes_after_warm_up() {
        // 2 warm-up minutes at 10 MiB, then 10 at 100, then 18 at 105.
        let mut lines: Vec<MinuteLine> = (0..2).map(|_| line(10)).collect();
        lines.extend((0..10).map(|_| line(100)));
        lines.extend((0..18).map(|_| line(105)));
        let (first, last, change) = rss_verdict(&lines, 2);
        assert_eq!(first, 100.0 * 1024.0 * 1024.0);
        assert_eq!(last, 105.0 * 1024.0 * 1024.0);
        assert!((change - 0.05).abs() < 1e-9);
    }

    #[test]
    fn short_runs_compare_halves() {
        let lines = vec![line(1), line(100), line(100), line(200), line(200)];
        let (first, last, change) = rss_verdict(&lines, 1);
        assert_eq!(first, 100.0 * 1024.0 * 1024.0);
        assert_eq!(last, 200.0 * 1024.0 * 1024.0);
        assert!((change - 1.0).abs() < 1e-9);
    }
}
