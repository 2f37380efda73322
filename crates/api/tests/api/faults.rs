//! A database that goes away: requests get 503 with the JSON error body
//! (never a panic or a 500), the service recovers by itself when the
//! database returns, and nothing acknowledged is lost. Runs against a
//! private PostgreSQL cluster that the test starts and stops, so that no
//! other test loses its database.

use crate::helpers::{MapEnv, json};
use charlie_api::{Application, Settings};
use charlie_store::{Store, maintenance::RollupRange};
use serde_json::json;
use std::{path::PathBuf, process::Command, time::Duration};
use uuid::Uuid;

/// A PostgreSQL cluster of its own in a temporary folder, owned by the
/// `postgres` user (PostgreSQL refuses to run as root). Stopped and removed
/// when dropped.
struct PrivatePg {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePg {
    /// `None` (with the reason printed) where PostgreSQL's server programs
    /// are not installed; CI has them and must not skip.
    fn start(test: &str) -> Option<PrivatePg> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|versions| {
                versions
                    .filter_map(Result::ok)
                    .map(|v| v.path().join("bin"))
                    .find(|b| b.join("pg_ctl").exists())
            });
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: CI needs PostgreSQL's server programs (/usr/lib/postgresql/*/bin)"
            );
            eprintln!("{test}: skipped: PostgreSQL's server programs are not installed");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("charlie-pg-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        run(Command::new("chown").arg("postgres:postgres").arg(&dir));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePg { bin, dir, port };
        pg.as_postgres(&[
            "initdb",
            "-D",
            &pg.data(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        pg.up();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_postgres(&self, args: &[&str]) {
        let program = self.bin.join(args[0]).display().to_string();
        run(Command::new("runuser")
            .args(["-u", "postgres", "--", &program])
            .args(&args[1..]));
    }

    fn up(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log").display().to_string();
        self.as_postgres(&[
            "pg_ctl",
            "-D",
            &self.data(),
            "-o",
            &options,
            "-l",
            &log,
            "-w",
            "start",
        ]);
    }

    fn down(&self) {
        self.as_postgres(&["pg_ctl", "-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl").display().to_string();
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &program,
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "stop",
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn users(n: std::ops::Range<u32>) -> serde_json::Value {
    let batch: Vec<_> = n
        .map(|i| {
            json!({"id": Uuid::now_v7(), "type": "user.upsert", "timestamp": "2026-12-01T10:00:00Z",
                   "body": {"external_id": format!("fault-{i}"), "email": format!("fault-{i}@example.com")}})
        })
        .collect();
    json!({ "batch": batch })
}

#[tokio::test]
async fn when_postgresql_stops_requests_get_503_and_the_service_recovers_losing_nothing() {
    let Some(pg) = PrivatePg::start("database fault") else {
        return;
    };
    let env = MapEnv::from([
        ("DATABASE_URL", pg.url()),
        ("BIND_ADDR", "127.0.0.1:0".to_owned()),
    ]);
    let app = Application::build(Settings::from_env(&env).unwrap())
        .await
        .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let store = Store::connect(&pg.url()).await.unwrap();
    let key = store.create_api_key("faults").await.unwrap().key;
    let client = reqwest::Client::new();
    let ingest = |body: serde_json::Value| {
        client
            .post(format!("{base}/api/v1/ingest"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let before = users(0..3);
    assert_eq!(ingest(before).await.unwrap().status(), 207);

    pg.down();
    let during = users(3..6);
    let resp = ingest(during.clone()).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(json(resp).await["code"], "unavailable");
    let ready = client.get(format!("{base}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    let health = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the process itself is alive");

    pg.up();
    // The pool reconnects by itself: the client's retry goes through.
    let mut status = 0;
    for _ in 0..60 {
        status = ingest(during.clone()).await.unwrap().status().as_u16();
        if status == 207 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(status, 207, "the service did not recover");
    assert_eq!(
        client
            .get(format!("{base}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let store = Store::connect(&pg.url()).await.unwrap();
    assert_eq!(
        store
            .scalar_for_tests("SELECT COUNT(*) FROM users")
            .await
            .unwrap(),
        6,
        "every acknowledged user, once"
    );
    let report = store.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

#[tokio::test]
async fn a_slow_analytics_read_is_cancelled_by_its_statement_timeout() {
    let Some(pg) = PrivatePg::start("statement timeout") else {
        return;
    };
    let store = Store::connect_with(&pg.url(), Duration::from_millis(200))
        .await
        .unwrap();
    store.migrate_up().await.unwrap();
    let err = store.slow_read_for_tests(2.0).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    store.slow_read_for_tests(0.01).await.unwrap();
}
