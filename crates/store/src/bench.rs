//! Storage helpers of `charlie-bench` (PostgreSQL only): throw-away
//! databases, the baselines the ingestion path is compared with (`COPY` of
//! the same message rows, and the seed's one-transaction-per-message design),
//! bulk loading for the read benchmark, and the seed's own read queries
//! translated to SQL over our raw tables.
//!
//! Nothing here is used by the service itself.

use crate::{Store, StoreError, StoreResult, rollup::BUCKET_SECONDS, sql};
use sea_orm::{DbErr, TransactionTrait, Value, sqlx::postgres::PgPoolCopyExt};
use std::{
    collections::HashMap,
    fmt::Write as _,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

fn copy_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(DbErr::Custom(format!("COPY failed: {e}")))
}

/// The URL of database `name` on the server of `admin_url`.
pub fn database_url(admin_url: &str, name: &str) -> StoreResult<String> {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base
        .find("://")
        .ok_or_else(|| StoreError::UnsupportedUrl(crate::db::redact_url(admin_url)))?
        + 3;
    let host = base[scheme_end..].split('/').next().unwrap_or_default();
    let mut out = format!("{}{host}/{name}", &base[..scheme_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}

fn check_name(name: &str) -> StoreResult<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StoreError::Invalid(format!(
            "`{name}` is not a benchmark database name"
        )));
    }
    Ok(())
}

/// Creates an empty database `name` (lower-case letters, digits and `_`)
/// on the server of `admin_url` and returns its URL. On a Citus coordinator
/// it becomes a Citus database of the cluster, with the cluster's shard
/// count ([`crate::testing::create_postgres_database`]).
pub async fn create_database(admin_url: &str, name: &str) -> StoreResult<String> {
    check_name(name)?;
    crate::testing::create_postgres_database(admin_url, name, None).await
}

/// Drops database `name`, closing its connections (on every node of a
/// Citus cluster).
pub async fn drop_database(admin_url: &str, name: &str) -> StoreResult<()> {
    check_name(name)?;
    crate::testing::drop_postgres_database(admin_url, name).await
}

pub use crate::ingest::row::MessageRow;

/// How the benchmarks write a [`MessageRow`]: a line of `COPY` text.
trait CopyRow {
    fn write_copy_line(&self, out: &mut String);
}

impl CopyRow for MessageRow {
    /// The row as one line of `COPY … FROM STDIN` text format.
    fn write_copy_line(&self, out: &mut String) {
        let mut f = CopyLine::new(out);
        f.uuid(self.id);
        f.time(self.created_at);
        f.uuid(self.user_id);
        f.uuid(self.conversation_id);
        f.opt_uuid(self.workflow_id);
        f.opt_uuid(self.component_id);
        f.text(Some(self.role));
        f.text(self.model.as_deref());
        f.raw(if self.has_usage { "t" } else { "f" });
        for v in [
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.cache_write1h_tokens,
            self.reasoning_tokens,
        ] {
            f.int(Some(v));
        }
        f.int(self.cost_nano_usd);
        f.text(Some(&self.pricing_status));
        f.text(self.price_ref.as_deref());
        f.end();
    }
}

/// The `messages` columns, in [`MessageRow::values`] order, for `COPY`.
fn message_columns() -> String {
    crate::ingest::row::MESSAGE_COLUMNS.join(", ")
}

/// Builds one line of COPY text format, escaping as PostgreSQL requires.
struct CopyLine<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> CopyLine<'a> {
    fn new(out: &'a mut String) -> Self {
        CopyLine { out, first: true }
    }

    fn sep(&mut self) {
        if !self.first {
            self.out.push('\t');
        }
        self.first = false;
    }

    fn raw(&mut self, s: &str) {
        self.sep();
        self.out.push_str(s);
    }

    fn null(&mut self) {
        self.raw("\\N");
    }

    fn text(&mut self, s: Option<&str>) {
        let Some(s) = s else { return self.null() };
        self.sep();
        for c in s.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\t' => self.out.push_str("\\t"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                c => self.out.push(c),
            }
        }
    }

    fn uuid(&mut self, u: Uuid) {
        self.sep();
        let _ = write!(self.out, "{u}");
    }

    fn opt_uuid(&mut self, u: Option<Uuid>) {
        match u {
            Some(u) => self.uuid(u),
            None => self.null(),
        }
    }

    fn int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => {
                self.sep();
                let _ = write!(self.out, "{v}");
            }
            None => self.null(),
        }
    }

    fn time(&mut self, t: OffsetDateTime) {
        self.sep();
        self.out.push_str(&t.format(&Rfc3339).unwrap_or_default());
    }

    fn end(self) {
        self.out.push('\n');
    }
}

