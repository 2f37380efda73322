//! Small helpers for hand-written statements that must run on both engines.

use crate::StoreResult;
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};

/// `$start, $start+1, …` for `n` values (both engines accept `$N`).
pub fn placeholders(start: usize, n: usize) -> String {
    (start..start + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn query_all<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Vec<QueryResult>> {
    let backend = conn.get_database_backend();
    Ok(conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?)
}

pub async fn query_one<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Option<QueryResult>> {
    let backend = conn.get_database_backend();
    Ok(conn
        .query_one_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?)
}

pub async fn execute<C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<u64> {
    let backend = conn.get_database_backend();
    Ok(conn
        .execute_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?
        .rows_affected())
}

/// Whether a failed transaction is worth running again: lock conflicts and
/// races that a second run resolves by seeing the other writer's rows.
pub fn is_retriable(e: &crate::StoreError) -> bool {
    let crate::StoreError::Db(db) = e else {
        return false;
    };
    if matches!(
        db.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    ) {
        return true;
    }
    let text = db.to_string();
    [
        "40P01",
        "40001",
        "deadlock detected",
        "could not serialize",
        "database is locked",
        "SQLITE_BUSY",
    ]
    .iter()
    .any(|needle| text.contains(needle))
}

/// Takes PostgreSQL transaction-scoped advisory locks on `keys`, in order.
/// A no-op on SQLite, where one writer runs at a time anyway.
pub async fn advisory_locks<C: ConnectionTrait>(conn: &C, mut keys: Vec<i64>) -> StoreResult<()> {
    if conn.get_database_backend() != DbBackend::Postgres || keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    let list = keys
        .iter()
        .map(|k| format!("({k})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT pg_advisory_xact_lock(k) FROM (VALUES {list}) AS t(k) ORDER BY k");
    query_all(conn, &sql, vec![]).await?;
    Ok(())
}

/// A stable 64-bit lock key for a UUID.
pub fn lock_key(id: uuid::Uuid) -> i64 {
    let (hi, lo) = id.as_u64_pair();
    (hi ^ lo) as i64
}
