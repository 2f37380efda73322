//! `bench budget`: latency of a budget reservation (one statement when the
//! user's lock row is free; a transaction that waits for it otherwise: see
//! `charlie_store::reservations`) at a number of concurrent clients on
//! PostgreSQL, for clients spread over many users and for every client on
//! one user (the lock's worst case).

use super::{BenchDatabases, Latency, admin_url, bench_db_name, load_average, machine_summary, ms};
use charlie_api::{Settings, error::CliError};
use charlie_store::{
    Store,
    reservations::{ReserveOutcome, ReservePolicy, ReserveRequest},
};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `bench budget` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BudgetArgs {
    /// PostgreSQL server to create the benchmark database on; default
    /// DATABASE_URL when it is PostgreSQL, else the local server.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Timed reservations per client and scenario.
    #[arg(long, default_value_t = 500)]
    pub requests: usize,
    /// Users the spread scenario picks from.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Keep the benchmark database.
    #[arg(long)]
    pub keep: bool,
}

async fn scenario(
    store: &Store,
    args: &BudgetArgs,
    users: &[Uuid],
    label: &str,
) -> Result<Latency, CliError> {
    let policy = ReservePolicy {
        default_hard_limit_nano_usd: Some(i64::MAX / 4),
        commit_hold_seconds: 600,
    };
    let mut tasks = Vec::new();
    for client in 0..args.clients {
        let store = store.clone();
        let users = users.to_vec();
        let requests = args.requests;
        let label = label.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::with_capacity(requests);
            for i in 0..requests {
                let user = users[(client * 7919 + i * 104_729) % users.len()];
                let req = ReserveRequest {
                    user_id: user,
                    workflow_id: None,
                    amount_nano_usd: 5_000_000,
                    model: Some("gpt-4o".into()),
                    idempotency_key: format!("{label}-{client}-{i}"),
                    ttl_seconds: 120,
                };
                let start = Instant::now();
                let out = store
                    .reserve_budget(&req, &policy, time::OffsetDateTime::now_utc())
                    .await;
                samples.push(start.elapsed());
                match out {
                    Ok(ReserveOutcome::Allowed { reservation, .. }) => {
                        // Half are released, half stay held: the held sums grow.
                        if i % 2 == 0 {
                            store
                                .release_reservation(
                                    reservation.id,
                                    time::OffsetDateTime::now_utc(),
                                )
                                .await
                                .map_err(|e| e.to_string())?;
                        }
                    }
                    Ok(ReserveOutcome::Denied { .. }) => return Err("denied".to_owned()),
                    Err(e) => return Err(e.to_string()),
                }
            }
            Ok::<Vec<Duration>, String>(samples)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| CliError(e.to_string()))?
                .map_err(CliError)?,
        );
    }
    Ok(Latency::of(all))
}

/// Runs `bench budget`.
pub async fn run(args: BudgetArgs, settings: Settings) -> Result<(), CliError> {
    let admin = admin_url(args.database_url.clone(), &settings)?;
    let run_id = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut dbs = BenchDatabases::new(admin, args.keep);
    let (_, store) = dbs.create(bench_db_name(run_id, "budget")).await?;
    println!("bench budget: {}", machine_summary());
    println!(
        "{} clients × {} reservations each (every other one released), PostgreSQL",
        args.clients, args.requests
    );
    let users: Vec<Uuid> = (0..args.users.max(1)).map(|_| Uuid::now_v7()).collect();
    // Warm-up: connections, prepared statements.
    let warm = BudgetArgs {
        requests: 20,
        ..args.clone()
    };
    scenario(&store, &warm, &users, "warm").await?;
    for (label, pool) in [
        ("spread", users.clone()),
        ("one-user", vec![Uuid::now_v7()]),
    ] {
        let start = Instant::now();
        let l = scenario(&store, &args, &pool, label).await?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "reserve ({label:<8}, {} users): n={} p50={} p95={} p99={} max={} mean={} ({:.0}/s)",
            pool.len(),
            l.count,
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max),
            ms(l.mean),
            l.count as f64 / secs.max(1e-9)
        );
    }
    println!("load average: {}", load_average());
    store.close().await?;
    dbs.finish().await
}
