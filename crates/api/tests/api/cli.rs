//! The binary's start-up behaviour, run as a child process.

use std::process::Command;

fn charlie_stats() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_charlie-stats"));
    // Run from a folder with no .env so only the variables set here count.
    cmd.current_dir(std::env::temp_dir());
    for var in ["DATABASE_URL", "APP_ENV", "BIND_ADDR", "TEST_DATABASE_URL"] {
        cmd.env_remove(var);
    }
    cmd
}

#[test]
fn a_bad_database_url_stops_start_up_with_one_line_naming_the_variable() {
    let out = charlie_stats()
        .env("DATABASE_URL", "bogus://x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn production_without_a_database_url_is_refused() {
    let out = charlie_stats()
        .env("APP_ENV", "production")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("DATABASE_URL"));
}

#[test]
fn migrate_status_lists_every_migration() {
    let dir = std::env::temp_dir().join(format!("charlie-cli-{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/x.db?mode=rwc", dir.display());
    let up = charlie_stats()
        .args(["migrate", "up", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    let status = charlie_stats()
        .args(["migrate", "status", "--database-url", &url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.lines().count() >= 1 && text.lines().all(|l| l.starts_with("applied ")),
        "{text}"
    );
    let down = charlie_stats()
        .args(["migrate", "down", "--database-url", &url])
        .output()
        .unwrap();
    assert!(down.status.success());
    let status = charlie_stats()
        .args(["migrate", "status", "--database-url", &url])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout)
            .lines()
            .all(|l| l.starts_with("pending "))
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn litellm_s_whole_table_prices_through_the_cli_as_it_says() {
    let table = crate::helpers::litellm_table_file();
    #[rustfmt::skip]
    let cases: &[(&[&str], &str)] = &[
        // claude-sonnet-4-5: input 3e-06, read 3e-07, 5m write 3.75e-06, 1h write 6e-06, output 1.5e-05.
        (&["--model", "claude-sonnet-4-5", "--input", "100000", "--output", "10000",
           "--cache-read", "50000", "--cache-write", "20000", "--cache-write-1h", "10000"], "0.3525"),
        // gemini-2.5-pro above 200k: input 2.5e-06, read 2.5e-07, output 1.5e-05.
        (&["--model", "gemini-2.5-pro", "--input", "300000", "--output", "10000",
           "--cache-read", "100000", "--reasoning", "4000"], "0.675"),
        // Dashscope's (256k, 1M] band: input 1.2e-06, output 3.6e-06, reasoning 1.2e-05.
        (&["--model", "dashscope/qwen-plus-2025-07-28", "--input", "300000", "--output", "10000",
           "--reasoning", "5000"], "0.438"),
        // gpt-4o: input 2.5e-06, read 1.25e-06, output 1e-05.
        (&["--model", "gpt-4o", "--input", "1000000", "--output", "100000", "--cache-read", "400000"], "3"),
    ];
    for (args, want) in cases {
        let out = charlie_stats()
            .env("PRICING_FILE", &table)
            .args(["usage", "price"])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        // One summary line about the file, naming what was skipped.
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(
                "3994 token-priced entries loaded; 883 entries without a per-token price skipped"
            ),
            "{stderr}"
        );
        let cost: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(cost["status"], "priced", "{args:?}: {cost}");
        assert_eq!(cost["total_usd"].as_str(), Some(*want), "{args:?}: {cost}");
        assert!(
            cost["price_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("custom:")),
            "{cost}"
        );
    }
    let _ = std::fs::remove_file(table);
}

#[test]
fn a_broken_price_file_stops_start_up_naming_the_entry() {
    let path = std::env::temp_dir().join(format!(
        "charlie-bad-prices-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(
        &path,
        r#"{"gpt-4o": {"input_cost_per_token": 2.5e-06}, "broken-model": {"output_cost_per_token": -1}}"#,
    )
    .unwrap();
    let out = charlie_stats()
        .env("PRICING_FILE", &path)
        .args(["usage", "models"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("PRICING_FILE") && stderr.contains("broken-model"),
        "{stderr}"
    );
    let _ = std::fs::remove_file(path);
}
