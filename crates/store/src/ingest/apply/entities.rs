//! Users, workflows, components and conversations: their upserts, and the
//! placeholders that let references arrive before what they reference.

use super::*;

/// Those of `ids` that `table` (keyed on `id`) does not hold.
pub(super) async fn missing(
    txn: &DatabaseTransaction,
    table: &str,
    ids: &BTreeSet<Uuid>,
) -> StoreResult<BTreeSet<Uuid>> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let list: Vec<Uuid> = ids.iter().copied().collect();
    let (cond, values) = uuid_in("id", &list, 1, txn.get_database_backend());
    let mut out = ids.clone();
    for row in query_all(txn, &format!("SELECT id FROM {table} WHERE {cond}"), values).await? {
        out.remove(&row.try_get::<Uuid>("", "id")?);
    }
    Ok(out)
}

/// Makes sure these users exist, creating placeholders for unknown ids.
pub(super) async fn ensure_users(
    txn: &DatabaseTransaction,
    rollups: &mut Rollups,
    ids: impl IntoIterator<Item = (Uuid, OffsetDateTime)>,
) -> StoreResult<()> {
    let mut earliest: BTreeMap<Uuid, OffsetDateTime> = BTreeMap::new();
    for (id, at) in ids {
        earliest
            .entry(id)
            .and_modify(|t| *t = (*t).min(at))
            .or_insert(at);
    }
    let unknown = missing(txn, "users", &earliest.keys().copied().collect()).await?;
    if unknown.is_empty() {
        return Ok(());
    }
    reference_write_lock(txn).await?;
    let rows = earliest
        .into_iter()
        .filter(|(id, _)| unknown.contains(id))
        .map(|(id, at)| vec![id.into(), true.into(), false.into(), at.into(), at.into()])
        .collect();
    let created = insert_many(
        txn,
        "users",
        &[
            "id",
            "is_placeholder",
            "weekly_report_opt_out",
            "created_at",
            "updated_at",
        ],
        rows,
        Some(ignore_conflicts(&["id"])),
        &["id"],
    )
    .await?;
    rollups.count_created(created.len() as i64, 0);
    Ok(())
}

/// Another user holding the external id an upsert brings.
#[derive(FromQueryResult)]
struct OtherUser {
    id: Uuid,
    is_placeholder: bool,
}

/// The stored version of an upserted user.
#[derive(FromQueryResult)]
struct StoredUser {
    external_id: Option<String>,
    email: Option<String>,
    timezone: Option<String>,
    monthly_budget_nano_usd: Option<i64>,
    monthly_hard_limit_nano_usd: Option<i64>,
    weekly_report_opt_out: bool,
    is_placeholder: bool,
    updated_at: OffsetDateTime,
}

