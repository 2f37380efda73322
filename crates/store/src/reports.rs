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
    entity::report_deliveries::{ActiveModel, Column, Entity},
    sql,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, FromQueryResult, QueryFilter, QuerySelect,
    sea_query::{Asterisk, Expr, OnConflict},
};
use uuid::Uuid;

/// A user who gets a report.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
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
        sql::fetch_all(
            self.conn(),
            // A join with the active users, not a subquery per user: Citus
            // cannot correlate a distributed table with a reference one.
            "SELECT u.id AS user_id, u.email, u.timezone FROM users u JOIN ( \
             SELECT DISTINCT b.user_id FROM usage_buckets b \
             WHERE b.bucket >= $2 AND b.bucket < $3 AND b.message_count > 0) a ON a.user_id = u.id \
             WHERE u.weekly_report_opt_out = $1 AND u.email IS NOT NULL AND u.email <> '' ORDER BY u.id",
            vec![false.into(), first_bucket.into(), end_bucket.into()],
        )
        .await
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
            Entity::insert_many(chunk.iter().map(|u| ActiveModel {
                user_id: Set(*u),
                week: Set(week.to_owned()),
                updated_at_ms: Set(now_ms),
                status: Set("pending".to_owned()),
                attempts: Set(0),
                next_attempt_ms: Set(0),
                last_error: Set(None),
            }))
            .on_conflict(
                OnConflict::columns([Column::UserId, Column::Week])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
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
        Entity::update_many()
            .col_expr(Column::Status, Expr::value(status))
            .col_expr(
                Column::LastError,
                Expr::value(error.map(|e| e.chars().take(1000).collect::<String>())),
            )
            .col_expr(Column::UpdatedAtMs, Expr::value(now_ms))
            .filter(Column::UserId.eq(user_id))
            .filter(Column::Week.eq(week))
            .exec(self.conn())
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
        Entity::update_many()
            .col_expr(Column::Status, Expr::value("pending"))
            .col_expr(
                Column::LastError,
                Expr::value(error.chars().take(1000).collect::<String>()),
            )
            .col_expr(Column::NextAttemptMs, Expr::value(retry_at_ms))
            .col_expr(Column::UpdatedAtMs, Expr::value(now_ms))
            .filter(Column::UserId.eq(user_id))
            .filter(Column::Week.eq(week))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// How many deliveries of `week` are in each state.
    pub async fn report_delivery_counts(&self, week: &str) -> StoreResult<DeliveryCounts> {
        use sea_orm::sea_query::ExprTrait as _;
        let rows = Entity::find()
            .select_only()
            .column(Column::Status)
            .column_as(Expr::col(Asterisk).count(), "n")
            .filter(Column::Week.eq(week))
            .group_by(Column::Status)
            .into_tuple::<(String, i64)>()
            .all(self.conn())
            .await?;
        let mut c = DeliveryCounts::default();
        for (status, n) in rows {
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
        Ok(Entity::find_by_id((user_id, week.to_owned()))
            .select_only()
            .column(Column::Attempts)
            .into_tuple::<i32>()
            .one(self.conn())
            .await?)
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
