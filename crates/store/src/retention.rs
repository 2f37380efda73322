//! The life of raw rows: monthly partitions made ahead of time, and
//! retention that drops whole months (`charlie-stats retention apply`).
//!
//! On PostgreSQL `messages`, `user_activity_events` and `error_logs` are
//! partitioned by UTC month of `created_at` (migration 16). The one function
//! that makes a partition, `charlie_ensure_month_partition`, lives in the
//! database; [`Store::keep_partitions`] calls it for this month and the next
//! [`MONTHS_AHEAD`]. Ingestion makes the partitions of the months of a
//! batch's items before it writes them ([`Store::ensure_partitions`]), so a
//! late or back-dated item lands in its own month's partition, never
//! refused. The DEFAULT partition is only a safety net, expected empty:
//! `keep_partitions` moves any rows found there into their month's new
//! partition, but a query planned before such a move does not see the moved
//! rows, which is why ingestion never leaves rows there in the first place.
//!
//! Retention keeps raw rows from [`kept_from`]: the first day of the month
//! `months` before the current one, so at least `months` whole months are
//! always kept. It never touches the rollups: every dashboard still answers
//! for older periods. Applying it, in this order:
//! 1. moves `raw_retention.kept_from` forward (never back) while holding the
//!    retention lock exclusively. Ingest transactions hold that lock shared
//!    and read `kept_from` after taking it, so once the update commits, no
//!    ingest that read the old value is still running;
//! 2. drops the partitions that end on or before it (SQLite: deletes the
//!    rows, 10,000 at a time), and deletes older rows left in DEFAULT
//!    partitions;
//! 3. deletes the ledger rows (`ingested_items`) of items older than it.
//!
//! From then on an item older than `kept_from` is refused with
//! `beyond_retention`: its ledger row is gone, so accepting it could count
//! it twice.

use crate::{Engine, Store, StoreResult, sql};
use migration::PARTITIONED;
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, TransactionTrait};
use time::{Date, Month, OffsetDateTime, Time};

/// How many months after the current one have partitions made ahead.
pub const MONTHS_AHEAD: u32 = 2;

/// Rows deleted per statement where rows are deleted one by one.
const DELETE_CHUNK: u64 = 10_000;

/// The advisory lock ingest holds shared and retention takes exclusively.
const RETENTION_LOCK: (i32, i32) = (1700, 17);

/// The first day of the month `months` after (or, negative, before) the
/// month of `date`.
fn month_start(date: Date, months: i32) -> Date {
    let index = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
    let (year, month0) = (index.div_euclid(12), index.rem_euclid(12));
    let month = Month::try_from(u8::try_from(month0 + 1).unwrap_or(1)).unwrap_or(Month::January);
    Date::from_calendar_date(year, month, 1).unwrap_or(date)
}

/// From when raw rows are kept when `months` are retained: the first
/// instant (UTC) of the month `months` before the month of `now`.
pub fn kept_from(now: OffsetDateTime, months: u32) -> OffsetDateTime {
    let months = i32::try_from(months).unwrap_or(i32::MAX / 24);
    month_start(now.date(), -months)
        .with_time(Time::MIDNIGHT)
        .assume_utc()
}

/// The month a partition name (`messages_p2026_12`) stands for.
fn partition_month(table: &str, name: &str) -> Option<Date> {
    let rest = name.strip_prefix(table)?.strip_prefix("_p")?;
    let (y, m) = rest.split_once('_')?;
    let month = Month::try_from(m.parse::<u8>().ok()?).ok()?;
    Date::from_calendar_date(y.parse().ok()?, month, 1).ok()
}

#[derive(FromQueryResult)]
struct KeptFrom {
    kept_from: Option<OffsetDateTime>,
}

#[derive(FromQueryResult)]
struct Name {
    name: String,
}

#[derive(FromQueryResult)]
struct Month0 {
    month: Date,
}

