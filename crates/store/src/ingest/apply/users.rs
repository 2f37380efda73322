//! The per-user counters a batch moves (`total_messages`,
//! `total_conversations`, `last_message_bucket`), under row locks taken in
//! id order.

use super::*;

/// Locks, in id order, the `users` rows this batch will update (milestone
/// stamps and counters). `FOR NO KEY UPDATE`, the lock an `UPDATE` of
/// non-key columns takes: a plain `FOR UPDATE` would also wait for the
/// key-share locks that concurrent batches' `messages` inserts hold through
/// the foreign key, and deadlock with them. PostgreSQL only: SQLite runs one
/// writer at a time.
pub(super) async fn lock_users(txn: &DatabaseTransaction, batch: &Batch) -> StoreResult<()> {
    if txn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let mut ids: BTreeSet<Uuid> = batch.milestones.iter().map(|m| m.user_id).collect();
    ids.extend(batch.rollups.day_rows().map(|(user, _, _, _)| user));
    ids.extend(batch.last_active.keys().copied());
    if ids.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = ids.into_iter().collect();
    let (filter, values) = uuid_in("id", &ids, 1, sea_orm::DbBackend::Postgres);
    query_all(
        txn,
        &format!("SELECT id FROM users WHERE {filter} ORDER BY id FOR NO KEY UPDATE"),
        values,
    )
    .await?;
    Ok(())
}

/// Where an updated user's latest bucket was and is.
#[derive(FromQueryResult)]
struct MovedBucket {
    previous_message_bucket: Option<i64>,
    last_message_bucket: Option<i64>,
}

/// Adds the batch to the per-user counters (`total_messages`,
/// `total_conversations`) and moves `last_message_bucket` forward (never
/// back), one statement per chunk of users, in id order. Where a user's
/// latest bucket moved goes to the rollups (`active_user_buckets`).
pub(super) async fn update_users(txn: &DatabaseTransaction, batch: &mut Batch) -> StoreResult<()> {
    let mut per_user: BTreeMap<Uuid, (i64, i64, Option<i64>)> = BTreeMap::new();
    for (user, _, _, c) in batch.rollups.day_rows() {
        let e = per_user.entry(user).or_default();
        e.0 += c.message_count;
        e.1 += c.conversations_started;
    }
    for (user, bucket) in &batch.last_active {
        per_user.entry(*user).or_default().2 = Some(*bucket);
    }
    per_user.retain(|_, (m, c, b)| *m != 0 || *c != 0 || b.is_some());
    let rows = per_user
        .into_iter()
        .map(|(u, (m, c, b))| vec![DbValue::from(u), m.into(), c.into(), b.into()])
        .collect();
    let updated = update_from_values_returning(
        txn,
        "users",
        &[
            ("u", "uuid"),
            ("m", "bigint"),
            ("c", "bigint"),
            ("b", "bigint"),
        ],
        "total_messages = users.total_messages + v.m, \
         total_conversations = users.total_conversations + v.c, \
         previous_message_bucket = users.last_message_bucket, \
         last_message_bucket = CASE WHEN v.b IS NOT NULL AND (users.last_message_bucket IS NULL \
         OR users.last_message_bucket < v.b) THEN v.b ELSE users.last_message_bucket END",
        None,
        rows,
        &["previous_message_bucket", "last_message_bucket"],
    )
    .await?;
    for row in &updated {
        let moved: MovedBucket = read(row)?;
        if let Some(after) = moved.last_message_bucket {
            batch
                .rollups
                .move_active_user(moved.previous_message_bucket, after);
        }
    }
    Ok(())
}
