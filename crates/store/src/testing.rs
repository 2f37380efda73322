//! Throw-away databases for tests and benchmarks.
//!
//! With `TEST_DATABASE_URL` unset, each [`TestDatabase`] is a fresh SQLite
//! file in the temporary folder. With `TEST_DATABASE_URL=postgres://…/db`, a
//! new database with a unique name is created on that server and dropped when
//! the value is dropped. An unreachable server is an error, never a skip.
//!
//! When that server is a Citus coordinator (its admin database has the
//! `citus` extension and worker nodes), each test database becomes a Citus
//! database on the same cluster: the database and the extension are made on
//! every worker too, the workers are added to it, and `migrate up` then
//! distributes the tables. So `TEST_DATABASE_URL=postgres://…@coordinator/postgres`
//! runs any test, and the whole suite, against the cluster. Test databases
//! get 4 shards per distributed table (Citus' default is 32), which keeps the
//! many small databases of a suite run quick to make.

use crate::{Store, StoreError, StoreResult};
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

/// A database that exists for as long as this value.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PostgresDatabase { admin_url: String, name: String },
}

/// Replaces the host and port of a PostgreSQL URL, keeping user and path.
fn with_host(url: &str, host: &str, port: i32) -> StoreResult<String> {
    let scheme_end = url
        .find("://")
        .ok_or_else(|| StoreError::UnsupportedUrl(url.into()))?
        + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@"));
    Ok(format!(
        "{}{}{host}:{port}{}",
        &url[..scheme_end],
        user.unwrap_or_default(),
        &rest[authority_end..]
    ))
}

#[derive(sea_orm::FromQueryResult)]
struct Node {
    nodename: String,
    nodeport: i32,
    groupid: i32,
}

async fn run(url: &str, sql: &str) -> StoreResult<()> {
    let db = Database::connect(url).await?;
    db.execute_raw(Statement::from_string(DbBackend::Postgres, sql.to_owned()))
        .await?;
    db.close().await?;
    Ok(())
}

/// The coordinator and workers of the Citus cluster `admin` belongs to, or
/// `None` when it is not a Citus coordinator with workers.
async fn citus_nodes(
    admin: &sea_orm::DatabaseConnection,
) -> StoreResult<Option<(Node, Vec<Node>)>> {
    if !migration::citus::is_citus(admin).await? {
        return Ok(None);
    }
    use sea_orm::FromQueryResult;
    let nodes = Node::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT CAST(nodename AS TEXT) AS nodename, nodeport, groupid FROM pg_dist_node \
         WHERE noderole = 'primary' AND isactive ORDER BY groupid",
    ))
    .all(admin)
    .await?;
    let (coordinator, workers): (Vec<Node>, Vec<Node>) =
        nodes.into_iter().partition(|n| n.groupid == 0);
    Ok(match coordinator.into_iter().next() {
        Some(c) if !workers.is_empty() => Some((c, workers)),
        _ => None,
    })
}

/// Makes the new database `name` a Citus database of the cluster:
/// the database and the extension on every worker, the extension and the
/// nodes on the coordinator, and `shard_count` shards per distributed table
/// when given (the cluster's `citus.shard_count` otherwise).
async fn make_citus_database(
    admin_url: &str,
    name: &str,
    coordinator: &Node,
    workers: &[Node],
    shard_count: Option<u32>,
) -> StoreResult<()> {
    for w in workers {
        let worker_admin = with_host(admin_url, &w.nodename, w.nodeport)?;
        // Citus may have made it already (`citus.enable_create_database_propagation`).
        let exists = {
            let db = Database::connect(worker_admin.as_str()).await?;
            let row = crate::sql::query_one(
                &db,
                "SELECT 1 AS one FROM pg_database WHERE datname = $1",
                vec![name.into()],
            )
            .await?;
            db.close().await?;
            row.is_some()
        };
        if !exists {
            run(&worker_admin, &format!("CREATE DATABASE \"{name}\"")).await?;
        }
        run(
            &with_database(&worker_admin, name)?,
            "CREATE EXTENSION IF NOT EXISTS citus",
        )
        .await?;
    }
    let mut setup = vec![
        "CREATE EXTENSION IF NOT EXISTS citus".to_owned(),
        format!(
            "SELECT citus_set_coordinator_host('{}', {})",
            coordinator.nodename, coordinator.nodeport
        ),
    ];
    for w in workers {
        setup.push(format!(
            "SELECT citus_add_node('{}', {})",
            w.nodename, w.nodeport
        ));
    }
    if let Some(n) = shard_count {
        setup.push(format!(
            "ALTER DATABASE \"{name}\" SET citus.shard_count = {n}"
        ));
    }
    let db = Database::connect(with_database(admin_url, name)?.as_str()).await?;
    for sql in setup {
        db.execute_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?;
    }
    db.close().await?;
    Ok(())
}

