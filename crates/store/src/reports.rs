//! Weekly report bookkeeping: who gets a report for an ISO week, and the
//! delivery records that make each user × week go out at most once.
//!
//! A run first records a `pending` row per recipient (`ON CONFLICT DO
//! NOTHING`, so any instance may do it), then claims rows one small batch at
//! a time: a claim turns `pending` into `sending` and commits before the
//! e-mail is sent (PostgreSQL claims `FOR UPDATE SKIP LOCKED`, so instances
//! never claim the same row). After the send the row becomes `sent`, or goes
//! back to `pending` with a later `next_attempt_ms` when the SMTP server
//! refused it, or `failed` after the last attempt. A run that dies half-way
//! leaves the rest `pending` and the next run goes on from there. A row left
//! in `sending` (the process died during that one send) is never sent again:
//! it may have gone out, and a report is sent at most once.

use crate::{
    Engine, Store, StoreResult,
    sql::{self, placeholders},
};
use sea_orm::Value;
use uuid::Uuid;

/// A user who gets a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecipient {
    pub user_id: Uuid,
    pub email: String,
    pub timezone: Option<String>,
}

/// Delivery counts of one week.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub sending: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
}

impl Store {
    /// Users not opted out, with an e-mail address and at least one message
    /// in buckets `[first_bucket, end_bucket)`.
    pub async fn report_recipients(
        &self,
        first_bucket: i64,
        end_bucket: i64,
    ) -> StoreResult<Vec<ReportRecipient>> {
        let rows = sql::query_all(
            self.conn(),
            "SELECT u.id, u.email, u.timezone FROM users u WHERE u.weekly_report_opt_out = $1 \
             AND u.email IS NOT NULL AND u.email <> '' AND EXISTS (SELECT 1 FROM usage_buckets b \
             WHERE b.user_id = u.id AND b.bucket >= $2 AND b.bucket < $3 AND b.message_count > 0) ORDER BY u.id",
            vec![false.into(), first_bucket.into(), end_bucket.into()],
        )
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportRecipient {
                    user_id: r.try_get("", "id")?,
                    email: r.try_get("", "email")?,
                    timezone: r.try_get("", "timezone")?,
                })
            })
            .collect()
    }

    /// Records a `pending` delivery for each user that has none for `week`.
    pub async fn ensure_report_deliveries(
        &self,
        week: &str,
        users: &[Uuid],
        now_ms: i64,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        for chunk in users.chunks(500) {
            let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
            let mut tuples = Vec::with_capacity(chunk.len());
            for (n, u) in chunk.iter().enumerate() {
                tuples.push(format!("({}, 'pending', 0, 0)", placeholders(3 * n + 1, 3)));
                values.extend([(*u).into(), week.to_owned().into(), now_ms.into()]);
            }
            let sql = format!(
                "INSERT INTO report_deliveries (user_id, week, updated_at_ms, status, attempts, next_attempt_ms) \
                 VALUES {} ON CONFLICT (user_id, week) DO NOTHING",
                tuples.join(", ")
            );
            sql::execute(self.conn(), &sql, values).await?;
        }
        Ok(())
    }

    /// Claims up to `limit` due `pending` deliveries of `week` (they become
    /// `sending`, committed) and returns their users.
    pub async fn claim_report_deliveries(
        &self,
        week: &str,
        limit: u32,
        now_ms: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let _guard = self.write_guard().await;
        let lock = match self.engine() {
            Engine::Postgres => " FOR UPDATE SKIP LOCKED",
            Engine::Sqlite => "",
        };
        let sql = format!(
            "UPDATE report_deliveries SET status = 'sending', attempts = attempts + 1, updated_at_ms = $1 \
             WHERE week = $2 AND user_id IN (SELECT user_id FROM report_deliveries WHERE week = $2 \
             AND status = 'pending' AND next_attempt_ms <= $1 ORDER BY user_id LIMIT $3{lock}) \
             RETURNING user_id"
        );
        let rows = sql::query_all(
            self.conn(),
            &sql,
            vec![
                now_ms.into(),
                week.to_owned().into(),
                i64::from(limit.max(1)).into(),
            ],
        )
        .await?;
        rows.iter().map(|r| Ok(r.try_get("", "user_id")?)).collect()
    }

    /// Ends a claimed delivery: `sent`, `skipped` or `failed`.
    pub async fn finish_report_delivery(
        &self,
        user_id: Uuid,
        week: &str,
        status: &str,
        error: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        sql::execute(
            self.conn(),
            "UPDATE report_deliveries SET status = $1, last_error = $2, updated_at_ms = $3 \
             WHERE user_id = $4 AND week = $5",
            vec![
                status.to_owned().into(),
                error
                    .map(|e| e.chars().take(1000).collect::<String>())
                    .into(),
                now_ms.into(),
                user_id.into(),
                week.to_owned().into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Puts a claimed delivery back to `pending`, due at `retry_at_ms`.
    pub async fn retry_report_delivery(
        &self,
        user_id: Uuid,
        week: &str,
        error: &str,
        retry_at_ms: i64,
        now_ms: i64,
    ) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        sql::execute(
            self.conn(),
            "UPDATE report_deliveries SET status = 'pending', last_error = $1, next_attempt_ms = $2, \
             updated_at_ms = $3 WHERE user_id = $4 AND week = $5",
            vec![
                error.chars().take(1000).collect::<String>().into(),
                retry_at_ms.into(),
                now_ms.into(),
                user_id.into(),
                week.to_owned().into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// How many deliveries of `week` are in each state.
    pub async fn report_delivery_counts(&self, week: &str) -> StoreResult<DeliveryCounts> {
        let rows = sql::query_all(
            self.conn(),
            "SELECT status, COUNT(*) AS n FROM report_deliveries WHERE week = $1 GROUP BY status",
            vec![week.to_owned().into()],
        )
        .await?;
        let mut c = DeliveryCounts::default();
        for r in rows {
            let status: String = r.try_get("", "status")?;
            let n: i64 = r.try_get("", "n")?;
            match status.as_str() {
                "pending" => c.pending = n,
                "sending" => c.sending = n,
                "sent" => c.sent = n,
                "failed" => c.failed = n,
                _ => c.skipped += n,
            }
        }
        Ok(c)
    }

    /// Attempts made so far at `user_id`'s report of `week`.
    pub async fn report_delivery_attempts(
        &self,
        user_id: Uuid,
        week: &str,
    ) -> StoreResult<Option<i32>> {
        sql::query_one(
            self.conn(),
            "SELECT attempts FROM report_deliveries WHERE user_id = $1 AND week = $2",
            vec![user_id.into(), week.to_owned().into()],
        )
        .await?
        .map(|r| Ok(r.try_get("", "attempts")?))
        .transpose()
    }

    /// Whether the scheduled run of `week` has completed.
    pub async fn report_run_completed(&self, week: &str) -> StoreResult<bool> {
        Ok(sql::query_one(
            self.conn(),
            "SELECT week FROM report_runs WHERE week = $1",
            vec![week.to_owned().into()],
        )
        .await?
        .is_some())
    }

    /// Marks the run of `week` completed.
    pub async fn complete_report_run(&self, week: &str, now_ms: i64) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        sql::execute(
            self.conn(),
            "INSERT INTO report_runs (week, completed_at_ms) VALUES ($1, $2) ON CONFLICT (week) DO NOTHING",
            vec![week.to_owned().into(), now_ms.into()],
        )
        .await?;
        Ok(())
    }
}