/// Sends `lines` (COPY text format, `\n`-terminated) through one
/// `COPY … FROM STDIN` in chunks of about a megabyte.
async fn copy_text(store: &Store, statement: &str, chunks: Vec<String>) -> StoreResult<u64> {
    let pool = store.conn().get_postgres_connection_pool();
    let mut copy = pool.copy_in_raw(statement).await.map_err(copy_err)?;
    for chunk in chunks {
        copy.send(chunk.into_bytes()).await.map_err(copy_err)?;
    }
    copy.finish().await.map_err(copy_err)
}

/// Renders rows into COPY text chunks of about 1 MB.
fn chunked<T>(rows: &[T], mut line: impl FnMut(&T, &mut String)) -> Vec<String> {
    const CHUNK: usize = 1 << 20;
    let mut chunks = Vec::new();
    let mut current = String::with_capacity(CHUNK + 4096);
    for r in rows {
        line(r, &mut current);
        if current.len() >= CHUNK {
            chunks.push(std::mem::replace(
                &mut current,
                String::with_capacity(CHUNK + 4096),
            ));
        }
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// `COPY`s `rows` into `messages` over `streams` concurrent connections
/// (rows split evenly), and returns the time from the first byte sent to the
/// last commit. Rendering the text is not timed. The users must exist.
pub async fn copy_messages(
    store: &Store,
    rows: &[MessageRow],
    streams: usize,
) -> StoreResult<Duration> {
    let streams = streams.max(1);
    let per = rows.len().div_ceil(streams).max(1);
    let parts: Vec<Vec<String>> = rows
        .chunks(per)
        .map(|part| chunked(part, |r, out| r.write_copy_line(out)))
        .collect();
    let statement = format!("COPY messages ({}) FROM STDIN", message_columns());
    store
        .ensure_partitions(rows.iter().map(|r| r.created_at))
        .await?;
    let started = Instant::now();
    let copied = futures_util::future::try_join_all(
        parts
            .into_iter()
            .map(|chunks| copy_text(store, &statement, chunks)),
    )
    .await?;
    let elapsed = started.elapsed();
    let total: u64 = copied.iter().sum();
    if total != rows.len() as u64 {
        return Err(StoreError::Invalid(format!(
            "COPY wrote {total} rows of {}",
            rows.len()
        )));
    }
    Ok(elapsed)
}

/// `COPY`s everything ingestion stores for `rows`, in the same tables:
/// the messages, their `ingested_items` ledger rows, the
/// `conversation_days` they open, and the final rows of `daily_metrics`,
/// `usage_buckets`, `user_buckets`, `user_days` and `platform_buckets`
/// (computed in memory with the
/// same [`Rollups`](crate::rollup::Rollups) ingestion uses). All tables are
/// loaded at once over `streams` connections each (rows split evenly).
/// Rendering is not timed; the users must exist. Returns the time from the
/// first byte sent to the last commit, the number of rows written, and
/// what `at_start` returned when it was called, just before the first byte
/// (a caller's own measurement of the timed part, such as CPU counters).
pub async fn copy_everything<T>(
    store: &Store,
    rows: &[MessageRow],
    streams: usize,
    received_at: OffsetDateTime,
    at_start: impl FnOnce() -> T,
) -> StoreResult<(Duration, u64, T)> {
    use crate::rollup::{Counters, MessageFacts, Rollups};
    use charlie_domain::{MessageRole, TokenUsage};
    let streams = streams.max(1);
    store
        .ensure_partitions(rows.iter().map(|r| r.created_at).chain([received_at]))
        .await?;
    let mut rollups = Rollups::default();
    let mut sessions: std::collections::BTreeMap<(Uuid, Date), (Uuid, Option<Uuid>)> =
        std::collections::BTreeMap::new();
    for r in rows {
        let usage = r.has_usage.then(|| TokenUsage {
            input_tokens: u64::try_from(r.input_tokens).unwrap_or(0),
            output_tokens: u64::try_from(r.output_tokens).unwrap_or(0),
            cache_read_input_tokens: u64::try_from(r.cache_read_tokens).unwrap_or(0),
            cache_creation_input_tokens: u64::try_from(r.cache_write_tokens).unwrap_or(0),
            cache_creation_1h_input_tokens: u64::try_from(r.cache_write1h_tokens).unwrap_or(0),
            reasoning_tokens: u64::try_from(r.reasoning_tokens).unwrap_or(0),
        });
        let role = match r.role {
            "user" => MessageRole::User,
            "assistant" => MessageRole::Assistant,
            "system" => MessageRole::System,
            _ => MessageRole::Tool,
        };
        let facts = MessageFacts {
            role,
            usage: usage.as_ref(),
            cost_nano_usd: r.cost_nano_usd,
            pricing_status: &r.pricing_status,
        };
        rollups.add(
            r.user_id,
            r.workflow_id,
            r.model.as_deref(),
            r.created_at,
            &Counters::for_message(&facts),
        );
        sessions
            .entry((r.conversation_id, r.created_at.date()))
            .or_insert((r.user_id, r.workflow_id));
    }
    for ((_, date), (user, workflow)) in &sessions {
        rollups.add_session(*user, *workflow, *date);
    }
    let sessions: Vec<_> = sessions.into_iter().collect();
    let days: Vec<_> = rollups.day_rows().collect();
    let buckets: Vec<_> = rollups.bucket_rows().collect();
    let platform: Vec<_> = rollups.platform_rows().collect();
    let user_buckets: Vec<_> = rollups.user_bucket_rows_iter().collect();
    let user_days: Vec<_> = rollups.user_day_rows_iter().collect();
    let counters = |f: &mut CopyLine<'_>, c: &Counters| {
        for v in c.fields(crate::rollup::BUCKET_COUNTER_COLS) {
            f.int(Some(v));
        }
    };
    let bucket_counters = crate::rollup::BUCKET_COUNTER_COLS.join(", ");
    let mut jobs: Vec<(String, Vec<String>)> = Vec::new();
    let mut add = |statement: String, parts: Vec<Vec<String>>| {
        for chunks in parts {
            jobs.push((statement.clone(), chunks));
        }
    };
    let split = |n: usize| n.div_ceil(streams).max(1);
    add(
        format!("COPY messages ({}) FROM STDIN", message_columns()),
        rows.chunks(split(rows.len()))
            .map(|part| chunked(part, |r, out| r.write_copy_line(out)))
            .collect(),
    );
    add(
        "COPY ingested_items (id, item_type, content_hash, received_at, created_at) FROM STDIN"
            .into(),
        rows.chunks(split(rows.len()))
            .map(|part| {
                chunked(part, |r, out| {
                    let mut f = CopyLine::new(out);
                    f.uuid(r.id);
                    f.text(Some("message.create"));
                    // A content hash of the same length as ingestion's (SHA-256 hex).
                    f.text(Some(&format!("{:064x}", r.id.as_u128())));
                    f.time(received_at);
                    f.time(r.created_at);
                    f.end();
                })
            })
            .collect(),
    );
    add(
        "COPY conversation_days (conversation_id, date, user_id) FROM STDIN".into(),
        sessions
            .chunks(split(sessions.len()))
            .map(|part| {
                chunked(part, |((conversation, date), (user, _)), out| {
                    let mut f = CopyLine::new(out);
                    f.uuid(*conversation);
                    f.raw(&date.to_string());
                    f.uuid(*user);
                    f.end();
                })
            })
            .collect(),
    );
    add(
        "COPY daily_metrics (id, user_id, workflow_id, workflow_key, date, created_at, updated_at, \
         message_count, user_message_count, assistant_message_count, conversation_count, unique_sessions, \
         avg_messages_per_session, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, \
         reasoning_tokens, total_tokens, estimated_cost_nano_usd, unpriced_message_count, unpriced_tokens, \
         error_count) FROM STDIN"
            .into(),
        days.chunks(split(days.len()))
            .map(|part| {
                chunked(part, |(user, workflow, date, c), out| {
                    let mut f = CopyLine::new(out);
                    f.uuid(Uuid::now_v7());
                    f.uuid(*user);
                    f.opt_uuid(*workflow);
                    f.uuid(workflow.unwrap_or(Uuid::nil()));
                    f.raw(&date.to_string());
                    f.time(received_at);
                    f.time(received_at);
                    for v in [
                        c.message_count,
                        c.user_message_count,
                        c.assistant_message_count,
                        c.conversations_started,
                        c.unique_sessions,
                    ] {
                        f.int(Some(v));
                    }
                    f.raw(&c.avg_messages_per_session().to_string());
                    for v in [
                        c.input_tokens,
                        c.output_tokens,
                        c.cache_read_tokens,
                        c.cache_write_tokens,
                        c.reasoning_tokens,
                        c.input_tokens + c.output_tokens,
                        c.cost_nano_usd,
                        c.unpriced_message_count,
                        c.unpriced_tokens,
                        c.error_count,
                    ] {
                        f.int(Some(v));
                    }
                    f.end();
                })
            })
            .collect(),
    );
    add(
        format!(
            "COPY usage_buckets (user_id, workflow_key, bucket, workflow_id, {bucket_counters}) FROM STDIN"
        ),
        buckets
            .chunks(split(buckets.len()))
            .map(|part| {
                chunked(part, |(user, workflow, bucket, c), out| {
                    let mut f = CopyLine::new(out);
                    f.uuid(*user);
                    f.uuid(workflow.unwrap_or(Uuid::nil()));
                    f.int(Some(*bucket));
                    f.opt_uuid(*workflow);
                    counters(&mut f, c);
                    f.end();
                })
            })
            .collect(),
    );
    for (table, key, rows) in [
        ("user_buckets", "bucket", &user_buckets),
        ("user_days", "day", &user_days),
    ] {
        add(
            format!("COPY {table} (user_id, {key}, {bucket_counters}) FROM STDIN"),
            rows.chunks(split(rows.len()))
                .map(|part| {
                    chunked(part, |(user, at, c), out| {
                        let mut f = CopyLine::new(out);
                        f.uuid(*user);
                        f.int(Some(*at));
                        counters(&mut f, c);
                        f.end();
                    })
                })
                .collect(),
        );
    }
    add(
        format!("COPY platform_buckets (bucket, model, {bucket_counters}) FROM STDIN"),
        platform
            .chunks(split(platform.len()))
            .map(|part| {
                chunked(part, |(bucket, model, c), out| {
                    let mut f = CopyLine::new(out);
                    f.int(Some(*bucket));
                    f.text(Some(model));
                    counters(&mut f, c);
                    f.end();
                })
            })
            .collect(),
    );
    let expected = (2 * rows.len()
        + sessions.len()
        + days.len()
        + buckets.len()
        + user_buckets.len()
        + user_days.len()
        + platform.len()) as u64;
    // At most `streams` COPYs run at once, whatever the table.
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(streams));
    let measured = at_start();
    let started = Instant::now();
    let copied = futures_util::future::try_join_all(jobs.into_iter().map(|(statement, chunks)| {
        let gate = gate.clone();
        async move {
            let _permit = gate
                .acquire()
                .await
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            copy_text(store, &statement, chunks).await
        }
    }))
    .await?;
    let elapsed = started.elapsed();
    let total: u64 = copied.iter().sum();
    if total != expected {
        return Err(StoreError::Invalid(format!(
            "COPY wrote {total} rows of {expected}"
        )));
    }
    Ok((elapsed, total, measured))
}

