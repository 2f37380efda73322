//! Small helpers for hand-written statements that must run on both engines.

use crate::StoreResult;
use sea_orm::{
    ConnectionTrait, DbBackend, FromQueryResult, QueryResult, Statement, Value,
    sea_query::{
        Alias, Expr, ExprTrait, Func, OnConflict, PostgresQueryBuilder, Query, SimpleExpr,
    },
};

mod arrays;

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

/// Every row of a statement, each read as `T` by its column names (`T`
/// derives `FromQueryResult`, so the columns are named once, on `T`).
pub async fn fetch_all<T: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Vec<T>> {
    query_all(conn, sql, values)
        .await?
        .iter()
        .map(read)
        .collect()
}

/// The first row of a statement, if any, read as `T` (see [`fetch_all`]).
pub async fn fetch_one<T: FromQueryResult, C: ConnectionTrait>(
    conn: &C,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Option<T>> {
    query_one(conn, sql, values)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

/// One row read as `T` by its column names.
pub fn read<T: FromQueryResult>(row: &QueryResult) -> StoreResult<T> {
    Ok(T::from_query_result(row, "")?)
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

/// `column <op> $param` for timestamps. SQLite stores them as text whose
/// form depends on the writer, so it compares their Julian days there.
pub fn instant_cmp(backend: DbBackend, column: &str, op: &str, param: usize) -> String {
    match backend {
        DbBackend::Sqlite => format!("julianday({column}) {op} julianday(${param})"),
        _ => format!("{column} {op} ${param}"),
    }
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
        // Citus' detector, across nodes (a partition attached while
        // ingestion writes the table, say).
        "distributed deadlock",
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
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    query_all(
        conn,
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS t(k) ORDER BY k",
        vec![format!("{{{list}}}").into()],
    )
    .await?;
    Ok(())
}

/// Every write to a table Citus keeps as a reference table (`workflows`,
/// `agent_components`), and every creation of a user (placeholders, and
/// `user.upsert` with its `user_subjects` claim), comes after this
/// transaction-level advisory lock. Citus serializes writes to a reference
/// table with a lock per table that a plain insert takes shared and an
/// update exclusive; two transactions that both inserted and then update
/// would wait for each other. Taking turns here first rules that out, and
/// two batches creating the same user never race. Writers are rare once
/// users and workflows exist (ingestion reads before it writes).
/// Cheap and harmless on plain PostgreSQL; a no-op on SQLite.
pub async fn reference_write_lock<C: ConnectionTrait>(txn: &C) -> StoreResult<()> {
    /// An arbitrary fixed key ("reference writes").
    const KEY: i64 = 0x6368_6172_7265_6601;
    advisory_locks(txn, vec![KEY]).await
}

/// A stable 64-bit lock key for a UUID.
pub fn lock_key(id: uuid::Uuid) -> i64 {
    let (hi, lo) = id.as_u64_pair();
    (hi ^ lo) as i64
}

/// The advisory lock key of a user's row: every writer of a user's
/// counters or funnel stamps (the fold, milestones, `user.upsert`) takes it
/// first ([`lock_users`]). Apart from [`lock_key`]'s space, which other
/// entities' locks use.
pub fn user_lock_key(id: uuid::Uuid) -> i64 {
    /// An arbitrary fixed mask ("user").
    const MASK: i64 = 0x7573_6572_0000_0000;
    lock_key(id) ^ MASK
}

/// Locks the rows of `users` about to be written, in one round trip, with
/// transaction-level advisory locks taken in key order ([`user_lock_key`]).
/// Not row locks: Citus runs `SELECT … FOR UPDATE` only on one shard, and
/// `users` is distributed. Every writer of these rows takes them first, so
/// two writers of the same users never hold one each and wait for the
/// other; a plain row lock could also wait for the key-share locks that
/// concurrent `messages` inserts hold through their foreign key. A no-op on
/// SQLite, which runs one writer at a time.
pub async fn lock_users<C: ConnectionTrait>(
    txn: &C,
    ids: impl IntoIterator<Item = uuid::Uuid>,
) -> StoreResult<()> {
    advisory_locks(txn, ids.into_iter().map(user_lock_key).collect()).await
}

/// Bind parameters per statement: under SQLite's limit (32,766) and
/// PostgreSQL's (65,535).
const MAX_BINDS: usize = 30_000;

/// Inserts `rows` (values in `columns` order) into `table`, with an optional
/// ON CONFLICT clause. Returns the `returning` columns of the rows actually
/// inserted (nothing when `returning` is empty). Rows are inserted in the
/// order given (sort them by key for a stable lock order).
///
/// On PostgreSQL all rows travel in one statement whose text, and so its
/// prepared statement, does not depend on the row count: as one typed array
/// per column ([`arrays`]), or as one JSON document expanded by
/// `json_populate_recordset` when a column's type is not sent as an array
/// (JSON columns); on SQLite as
/// multi-row `VALUES`, as many rows per statement as its bind limit allows
/// (at most 500).
pub async fn insert_many<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<SimpleExpr>>,
    on_conflict: Option<OnConflict>,
    returning: &[&str],
) -> StoreResult<Vec<QueryResult>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        let rows = rows
            .into_iter()
            .map(|row| row.into_iter().map(plain_value).collect())
            .collect::<StoreResult<Vec<Vec<Value>>>>()?;
        return insert_many_postgres(conn, table, columns, rows, on_conflict, returning).await;
    }
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

/// A plain value of a row (an expression cannot travel as data).
fn plain_value(e: SimpleExpr) -> StoreResult<Value> {
    match e {
        SimpleExpr::Value(v) => Ok(v),
        other => Err(crate::StoreError::Internal(format!(
            "only plain values can be sent as rows, not {other:?}"
        ))),
    }
}

/// The name the row source of a bulk statement goes by.
const ROWS: &str = "charlie_rows";

/// [`insert_many`] on PostgreSQL: one statement whose rows come from typed
/// column arrays ([`arrays`]), or from one JSON document when a column's
/// type cannot travel as an array.
async fn insert_many_postgres<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
    on_conflict: Option<OnConflict>,
    returning: &[&str],
) -> StoreResult<Vec<QueryResult>> {
    let mut q = Query::insert();
    q.into_table(Alias::new(table))
        .columns(columns.iter().map(|c| Alias::new(*c)));
    let mut select = Query::select();
    select.columns(columns.iter().map(|c| Alias::new(*c)));
    let arrays = match arrays::Arrays::of(columns.len(), rows) {
        Ok(arrays) => {
            select.from(Alias::new(ROWS));
            Some(arrays)
        }
        Err(rows) => {
            let json = json_records(columns, rows.into_iter())?;
            select.from_function(
                Func::cust(Alias::new("json_populate_recordset"))
                    .arg(Expr::cust(format!("NULL::{table}")))
                    .arg(Expr::val(json).cast_as(Alias::new("json"))),
                Alias::new(ROWS),
            );
            None
        }
    };
    q.select_from(select)
        .map_err(crate::StoreError::from_query)?;
    if let Some(clause) = on_conflict {
        q.on_conflict(clause);
    }
    if !returning.is_empty() {
        q.returning(Query::returning().columns(returning.iter().map(|c| Alias::new(*c))));
    }
    let (mut sql, values) = q.build(PostgresQueryBuilder);
    let mut values = values.0;
    if let Some(arrays) = arrays {
        let from = format!("FROM \"{ROWS}\"");
        if !sql.contains(&from) {
            return Err(crate::StoreError::Internal(format!(
                "no row source in the statement {sql}"
            )));
        }
        let source = arrays.source(columns, None, values.len() + 1);
        sql = sql.replacen(&from, &format!("FROM {source} AS \"{ROWS}\""), 1);
        values.extend(arrays.into_params());
    }
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, values);
    if returning.is_empty() {
        conn.execute_raw(statement).await?;
        Ok(Vec::new())
    } else {
        Ok(conn.query_all_raw(statement).await?)
    }
}

