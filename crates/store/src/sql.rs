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

/// Bind parameters per statement: under SQLite's limit (32,766) and
/// PostgreSQL's (65,535).
const MAX_BINDS: usize = 30_000;

/// Inserts `rows` (values in `columns` order) into `table`, as many rows per
/// statement as the engines' bind limits allow (at most 500), with an
/// optional ON CONFLICT clause. Returns the `returning` columns of the rows
/// actually inserted (nothing when `returning` is empty).
pub async fn insert_many<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<sea_orm::sea_query::SimpleExpr>>,
    on_conflict: Option<sea_orm::sea_query::OnConflict>,
    returning: &[&str],
) -> StoreResult<Vec<QueryResult>> {
    use sea_orm::sea_query::{Alias, Query};
    let per_statement = (MAX_BINDS / columns.len().max(1)).clamp(1, 500);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut q = Query::insert();
        q.into_table(Alias::new(table))
            .columns(columns.iter().map(|c| Alias::new(*c)));
        for row in rows.by_ref().take(per_statement) {
            q.values(row).map_err(crate::StoreError::from_query)?;
        }
        if let Some(clause) = &on_conflict {
            q.on_conflict(clause.clone());
        }
        if returning.is_empty() {
            conn.execute(&q).await?;
        } else {
            q.returning(Query::returning().columns(returning.iter().map(|c| Alias::new(*c))));
            out.extend(conn.query_all(&q).await?);
        }
    }
    Ok(out)
}

/// `ON CONFLICT (columns) DO NOTHING`.
pub fn ignore_conflicts(columns: &[&str]) -> sea_orm::sea_query::OnConflict {
    sea_orm::sea_query::OnConflict::columns(
        columns.iter().map(|c| sea_orm::sea_query::Alias::new(*c)),
    )
    .do_nothing()
    .to_owned()
}

/// `UPDATE {table} SET {assignments} FROM (VALUES …) AS v WHERE {table}.id = v.<first column> [AND ({condition})]`,
/// one statement per chunk of rows, rows in the order given (sort them by id
/// for a stable lock order). `columns` names the VALUES columns with their
/// PostgreSQL types; `assignments` and `condition` refer to them as `v.<name>`
/// (rewritten to SQLite's `v.columnN`).
pub async fn update_from_values<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &[(&str, &str)],
    assignments: &str,
    condition: Option<&str>,
    rows: Vec<Vec<Value>>,
) -> StoreResult<()> {
    let postgres = conn.get_database_backend() == DbBackend::Postgres;
    let (Some((id_column, _)), false) = (columns.first(), rows.is_empty()) else {
        return Ok(());
    };
    let rename = |text: &str| -> String {
        if postgres {
            return text.to_owned();
        }
        rename_values_columns(text, columns)
    };
    let alias = if postgres {
        format!(
            "v({})",
            columns
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        "v".to_owned()
    };
    let per_statement = (MAX_BINDS / columns.len()).clamp(1, 500);
    for chunk in rows.chunks(per_statement) {
        let mut values = Vec::with_capacity(chunk.len() * columns.len());
        let tuples: Vec<String> = chunk
            .iter()
            .enumerate()
            .map(|(r, row)| {
                values.extend(row.iter().cloned());
                let cells: Vec<String> = columns
                    .iter()
                    .enumerate()
                    .map(|(c, (_, ty))| {
                        let n = r * columns.len() + c + 1;
                        if postgres {
                            format!("${n}::{ty}")
                        } else {
                            format!("${n}")
                        }
                    })
                    .collect();
                format!("({})", cells.join(", "))
            })
            .collect();
        let mut sql = format!(
            "UPDATE {table} SET {} FROM (VALUES {}) AS {alias} WHERE {table}.id = {}",
            rename(assignments),
            tuples.join(", "),
            rename(&format!("v.{id_column}"))
        );
        if let Some(cond) = condition {
            sql.push_str(&format!(" AND ({})", rename(cond)));
        }
        execute(conn, &sql, values).await?;
    }
    Ok(())
}

/// Rewrites every `v.<name>` (a whole identifier) to SQLite's `v.columnN`.
fn rename_values_columns(text: &str, columns: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("v.") {
        let boundary = rest[..at]
            .chars()
            .last()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'));
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        let name = &after[..len];
        match columns.iter().position(|(n, _)| *n == name) {
            Some(i) if boundary => out.push_str(&format!("v.column{}", i + 1)),
            _ => {
                out.push_str("v.");
                out.push_str(name);
            }
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_columns_are_renamed_as_whole_identifiers() {
        let cols = [
            ("u", "uuid"),
            ("m", "bigint"),
            ("c", "bigint"),
            ("b", "bigint"),
        ];
        assert_eq!(
            rename_values_columns(
                "x = users.x + v.m, y = v.c, z = v.b, w = v.bee, q = nav.c",
                &cols
            ),
            "x = users.x + v.column2, y = v.column3, z = v.column4, w = v.bee, q = nav.c"
        );
        assert_eq!(
            rename_values_columns("users.id = v.u", &cols),
            "users.id = v.column1"
        );
    }
}
