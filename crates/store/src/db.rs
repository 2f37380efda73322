use crate::{StoreError, StoreResult};
use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use std::{sync::Arc, time::Duration};
use tokio::sync::Mutex;

/// Which database engine a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    Sqlite,
}

impl Engine {
    /// The engine a URL names, or an error for anything else.
    pub fn from_url(url: &str) -> StoreResult<Engine> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else {
            Err(StoreError::UnsupportedUrl(redact_url(url)))
        }
    }
}

/// A URL with any password replaced, safe to print.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// How long an analytics read may run on PostgreSQL unless configured.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A handle to the database: a connection pool plus, on SQLite, the lock
/// that makes write transactions take turns (SQLite allows one writer, and a
/// transaction that upgrades from read to write fails rather than waits).
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    /// The analytics reads' pool: on PostgreSQL its own connections, whose
    /// `statement_timeout` stops one slow dashboard query from holding a
    /// connection for long; on SQLite the same pool as `db`.
    reads: DatabaseConnection,
    /// The dashboard reads' pool (`dashboard.rs`): on PostgreSQL its own
    /// connections, with the read timeout, generic plans (each statement is
    /// planned once per connection, never per call) and no parallel
    /// workers (their start-up costs more than these index reads); on
    /// SQLite the same pool as `db`.
    dashboard: DatabaseConnection,
    engine: Engine,
    write_lock: Option<Arc<Mutex<()>>>,
    /// Budgets and alert thresholds ingestion applies (`budgets.rs`).
    pub(crate) budget_policy: Arc<crate::budgets::BudgetPolicy>,
    /// Whether ingestion queues its activity events for PostHog (`posthog.rs`).
    pub(crate) posthog_outbox: bool,
    /// Fold cycles of this process (`ingest/fold.rs`).
    pub(crate) folder: Arc<crate::ingest::fold::Folder>,
    /// How long a request waits for its batch to be folded (PostgreSQL).
    pub(crate) fold_wait: Duration,
    /// With a read replica (`with_read_replica`): `reads` and `dashboard`
    /// are on the replica, and these are the primary's, used while the
    /// replica does not answer.
    fallback: Option<Arc<Fallback>>,
    /// The UTC months whose partitions this process has seen exist
    /// (`retention.rs`, PostgreSQL).
    pub(crate) partition_months: Arc<std::sync::Mutex<std::collections::HashSet<time::Date>>>,
}

/// The primary's read pools and whether the replica answers.
#[derive(Debug)]
struct Fallback {
    reads: DatabaseConnection,
    dashboard: DatabaseConnection,
    replica_up: std::sync::atomic::AtomicBool,
}