/// A user row for bulk loading.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRow {
    pub id: Uuid,
    pub external_id: String,
    pub email: String,
    pub created_at: OffsetDateTime,
}

/// `COPY`s users (not timed: baselines need them for the foreign keys).
pub async fn copy_users(store: &Store, users: &[UserRow]) -> StoreResult<()> {
    let chunks = chunked(users, |u, out| {
        let mut f = CopyLine::new(out);
        f.uuid(u.id);
        f.text(Some(&u.external_id));
        f.text(Some(&u.email));
        f.time(u.created_at);
        f.time(u.created_at);
        f.end();
    });
    copy_text(
        store,
        "COPY users (id, external_id, email, created_at, updated_at) FROM STDIN",
        chunks,
    )
    .await?;
    // The guard of `external_id` (see `users.rs`) is written with them.
    let chunks = chunked(users, |u, out| {
        let mut f = CopyLine::new(out);
        f.text(Some(&u.external_id));
        f.uuid(u.id);
        f.end();
    });
    copy_text(
        store,
        "COPY user_subjects (external_id, user_id) FROM STDIN",
        chunks,
    )
    .await?;
    Ok(())
}

/// A conversation row for bulk loading.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub workflow_id: Option<Uuid>,
    pub langflow_session_id: Option<String>,
    pub created_at: OffsetDateTime,
}