/// Rows as the text of a JSON array of objects keyed by column name, the
/// input of PostgreSQL's `json_populate_recordset` / `json_to_recordset`.
/// Written straight into one buffer (no intermediate JSON tree).
fn json_records<R, V>(columns: &[&str], rows: impl Iterator<Item = R>) -> StoreResult<String>
where
    R: IntoIterator<Item = V>,
    V: Into<JsonCell>,
{
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    out.push(b'[');
    for (n, row) in rows.enumerate() {
        if n > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let mut cells = row.into_iter();
        for (i, column) in columns.iter().enumerate() {
            let cell = cells.next().ok_or_else(|| {
                crate::StoreError::Internal(format!("row is missing column {column}"))
            })?;
            if i > 0 {
                out.push(b',');
            }
            write_json(&mut out, column)?;
            out.push(b':');
            cell.into().write_json(&mut out)?;
        }
        if cells.next().is_some() {
            return Err(crate::StoreError::Internal(
                "row has more values than columns".into(),
            ));
        }
        out.push(b'}');
    }
    out.push(b']');
    String::from_utf8(out).map_err(|e| crate::StoreError::Internal(e.to_string()))
}

/// Appends `value` as JSON.
fn write_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> StoreResult<()> {
    serde_json::to_writer(out, value).map_err(|e| crate::StoreError::Internal(e.to_string()))
}