impl Fallback {
    /// Whether the replica answered its last health check.
    fn replica_up(&self) -> bool {
        self.replica_up.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The `application_name` of the analytics read connections (visible in
/// `pg_stat_activity` of whichever server they read from).
pub const READS_APPLICATION_NAME: &str = "charlie-stats-reads";

/// How often the replica's health is checked, and how long a check may take.
const REPLICA_CHECK: Duration = Duration::from_secs(1);

/// The analytics and dashboard read pools on PostgreSQL at `url`, with
/// `read_timeout` per statement. `lazy`: connect on first use (a replica
/// may be down when the service starts).
async fn read_pools(
    url: &str,
    read_timeout: Duration,
    lazy: bool,
    citus: bool,
) -> StoreResult<(DatabaseConnection, DatabaseConnection)> {
    let timeout_ms = read_timeout.as_millis().max(1).to_string();
    let read_pool = |extra: &[(&'static str, &'static str)]| {
        let timeout_ms = timeout_ms.clone();
        let extra = extra.to_vec();
        let mut o = ConnectOptions::new(url.to_owned());
        o.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(8)
            .min_connections(0)
            .connect_lazy(lazy)
            // A liveness ping only for a connection idle 30 s or
            // more: not one extra round trip per read.
            .test_before_acquire_if_idle_for(Duration::from_secs(30))
            .map_sqlx_postgres_opts(move |o| {
                let mut settings = vec![("jit", "off"), ("statement_timeout", timeout_ms.as_str())];
                settings.extend_from_slice(&extra);
                o.options(settings).application_name(READS_APPLICATION_NAME)
            });
        o
    };
    // Citus plans a distributed read from its parameters' values (which
    // shards, which worker): it needs a custom plan each time; plain
    // PostgreSQL keeps one generic plan for the dashboard's statements.
    // Citus also runs the shards of a multi-shard read over one connection
    // per worker: the reads are small per shard, and a connection per shard
    // would only multiply the workers' back ends under concurrent requests
    // (admin/overview at 4 clients, 3 workers: p50 133 ms with Citus'
    // default of up to 16 per worker, 34 ms with 1; BENCHMARKS.md, "Citus").
    let mut reads_extra = Vec::new();
    let mut dashboard_extra = vec![("max_parallel_workers_per_gather", "0")];
    if citus {
        for extra in [&mut reads_extra, &mut dashboard_extra] {
            extra.push(("plan_cache_mode", "force_custom_plan"));
            extra.push(("citus.max_adaptive_executor_pool_size", "1"));
        }
    } else {
        dashboard_extra.push(("plan_cache_mode", "force_generic_plan"));
    }
    let reads = Database::connect(read_pool(&reads_extra)).await?;
    let dashboard = Database::connect(read_pool(&dashboard_extra)).await?;
    Ok((reads, dashboard))
}

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

impl Store {
    /// Connects to PostgreSQL or SQLite, with analytics reads limited to
    /// [`DEFAULT_READ_TIMEOUT`] on PostgreSQL.
    pub async fn connect(url: &str) -> StoreResult<Store> {
        Self::connect_with(url, DEFAULT_READ_TIMEOUT).await
    }

    /// Connects to PostgreSQL or SQLite. A SQLite file (and its folder) is
    /// created when missing; SQLite runs in WAL mode with foreign keys on.
    /// On PostgreSQL, analytics reads run on a pool of their own whose
    /// statements are cancelled after `read_timeout`.
    pub async fn connect_with(url: &str, read_timeout: Duration) -> StoreResult<Store> {
        Self::connect_with_replica(url, None, read_timeout).await
    }

    /// [`Store::connect_with`], sending analytics and dashboard reads to a
    /// PostgreSQL read replica at `read_url` (`DATABASE_READ_URL`) when
    /// given. Writes, and every read that must see its own writes
    /// (ingestion, budgets, keys, sign-in, maintenance), stay on the
    /// primary. The replica is checked every second: while it does not
    /// answer, reads go to the primary, and back once it does. A replica
    /// down at start is not an error.
    pub async fn connect_with_replica(
        url: &str,
        read_url: Option<&str>,
        read_timeout: Duration,
    ) -> StoreResult<Store> {
        let engine = Engine::from_url(url)?;
        if read_url.is_some_and(|r| {
            engine != Engine::Postgres || !matches!(Engine::from_url(r), Ok(Engine::Postgres))
        }) {
            return Err(StoreError::Invalid(
                "a read replica needs PostgreSQL for both the primary and the replica".into(),
            ));
        }
        let mut opts = ConnectOptions::new(url.to_owned());
        opts.sqlx_logging(false)
            .connect_timeout(Duration::from_secs(5))
            .acquire_timeout(Duration::from_secs(10));
        match engine {
            Engine::Postgres => {
                // Ingest requests and other writes take up to 16; the fold
                // cycle's shards one each besides.
                let fold = u32::try_from(crate::ingest::fold::FOLD_SHARDS).unwrap_or(4);
                opts.max_connections(16 + fold).min_connections(1);
                // The read queries are short index scans; JIT compilation
                // would only add its start-up cost to them.
                // On Citus, a write transaction that touched many shards
                // could not then write a table with a foreign key to a
                // reference table (workflows); one connection per worker per
                // transaction keeps every write possible. On plain
                // PostgreSQL the setting is an inert placeholder.
                opts.map_sqlx_postgres_opts(|o| {
                    o.options([
                        ("jit", "off"),
                        ("citus.multi_shard_modify_mode", "sequential"),
                    ])
                });
            }
            Engine::Sqlite => {
                if let Some(path) = sqlite_file_path(url)
                    && let Some(parent) = std::path::Path::new(&path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        StoreError::Invalid(format!(
                            "cannot create folder {}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                opts.max_connections(8).min_connections(1);
                opts.map_sqlx_sqlite_opts(|o| {
                    o.create_if_missing(true)
                        .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                        .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Normal)
                        .busy_timeout(Duration::from_secs(30))
                        .foreign_keys(true)
                });
            }
        }
        let db = Database::connect(opts).await?;
        let (reads, dashboard) = match engine {
            // With a replica, the primary's read pools are only the
            // fallback: they connect when first used.
            Engine::Postgres => {
                let citus = migration::citus::is_citus(&db).await?;
                read_pools(url, read_timeout, read_url.is_some(), citus).await?
            }
            Engine::Sqlite => (db.clone(), db.clone()),
        };
        let store = Store {
            db,
            reads,
            dashboard,
            engine,
            write_lock: (engine == Engine::Sqlite).then(|| Arc::new(Mutex::new(()))),
            budget_policy: Arc::default(),
            posthog_outbox: false,
            folder: Arc::default(),
            fold_wait: crate::ingest::fold::DEFAULT_FOLD_WAIT,
            fallback: None,
            partition_months: Arc::default(),
        };
        match read_url {
            Some(replica) => store.with_read_replica(replica, read_timeout).await,
            None => Ok(store),
        }
    }

    /// Moves the analytics and dashboard reads to the replica at `url`
    /// (see [`Store::connect_with_replica`]).
    async fn with_read_replica(mut self, url: &str, read_timeout: Duration) -> StoreResult<Store> {
        let citus = self.is_citus().await?;
        let (reads, dashboard) = read_pools(url, read_timeout, true, citus).await?;
        let fallback = Arc::new(Fallback {
            reads: std::mem::replace(&mut self.reads, reads),
            dashboard: std::mem::replace(&mut self.dashboard, dashboard),
            replica_up: std::sync::atomic::AtomicBool::new(false),
        });
        let up = replica_answers(&self.reads).await;
        fallback
            .replica_up
            .store(up, std::sync::atomic::Ordering::Relaxed);
        if !up {
            tracing::warn!(
                "the read replica does not answer; analytics reads go to the primary until it does"
            );
        }
        let watch = Arc::downgrade(&fallback);
        let replica = self.reads.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPLICA_CHECK).await;
                let Some(fallback) = watch.upgrade() else {
                    return;
                };
                let up = replica_answers(&replica).await;
                let was = fallback
                    .replica_up
                    .swap(up, std::sync::atomic::Ordering::Relaxed);
                if was != up {
                    if up {
                        tracing::info!("the read replica answers again; analytics reads go to it");
                    } else {
                        tracing::warn!(
                            "the read replica does not answer; analytics reads go to the primary"
                        );
                    }
                }
            }
        });
        self.fallback = Some(fallback);
        Ok(self)
    }

    /// Whether analytics reads go to a read replica now (`None`: none is
    /// configured).
    pub fn reading_from_replica(&self) -> Option<bool> {
        self.fallback.as_ref().map(|f| f.replica_up())
    }

    /// Whether the database is a Citus coordinator (has the `citus`
    /// extension); always false on SQLite.
    pub async fn is_citus(&self) -> StoreResult<bool> {
        Ok(migration::citus::is_citus(&self.db).await?)
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The analytics reads' connection (see [`Store::connect_with`]).
    pub(crate) fn reads(&self) -> &DatabaseConnection {
        match &self.fallback {
            Some(f) if !f.replica_up() => &f.reads,
            _ => &self.reads,
        }
    }

    /// The dashboard reads' connection (see the `dashboard` field).
    pub(crate) fn dashboard(&self) -> &DatabaseConnection {
        match &self.fallback {
            Some(f) if !f.replica_up() => &f.dashboard,
            _ => &self.dashboard,
        }
    }

    /// The underlying connection, for repositories in this crate.
    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    pub(crate) fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// Holds the single-writer lock on SQLite for the lifetime of the guard;
    /// a no-op on PostgreSQL, where row locks and constraints serialize writers.
    pub(crate) async fn write_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }

    /// Round-trips a trivial query: the readiness probe.
    pub async fn ping(&self) -> StoreResult<()> {
        self.db
            .execute_raw(Statement::from_string(self.backend(), "SELECT 1"))
            .await?;
        Ok(())
    }

    /// Applies every pending migration.
    pub async fn migrate_up(&self) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        Migrator::up(&self.db, None).await?;
        // On a Citus cluster: distribute the tables (a no-op elsewhere, and
        // for tables already placed).
        migration::citus::distribute(&self.db).await?;
        Ok(())
    }