/// `COPY`s conversations (their users must exist). Their rollup counts come
/// from [`Store::rebuild_rollups`], their `conversation_started` events from
/// [`finish_bulk_messages`].
pub async fn copy_conversations(store: &Store, rows: &[ConversationRow]) -> StoreResult<()> {
    let chunks = chunked(rows, |c, out| {
        let mut f = CopyLine::new(out);
        f.uuid(c.id);
        f.uuid(c.user_id);
        f.opt_uuid(c.workflow_id);
        f.text(c.langflow_session_id.as_deref());
        f.time(c.created_at);
        f.time(c.created_at);
        f.end();
    });
    copy_text(
        store,
        "COPY conversations (id, user_id, workflow_id, langflow_session_id, created_at, updated_at) FROM STDIN",
        chunks,
    )
    .await?;
    Ok(())
}

/// The seed's write design: per message, one transaction with an `INSERT`
/// into `messages` and an upsert of its `daily_metrics` row, then `COMMIT`;
/// `clients` connections run concurrently. Returns the elapsed time.
pub async fn seed_design_insert(
    store: &Store,
    rows: &[MessageRow],
    clients: usize,
) -> StoreResult<Duration> {
    store
        .ensure_partitions(rows.iter().map(|r| r.created_at))
        .await?;
    let insert = format!(
        "INSERT INTO messages ({}) VALUES ({})",
        message_columns(),
        sql::placeholders(1, crate::ingest::row::MESSAGE_COLUMNS.len())
    );
    // The plan's DailyMetrics upsert, per message.
    let upsert = "INSERT INTO daily_metrics (id, user_id, workflow_id, workflow_key, date, message_count, \
         user_message_count, assistant_message_count, input_tokens, output_tokens, total_tokens, \
         estimated_cost_nano_usd, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $8, $9, $10, $11, $12, $12) \
         ON CONFLICT (user_id, workflow_key, date) DO UPDATE SET \
         message_count = daily_metrics.message_count + 1, \
         user_message_count = daily_metrics.user_message_count + excluded.user_message_count, \
         assistant_message_count = daily_metrics.assistant_message_count + excluded.assistant_message_count, \
         input_tokens = daily_metrics.input_tokens + excluded.input_tokens, \
         output_tokens = daily_metrics.output_tokens + excluded.output_tokens, \
         total_tokens = daily_metrics.total_tokens + excluded.total_tokens, \
         estimated_cost_nano_usd = daily_metrics.estimated_cost_nano_usd + excluded.estimated_cost_nano_usd, \
         updated_at = excluded.updated_at";
    let next = AtomicUsize::new(0);
    let db = store.conn();
    let worker = || async {
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(r) = rows.get(i) else { break };
            let txn = db.begin().await?;
            sql::execute(&txn, &insert, r.values()).await?;
            let workflow_key = r.workflow_id.unwrap_or(Uuid::nil());
            sql::execute(
                &txn,
                upsert,
                vec![
                    Uuid::now_v7().into(),
                    r.user_id.into(),
                    r.workflow_id.into(),
                    workflow_key.into(),
                    r.created_at.date().into(),
                    i64::from(r.role == "user").into(),
                    i64::from(r.role == "assistant").into(),
                    r.input_tokens.into(),
                    r.output_tokens.into(),
                    (r.input_tokens + r.output_tokens).into(),
                    r.cost_nano_usd.unwrap_or(0).into(),
                    OffsetDateTime::now_utc().into(),
                ],
            )
            .await?;
            txn.commit().await?;
        }
        Ok::<(), StoreError>(())
    };
    let started = Instant::now();
    futures_util::future::try_join_all((0..clients.max(1)).map(|_| worker())).await?;
    Ok(started.elapsed())
}