/// Creates the empty database `name` on the PostgreSQL server of
/// `admin_url` and returns its URL. When that server is a Citus coordinator
/// with workers, the database is made a Citus database of the cluster
/// (`shard_count` as in `make_citus_database`).
pub async fn create_postgres_database(
    admin_url: &str,
    name: &str,
    shard_count: Option<u32>,
) -> StoreResult<String> {
    let admin = Database::connect(admin_url).await.map_err(|e| {
        StoreError::Invalid(format!(
            "the server at the admin URL cannot be reached: {e}"
        ))
    })?;
    admin
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("CREATE DATABASE \"{name}\""),
        ))
        .await?;
    let cluster = citus_nodes(&admin).await?;
    admin.close().await?;
    if let Some((coordinator, workers)) = cluster {
        // Adding nodes syncs roles on the workers (a shared catalog): two
        // databases set up at once fail with "tuple concurrently updated".
        static SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
        let _one_at_a_time = SETUP.lock().await;
        make_citus_database(admin_url, name, &coordinator, &workers, shard_count).await?;
    }
    with_database(admin_url, name)
}

/// Drops the database `name` (closing its connections) on the server of
/// `admin_url` and, on a Citus coordinator, on its workers.
pub async fn drop_postgres_database(admin_url: &str, name: &str) -> StoreResult<()> {
    let admin = Database::connect(admin_url).await?;
    let workers = citus_nodes(&admin)
        .await?
        .map(|(_, w)| w)
        .unwrap_or_default();
    let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
    admin
        .execute_raw(Statement::from_string(DbBackend::Postgres, sql.clone()))
        .await?;
    admin.close().await?;
    for w in workers {
        run(&with_host(admin_url, &w.nodename, w.nodeport)?, &sql).await?;
    }
    Ok(())
}

/// Replaces the database name (the last path segment) of a PostgreSQL URL.
fn with_database(url: &str, name: &str) -> StoreResult<String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base
        .find("://")
        .ok_or_else(|| StoreError::UnsupportedUrl(url.into()))?
        + 3;
    let host_and_path = &base[scheme_end..];
    let host = host_and_path.split('/').next().unwrap_or_default();
    let mut out = format!("{}{host}/{name}", &base[..scheme_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

impl TestDatabase {
    /// A fresh, empty database on the engine the environment selects.
    pub async fn create() -> StoreResult<TestDatabase> {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        match std::env::var("TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty())
        {
            Some(admin_url) => {
                let name = format!("charlie_test_{unique}");
                let url = create_postgres_database(&admin_url, &name, Some(4))
                    .await
                    .map_err(|e| match e {
                        StoreError::Invalid(m) => StoreError::Invalid(format!(
                            "TEST_DATABASE_URL is set but the database cannot be made: {m}"
                        )),
                        other => other,
                    })?;
                Ok(TestDatabase {
                    url,
                    cleanup: Cleanup::PostgresDatabase { admin_url, name },
                })
            }
            None => {
                let path = std::env::temp_dir().join(format!("charlie-test-{unique}.db"));
                Ok(TestDatabase {
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    cleanup: Cleanup::SqliteFile(path),
                })
            }
        }
    }

    /// The database's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on this database with every migration applied.
    pub async fn migrated_store(&self) -> StoreResult<Store> {
        let store = Store::connect(&self.url).await?;
        store.migrate_up().await?;
        Ok(store)
    }
}

/// Takes the advisory locks of `users` (the ones every writer of a user's
/// counters and funnel stamps takes first, a fold among them) in a
/// transaction of its own, held until the returned transaction ends: what a
/// long fold holding those users looks like to everyone else. PostgreSQL
/// only (a no-op on SQLite, which has no such locks).
pub async fn hold_user_locks(
    store: &Store,
    users: &[uuid::Uuid],
) -> StoreResult<sea_orm::DatabaseTransaction> {
    use sea_orm::TransactionTrait;
    let txn = store.conn().begin().await?;
    crate::sql::lock_users(&txn, users.iter().copied()).await?;
    Ok(txn)
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    // The file may never have been created; nothing to report.
                    let _ = std::fs::remove_file(p);
                }
            }
            Cleanup::PostgresDatabase { admin_url, name } => {
                let (admin_url, name) = (admin_url.clone(), name.clone());
                // Drop runs outside any async context we could borrow, so the
                // cleanup gets a small runtime of its own on its own thread.
                let joined = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        // Nothing to report to: a leftover test database is
                        // harmless and named as one.
                        let _ = rt.block_on(drop_postgres_database(&admin_url, &name));
                    }
                })
                .join();
                drop(joined);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_swapped_keeping_host_and_query() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1")
                .ok()
                .as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/t1")
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "t2")
                .ok()
                .as_deref(),
            Some("postgres://u:p@h/t2?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h", "t3").ok().as_deref(),
            Some("postgres://h/t3")
        );
    }

    #[test]
    fn hosts_are_swapped_keeping_user_database_and_query() {
        assert_eq!(
            with_host(
                "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable",
                "10.0.0.2",
                5434
            )
            .ok()
            .as_deref(),
            Some("postgres://postgres@10.0.0.2:5434/postgres?sslmode=disable")
        );
        assert_eq!(
            with_host("postgres://h/db", "w1", 5432).ok().as_deref(),
            Some("postgres://w1:5432/db")
        );
    }
}

