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
    /// Apply, roll back or list schema migrations.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
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

/// A failure that ends the process with a message on stderr.
#[derive(Debug)]
pub struct CliError(pub String);

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError(e.to_string())
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("charlie-stats: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    let settings = match Settings::from_env(&ProcessEnv) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("charlie-stats: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("charlie-stats: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError(message)) => {
            eprintln!("charlie-stats: {message}");
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
            let app = Application::build(settings).await?;
            app.run_until_stopped().await?;
            tracing::info!("stopped");
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