/// After messages and conversations were bulk-loaded with [`copy_messages`]
/// and [`copy_conversations`] instead of ingested: sets what ingestion
/// maintains besides the rollup tables (`users.last_message_bucket`, the
/// `conversation_started` and `message_sent` funnel milestones with their
/// events), from raw rows. The rollups and the counters that follow from
/// these (funnel cohorts, active users) are then rebuilt with
/// [`Store::rebuild_rollups`].
pub async fn finish_bulk_messages(store: &Store) -> StoreResult<()> {
    let db = store.conn();
    sql::execute(
        db,
        &format!(
            "UPDATE users u SET last_message_bucket = m.b FROM \
             (SELECT user_id, MAX(FLOOR(EXTRACT(EPOCH FROM created_at) / {BUCKET_SECONDS}))::bigint AS b \
              FROM messages WHERE role = 'user' GROUP BY user_id) m WHERE u.id = m.user_id"
        ),
        vec![],
    )
    .await?;
    sql::execute(
        db,
        "INSERT INTO user_activity_events (id, created_at, user_id, event_type, event_category, workflow_id, \
         conversation_id, metadata) \
         SELECT gen_random_uuid(), f.created_at, f.user_id, 'message_sent', 'engagement', f.workflow_id, \
         f.conversation_id, '{\"source\": \"bench\"}'::jsonb FROM \
         (SELECT DISTINCT ON (user_id) user_id, conversation_id, created_at, workflow_id FROM messages \
          WHERE role = 'user' ORDER BY user_id, created_at) f \
         WHERE NOT EXISTS (SELECT 1 FROM funnel_milestones fm WHERE fm.user_id = f.user_id \
         AND fm.event_type = 'message_sent' AND fm.entity_id = f.user_id)",
        vec![],
    )
    .await?;
    sql::execute(
        db,
        "INSERT INTO user_activity_events (id, created_at, user_id, event_type, event_category, workflow_id, \
         conversation_id, metadata) \
         SELECT gen_random_uuid(), c.created_at, c.user_id, 'conversation_started', 'engagement', c.workflow_id, \
         c.id, '{\"source\": \"bench\"}'::jsonb FROM conversations c \
         WHERE NOT EXISTS (SELECT 1 FROM funnel_milestones fm WHERE fm.user_id = c.user_id \
         AND fm.event_type = 'conversation_started' AND fm.entity_id = c.id)",
        vec![],
    )
    .await?;
    sql::execute(
        db,
        "INSERT INTO funnel_milestones (event_type, entity_id, user_id, event_id) \
         SELECT e.event_type, e.conversation_id, e.user_id, e.id FROM user_activity_events e \
         WHERE e.event_type = 'conversation_started' AND e.metadata->>'source' = 'bench' ON CONFLICT DO NOTHING",
        vec![],
    )
    .await?;
    sql::execute(
        db,
        "INSERT INTO funnel_milestones (event_type, entity_id, user_id, event_id) \
         SELECT e.event_type, e.user_id, e.user_id, e.id FROM user_activity_events e \
         WHERE e.event_type = 'message_sent' ON CONFLICT DO NOTHING",
        vec![],
    )
    .await?;
    sql::execute(db, "ANALYZE", vec![]).await?;
    Ok(())
}