/// One `daily_metrics` row, as tests compare it.
#[derive(Debug, Clone, PartialEq, sea_orm::FromQueryResult)]
pub struct DailyRow {
    pub date: time::Date,
    pub workflow_id: Option<uuid::Uuid>,
    pub message_count: i64,
    pub user_message_count: i64,
    pub assistant_message_count: i64,
    pub conversation_count: i64,
    pub unique_sessions: i64,
    pub avg_messages_per_session: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub total_tokens: i64,
    pub estimated_cost_nano_usd: i64,
    pub error_count: i64,
}

impl Store {
    /// Runs one statement for a test: the first column of a `SELECT` as an
    /// integer, or the number of rows another statement changed.
    pub async fn scalar_for_tests(&self, statement: &str) -> StoreResult<i64> {
        if statement
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("SELECT")
        {
            let row = crate::sql::query_one(self.conn(), statement, vec![]).await?;
            let Some(row) = row else { return Ok(0) };
            if let Ok(v) = row.try_get_by_index::<Option<i64>>(0) {
                return Ok(v.unwrap_or(0));
            }
            Ok(row
                .try_get_by_index::<Option<i32>>(0)?
                .map(i64::from)
                .unwrap_or(0))
        } else {
            let _guard = self.write_guard().await;
            Ok(crate::sql::execute(self.conn(), statement, vec![]).await? as i64)
        }
    }

    /// Every `daily_metrics` row of a user, by date and workflow.
    pub async fn daily_rows_for_tests(&self, user_id: uuid::Uuid) -> StoreResult<Vec<DailyRow>> {
        crate::sql::fetch_all(
            self.conn(),
            "SELECT date, workflow_id, message_count, user_message_count, assistant_message_count, conversation_count, \
             unique_sessions, avg_messages_per_session, input_tokens, output_tokens, total_tokens, \
             estimated_cost_nano_usd, error_count FROM daily_metrics WHERE user_id = $1 ORDER BY date, workflow_key",
            vec![user_id.into()],
        )
        .await
    }

    /// Runs `pg_sleep(seconds)` on the analytics reads' pool (PostgreSQL
    /// only), to check that its statement timeout cancels a slow read.
    pub async fn slow_read_for_tests(&self, seconds: f64) -> StoreResult<()> {
        crate::sql::query_one(
            self.reads(),
            "SELECT CAST(pg_sleep($1) AS TEXT) AS slept",
            vec![seconds.into()],
        )
        .await?;
        Ok(())
    }
}
