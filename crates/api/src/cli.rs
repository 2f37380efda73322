//! The `charlie-stats` command line. `serve` is the default subcommand.

use crate::{
    Application,
    config::{ProcessEnv, Settings},
    telemetry,
};
use charlie_store::Store;
use clap::{Parser, Subcommand};
use std::{net::SocketAddr, process::ExitCode};

#[derive(Debug, Parser)]
#[command(
    name = "charlie-stats",
    version,
    about = "Reporting and analytics service for the Teach Charlie platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// `--database-url`, shared by every subcommand that touches the database.
#[derive(Debug, Clone, clap::Args)]
struct DbArgs {
    /// Database URL (postgres://… or sqlite:…); overrides DATABASE_URL.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve {
        /// Address to listen on; overrides BIND_ADDR.
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the OpenAPI document (what openapi/openapi.json must contain).
    Openapi,
    /// Manage the service API keys the platform ingests with.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Recompute or check the rollups against raw rows.
    Rollups {
        #[command(subcommand)]
        action: RollupsAction,
    },
    /// Raw-data retention and the monthly partitions it drops.
    Retention {
        #[command(subcommand)]
        action: RetentionAction,
    },
    /// Extract and price token usage (the pricing core, from the shell).
    Usage {
        #[command(subcommand)]
        action: UsageAction,
    },
    /// Weekly report e-mails (see `reports send --help`).
    Reports {
        #[command(subcommand)]
        action: crate::jobs::reports::ReportsAction,
    },
    /// Forward activity events to PostHog (see `posthog backfill --help`).
    Posthog {
        #[command(subcommand)]
        action: PosthogAction,
    },
    /// Recompute stored message costs from their usage with today's
    /// catalog (dated prices), rollups included; records an audit row.
    Reprice {
        /// First UTC day (YYYY-MM-DD).
        #[arg(long, value_parser = parse_date)]
        from: time::Date,
        /// Last UTC day (YYYY-MM-DD), included.
        #[arg(long, value_parser = parse_date)]
        to: time::Date,
        /// Only messages of this model (as stored).
        #[arg(long)]
        model: Option<String>,
        /// Show what would change; change nothing (the run is still recorded).
        #[arg(long)]
        dry_run: bool,
        /// Who runs it (default: the OS user).
        #[arg(long)]
        actor: Option<String>,
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Compare a provider's cost export with our costs, per UTC day and model.
    Reconcile {
        #[arg(long, value_enum)]
        provider: crate::reconcile::Provider,
        /// The export: the provider's cost API JSON or console CSV.
        file: std::path::PathBuf,
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Apply, roll back or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a key and print it once (only its hash is stored).
    Create {
        #[arg(long)]
        name: String,
        /// Print `{"id", "key"}` instead of text (with `--langfuse`, also
        /// `langfuse_public_key` and `langfuse_secret_key`).
        #[arg(long)]
        json: bool,
        /// Also print the key as the Langfuse public/secret key pair that
        /// Langflow's Langfuse tracer sends (`LANGFUSE_PUBLIC_KEY`,
        /// `LANGFUSE_SECRET_KEY`).
        #[arg(long)]
        langfuse: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key by id.
    Revoke {
        id: uuid::Uuid,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum PosthogAction {
    /// Send the stored activity events of a UTC date range to PostHog (the
    /// same `uuid`s as live forwarding, so PostHog keeps one copy of each).
    Backfill {
        #[command(flatten)]
        range: RangeArgs,
        /// Count the events and print a sample of what would be sent; send nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `--from`/`--to`: a UTC date range, both ends included.
#[derive(Debug, Clone, clap::Args)]
struct RangeArgs {
    /// First UTC day (YYYY-MM-DD); default: the beginning.
    #[arg(long, value_parser = parse_date)]
    from: Option<time::Date>,
    /// Last UTC day (YYYY-MM-DD); default: the end.
    #[arg(long, value_parser = parse_date)]
    to: Option<time::Date>,
}

fn parse_date(s: &str) -> Result<time::Date, String> {
    time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|e| format!("`{s}` is not a YYYY-MM-DD date: {e}"))
}

fn parse_instant(s: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{s}` is not an RFC 3339 timestamp: {e}"))
}

#[derive(Debug, Subcommand)]
enum RollupsAction {
    /// Recompute daily_metrics and usage_buckets from raw rows (idempotent).
    Rebuild {
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Compare stored rollups with a recount; exit non-zero and list the
    /// differences when they disagree.
    Verify {
        #[command(flatten)]
        range: RangeArgs,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionAction {
    /// Drop raw rows (messages, activity events, error logs) older than
    /// RAW_RETENTION_MONTHS whole months before the current one: whole
    /// partitions on PostgreSQL, rows in batches on SQLite. Rollups stay.
    Apply {
        /// Months to keep; overrides RAW_RETENTION_MONTHS.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1200))]
        months: Option<u32>,
        /// Say what would be dropped; change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// From when raw rows are kept, and the monthly partitions (PostgreSQL).
    Status {
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(Debug, Subcommand)]
enum UsageAction {
    /// Read one raw LLM/LangChain/Langflow response (JSON) on stdin and print
    /// its model, normalized usage, cost and warnings as JSON.
    Extract {
        /// Price at this instant (RFC 3339); default now.
        #[arg(long, value_parser = parse_instant)]
        at: Option<time::OffsetDateTime>,
    },
    /// Price a usage given on the command line; prints the cost object.
    Price {
        #[arg(long)]
        model: String,
        #[arg(long)]
        input: u64,
        #[arg(long)]
        output: u64,
        /// Cache-read tokens (a subset of --input).
        #[arg(long, default_value_t = 0)]
        cache_read: u64,
        /// Cache-write tokens (a subset of --input).
        #[arg(long, default_value_t = 0)]
        cache_write: u64,
        /// The part of --cache-write made with a one-hour lifetime.
        #[arg(long = "cache-write-1h", default_value_t = 0)]
        cache_write_1h: u64,
        /// Reasoning tokens (a subset of --output).
        #[arg(long, default_value_t = 0)]
        reasoning: u64,
        #[arg(long, value_parser = parse_instant)]
        at: Option<time::OffsetDateTime>,
    },
    /// List the price catalog (built-in and custom).
    Models,
}

#[derive(Debug, Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Roll back migrations (all of them unless --steps is given).
    Down {
        /// How many migrations to roll back.
        #[arg(long)]
        steps: Option<u32>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List migrations and whether each is applied.
    Status {
        #[command(flatten)]
        db: DbArgs,
    },
}

pub use crate::error::CliError;

/// Entry point of the binary.
pub fn main() -> ExitCode {
    // Parsed before the settings are read, so `--help` needs no environment.
    let cli = Cli::parse();
    launch("charlie-stats", |settings| run(cli, settings))
}

/// Runs a command-line program of the workspace (`charlie-stats`,
/// `charlie-bench`, `charlie-dev`) the same way: reads `.env` if present,
/// the settings from the environment (exit 2 when they are wrong), then
/// `body` on a multi-threaded runtime; its error is printed after `name`.
pub fn launch<F, Fut>(name: &str, body: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("{name}: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let settings = match Settings::from_env(&ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(body(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(message)) => {
            eprintln!("{name}: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(settings: &Settings) -> Result<Store, CliError> {
    Store::connect(settings.database_url.expose())
        .await
        .map_err(|e| CliError(format!("cannot open the database: {e}")))
}

async fn run(cli: Cli, settings: Settings) -> Result<(), CliError> {
    match cli.command.unwrap_or(Command::Serve {
        bind: None,
        db: DbArgs { database_url: None },
    }) {
        Command::Serve { bind, db } => {
            let mut settings = settings.with_database_url(db.database_url)?;
            if let Some(bind) = bind {
                settings.bind_addr = bind;
            }
            telemetry::init(settings.app_env);
            tracing::info!(
                env = ?settings.app_env,
                engine = ?charlie_store::Engine::from_url(settings.database_url.expose()).ok(),
                bind = %settings.bind_addr,
                "starting charlie-stats"
            );
            // Held until the server stops: dropping it flushes pending events.
            let _sentry = telemetry::init_sentry(&settings);
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            tracing::info!("stopped");
            Ok(())
        }
        Command::Keys { action } => keys(action, settings).await,
        Command::Rollups { action } => rollups(action, settings).await,
        Command::Retention { action } => retention(action, settings).await,
        Command::Usage { action } => usage(action, &settings),
        Command::Reports { action } => crate::jobs::reports::command(action, settings).await,
        Command::Posthog { action } => posthog(action, settings).await,
        Command::Reprice {
            from,
            to,
            model,
            dry_run,
            actor,
            json,
            db,
        } => {
            let settings = settings.with_database_url(db.database_url)?;
            let catalog = crate::pricing::load_catalog(&settings)?;
            let store = open_store(&settings).await?;
            let actor = actor
                .or_else(|| std::env::var("USER").ok())
                .or_else(|| std::env::var("USERNAME").ok())
                .unwrap_or_else(|| "unknown".to_owned());
            let report = store
                .reprice(
                    &charlie_store::reprice::RepriceRequest {
                        from,
                        to,
                        model,
                        dry_run,
                        actor,
                    },
                    &catalog,
                    time::OffsetDateTime::now_utc(),
                )
                .await?;
            if json {
                return print_json(&report);
            }
            let usd = charlie_domain::Usd::from_nanos;
            for (model, c) in &report.by_model {
                println!(
                    "{model:<32} {:>8} messages  {} -> {} USD",
                    c.messages,
                    usd(c.old_nano_usd),
                    usd(c.new_nano_usd)
                );
            }
            let r = &report.run;
            println!(
                "{}{} of {} messages repriced ({from} to {to}): {} -> {} USD (difference {}); run {}",
                if r.dry_run { "dry run: " } else { "" },
                r.messages_changed,
                r.messages_scanned,
                usd(r.old_total_nano_usd),
                usd(r.new_total_nano_usd),
                usd(r.new_total_nano_usd.saturating_sub(r.old_total_nano_usd)),
                r.id
            );
            Ok(())
        }
        Command::Reconcile {
            provider,
            file,
            json,
            db,
        } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError(format!("cannot read {}: {e}", file.display())))?;
            let theirs = crate::reconcile::parse(provider, &text)
                .map_err(|e| CliError(format!("{}: {e}", file.display())))?;
            let (Some(first), Some(last)) = (
                theirs.keys().map(|k| k.0).min(),
                theirs.keys().map(|k| k.0).max(),
            ) else {
                return Err(CliError(format!("{}: no costs", file.display())));
            };
            let store = open_store(&settings.with_database_url(db.database_url)?).await?;
            let mut ours = crate::reconcile::Costs::new();
            for ((day, model), nanos) in store.cost_by_day_and_model(first, last).await? {
                *ours
                    .entry((day, crate::reconcile::model_key(&model)))
                    .or_default() += nanos;
            }
            let lines = crate::reconcile::compare(&theirs, &ours);
            if json {
                return print_json(&lines);
            }
            print!("{}", crate::reconcile::table(&lines));
            Ok(())
        }
        Command::Openapi => {
            print!("{}", crate::openapi::spec_json());
            Ok(())
        }
        Command::Migrate { action } => match action {
            MigrateAction::Up { db } => {
                let store = open_store(&settings.with_database_url(db.database_url)?).await?;
                store.migrate_up().await?;
                println!("migrations applied");
                Ok(())
            }
            MigrateAction::Down { steps, db } => {
                let store = open_store(&settings.with_database_url(db.database_url)?).await?;
                store.migrate_down(steps).await?;
                println!("migrations rolled back");
                Ok(())
            }
            MigrateAction::Status { db } => {
                let store = open_store(&settings.with_database_url(db.database_url)?).await?;
                for m in store.migration_status().await? {
                    println!(
                        "{} {}",
                        if m.applied { "applied" } else { "pending" },
                        m.name
                    );
                }
                Ok(())
            }
        },
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)?;
    println!("{text}");
    Ok(())
}

async fn posthog(action: PosthogAction, settings: Settings) -> Result<(), CliError> {
    let PosthogAction::Backfill {
        range,
        dry_run,
        json,
        db,
    } = action;
    let settings = settings.with_database_url(db.database_url)?;
    let store = open_store(&settings).await?;
    let report =
        crate::jobs::posthog::backfill(&store, &settings.posthog, range.from, range.to, dry_run)
            .await
            .map_err(CliError)?;
    if json {
        return print_json(&report);
    }
    let span = match (report.from, report.to) {
        (None, None) => "all days".to_owned(),
        (from, to) => format!(
            "{} to {}",
            from.map_or("the first day".into(), |d| d.to_string()),
            to.map_or("the last day".into(), |d| d.to_string())
        ),
    };
    if dry_run {
        println!(
            "{} activity events from {span} would be sent to {}",
            report.events,
            settings.posthog.batch_url()
        );
        for event in &report.sample {
            println!("{event}");
        }
    } else {
        println!(
            "{} activity events from {span}: {} sent, {} failed",
            report.events, report.sent, report.failed
        );
        for (id, error) in &report.errors {
            eprintln!("event {id}: {error}");
        }
    }
    if report.failed > 0 {
        return Err(CliError(format!(
            "{} events were not delivered",
            report.failed
        )));
    }
    Ok(())
}

async fn keys(action: KeysAction, settings: Settings) -> Result<(), CliError> {
    match action {
        KeysAction::Create {
            name,
            json,
            langfuse,
            db,
        } => {
            let store = open_store(&settings.with_database_url(db.database_url)?).await?;
            store.migrate_up().await?;
            let key = store.create_api_key(&name).await?;
            let public = crate::auth::langfuse_public_key(key.id);
            if json {
                let mut out = serde_json::json!({"id": key.id, "key": key.key});
                if langfuse {
                    out["langfuse_public_key"] = public.into();
                    out["langfuse_secret_key"] = key.key.clone().into();
                }
                return print_json(&out);
            }
            println!("id:  {}\nkey: {}", key.id, key.key);
            if langfuse {
                println!(
                    "\nFor Langflow's Langfuse tracer:\n  LANGFUSE_PUBLIC_KEY={public}\n  LANGFUSE_SECRET_KEY={}\n  LANGFUSE_BASE_URL=<this service's URL>",
                    key.key
                );
            }
            println!("\nThe key is shown only now; store it as a secret.");
            Ok(())
        }
        KeysAction::List { json, db } => {
            let store = open_store(&settings.with_database_url(db.database_url)?).await?;
            let keys = store.list_api_keys().await?;
            if json {
                return print_json(&keys);
            }
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}  {:<8} {}…  {}", k.id, state, k.prefix, k.name);
            }
            Ok(())
        }
        KeysAction::Revoke { id, db } => {
            let store = open_store(&settings.with_database_url(db.database_url)?).await?;
            store.revoke_api_key(id).await?;
            println!("revoked {id}");
            Ok(())
        }
    }
}

async fn retention(action: RetentionAction, settings: Settings) -> Result<(), CliError> {
    match action {
        RetentionAction::Apply {
            months,
            dry_run,
            db,
        } => {
            let Some(months) = months.or(settings.raw_retention_months) else {
                return Err(CliError(
                    "RAW_RETENTION_MONTHS is not set and --months is not given: \
                     nothing says how much to keep"
                        .into(),
                ));
            };
            let store = open_store(&settings.with_database_url(db.database_url)?).await?;
            let now = time::OffsetDateTime::now_utc();
            if !dry_run {
                store.keep_partitions(now).await?;
            }
            let report = store.apply_retention(months, now, dry_run).await?;
            let kept = report
                .kept_from
                .map_or_else(|| "the start".to_owned(), |k| k.date().to_string());
            let verb = if dry_run { "would drop" } else { "dropped" };
            println!("raw rows are kept from {kept} (UTC); rollups are kept for every day");
            println!(
                "{verb} {} partitions{}",
                report.partitions.len(),
                if report.partitions.is_empty() {
                    String::new()
                } else {
                    format!(": {}", report.partitions.join(", "))
                }
            );
            println!("{verb} {} rows one by one", report.rows);
            println!(
                "{verb} {} ledger rows (items older than {kept} are now refused with `beyond_retention`)",
                report.ledger_rows
            );
            Ok(())
        }
        RetentionAction::Status { db } => {
            let months = settings.raw_retention_months;
            let store = open_store(&settings.with_database_url(db.database_url)?).await?;
            match store.raw_kept_from().await? {
                Some(k) => println!("raw rows are kept from {} (UTC)", k.date()),
                None => println!("raw rows are kept for every day (retention never applied)"),
            }
            match months {
                Some(m) => println!("RAW_RETENTION_MONTHS={m}"),
                None => println!("RAW_RETENTION_MONTHS is not set"),
            }
            for p in store.partitions().await? {
                println!("{}  {}", p.month, p.name);
            }
            Ok(())
        }
    }
}

async fn rollups(action: RollupsAction, settings: Settings) -> Result<(), CliError> {
    use charlie_store::maintenance::RollupRange;
    let (range, db) = match &action {
        RollupsAction::Rebuild { range, db } | RollupsAction::Verify { range, db } => {
            (range.clone(), db.clone())
        }
    };
    if let (Some(from), Some(to)) = (range.from, range.to)
        && from > to
    {
        return Err(CliError(format!("--from {from} is after --to {to}")));
    }
    let store = open_store(&settings.with_database_url(db.database_url)?).await?;
    let range = RollupRange {
        from: range.from,
        to: range.to,
    };
    match action {
        RollupsAction::Rebuild { .. } => {
            let rows = store.rebuild_rollups(range).await?;
            println!(
                "rebuilt {rows} rollup rows (daily_metrics, usage_buckets, component_buckets, user_buckets, user_days, platform_buckets, user_month_usage, and the all-time counters)"
            );
            Ok(())
        }
        RollupsAction::Verify { .. } => {
            let report = store.verify_rollups(range).await?;
            for d in &report.differences {
                println!(
                    "{} {}: stored {:?} recounted {:?}",
                    d.table, d.key, d.stored, d.recounted
                );
            }
            for id in &report.stuck_pending {
                println!("pending message {id} waits although its conversation exists");
            }
            if let Some(from) = report.retained_from {
                println!(
                    "days before {from} were not compared: retention dropped their raw rows (their rollups stay)"
                );
            }
            if report.differences.is_empty() && report.stuck_pending.is_empty() {
                println!(
                    "rollups agree with raw rows ({} rows compared)",
                    report.rows
                );
                Ok(())
            } else {
                Err(CliError(format!(
                    "{} rollup rows differ from raw rows; {} pending messages are stuck (`charlie-stats rollups rebuild` repairs rollups)",
                    report.differences.len(),
                    report.stuck_pending.len()
                )))
            }
        }
    }
}

fn usage(action: UsageAction, settings: &Settings) -> Result<(), CliError> {
    let (catalog, summary) = crate::pricing::load_catalog_with_summary(settings)?;
    if let Some(line) = summary {
        eprintln!("{line}");
    }
    let now = time::OffsetDateTime::now_utc();
    match action {
        UsageAction::Extract { at } => {
            use std::io::Read;
            let mut input = Vec::new();
            std::io::stdin()
                .take(charlie_pricing::MAX_PAYLOAD_BYTES as u64 + 1)
                .read_to_end(&mut input)
                .map_err(|e| CliError(format!("cannot read stdin: {e}")))?;
            let report = charlie_pricing::report(&catalog, &input, at.unwrap_or(now))
                .map_err(|e| CliError(format!("cannot read usage: {e}")))?;
            print_json(&report)
        }
        UsageAction::Price {
            model,
            input,
            output,
            cache_read,
            cache_write,
            cache_write_1h,
            reasoning,
            at,
        } => {
            let usage = charlie_domain::TokenUsage {
                input_tokens: input,
                output_tokens: output,
                cache_read_input_tokens: cache_read,
                cache_creation_input_tokens: cache_write,
                cache_creation_1h_input_tokens: cache_write_1h,
                reasoning_tokens: reasoning,
            };
            usage.validate().map_err(|e| CliError(e.to_string()))?;
            print_json(&catalog.price(Some(&model), &usage, at.unwrap_or(now)))
        }
        UsageAction::Models => print_json(&catalog.models()),
    }
}