/// Runs `VACUUM ANALYZE` after bulk loads: the planner knows the data and
/// the visibility map allows index-only scans, as after autovacuum in a
/// running service.
pub async fn analyze(store: &Store) -> StoreResult<()> {
    sql::execute(store.conn(), "VACUUM ANALYZE", vec![]).await?;
    Ok(())
}

/// Indexes the seed's read queries need beyond ours, created in a benchmark
/// database only: by `updated_at` (active users), `created_at` (funnel), and
/// the seed's own indexes of raw messages by conversation and by user
/// (migration 21 dropped them from ours: nothing of ours reads by them).
pub const SEED_INDEXES: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS bench_messages_conversation ON messages (conversation_id, created_at)",
    "CREATE INDEX IF NOT EXISTS bench_messages_user_created ON messages (user_id, created_at)",
    "CREATE INDEX IF NOT EXISTS bench_conversations_updated ON conversations (updated_at, user_id)",
    "CREATE INDEX IF NOT EXISTS bench_conversations_created ON conversations (created_at, user_id)",
    "CREATE INDEX IF NOT EXISTS bench_workflows_created ON workflows (created_at, user_id)",
    "CREATE INDEX IF NOT EXISTS bench_components_created ON agent_components (created_at, user_id)",
    "CREATE INDEX IF NOT EXISTS bench_conversations_workflow_id ON conversations (workflow_id, id)",
];

/// Creates [`SEED_INDEXES`].
pub async fn create_seed_indexes(store: &Store) -> StoreResult<()> {
    for s in SEED_INDEXES {
        sql::execute(store.conn(), s, vec![]).await?;
    }
    Ok(())
}

/// What the seed's `get_user_stats` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedUserStats {
    pub total_messages: i64,
    pub total_conversations: i64,
    pub messages_this_week: i64,
    pub conversations_this_week: i64,
    pub daily_breakdown: Vec<(Date, i64)>,
    pub most_active_workflow: Option<(Uuid, String, i64)>,
}

/// What the seed's `get_admin_overview` returns.
#[derive(Debug, Clone, PartialEq)]
pub struct SeedAdminOverview {
    pub total_users: i64,
    pub active_users_today: i64,
    pub active_users_week: i64,
    pub total_workflows: i64,
    pub messages_today: i64,
    pub messages_week: i64,
    pub errors_today: i64,
    pub cost_today_nano_usd: i64,
    pub funnel: [i64; 4],
}

