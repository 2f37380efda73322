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