pub(super) async fn upsert_user(
    txn: &DatabaseTransaction,
    item: &Item,
    u: &UserUpsert,
    batch: &mut Batch,
) -> StoreResult<Applied> {
    reference_write_lock(txn).await?;
    let holder = crate::users::subject_owner(txn, &u.external_id)
        .await?
        .filter(|id| *id != item.id);
    // The rows this writes, locked as every writer of a user's row does.
    crate::sql::lock_users(txn, std::iter::once(item.id).chain(holder)).await?;
    let other = match holder {
        Some(id) => {
            fetch_one::<OtherUser, _>(
                txn,
                "SELECT id, is_placeholder FROM users WHERE id = $1",
                vec![id.into()],
            )
            .await?
        }
        None => None,
    };
    if let Some(other) = other {
        let other_id = other.id;
        if !other.is_placeholder {
            return Ok(Applied::error(
                ErrorCode::Conflict,
                format!(
                    "external_id `{}` already belongs to user {other_id}",
                    u.external_id
                ),
            ));
        }
        // The user signed in (and was created from their session token)
        // before the platform sent them. That row has an id only this
        // service knows, so nothing the platform sent refers to it: the
        // platform's record replaces it.
        delete_user(txn, other_id, &u.external_id).await?;
        batch.rollups.count_created(-1, 0);
    }
    let budget_nanos = |b: &Option<charlie_domain::Usd>| -> StoreResult<Option<i64>> {
        b.map(|usd| {
            usd.to_nanos()
                .map_err(|e| StoreError::Invalid(e.to_string()))
        })
        .transpose()
    };
    let existing = fetch_one::<StoredUser, _>(
        txn,
        "SELECT external_id, email, timezone, monthly_budget_nano_usd, monthly_hard_limit_nano_usd, weekly_report_opt_out, is_placeholder, updated_at \
         FROM users WHERE id = $1",
        vec![item.id.into()],
    )
    .await?;
    let Some(row) = existing else {
        if !crate::users::claim_subject(txn, &u.external_id, item.id).await? {
            return Ok(taken(&u.external_id));
        }
        let budget = match &u.monthly_budget {
            Some(b) => budget_nanos(b)?,
            None => None,
        };
        let hard_limit = match &u.monthly_hard_limit {
            Some(b) => budget_nanos(b)?,
            None => None,
        };
        execute(
            txn,
            "INSERT INTO users (id, external_id, email, timezone, monthly_budget_nano_usd, weekly_report_opt_out, \
             is_placeholder, created_at, updated_at, monthly_hard_limit_nano_usd) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            vec![
                item.id.into(),
                u.external_id.clone().into(),
                u.email.clone().into(),
                u.timezone.clone().into(),
                budget.into(),
                u.weekly_report_opt_out.unwrap_or(false).into(),
                false.into(),
                item.at.into(),
                item.at.into(),
                hard_limit.into(),
            ],
        )
        .await?;
        batch.rollups.count_created(1, 0);
        batch.milestones.push(Milestone::auto(
            EventType::UserSignedUp,
            item.id,
            item.id,
            item.at,
        ));
        return Ok(Applied::new(Outcome::Created));
    };
    let placeholder = row.is_placeholder;
    if !placeholder && item.at < row.updated_at {
        return Ok(Applied::new(Outcome::Duplicate)
            .warn("older than the stored version of this user; ignored"));
    }
    let old_budget = row.monthly_budget_nano_usd;
    let budget = match &u.monthly_budget {
        Some(b) => budget_nanos(b)?,
        None => old_budget,
    };
    let old_hard_limit = row.monthly_hard_limit_nano_usd;
    let hard_limit = match &u.monthly_hard_limit {
        Some(b) => budget_nanos(b)?,
        None => old_hard_limit,
    };
    let old_opt_out = row.weekly_report_opt_out;
    let opt_out = u.weekly_report_opt_out.unwrap_or(old_opt_out);
    let old_tz = row.timezone;
    let timezone = u.timezone.clone().or(old_tz.clone());
    let same = !placeholder
        && row.external_id.as_deref() == Some(u.external_id.as_str())
        && row.email.as_deref() == Some(u.email.as_str())
        && timezone == old_tz
        && budget == old_budget
        && hard_limit == old_hard_limit
        && opt_out == old_opt_out;
    if same {
        return Ok(Applied::new(Outcome::Duplicate));
    }
    if row.external_id.as_deref() != Some(u.external_id.as_str()) {
        // Claimed before the old one is freed: a refusal changes nothing.
        if !crate::users::claim_subject(txn, &u.external_id, item.id).await? {
            return Ok(taken(&u.external_id));
        }
        if let Some(old) = &row.external_id {
            crate::users::release_subject(txn, old, item.id).await?;
        }
    }
    // A placeholder becomes the real user: its sign-up time is this upsert's.
    let created_at = if placeholder { Some(item.at) } else { None };
    execute(
        txn,
        "UPDATE users SET external_id = $1, email = $2, timezone = $3, monthly_budget_nano_usd = $4, \
         weekly_report_opt_out = $5, is_placeholder = $6, updated_at = $7, created_at = COALESCE($8, created_at), \
         monthly_hard_limit_nano_usd = $10 WHERE id = $9",
        vec![
            u.external_id.clone().into(),
            u.email.clone().into(),
            timezone.into(),
            budget.into(),
            opt_out.into(),
            false.into(),
            item.at.into(),
            created_at.into(),
            item.id.into(),
            hard_limit.into(),
        ],
    )
    .await?;
    if placeholder {
        batch.milestones.push(Milestone::auto(
            EventType::UserSignedUp,
            item.id,
            item.id,
            item.at,
        ));
        Ok(Applied::new(Outcome::Created))
    } else {
        Ok(Applied::new(Outcome::Updated))
    }
}

/// The answer to an upsert whose `external_id` another user holds.
fn taken(external_id: &str) -> Applied {
    Applied::error(
        ErrorCode::Conflict,
        format!("external_id `{external_id}` already belongs to another user"),
    )
}