async fn scalar(store: &Store, statement: &str, values: Vec<Value>) -> StoreResult<i64> {
    let row = sql::query_one(store.conn(), statement, values).await?;
    Ok(match row {
        Some(r) => r.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0),
        None => 0,
    })
}

/// The seed's `get_user_stats(user_id, days)`, query for query (as its
/// SQLAlchemy code emits them), with `today` as `date.today()` (UTC) and
/// `now` as `datetime.utcnow()`. One predicate is added: the most active
/// workflow's join of messages to conversations also matches their
/// `user_id` (the same rows, since a message belongs to its conversation's
/// user), which lets Citus join the two on the workers.
pub async fn seed_user_stats(
    store: &Store,
    user_id: Uuid,
    days: i64,
    now: OffsetDateTime,
) -> StoreResult<SeedUserStats> {
    let today = now.date();
    let start_date = today - time::Duration::days(days);
    let week_start = today - time::Duration::days(7);
    let midnight = |d: Date| d.midnight().assume_utc();
    let conv_in = "conversation_id IN (SELECT id FROM conversations WHERE user_id = $1)";
    let total_messages = scalar(
        store,
        &format!("SELECT COUNT(id) FROM messages WHERE {conv_in}"),
        vec![user_id.into()],
    )
    .await?;
    let total_conversations = scalar(
        store,
        "SELECT COUNT(id) FROM conversations WHERE user_id = $1",
        vec![user_id.into()],
    )
    .await?;
    let messages_this_week = scalar(
        store,
        &format!("SELECT COUNT(id) FROM messages WHERE {conv_in} AND created_at >= $2"),
        vec![user_id.into(), midnight(week_start).into()],
    )
    .await?;
    let conversations_this_week = scalar(
        store,
        "SELECT COUNT(id) FROM conversations WHERE user_id = $1 AND created_at >= $2",
        vec![user_id.into(), midnight(week_start).into()],
    )
    .await?;
    let rows = sql::query_all(
        store.conn(),
        &format!(
            "SELECT CAST(created_at AT TIME ZONE 'UTC' AS DATE) AS date, COUNT(id) AS count FROM messages \
             WHERE {conv_in} AND created_at >= $2 \
             GROUP BY CAST(created_at AT TIME ZONE 'UTC' AS DATE) ORDER BY 1"
        ),
        vec![user_id.into(), midnight(start_date).into()],
    )
    .await?;
    let mut counts = HashMap::new();
    for r in rows {
        counts.insert(
            r.try_get::<Date>("", "date")?,
            r.try_get::<i64>("", "count")?,
        );
    }
    let mut daily_breakdown = Vec::new();
    let mut d = start_date;
    while d <= today {
        daily_breakdown.push((d, counts.get(&d).copied().unwrap_or(0)));
        match d.next_day() {
            Some(next) => d = next,
            None => break,
        }
    }
    #[derive(sea_orm::FromQueryResult)]
    struct MostActive {
        id: Uuid,
        name: String,
        message_count: i64,
    }
    let row: Option<MostActive> = sql::fetch_one(
        store.conn(),
        "SELECT w.id, w.name, COUNT(m.id) AS message_count FROM workflows w \
         JOIN conversations c ON c.workflow_id = w.id \
         JOIN messages m ON m.conversation_id = c.id AND m.user_id = c.user_id \
         WHERE w.user_id = $1 AND m.created_at >= $2 \
         GROUP BY w.id, w.name ORDER BY COUNT(m.id) DESC LIMIT 1",
        vec![user_id.into(), (now - time::Duration::days(30)).into()],
    )
    .await?;
    let most_active_workflow = row.map(|r| (r.id, r.name, r.message_count));
    Ok(SeedUserStats {
        total_messages,
        total_conversations,
        messages_this_week,
        conversations_this_week,
        daily_breakdown,
        most_active_workflow,
    })
}

