//! `charlie-bench`: benchmarks of Charlie Stats against a PostgreSQL server.
//! They print figures; they are commands, never timed tests. Not part of the
//! product: this crate uses `charlie-api` and `charlie-store`, nothing uses
//! it. The server under test is the `charlie-stats` binary built next to
//! this one (`cargo build --release -p charlie-api -p charlie-bench`), or
//! `CHARLIE_STATS_BIN`.
//!
//! - `bench ingest`: `POST /api/v1/ingest` of the real server (a child
//!   process), beside `COPY` of the same rows and the seed's
//!   one-transaction-per-message design.
//! - `bench budget`: latency of `reserve` (the store's transaction) at
//!   concurrent clients.
//! - `bench read`: my-stats and admin/overview of the real server on a large
//!   seeded database, beside the seed's own queries on the same data.
//! - `bench soak`: a steady mix of ingestion and reads for N minutes;
//!   errors, latency and server RSS each minute.

mod budget;
mod cpu;
mod data;
mod ingest;
mod read;
mod soak;

use charlie_api::{Settings, error::CliError};
use std::{
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The `bench` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Ingestion over HTTP vs COPY vs the seed's per-message transactions.
    Ingest(ingest::IngestArgs),
    /// Read API latency on a large database vs the seed's queries.
    Read(read::ReadArgs),
    /// Budget reservation latency at concurrent clients.
    Budget(budget::BudgetArgs),
    /// Mixed ingestion and reads at a fixed rate for N minutes.
    Soak(soak::SoakArgs),
}

/// `charlie-bench`: one benchmark per subcommand.
#[derive(Debug, clap::Parser)]
#[command(
    name = "charlie-bench",
    version,
    about = "Benchmarks of Charlie Stats (PostgreSQL)"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

fn main() -> std::process::ExitCode {
    use clap::Parser;
    // Parsed before the settings are read, so `--help` needs no environment.
    let cli = Cli::parse();
    charlie_api::cli::launch("charlie-bench", |settings| run(cli.command, settings))
}

/// The HTTP client of a benchmark: keeps up to `idle` connections and gives
/// a request `timeout`. Idle connections are dropped after 4 s, before the
/// server's 5 s keep-alive closes them: a POST sent on a connection the
/// server is closing at that moment fails ("error sending request") and is
/// not retried.
fn http_client(idle: usize, timeout: Duration) -> Result<reqwest::Client, CliError> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(idle.max(1))
        .pool_idle_timeout(Duration::from_secs(4))
        .timeout(timeout)
        .build()?)
}

/// The `charlie-stats` executable the benchmarks start: `CHARLIE_STATS_BIN`,
/// else the one next to this executable.
fn server_executable() -> Result<std::path::PathBuf, CliError> {
    if let Some(path) = std::env::var_os("CHARLIE_STATS_BIN") {
        return Ok(path.into());
    }
    let me = std::env::current_exe()
        .map_err(|e| CliError(format!("cannot find this executable: {e}")))?;
    let sibling = me.with_file_name(format!("charlie-stats{}", std::env::consts::EXE_SUFFIX));
    if sibling.exists() {
        Ok(sibling)
    } else {
        Err(CliError(format!(
            "{} does not exist: build the server with the same profile \
             (cargo build --release -p charlie-api -p charlie-bench) or set CHARLIE_STATS_BIN",
            sibling.display()
        )))
    }
}

/// Runs a `bench` subcommand.
async fn run(command: BenchCommand, settings: Settings) -> Result<(), CliError> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args, settings).await,
        BenchCommand::Read(args) => read::run(args, settings).await,
        BenchCommand::Budget(args) => budget::run(args, settings).await,
        BenchCommand::Soak(args) => soak::run(args, settings).await,
    }
}

/// The server to create benchmark databases on: `--database-url`, else
/// `DATABASE_URL` when it is PostgreSQL, else the local default.
pub fn admin_url(arg: Option<String>, settings: &Settings) -> Result<String, CliError> {
    let url = arg.unwrap_or_else(|| {
        let env = settings.database_url.expose();
        if env.starts_with("postgres") {
            env.to_owned()
        } else {
            "postgres://postgres@127.0.0.1:5432/postgres".to_owned()
        }
    });
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(CliError(
            "benchmarks need PostgreSQL: pass --database-url postgres://…".into(),
        ));
    }
    Ok(url)
}

/// A benchmark database name unique to this run: `charlie_bench_<unix ts>_<suffix>`.
pub fn bench_db_name(run: i64, suffix: &str) -> String {
    format!("charlie_bench_{run}_{suffix}")
}