/// A bound value or an expression on its way into a JSON record.
pub(crate) enum JsonCell {
    Value(Value),
    /// An expression that is not a plain value (described for the error).
    Expr(String),
}

impl From<Value> for JsonCell {
    fn from(v: Value) -> Self {
        JsonCell::Value(v)
    }
}

impl From<SimpleExpr> for JsonCell {
    fn from(e: SimpleExpr) -> Self {
        match e {
            SimpleExpr::Value(v) => JsonCell::Value(v),
            other => JsonCell::Expr(format!("{other:?}")),
        }
    }
}

impl JsonCell {
    /// Appends the JSON that PostgreSQL's input functions read back as the
    /// same value: timestamps as RFC 3339 with microseconds (PostgreSQL's
    /// resolution, truncated as the binary protocol does), dates as
    /// `YYYY-MM-DD`, UUIDs hyphenated, NULL as `null`.
    fn write_json(self, out: &mut Vec<u8>) -> StoreResult<()> {
        let v = match self {
            JsonCell::Value(v) => v,
            JsonCell::Expr(e) => {
                return Err(crate::StoreError::Internal(format!(
                    "only plain values can be sent as JSON records, not {e}"
                )));
            }
        };
        fn put<T: serde::Serialize>(out: &mut Vec<u8>, v: Option<T>) -> StoreResult<()> {
            match v {
                Some(v) => write_json(out, &v),
                None => {
                    out.extend_from_slice(b"null");
                    Ok(())
                }
            }
        }
        match v {
            Value::Bool(b) => put(out, b),
            Value::TinyInt(n) => put(out, n),
            Value::SmallInt(n) => put(out, n),
            Value::Int(n) => put(out, n),
            Value::BigInt(n) => put(out, n),
            Value::TinyUnsigned(n) => put(out, n),
            Value::SmallUnsigned(n) => put(out, n),
            Value::Unsigned(n) => put(out, n),
            Value::BigUnsigned(n) => put(out, n),
            Value::Float(n) => put(out, n),
            Value::Double(n) => put(out, n),
            Value::String(s) => put(out, s),
            Value::Char(c) => put(out, c),
            Value::Json(j) => put(out, j),
            Value::Uuid(u) => put(out, u.map(|u| u.hyphenated())),
            Value::TimeDate(d) => put(out, d.map(date_text)),
            Value::TimeDateTimeWithTimeZone(t) => put(out, t.map(timestamp_text)),
            other => Err(crate::StoreError::Internal(format!(
                "value {other:?} cannot be sent as a JSON record"
            ))),
        }
    }
}