/// The seed's `get_admin_overview(days)` with `_get_user_funnel(days)`,
/// query for query.
pub async fn seed_admin_overview(
    store: &Store,
    days: i64,
    now: OffsetDateTime,
) -> StoreResult<SeedAdminOverview> {
    let today = now.date();
    let week_ago = today - time::Duration::days(7);
    let cutoff = now - time::Duration::days(days);
    let today_v: Value = today.into();
    let week_v: Value = week_ago.midnight().assume_utc().into();
    let date_of = |c: &str| format!("CAST({c} AT TIME ZONE 'UTC' AS DATE)");
    Ok(SeedAdminOverview {
        total_users: scalar(store, "SELECT COUNT(id) FROM users", vec![]).await?,
        active_users_today: scalar(
            store,
            &format!(
                "SELECT COUNT(DISTINCT user_id) FROM conversations WHERE {} = $1",
                date_of("updated_at")
            ),
            vec![today_v.clone()],
        )
        .await?,
        active_users_week: scalar(
            store,
            "SELECT COUNT(DISTINCT user_id) FROM conversations WHERE updated_at >= $1",
            vec![week_v.clone()],
        )
        .await?,
        total_workflows: scalar(store, "SELECT COUNT(id) FROM workflows", vec![]).await?,
        messages_today: scalar(
            store,
            &format!(
                "SELECT COUNT(id) FROM messages WHERE {} = $1",
                date_of("created_at")
            ),
            vec![today_v.clone()],
        )
        .await?,
        messages_week: scalar(
            store,
            "SELECT COUNT(id) FROM messages WHERE created_at >= $1",
            vec![week_v],
        )
        .await?,
        errors_today: scalar(
            store,
            &format!(
                "SELECT COUNT(id) FROM error_logs WHERE {} = $1",
                date_of("created_at")
            ),
            vec![today_v.clone()],
        )
        .await?,
        cost_today_nano_usd: scalar(
            store,
            "SELECT CAST(SUM(estimated_cost_nano_usd) AS BIGINT) FROM daily_metrics WHERE date = $1",
            vec![today_v],
        )
        .await?,
        funnel: [
            scalar(
                store,
                "SELECT COUNT(id) FROM users WHERE created_at >= $1",
                vec![cutoff.into()],
            )
            .await?,
            scalar(
                store,
                "SELECT COUNT(DISTINCT user_id) FROM agent_components WHERE created_at >= $1",
                vec![cutoff.into()],
            )
            .await?,
            scalar(
                store,
                "SELECT COUNT(DISTINCT user_id) FROM workflows WHERE created_at >= $1",
                vec![cutoff.into()],
            )
            .await?,
            scalar(
                store,
                "SELECT COUNT(DISTINCT user_id) FROM conversations WHERE created_at >= $1",
                vec![cutoff.into()],
            )
            .await?,
        ],
    })
}

/// Row counts of the main tables, for the report.
pub async fn table_counts(store: &Store) -> StoreResult<Vec<(&'static str, i64)>> {
    let mut out = Vec::new();
    for t in [
        "users",
        "workflows",
        "agent_components",
        "conversations",
        "messages",
        "user_activity_events",
        "error_logs",
        "daily_metrics",
        "usage_buckets",
        "user_buckets",
        "user_days",
        "platform_buckets",
    ] {
        out.push((
            t,
            scalar(store, &format!("SELECT COUNT(*) FROM {t}"), vec![]).await?,
        ));
    }
    Ok(out)
}

/// The server's version string.
pub async fn server_version(store: &Store) -> StoreResult<String> {
    let row = sql::query_one(store.conn(), "SELECT version()", vec![]).await?;
    Ok(match row {
        Some(r) => r.try_get_by_index::<String>(0)?,
        None => String::new(),
    })
}

/// Size of the current database in bytes.
pub async fn database_size(store: &Store) -> StoreResult<i64> {
    scalar(store, "SELECT pg_database_size(current_database())", vec![]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_lines_escape_and_mark_nulls() {
        let mut out = String::new();
        let mut f = CopyLine::new(&mut out);
        f.text(Some("a\tb\\c\nd"));
        f.text(None);
        f.int(Some(-3));
        f.end();
        assert_eq!(out, "a\\tb\\\\c\\nd\t\\N\t-3\n");
    }

    #[test]
    fn bench_urls_keep_host_and_query() {
        assert_eq!(
            database_url(
                "postgres://postgres@127.0.0.1:5432/postgres",
                "charlie_bench_1"
            )
            .ok()
            .as_deref(),
            Some("postgres://postgres@127.0.0.1:5432/charlie_bench_1")
        );
        assert!(check_name("x; DROP").is_err());
    }

    #[test]
    fn chunks_hold_every_line() {
        let rows: Vec<u32> = (0..400_000).collect();
        let chunks = chunked(&rows, |r, out| {
            let _ = writeln!(out, "{r}");
        });
        assert!(chunks.len() > 1);
        let lines: usize = chunks.iter().map(|c| c.lines().count()).sum();
        assert_eq!(lines, rows.len());
    }
}