/// The `q`-quantile (0–1) of sorted values, nearest rank.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p95, p99 and max of unsorted samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Latency {
    pub fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let total: Duration = samples.iter().sum();
        Latency {
            count: samples.len(),
            p50: percentile(&samples, 0.50),
            p95: percentile(&samples, 0.95),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or_default(),
            mean: if samples.is_empty() {
                Duration::ZERO
            } else {
                total / samples.len() as u32
            },
        }
    }
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A number, rounded, with thousands separators (the reports' format).
pub fn thousands(n: f64) -> String {
    charlie_api::service::reports::email::thousands(n.round() as i64)
}

/// Drops the run's databases (unless kept), then prints its report: the
/// end of every benchmark, whether or not the run failed.
pub async fn finish(dbs: BenchDatabases, result: Result<String, CliError>) -> Result<(), CliError> {
    let cleanup = dbs.finish().await;
    let report = result?;
    cleanup?;
    println!();
    println!("{report}");
    Ok(())
}

/// The machine, for the report: CPUs, memory, load.
pub fn machine_summary() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let mem_gb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0 / 1024.0)
        .unwrap_or(0.0);
    format!(
        "{cpus} CPUs ({model}), {mem_gb:.1} GB RAM, load average {}",
        load_average()
    )
}

/// `/proc/loadavg`'s first three fields.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The real server, started as a child process of this binary.
#[derive(Debug)]
pub struct ServerChild {
    child: Child,
    pub addr: SocketAddr,
}

impl ServerChild {
    /// Starts `charlie-stats serve` on a free local port against `database_url`
    /// and waits until `/ready` answers.
    pub async fn start(
        database_url: &str,
        extra_env: &[(&str, &str)],
    ) -> Result<ServerChild, CliError> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| CliError(format!("cannot find a free port: {e}")))?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(server_executable()?);
        cmd.args([
            "serve",
            "--bind",
            &addr.to_string(),
            "--database-url",
            database_url,
        ])
        .env("RUST_LOG", "warn")
        .env_remove("SENTRY_DSN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| CliError(format!("cannot start the server: {e}")))?;
        let mut server = ServerChild { child, addr };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(CliError(format!("the server exited at start: {status}")));
            }
            let ready = client
                .get(format!("http://{addr}/ready"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop();
                return Err(CliError("the server did not become ready in 60 s".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Peak resident set size (`VmHWM`) of the server, in bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kb(self.pid(), "VmHWM:").map(|kb| kb * 1024)
    }

    /// Current resident set size (`VmRSS`), in bytes.
    pub fn rss(&self) -> Option<u64> {
        proc_status_kb(self.pid(), "VmRSS:").map(|kb| kb * 1024)
    }

    /// Stops the server (SIGKILL: nothing of it is kept).
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        self.stop();
    }
}

fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Throw-away benchmark databases, dropped at the end unless kept.
#[derive(Debug)]
pub struct BenchDatabases {
    admin_url: String,
    names: Vec<String>,
    keep: bool,
}

impl BenchDatabases {
    pub fn new(admin_url: String, keep: bool) -> Self {
        BenchDatabases {
            admin_url,
            names: Vec::new(),
            keep,
        }
    }

    /// Creates a database, migrates it and returns a store on it.
    pub async fn create(
        &mut self,
        name: String,
    ) -> Result<(String, charlie_store::Store), CliError> {
        let url = charlie_store::bench::create_database(&self.admin_url, &name).await?;
        self.names.push(name);
        let store = charlie_store::Store::connect(&url).await?;
        store.migrate_up().await?;
        Ok((url, store))
    }

    /// Drops every database (unless `--keep`), and says what it did.
    pub async fn finish(self) -> Result<(), CliError> {
        if self.keep {
            for n in &self.names {
                println!("kept database {n}");
            }
            return Ok(());
        }
        for n in &self.names {
            charlie_store::bench::drop_database(&self.admin_url, n).await?;
        }
        println!("dropped {} benchmark databases", self.names.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.95), Duration::from_millis(95));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&v, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
        let one = [Duration::from_millis(7)];
        assert_eq!(percentile(&one, 0.99), Duration::from_millis(7));
    }

    #[test]
    fn latency_summaries_sort_their_samples() {
        let l = Latency::of(vec![
            Duration::from_millis(3),
            Duration::from_millis(1),
            Duration::from_millis(2),
        ]);
        assert_eq!(l.p50, Duration::from_millis(2));
        assert_eq!(l.max, Duration::from_millis(3));
        assert_eq!(l.mean, Duration::from_millis(2));
        assert_eq!(l.count, 3);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(-1000.0), "-1,000");
    }
}
