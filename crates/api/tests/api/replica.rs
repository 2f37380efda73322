//! `DATABASE_READ_URL` (issue 16): analytics reads go to a real streaming
//! replica of the test PostgreSQL, made here with `pg_basebackup` and
//! started on a port of its own; when it stops, reads go to the primary and
//! the service stays up; when it is back, reads go to it again.
//!
//! PostgreSQL only. The server must allow replication connections from
//! 127.0.0.1 (`host replication all 127.0.0.1/32 trust` in `pg_hba.conf`,
//! which `.ci/run` adds); without them the test fails and says so.

use crate::helpers::{ServerProcess, token};
use charlie_store::{READS_APPLICATION_NAME, Store, testing::TestDatabase};
use serde_json::json;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A streaming replica of the server `TEST_DATABASE_URL` names.
struct Replica {
    dir: PathBuf,
    port: u16,
}

/// Runs a PostgreSQL tool as the `postgres` OS user when this is root (the
/// server refuses to run as root), as this user otherwise.
fn pg_tool(tool: &str, args: &[&str]) -> std::process::Output {
    let path = format!("{PG_BIN}/{tool}");
    let mut cmd = if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(&path)
    };
    cmd.args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"))
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Replica {
    fn start(primary_port: u16) -> Replica {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("charlie-replica-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        if nix_is_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown of the replica's folder");
        }
        let out = pg_tool(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                dir.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
        );
        assert!(
            out.status.success(),
            "pg_basebackup failed (the server must allow replication from 127.0.0.1: \
             `host replication all 127.0.0.1/32 trust` in pg_hba.conf, as .ci/run sets): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Debian keeps the configuration outside the data folder.
        for (file, text) in [
            ("postgresql.conf", "hot_standby = on\n"),
            (
                "pg_hba.conf",
                "local all all trust\nhost all all 127.0.0.1/32 trust\n",
            ),
        ] {
            let path = dir.join(file);
            if !path.exists() {
                std::fs::write(&path, text).unwrap();
                if nix_is_root() {
                    Command::new("chown")
                        .args(["postgres:postgres", path.to_str().unwrap()])
                        .status()
                        .unwrap();
                }
            }
        }
        let replica = Replica { dir, port };
        replica.run();
        replica
    }

    fn run(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c hba_file={}/pg_hba.conf -c ident_file={}/pg_hba.conf",
            self.port,
            self.dir.display(),
            self.dir.display(),
            self.dir.display()
        );
        let log = self.dir.join("log");
        let out = pg_tool(
            "pg_ctl",
            &[
                "-D",
                self.dir.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                log.to_str().unwrap(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "the replica did not start: {} {}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    fn stop(&self) {
        pg_tool(
            "pg_ctl",
            &["-D", self.dir.to_str().unwrap(), "-m", "immediate", "stop"],
        );
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connections of the analytics read pools to `database` on the server
/// at `server_url` (`None`: that server does not answer).
async fn read_connections(server_url: &str, database: &str) -> Option<i64> {
    let store = charlie_store::Store::connect(server_url).await.ok()?;
    let n = store
        .scalar_for_tests(&format!(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = '{database}' \
             AND application_name = '{READS_APPLICATION_NAME}'"
        ))
        .await
        .ok();
    let _ = store.close().await;
    n
}

#[tokio::test]
async fn analytics_reads_go_to_the_replica_and_to_the_primary_while_it_is_down() {
    let Some(admin_url) = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"))
    else {
        eprintln!(
            "skipped: a read replica is a PostgreSQL feature (TEST_DATABASE_URL is not PostgreSQL)"
        );
        return;
    };
    let admin = Store::connect(&admin_url).await.unwrap();
    let citus = admin.is_citus().await.unwrap();
    admin.close().await.unwrap();
    if citus {
        eprintln!(
            "skipped: on Citus a read replica is a replica of every node (coordinator and workers); \
             this test makes one of a single server"
        );
        return;
    }
    let db = TestDatabase::create().await.unwrap();
    db.migrated_store().await.unwrap().close().await.unwrap();
    let database = db.url().rsplit('/').next().unwrap().to_owned();
    let primary_port: u16 = admin_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|host| host.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(5432);
    let replica = Replica::start(primary_port);
    let (_server, address) =
        ServerProcess::start(db.url(), &[("DATABASE_READ_URL", replica.url(&database))]).await;
    let client = reqwest::Client::new();
    let key = {
        let store = charlie_store::Store::connect(db.url()).await.unwrap();
        let key = store.create_api_key("replica").await.unwrap().key;
        store.close().await.unwrap();
        key
    };
    let now = OffsetDateTime::now_utc();
    let at = (now - time::Duration::minutes(10))
        .format(&Rfc3339)
        .unwrap();
    let (user, conv) = (Uuid::now_v7(), Uuid::now_v7());
    let resp = client
        .post(format!("{address}/api/v1/ingest"))
        .bearer_auth(&key)
        .json(&json!({"batch": [
            {"id": user, "type": "user.upsert", "timestamp": at, "body": {"external_id": "rep", "email": "rep@example.com"}},
            {"id": conv, "type": "conversation.upsert", "timestamp": at, "body": {"user_id": user}},
            {"id": Uuid::now_v7(), "type": "message.create", "timestamp": at,
             "body": {"conversation_id": conv, "role": "assistant", "model": "gpt-4o", "usage": {"input_tokens": 1000, "output_tokens": 10}}},
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 207);

    let admin = token("root", true);
    let today = now.date();
    let path = format!(
        "/api/v1/analytics/admin/costs?group_by=model&tz=UTC&from={}&to={today}",
        today - time::Duration::days(1)
    );
    let get = || async {
        let r = client
            .get(format!("{address}{path}"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            r.json::<serde_json::Value>().await.unwrap_or_default(),
        )
    };
    // The replica streams the batch within moments; the answer counts it.
    let mut answer = json!(null);
    for _ in 0..100 {
        let (status, body) = get().await;
        assert_eq!(status, 200, "{body:#}");
        if body["groups"][0]["messages"] == 1 {
            answer = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(answer["groups"][0]["messages"], 1, "{answer:#}");
    let on_replica = read_connections(&replica.url("postgres"), &database).await;
    let on_primary = read_connections(&admin_url, &database).await;
    assert!(
        on_replica >= Some(1),
        "{on_replica:?} read connections on the replica"
    );
    assert_eq!(on_primary, Some(0), "no analytics read on the primary");
    assert!(
        metrics(&client, &address)
            .await
            .contains("charlie_read_replica_up 1")
    );

    // The replica stops: every answer is a 200 from the primary or, in the
    // second before the switch, a JSON 503; never anything else.
    replica.stop();
    let mut served = 0;
    for _ in 0..60 {
        let (status, body) = get().await;
        match status {
            200 => {
                assert_eq!(body, answer);
                served += 1;
                if served == 3 {
                    break;
                }
            }
            503 => assert!(body["code"].is_string(), "{body:#}"),
            other => panic!("{other}: {body:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(served, 3, "reads never fell back to the primary");
    assert!(read_connections(&admin_url, &database).await >= Some(1));
    assert!(
        metrics(&client, &address)
            .await
            .contains("charlie_read_replica_up 0")
    );
    let health = client.get(format!("{address}/ready")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Back: reads go to the replica again.
    replica.run();
    let mut back = false;
    for _ in 0..50 {
        let (status, body) = get().await;
        assert_eq!(status, 200, "{body:#}");
        if read_connections(&replica.url("postgres"), &database).await >= Some(1) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(back, "reads did not return to the replica");
}

/// The server's `/metrics` text.
async fn metrics(client: &reqwest::Client, address: &str) -> String {
    let resp = client
        .get(format!("{address}/metrics"))
        .send()
        .await
        .unwrap();
    resp.text().await.unwrap()
}