fn date_text(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// RFC 3339 in UTC with microseconds, truncated toward the past.
fn timestamp_text(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}T{:02}:{:02}:{:02}.{:06}Z",
        date_text(t.date()),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// `{column} IN (…ids)`: on PostgreSQL one array parameter, on SQLite one
/// placeholder per id. `start` is the number of the first placeholder.
///
/// The text parameter is cast to `uuid[]` in a sub-select, i.e. once per
/// execution: a bare `$n::uuid[]` is re-parsed for every row a sequential
/// scan filters, and a generic plan cached while a table was small keeps
/// that scan as the table grows (the benchmark's set-up phase took 322 s
/// for 50,000 entities that way).
pub fn uuid_in(
    column: &str,
    ids: &[uuid::Uuid],
    start: usize,
    backend: DbBackend,
) -> (String, Vec<Value>) {
    if backend == DbBackend::Postgres {
        let mut list = String::with_capacity(2 + ids.len() * 37);
        list.push('{');
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            list.push_str(&id.to_string());
        }
        list.push('}');
        (
            format!("{column} = ANY(CAST((SELECT CAST(${start} AS uuid[])) AS uuid[]))"),
            vec![list.into()],
        )
    } else {
        (
            format!("{column} IN ({})", placeholders(start, ids.len())),
            ids.iter().map(|id| (*id).into()).collect(),
        )
    }
}

/// `ON CONFLICT (columns) DO NOTHING`.
pub fn ignore_conflicts(columns: &[&str]) -> OnConflict {
    OnConflict::columns(columns.iter().map(|c| Alias::new(*c)))
        .do_nothing()
        .to_owned()
}

/// `ON CONFLICT (key) DO UPDATE SET col = table.col + excluded.col` for every counter.
pub fn increments(table: &str, key: &[&str], counters: &[&str]) -> OnConflict {
    let mut on = OnConflict::columns(key.iter().map(|c| Alias::new(*c)));
    for col in counters {
        on.value(Alias::new(*col), increment(table, col));
    }
    on
}

pub fn increment(table: &str, col: &str) -> SimpleExpr {
    Expr::col((Alias::new(table), Alias::new(col)))
        .add(Expr::col((Alias::new("excluded"), Alias::new(col))))
}

/// `UPDATE {table} SET {assignments} FROM <rows> AS v WHERE {table}.id = v.<first column> [AND ({condition})]`,
/// rows in the order given (sort them by id for a stable lock order).
/// `columns` names the row columns with their PostgreSQL types; `assignments`
/// and `condition` refer to them as `v.<name>`. On PostgreSQL, one statement
/// in all, the rows as typed column arrays ([`arrays`]) or, for a type not
/// sent that way, one JSON parameter (`json_to_recordset`); on SQLite
/// multi-row `VALUES` per chunk of rows, with `v.<name>` rewritten to
/// SQLite's `v.columnN`.
pub async fn update_from_values<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &[(&str, &str)],
    assignments: &str,
    condition: Option<&str>,
    rows: Vec<Vec<Value>>,
) -> StoreResult<()> {
    update_from_values_returning(conn, table, columns, assignments, condition, rows, &[]).await?;
    Ok(())
}

