//! `charlie-dev`: development commands. Run from the repository root:
//! `cargo run -p charlie-devtools -- demo`.

use charlie_api::error::CliError;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "charlie-dev",
    version,
    about = "Development tools of Charlie Stats (never for production)"
)]
struct Cli {
    #[command(subcommand)]
    command: DevCommand,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Seed realistic demo data (development only) and print an admin token,
    /// a user token, an ingestion API key and curl lines to try them.
    Demo {
        /// Print `{"admin_token", "user_token", "api_key"}` instead of text.
        #[arg(long)]
        json: bool,
        /// Database URL (postgres://… or sqlite:…); overrides DATABASE_URL.
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    // Parsed before the settings are read, so `--help` needs no environment.
    let cli = Cli::parse();
    charlie_api::cli::launch("charlie-dev", |settings| async move {
        match cli.command {
            DevCommand::Demo { json, database_url } => {
                let settings = settings.with_database_url(database_url)?;
                charlie_devtools::demo::command(settings, json).await?;
                Ok::<(), CliError>(())
            }
        }
    })
}