    /// Rolls back `steps` migrations, or all of them when `None`.
    pub async fn migrate_down(&self, steps: Option<u32>) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        Migrator::down(&self.db, steps).await?;
        Ok(())
    }

    /// Every known migration with its state, oldest first.
    pub async fn migration_status(&self) -> StoreResult<Vec<MigrationState>> {
        let applied: std::collections::HashSet<String> = Migrator::get_applied_migrations(&self.db)
            .await?
            .into_iter()
            .map(|m| m.name().to_owned())
            .collect();
        Ok(Migrator::migrations()
            .iter()
            .map(|m| MigrationState {
                name: m.name().to_owned(),
                applied: applied.contains(m.name()),
            })
            .collect())
    }

    /// Closes the pool (used by tests before dropping their database).
    pub async fn close(self) -> StoreResult<()> {
        if self.engine == Engine::Postgres {
            self.reads.close().await?;
            self.dashboard.close().await?;
        }
        if let Some(f) = self.fallback.as_ref() {
            f.reads.clone().close().await?;
            f.dashboard.clone().close().await?;
        }
        self.db.close().await?;
        Ok(())
    }
}

/// The file path of a `sqlite:` URL, if it names a file.
fn sqlite_file_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| path.to_owned())
}

/// Whether a replica answers a trivial query within [`REPLICA_CHECK`].
async fn replica_answers(replica: &DatabaseConnection) -> bool {
    let ping = replica.execute_raw(Statement::from_string(DbBackend::Postgres, "SELECT 1"));
    matches!(tokio::time::timeout(REPLICA_CHECK, ping).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_engine_or_are_refused() {
        assert_eq!(
            Engine::from_url("postgres://u@h/db").ok(),
            Some(Engine::Postgres)
        );
        assert_eq!(
            Engine::from_url("postgresql://u@h/db").ok(),
            Some(Engine::Postgres)
        );
        assert_eq!(
            Engine::from_url("sqlite://data/x.db?mode=rwc").ok(),
            Some(Engine::Sqlite)
        );
        assert!(matches!(
            Engine::from_url("bogus://x"),
            Err(StoreError::UnsupportedUrl(_))
        ));
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        let err = Engine::from_url("mysql://root:pw@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|m| !m.contains("pw")));
    }

    #[test]
    fn sqlite_paths_are_found() {
        assert_eq!(
            sqlite_file_path("sqlite://./data/a.db?mode=rwc").as_deref(),
            Some("./data/a.db")
        );
        assert_eq!(sqlite_file_path("sqlite::memory:"), None);
    }
}