/// [`update_from_values`], returning the `returning` columns (of `table`,
/// unqualified; new values) of every updated row.
pub async fn update_from_values_returning<C: ConnectionTrait>(
    conn: &C,
    table: &str,
    columns: &[(&str, &str)],
    assignments: &str,
    condition: Option<&str>,
    rows: Vec<Vec<Value>>,
    returning: &[&str],
) -> StoreResult<Vec<QueryResult>> {
    let postgres = conn.get_database_backend() == DbBackend::Postgres;
    let mut out = Vec::new();
    let (Some((id_column, _)), false) = (columns.first(), rows.is_empty()) else {
        return Ok(out);
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
    if postgres {
        let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
        let declared: Vec<&str> = columns.iter().map(|(_, ty)| *ty).collect();
        let (source, values) = match arrays::Arrays::of(columns.len(), rows) {
            Ok(arrays) => (
                format!("{} AS v", arrays.source(&names, Some(&declared), 1)),
                arrays.into_params(),
            ),
            Err(rows) => {
                let types = columns
                    .iter()
                    .map(|(n, ty)| format!("{n} {ty}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    format!("json_to_recordset($1::json) AS v({types})"),
                    vec![json_records(&names, rows.into_iter())?.into()],
                )
            }
        };
        let mut sql = format!(
            "UPDATE {table} SET {assignments} FROM {source} WHERE {table}.id = v.{id_column}"
        );
        if let Some(cond) = condition {
            sql.push_str(&format!(" AND ({cond})"));
        }
        if returning.is_empty() {
            execute(conn, &sql, values).await?;
        } else {
            sql.push_str(&format!(" RETURNING {}", returning.join(", ")));
            out.extend(query_all(conn, &sql, values).await?);
        }
        return Ok(out);
    }
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
        if returning.is_empty() {
            execute(conn, &sql, values).await?;
        } else {
            sql.push_str(&format!(" RETURNING {}", returning.join(", ")));
            out.extend(query_all(conn, &sql, values).await?);
        }
    }
    Ok(out)
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
    fn json_records_carry_values_as_postgresql_reads_them() -> Result<(), Box<dyn std::error::Error>>
    {
        let at = time::macros::datetime!(2026-11-28 21:40:00.123_456_789 +02:00);
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = json_records(
            &["id", "at", "day", "n", "note", "gone"],
            [vec![
                Value::from(id),
                Value::from(at),
                Value::from(time::macros::date!(2026 - 03 - 09)),
                Value::from(-7_i64),
                Value::from("tab\there \"quoted\""),
                Value::String(None),
            ]]
            .into_iter(),
        )?;
        let parsed: serde_json::Value = serde_json::from_str(&text)?;
        assert_eq!(
            parsed,
            serde_json::json!([{
                "id": "01234567-89ab-cdef-0123-456789abcdef",
                "at": "2026-11-28T19:40:00.123456Z",
                "day": "2026-03-09",
                "n": -7,
                "note": "tab\there \"quoted\"",
                "gone": null,
            }])
        );
        let short = json_records(&["a", "b"], [vec![Value::from(1_i64)]].into_iter());
        assert!(short.is_err(), "a row with too few values is refused");
        let long = json_records(
            &["a"],
            [vec![Value::from(1_i64), Value::from(2_i64)]].into_iter(),
        );
        assert!(long.is_err(), "a row with too many values is refused");
        Ok(())
    }

    /// A probe row: every type bulk statements send, NULLs included.
    #[derive(Debug, Clone, PartialEq, FromQueryResult)]
    struct Probe {
        id: i64,
        u: Option<uuid::Uuid>,
        t: Option<time::OffsetDateTime>,
        d: Option<time::Date>,
        s: Option<String>,
        b: Option<bool>,
        i: Option<i32>,
        f: Option<f64>,
    }

    const PROBE_COLUMNS: [&str; 8] = ["id", "u", "t", "d", "s", "b", "i", "f"];

    fn probe_row(p: &Probe) -> Vec<SimpleExpr> {
        [
            Value::from(p.id),
            Value::Uuid(p.u),
            Value::TimeDateTimeWithTimeZone(p.t),
            Value::TimeDate(p.d),
            Value::String(p.s.clone()),
            Value::Bool(p.b),
            Value::Int(p.i),
            Value::Double(p.f),
        ]
        .into_iter()
        .map(SimpleExpr::from)
        .collect()
    }

    fn ids(rows: &[QueryResult]) -> Result<Vec<i64>, sea_orm::DbErr> {
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<i64>("", "id"))
            .collect::<Result<Vec<i64>, _>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// `insert_many` and `update_from_values` write exactly the values
    /// given, NULLs included, on whichever engine `TEST_DATABASE_URL`
    /// selects (typed arrays on PostgreSQL, the JSON fallback for a JSON
    /// column), and `ON CONFLICT … RETURNING` names only the rows inserted.
    #[tokio::test]
    async fn bulk_statements_write_exactly_the_rows_given() -> Result<(), crate::StoreError> {
        let db = crate::testing::TestDatabase::create().await?;
        let store = db.migrated_store().await?;
        let conn = store.conn();
        execute(
            conn,
            "CREATE TABLE bulk_probe (id BIGINT PRIMARY KEY, u UUID, t TIMESTAMPTZ, d DATE, \
             s VARCHAR(40), b BOOLEAN, i INTEGER, f DOUBLE PRECISION, j JSON)",
            vec![],
        )
        .await?;
        let at = time::macros::datetime!(2026-11-28 21:40:00.123_456 +02:00);
        let full = Probe {
            id: 1,
            u: Some(uuid::Uuid::from_u128(7)),
            t: Some(at),
            d: Some(time::macros::date!(2026 - 03 - 09)),
            s: Some("tab\there \"quoted\", ünïcode".into()),
            b: Some(true),
            i: Some(-3),
            f: Some(2.5),
        };
        let empty = Probe {
            id: 2,
            u: None,
            t: None,
            d: None,
            s: None,
            b: None,
            i: None,
            f: None,
        };
        // Some NULL and some not, the other way round from `full`.
        let mixed = Probe {
            id: 3,
            u: None,
            t: Some(at),
            d: None,
            s: Some(String::new()),
            b: Some(false),
            i: None,
            f: Some(0.0),
        };
        let inserted = insert_many(
            conn,
            "bulk_probe",
            &PROBE_COLUMNS,
            [&full, &empty, &mixed].into_iter().map(probe_row).collect(),
            Some(ignore_conflicts(&["id"])),
            &["id"],
        )
        .await?;
        assert_eq!(ids(&inserted)?, vec![1, 2, 3]);
        // Key 1 again conflicts: only key 4 is inserted and returned.
        let fourth = Probe {
            id: 4,
            ..empty.clone()
        };
        let returned = insert_many(
            conn,
            "bulk_probe",
            &PROBE_COLUMNS,
            [&full, &fourth].into_iter().map(probe_row).collect(),
            Some(ignore_conflicts(&["id"])),
            &["id"],
        )
        .await?;
        assert_eq!(ids(&returned)?, vec![4]);
        // A JSON column does not travel as an array: the JSON fallback.
        let json = serde_json::json!({"a": [1, null]});
        insert_many(
            conn,
            "bulk_probe",
            &["id", "j"],
            vec![vec![
                Value::from(5_i64).into(),
                Value::Json(Some(Box::new(json.clone()))).into(),
            ]],
            None,
            &[],
        )
        .await?;
        let stored_json: Option<serde_json::Value> =
            query_one(conn, "SELECT j FROM bulk_probe WHERE id = 5", vec![])
                .await?
                .map(|r| r.try_get("", "j"))
                .transpose()?;
        assert_eq!(stored_json, Some(json));
        // Updates: a NULL replaces a value, and a value a NULL.
        update_from_values(
            conn,
            "bulk_probe",
            &[("id", "bigint"), ("s", "text"), ("i", "integer")],
            "s = v.s, i = v.i",
            None,
            vec![
                vec![Value::from(1_i64), Value::String(None), Value::Int(Some(9))],
                vec![Value::from(2_i64), Value::from("set"), Value::Int(None)],
            ],
        )
        .await?;
        let stored: Vec<Probe> = fetch_all(
            conn,
            "SELECT id, u, t, d, s, b, i, f FROM bulk_probe WHERE id <> 5 ORDER BY id",
            vec![],
        )
        .await?;
        let expected = vec![
            Probe {
                s: None,
                i: Some(9),
                ..full
            },
            Probe {
                s: Some("set".into()),
                ..empty
            },
            mixed,
            fourth,
        ];
        assert_eq!(stored, expected);
        store.close().await
    }

    #[test]
    fn uuid_lists_are_one_array_on_postgresql_and_placeholders_on_sqlite() {
        let a = uuid::Uuid::from_u128(1);
        let b = uuid::Uuid::from_u128(2);
        let (sql, values) = uuid_in("id", &[a, b], 3, DbBackend::Postgres);
        assert_eq!(sql, "id = ANY(CAST((SELECT CAST($3 AS uuid[])) AS uuid[]))");
        assert_eq!(values, vec![Value::from(format!("{{{a},{b}}}"))]);
        let (sql, values) = uuid_in("id", &[a, b], 3, DbBackend::Sqlite);
        assert_eq!(sql, "id IN ($3, $4)");
        assert_eq!(values, vec![Value::from(a), Value::from(b)]);
    }

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