/// Reads `kept_from` inside an ingest transaction. On PostgreSQL it first
/// takes the retention lock shared, in its own statement, so the value read
/// is at least as new as any retention that finished before (see the
/// module's step 1).
pub(crate) async fn kept_from_for_write(
    txn: &DatabaseTransaction,
) -> StoreResult<Option<OffsetDateTime>> {
    if txn.get_database_backend() == sea_orm::DbBackend::Postgres {
        sql::query_all(
            txn,
            "SELECT 1 FROM (SELECT pg_advisory_xact_lock_shared($1, $2)) AS l",
            vec![RETENTION_LOCK.0.into(), RETENTION_LOCK.1.into()],
        )
        .await?;
    }
    read_kept_from(txn).await
}

async fn read_kept_from<C: ConnectionTrait>(conn: &C) -> StoreResult<Option<OffsetDateTime>> {
    Ok(sql::fetch_one::<KeptFrom, _>(
        conn,
        "SELECT kept_from FROM raw_retention WHERE id = 1",
        vec![],
    )
    .await?
    .and_then(|r| r.kept_from))
}

/// One partitioned table's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub table: &'static str,
    /// `messages_p2026_12`.
    pub name: String,
    /// The first day of its month.
    pub month: Date,
}

/// What retention did, or would do with `--dry-run`.
#[derive(Debug, Clone, Default)]
pub struct RetentionReport {
    /// Raw rows are kept from this instant on.
    pub kept_from: Option<OffsetDateTime>,
    /// Partitions dropped (PostgreSQL).
    pub partitions: Vec<String>,
    /// Raw rows deleted one by one: SQLite's, and rows left in PostgreSQL's
    /// DEFAULT partitions. With `--dry-run`, rows that would be.
    pub rows: u64,
    /// Ledger rows deleted (or that would be).
    pub ledger_rows: u64,
}

impl Store {
    /// From when raw rows are kept (`None`: everything ever ingested).
    pub async fn raw_kept_from(&self) -> StoreResult<Option<OffsetDateTime>> {
        read_kept_from(self.conn()).await
    }

