//! `charlie-stats`: the service binary. All logic lives in the library.

fn main() -> std::process::ExitCode {
    charlie_api::cli::main()
}