/// Deletes a user that signed in before the platform sent them, with what
/// refers to them. The per-user tables go with the row (their foreign keys
/// cascade, co-located on Citus); the tables that are not co-located with
/// `users` have no foreign key to it on PostgreSQL (see migration 18), so
/// what their `ON DELETE` did is done here, on every engine alike.
async fn delete_user(txn: &DatabaseTransaction, id: Uuid, external_id: &str) -> StoreResult<()> {
    crate::users::release_subject(txn, external_id, id).await?;
    for statement in [
        "UPDATE error_logs SET user_id = NULL WHERE user_id = $1",
        "DELETE FROM report_deliveries WHERE user_id = $1",
        "DELETE FROM agent_components WHERE user_id = $1",
        "DELETE FROM workflows WHERE user_id = $1",
        "DELETE FROM users WHERE id = $1",
    ] {
        execute(txn, statement, vec![id.into()]).await?;
    }
    Ok(())
}

/// Makes sure a workflow exists, creating a placeholder owned by `user_id`.
pub(super) async fn ensure_workflow(
    txn: &DatabaseTransaction,
    rollups: &mut Rollups,
    id: Uuid,
    user_id: Uuid,
    at: OffsetDateTime,
) -> StoreResult<()> {
    if missing(txn, "workflows", &BTreeSet::from([id]))
        .await?
        .is_empty()
    {
        return Ok(());
    }
    reference_write_lock(txn).await?;
    let created = insert_many(
        txn,
        "workflows",
        &[
            "id",
            "user_id",
            "name",
            "is_placeholder",
            "created_at",
            "updated_at",
        ],
        vec![vec![
            id.into(),
            user_id.into(),
            "".into(),
            true.into(),
            at.into(),
            at.into(),
        ]],
        Some(ignore_conflicts(&["id"])),
        &["id"],
    )
    .await?;
    rollups.count_created(0, created.len() as i64);
    Ok(())
}

/// The stored version of an upserted workflow or component.
#[derive(FromQueryResult)]
struct StoredNamed {
    user_id: Uuid,
    name: String,
    is_placeholder: bool,
    updated_at: OffsetDateTime,
}

pub(super) async fn upsert_named(
    txn: &DatabaseTransaction,
    table: &'static str,
    milestone: EventType,
    item: &Item,
    n: &NamedUpsert,
    batch: &mut Batch,
) -> StoreResult<Applied> {
    ensure_users(txn, &mut batch.rollups, [(n.user_id, item.at)]).await?;
    reference_write_lock(txn).await?;
    let existing = fetch_one::<StoredNamed, _>(
        txn,
        &format!("SELECT user_id, name, is_placeholder, updated_at FROM {table} WHERE id = $1"),
        vec![item.id.into()],
    )
    .await?;
    let Some(row) = existing else {
        execute(
            txn,
            &format!(
                "INSERT INTO {table} (id, user_id, name, is_placeholder, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            vec![
                item.id.into(),
                n.user_id.into(),
                n.name.clone().into(),
                false.into(),
                item.at.into(),
                item.at.into(),
            ],
        )
        .await?;
        if table == "workflows" {
            batch.rollups.count_created(0, 1);
        }
        batch
            .milestones
            .push(Milestone::auto(milestone, item.id, n.user_id, item.at));
        return Ok(Applied::new(Outcome::Created));
    };
    let placeholder = row.is_placeholder;
    if !placeholder && item.at < row.updated_at {
        return Ok(Applied::new(Outcome::Duplicate).warn("older than the stored version; ignored"));
    }
    let same = !placeholder && row.user_id == n.user_id && row.name == n.name;
    if same {
        return Ok(Applied::new(Outcome::Duplicate));
    }
    let created_at = if placeholder { Some(item.at) } else { None };
    execute(
        txn,
        &format!(
            "UPDATE {table} SET user_id = $1, name = $2, is_placeholder = $3, updated_at = $4, \
             created_at = COALESCE($5, created_at) WHERE id = $6"
        ),
        vec![
            n.user_id.into(),
            n.name.clone().into(),
            false.into(),
            item.at.into(),
            created_at.into(),
            item.id.into(),
        ],
    )
    .await?;
    if placeholder {
        batch
            .milestones
            .push(Milestone::auto(milestone, item.id, n.user_id, item.at));
        Ok(Applied::new(Outcome::Created))
    } else {
        Ok(Applied::new(Outcome::Updated))
    }
}