    /// The monthly partitions of every partitioned table, oldest first
    /// (empty on SQLite).
    pub async fn partitions(&self) -> StoreResult<Vec<Partition>> {
        if self.engine() != Engine::Postgres {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for table in PARTITIONED {
            let rows = sql::fetch_all::<Name, _>(
                self.conn(),
                "SELECT CAST(c.relname AS TEXT) AS name FROM pg_inherits i \
                 JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)",
                vec![table.into()],
            )
            .await?;
            let mut parts: Vec<Partition> = rows
                .into_iter()
                .filter_map(|r| {
                    partition_month(table, &r.name).map(|month| Partition {
                        table,
                        name: r.name,
                        month,
                    })
                })
                .collect();
            parts.sort_by_key(|p| p.month);
            out.extend(parts);
        }
        Ok(out)
    }

    /// Makes sure every partitioned table has the partitions of the month of
    /// `now` and the next [`MONTHS_AHEAD`], and of every retained month whose
    /// rows wait in its DEFAULT partition (they move to the new partition).
    /// Safe to run from several instances at once. Returns the partitions
    /// it created; a no-op on SQLite.
    pub async fn keep_partitions(&self, now: OffsetDateTime) -> StoreResult<Vec<String>> {
        if self.engine() != Engine::Postgres {
            return Ok(Vec::new());
        }
        let kept = self.raw_kept_from().await?;
        let mut created = Vec::new();
        for table in PARTITIONED {
            let mut months: Vec<Date> = (0..=MONTHS_AHEAD)
                .map(|k| month_start(now.date(), k as i32))
                .collect();
            let waiting = sql::fetch_all::<Month0, _>(
                self.conn(),
                &format!(
                    "SELECT DISTINCT CAST(date_trunc('month', created_at AT TIME ZONE 'UTC') AS DATE) \
                     AS month FROM {table}_default"
                ),
                vec![],
            )
            .await?;
            months.extend(waiting.into_iter().map(|m| m.month));
            months.sort_unstable();
            months.dedup();
            for month in months {
                if kept.is_some_and(|k| month < k.date()) {
                    continue;
                }
                let made = self.ensure_month(table, month).await?;
                if made {
                    created.push(format!(
                        "{table}_p{:04}_{:02}",
                        month.year(),
                        u8::from(month.month())
                    ));
                }
            }
        }
        Ok(created)
    }

    /// Makes the partition of `table` for the UTC month starting `month`
    /// if it is missing (`charlie_ensure_month_partition`, in its own
    /// transaction). Returns whether it made one.
    async fn ensure_month(&self, table: &str, month: Date) -> StoreResult<bool> {
        let txn = self.conn().begin().await?;
        let made = sql::query_one(
            &txn,
            "SELECT charlie_ensure_month_partition($1, $2) AS made",
            vec![table.into(), month.into()],
        )
        .await?
        .map(|r| r.try_get::<bool>("", "made"))
        .transpose()?
        .unwrap_or(false);
        txn.commit().await?;
        Ok(made)
    }

    /// Makes sure the months of `instants` have their partitions in every
    /// partitioned table before an ingest transaction writes rows of them,
    /// so that no row is ever written to a DEFAULT partition: moving rows
    /// out of one later races with queries planned before the move (they
    /// would not see the rows in either place). A month this process has
    /// seen before costs a set lookup; months before the retention horizon
    /// are skipped (ingest refuses their items). A no-op on SQLite. Bulk
    /// loads (the benchmarks' `COPY`) call it too.
    pub async fn ensure_partitions(
        &self,
        instants: impl Iterator<Item = OffsetDateTime>,
    ) -> StoreResult<()> {
        if self.engine() != Engine::Postgres {
            return Ok(());
        }
        let missing: Vec<Date> = {
            let known = self
                .partition_months
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut months: Vec<Date> = instants
                .map(|at| month_start(at.to_offset(time::UtcOffset::UTC).date(), 0))
                .filter(|m| !known.contains(m))
                .collect();
            months.sort_unstable();
            months.dedup();
            months
        };
        if missing.is_empty() {
            return Ok(());
        }
        let kept = self.raw_kept_from().await?;
        for month in missing {
            if kept.is_some_and(|k| month < k.date()) {
                continue;
            }
            for table in PARTITIONED {
                self.ensure_month(table, month).await?;
            }
            self.partition_months
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(month);
        }
        Ok(())
    }

    /// Drops raw rows older than `months` whole months before the month of
    /// `now` (see the module). With `dry_run`, changes nothing and says
    /// what it would do.
    pub async fn apply_retention(
        &self,
        months: u32,
        now: OffsetDateTime,
        dry_run: bool,
    ) -> StoreResult<RetentionReport> {
        let target = kept_from(now, months);
        // Never moves back: what was dropped cannot come back.
        let kept = self
            .raw_kept_from()
            .await?
            .map_or(target, |k| k.max(target));
        let mut report = RetentionReport {
            kept_from: Some(kept),
            ..RetentionReport::default()
        };
        if dry_run {
            report.partitions = self
                .partitions()
                .await?
                .into_iter()
                .filter(|p| month_start(p.month, 1) <= kept.date())
                .map(|p| p.name)
                .collect();
            let raw: Vec<String> = match self.engine() {
                Engine::Postgres => PARTITIONED.iter().map(|t| format!("{t}_default")).collect(),
                Engine::Sqlite => PARTITIONED.iter().map(|t| (*t).to_owned()).collect(),
            };
            for table in raw {
                report.rows += self.count_before(&table, kept).await?;
            }
            report.ledger_rows = self.count_before("ingested_items", kept).await?;
            return Ok(report);
        }
        // 1. Move the horizon, waiting for ingests that read the old one.
        {
            let _guard = self.write_guard().await;
            let txn = self.conn().begin().await?;
            if self.engine() == Engine::Postgres {
                sql::query_all(
                    &txn,
                    "SELECT 1 FROM (SELECT pg_advisory_xact_lock($1, $2)) AS l",
                    vec![RETENTION_LOCK.0.into(), RETENTION_LOCK.1.into()],
                )
                .await?;
            }
            sql::execute(
                &txn,
                "UPDATE raw_retention SET kept_from = $1, applied_at = $2 WHERE id = 1",
                vec![kept.into(), now.into()],
            )
            .await?;
            txn.commit().await?;
        }
        // 2. Raw rows.
        match self.engine() {
            Engine::Postgres => {
                for p in self.partitions().await? {
                    if month_start(p.month, 1) > kept.date() {
                        continue;
                    }
                    let txn = self.conn().begin().await?;
                    // Detaching waits for statements on the table; bounded,
                    // so a long analytics read makes this fail, not stall
                    // ingestion behind it.
                    sql::execute(&txn, "SET LOCAL lock_timeout = '10s'", vec![]).await?;
                    sql::execute(
                        &txn,
                        &format!("ALTER TABLE {} DETACH PARTITION {}", p.table, p.name),
                        vec![],
                    )
                    .await?;
                    sql::execute(&txn, &format!("DROP TABLE {}", p.name), vec![]).await?;
                    txn.commit().await?;
                    report.partitions.push(p.name);
                }
                self.partition_months
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .retain(|m| *m >= kept.date());
                // The DEFAULT partitions stay empty by design: one
                // statement each (Citus cannot delete by `ctid` in chunks
                // on a distributed table).
                for table in PARTITIONED {
                    report.rows += self
                        .delete_before(&format!("{table}_default"), None, kept)
                        .await?;
                }
            }
            Engine::Sqlite => {
                for table in PARTITIONED {
                    report.rows += self.delete_before(table, Some("rowid"), kept).await?;
                }
            }
        }
        // 3. The ledger of what is gone, by its key (`ctid` chunks would not
        // run on a Citus local table).
        report.ledger_rows = self
            .delete_before("ingested_items", Some("id"), kept)
            .await?;
        Ok(report)
    }

    async fn count_before(&self, table: &str, kept: OffsetDateTime) -> StoreResult<u64> {
        let n = sql::query_one(
            self.conn(),
            &format!(
                "SELECT COUNT(*) AS n FROM {table} WHERE {}",
                sql::instant_cmp(self.backend(), "created_at", "<", 1)
            ),
            vec![kept.into()],
        )
        .await?
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0);
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Deletes the rows of `table` older than `kept`: with a `row_id`
    /// column, [`DELETE_CHUNK`] per transaction, so no lock is held for long;
    /// without one, in one statement.
    async fn delete_before(
        &self,
        table: &str,
        row_id: Option<&str>,
        kept: OffsetDateTime,
    ) -> StoreResult<u64> {
        let older = sql::instant_cmp(self.backend(), "created_at", "<", 1);
        let Some(row_id) = row_id else {
            let _guard = self.write_guard().await;
            return sql::execute(
                self.conn(),
                &format!("DELETE FROM {table} WHERE {older}"),
                vec![kept.into()],
            )
            .await;
        };
        let mut total = 0;
        loop {
            let _guard = self.write_guard().await;
            let n = sql::execute(
                self.conn(),
                &format!(
                    "DELETE FROM {table} WHERE {row_id} IN (SELECT {row_id} FROM {table} \
                     WHERE {older} LIMIT {DELETE_CHUNK})"
                ),
                vec![kept.into()],
            )
            .await?;
            total += n;
            if n < DELETE_CHUNK {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    #[test]
    fn months_are_counted_in_whole_calendar_months() {
        assert_eq!(month_start(date!(2026 - 12 - 04), 0), date!(2026 - 12 - 01));
        assert_eq!(month_start(date!(2026 - 12 - 31), 1), date!(2027 - 01 - 01));
        assert_eq!(
            month_start(date!(2026 - 01 - 15), -1),
            date!(2025 - 12 - 01)
        );
        assert_eq!(
            month_start(date!(2026 - 03 - 31), -14),
            date!(2025 - 01 - 01)
        );
        assert_eq!(
            kept_from(datetime!(2026-12-04 10:00 UTC), 12),
            datetime!(2025-12-01 00:00 UTC)
        );
        assert_eq!(
            kept_from(datetime!(2026-01-01 00:00 UTC), 1),
            datetime!(2025-12-01 00:00 UTC)
        );
    }

    #[test]
    fn partition_names_say_their_month() {
        assert_eq!(
            partition_month("messages", "messages_p2026_02"),
            Some(date!(2026 - 02 - 01))
        );
        assert_eq!(partition_month("messages", "messages_default"), None);
        assert_eq!(partition_month("error_logs", "messages_p2026_02"), None);
        assert_eq!(partition_month("messages", "messages_p2026_13"), None);
    }
}