/// The stored version of an upserted conversation.
#[derive(FromQueryResult)]
struct StoredConversation {
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    langflow_session_id: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

pub(super) async fn upsert_conversation(
    txn: &DatabaseTransaction,
    item: &Item,
    c: &ConversationUpsert,
    batch: &mut Batch,
) -> StoreResult<Applied> {
    // Serializes with messages that look this conversation up (see place_messages).
    advisory_locks(txn, vec![lock_key(item.id)]).await?;
    ensure_users(txn, &mut batch.rollups, [(c.user_id, item.at)]).await?;
    if let Some(w) = c.workflow_id {
        ensure_workflow(txn, &mut batch.rollups, w, c.user_id, item.at).await?;
    }
    let existing = fetch_one::<StoredConversation, _>(
        txn,
        "SELECT user_id, workflow_id, langflow_session_id, created_at, updated_at FROM conversations WHERE id = $1",
        vec![item.id.into()],
    )
    .await?;
    let Some(row) = existing else {
        execute(
            txn,
            "INSERT INTO conversations (id, user_id, workflow_id, langflow_session_id, is_placeholder, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                item.id.into(),
                c.user_id.into(),
                c.workflow_id.into(),
                c.langflow_session_id.clone().into(),
                false.into(),
                item.at.into(),
                item.at.into(),
            ],
        )
        .await?;
        batch.rollups.add(
            c.user_id,
            c.workflow_id,
            None,
            item.at,
            &Counters {
                conversations_started: 1,
                ..Counters::default()
            },
        );
        batch.milestones.push(Milestone {
            workflow_id: c.workflow_id,
            conversation_id: Some(item.id),
            ..Milestone::auto(EventType::ConversationStarted, item.id, c.user_id, item.at)
        });
        batch.conversations_touched.insert(item.id);
        return Ok(Applied::new(Outcome::Created));
    };
    let owner = row.user_id;
    if owner != c.user_id {
        return Ok(Applied::error(
            ErrorCode::Conflict,
            format!(
                "conversation {} belongs to user {owner}, not {}",
                item.id, c.user_id
            ),
        ));
    }
    if item.at < row.updated_at {
        return Ok(Applied::new(Outcome::Duplicate).warn("older than the stored version; ignored"));
    }
    let old_workflow = row.workflow_id;
    let old_session = row.langflow_session_id;
    let session = c.langflow_session_id.clone().or(old_session.clone());
    if old_workflow == c.workflow_id && session == old_session {
        return Ok(Applied::new(Outcome::Duplicate));
    }
    if old_workflow != c.workflow_id {
        // The conversation's start moves to its new workflow; messages keep
        // the workflow they were counted under.
        let created_at = row.created_at;
        batch.rollups.add(
            owner,
            old_workflow,
            None,
            created_at,
            &Counters {
                conversations_started: -1,
                ..Counters::default()
            },
        );
        batch.rollups.add(
            owner,
            c.workflow_id,
            None,
            created_at,
            &Counters {
                conversations_started: 1,
                ..Counters::default()
            },
        );
    }
    execute(
        txn,
        "UPDATE conversations SET workflow_id = $1, langflow_session_id = $2, updated_at = $3 WHERE id = $4",
        vec![c.workflow_id.into(), session.into(), item.at.into(), item.id.into()],
    )
    .await?;
    Ok(Applied::new(Outcome::Updated))
}

/// A conversation's owner and workflow.
#[derive(FromQueryResult)]
struct ConversationOwner {
    id: Uuid,
    user_id: Uuid,
    workflow_id: Option<Uuid>,
}

/// Owner and workflow of each known conversation among `ids`.
pub(super) async fn conversations_of(
    txn: &DatabaseTransaction,
    ids: &BTreeSet<Uuid>,
) -> StoreResult<HashMap<Uuid, (Uuid, Option<Uuid>)>> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let mut found = HashMap::new();
    for chunk in ids.chunks(500) {
        let (filter, values) = uuid_in("id", chunk, 1, txn.get_database_backend());
        let sql = format!("SELECT id, user_id, workflow_id FROM conversations WHERE {filter}");
        for c in fetch_all::<ConversationOwner, _>(txn, &sql, values).await? {
            found.insert(c.id, (c.user_id, c.workflow_id));
        }
    }
    Ok(found)
}
