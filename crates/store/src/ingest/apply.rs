//! The body of the ingest transaction. See the module above for guarantees.

use super::{
    Outcome,
    item::{
        Body, ConversationUpsert, EventTrack, Item, ItemError, ItemType, MessageCreate,
        NamedUpsert, UserUpsert,
    },
};
use crate::{
    StoreError, StoreResult,
    rollup::{Counters, MessageFacts, Rollups, bucket_of, tokens_i64},
    sql::{
        advisory_locks, execute, ignore_conflicts, insert_many, lock_key, query_all, query_one,
        update_from_values, update_from_values_returning, uuid_in,
    },
};
use charlie_domain::ErrorCode;
use charlie_domain::{EventType, MessageRole};
use sea_orm::{ConnectionTrait, DatabaseTransaction, Value as DbValue};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

/// What applying did to one item (ignored for items that failed parsing).
#[derive(Debug, Clone)]
pub(super) struct Applied {
    pub outcome: Outcome,
    pub error: Option<ItemError>,
    pub warnings: Vec<String>,
}

impl Applied {
    fn new(outcome: Outcome) -> Self {
        Applied {
            outcome,
            error: None,
            warnings: Vec::new(),
        }
    }

    fn error(code: ErrorCode, message: String) -> Self {
        Applied {
            outcome: Outcome::Error,
            error: Some(ItemError { code, message }),
            warnings: Vec::new(),
        }
    }

    fn warn(mut self, w: impl Into<String>) -> Self {
        self.warnings.push(w.into());
        self
    }
}

/// A funnel milestone to record once per entity.
#[derive(Debug, Clone)]
struct Milestone {
    event_type: EventType,
    entity_id: Uuid,
    user_id: Uuid,
    at: OffsetDateTime,
    /// The explicit `event.track` item that reported it, if any: its index
    /// in the batch and its id.
    explicit: Option<(usize, Uuid)>,
    workflow_id: Option<Uuid>,
    component_id: Option<Uuid>,
    conversation_id: Option<Uuid>,
    metadata: Value,
}

/// A message ready for `messages`.
#[derive(Debug, Clone)]
struct MessageRow {
    /// Its index in this batch; `None` for a message that waited in
    /// `pending_messages` (its item was answered by an earlier batch).
    index: Option<usize>,
    id: Uuid,
    at: OffsetDateTime,
    user_id: Uuid,
    workflow_id: Option<Uuid>,
    m: MessageCreate,
}

#[derive(Default)]
struct Batch {
    rollups: Rollups,
    milestones: Vec<Milestone>,
    messages: Vec<MessageRow>,
    /// Conversations created or re-read in this batch: their waiting messages are drained.
    conversations_touched: BTreeSet<Uuid>,
    /// The latest own-message bucket of each user who sent one.
    last_active: BTreeMap<Uuid, i64>,
    /// `(conversation, UTC day) -> (user, workflow)` of the batch's messages.
    sessions: BTreeMap<(Uuid, time::Date), (Uuid, Option<Uuid>)>,
    /// The `user_activity_events` rows written, `(id, created_at)`: queued
    /// for PostHog when forwarding is on.
    events_written: Vec<(Uuid, OffsetDateTime)>,
}

pub(super) async fn apply(
    txn: &DatabaseTransaction,
    items: &[Result<Item, ItemError>],
    now: OffsetDateTime,
    budgets: &crate::budgets::BudgetPolicy,
    posthog: bool,
) -> StoreResult<Vec<Applied>> {
    let mut out: Vec<Applied> = items.iter().map(|_| Applied::new(Outcome::Error)).collect();
    let mut batch = Batch::default();

    // 1. The ledger decides which append-only items are new.
    let fresh = ledger(txn, items, now, &mut out).await?;

    // 2. Entities, parents before children.
    for kind in [
        ItemType::User,
        ItemType::Workflow,
        ItemType::Component,
        ItemType::Conversation,
    ] {
        for (i, item) in items.iter().enumerate() {
            let Ok(item) = item else { continue };
            if item.item_type() != kind {
                continue;
            }
            out[i] = match &item.body {
                Body::User(u) => upsert_user(txn, item, u, &mut batch).await?,
                Body::Workflow(w) => {
                    upsert_named(
                        txn,
                        "workflows",
                        EventType::WorkflowCreated,
                        item,
                        w,
                        &mut batch,
                    )
                    .await?
                }
                Body::Component(c) => {
                    upsert_named(
                        txn,
                        "agent_components",
                        EventType::ComponentCreated,
                        item,
                        c,
                        &mut batch,
                    )
                    .await?
                }
                Body::Conversation(c) => upsert_conversation(txn, item, c, &mut batch).await?,
                _ => continue,
            };
        }
    }

    // 3. Messages (with those that waited for a conversation of this batch).
    let new_messages: Vec<(usize, &Item, &MessageCreate)> = fresh
        .iter()
        .filter_map(|&i| match &items[i] {
            Ok(
                item @ Item {
                    body: Body::Message(m),
                    ..
                },
            ) => Some((i, item, m)),
            _ => None,
        })
        .collect();
    place_messages(txn, &new_messages, &mut out, &mut batch, now).await?;
    drain_pending(txn, &mut batch).await?;
    check_components(txn, &mut batch, &mut out).await?;
    write_messages(txn, &mut batch).await?;

    // 4. Events and errors.
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for &i in &fresh {
        match &items[i] {
            Ok(
                item @ Item {
                    body: Body::Event(e),
                    ..
                },
            ) => events.push((i, item, e)),
            Ok(
                item @ Item {
                    body: Body::Error(e),
                    ..
                },
            ) => errors.push((i, item, e)),
            _ => {}
        }
    }
    write_events(txn, &events, &mut out, &mut batch).await?;
    write_errors(txn, &errors, &mut batch).await?;

    // 5. Rows other batches write too go last, so their locks are held only
    // until the commit: sessions, then the users (locked once, in id order,
    // before the milestones stamp them and the counters move: two rounds of
    // row locks in different orders deadlock with a concurrent batch), then
    // the rollups.
    write_sessions(txn, &mut batch).await?;
    lock_users(txn, &batch).await?;
    record_milestones(txn, &mut batch, &mut out).await?;
    update_users(txn, &mut batch).await?;
    batch.rollups.write(txn, now).await?;
    // Month-to-date usage, and the alerts (and their outbox rows) it raises.
    crate::budgets::record_month_usage(txn, &batch.rollups, budgets, now).await?;
    // The PostHog outbox rows of the events, committed with them.
    if posthog {
        crate::posthog::enqueue(txn, &batch.events_written, now).await?;
    }
    Ok(out)
}

/// Inserts ledger rows for new message/event/error ids; returns their indexes.
async fn ledger(
    txn: &DatabaseTransaction,
    items: &[Result<Item, ItemError>],
    now: OffsetDateTime,
    out: &mut [Applied],
) -> StoreResult<Vec<usize>> {
    let mut first: HashMap<Uuid, usize> = HashMap::new();
    let mut candidates: Vec<(usize, &Item)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Ok(item) = item else { continue };
        if !matches!(
            item.item_type(),
            ItemType::Message | ItemType::Event | ItemType::Error
        ) {
            continue;
        }
        match first.get(&item.id) {
            Some(&j) => {
                let same = matches!(&items[j], Ok(prev) if prev.content_hash == item.content_hash);
                out[i] = if same {
                    Applied::new(Outcome::Duplicate).warn("repeated earlier in this batch")
                } else {
                    Applied::error(
                        ErrorCode::IdReused,
                        format!(
                            "id {} appears twice in this batch with different content",
                            item.id
                        ),
                    )
                };
            }
            None => {
                first.insert(item.id, i);
                candidates.push((i, item));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    candidates.sort_by_key(|(_, item)| item.id);
    let rows = candidates
        .iter()
        .map(|(_, item)| {
            vec![
                item.id.into(),
                item.item_type().as_str().into(),
                item.content_hash.clone().into(),
                now.into(),
            ]
        })
        .collect();
    let mut inserted: HashSet<Uuid> = HashSet::new();
    for row in insert_many(
        txn,
        "ingested_items",
        &["id", "item_type", "content_hash", "received_at"],
        rows,
        Some(ignore_conflicts(&["id"])),
        &["id"],
    )
    .await?
    {
        inserted.insert(row.try_get::<Uuid>("", "id")?);
    }
    let known: Vec<&(usize, &Item)> = candidates
        .iter()
        .filter(|(_, it)| !inserted.contains(&it.id))
        .collect();
    let mut stored_hash: HashMap<Uuid, String> = HashMap::new();
    for chunk in known.chunks(500) {
        let ids: Vec<Uuid> = chunk.iter().map(|(_, it)| it.id).collect();
        let (filter, values) = uuid_in("id", &ids, 1, txn.get_database_backend());
        let sql = format!("SELECT id, content_hash FROM ingested_items WHERE {filter}");
        for row in query_all(txn, &sql, values).await? {
            stored_hash.insert(row.try_get("", "id")?, row.try_get("", "content_hash")?);
        }
    }
    let mut fresh = Vec::new();
    for (i, item) in &candidates {
        if inserted.contains(&item.id) {
            out[*i] = Applied::new(Outcome::Created);
            fresh.push(*i);
        } else if stored_hash.get(&item.id) == Some(&item.content_hash) {
            out[*i] = Applied::new(Outcome::Duplicate);
        } else {
            out[*i] = Applied::error(
                ErrorCode::IdReused,
                format!("id {} was already ingested with different content", item.id),
            );
        }
    }
    fresh.sort_unstable();
    Ok(fresh)
}

/// Makes sure these users exist, creating placeholders for unknown ids.
async fn ensure_users(
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
    let rows = earliest
        .into_iter()
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

async fn upsert_user(
    txn: &DatabaseTransaction,
    item: &Item,
    u: &UserUpsert,
    batch: &mut Batch,
) -> StoreResult<Applied> {
    if let Some(other) = query_one(
        txn,
        "SELECT id, is_placeholder FROM users WHERE external_id = $1 AND id <> $2",
        vec![u.external_id.clone().into(), item.id.into()],
    )
    .await?
    {
        let other_id: Uuid = other.try_get("", "id")?;
        let placeholder: bool = other.try_get("", "is_placeholder")?;
        if !placeholder {
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
        execute(
            txn,
            "DELETE FROM users WHERE id = $1",
            vec![other_id.into()],
        )
        .await?;
        batch.rollups.count_created(-1, 0);
    }
    let budget_nanos = |b: &Option<charlie_domain::Usd>| -> StoreResult<Option<i64>> {
        b.map(|usd| {
            usd.to_nanos()
                .map_err(|e| StoreError::Invalid(e.to_string()))
        })
        .transpose()
    };
    let existing = query_one(
        txn,
        "SELECT external_id, email, timezone, monthly_budget_nano_usd, monthly_hard_limit_nano_usd, weekly_report_opt_out, is_placeholder, updated_at \
         FROM users WHERE id = $1",
        vec![item.id.into()],
    )
    .await?;
    let Some(row) = existing else {
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
    let placeholder: bool = row.try_get("", "is_placeholder")?;
    let stored_at: OffsetDateTime = row.try_get("", "updated_at")?;
    if !placeholder && item.at < stored_at {
        return Ok(Applied::new(Outcome::Duplicate)
            .warn("older than the stored version of this user; ignored"));
    }
    let old_budget: Option<i64> = row.try_get("", "monthly_budget_nano_usd")?;
    let budget = match &u.monthly_budget {
        Some(b) => budget_nanos(b)?,
        None => old_budget,
    };
    let old_hard_limit: Option<i64> = row.try_get("", "monthly_hard_limit_nano_usd")?;
    let hard_limit = match &u.monthly_hard_limit {
        Some(b) => budget_nanos(b)?,
        None => old_hard_limit,
    };
    let old_opt_out: bool = row.try_get("", "weekly_report_opt_out")?;
    let opt_out = u.weekly_report_opt_out.unwrap_or(old_opt_out);
    let old_tz: Option<String> = row.try_get("", "timezone")?;
    let timezone = u.timezone.clone().or(old_tz.clone());
    let same = !placeholder
        && row.try_get::<Option<String>>("", "external_id")?.as_deref()
            == Some(u.external_id.as_str())
        && row.try_get::<Option<String>>("", "email")?.as_deref() == Some(u.email.as_str())
        && timezone == old_tz
        && budget == old_budget
        && hard_limit == old_hard_limit
        && opt_out == old_opt_out;
    if same {
        return Ok(Applied::new(Outcome::Duplicate));
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

/// Makes sure a workflow exists, creating a placeholder owned by `user_id`.
async fn ensure_workflow(
    txn: &DatabaseTransaction,
    rollups: &mut Rollups,
    id: Uuid,
    user_id: Uuid,
    at: OffsetDateTime,
) -> StoreResult<()> {
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

async fn upsert_named(
    txn: &DatabaseTransaction,
    table: &'static str,
    milestone: EventType,
    item: &Item,
    n: &NamedUpsert,
    batch: &mut Batch,
) -> StoreResult<Applied> {
    ensure_users(txn, &mut batch.rollups, [(n.user_id, item.at)]).await?;
    let existing = query_one(
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
    let placeholder: bool = row.try_get("", "is_placeholder")?;
    let stored_at: OffsetDateTime = row.try_get("", "updated_at")?;
    if !placeholder && item.at < stored_at {
        return Ok(Applied::new(Outcome::Duplicate).warn("older than the stored version; ignored"));
    }
    let same = !placeholder
        && row.try_get::<Uuid>("", "user_id")? == n.user_id
        && row.try_get::<String>("", "name")? == n.name;
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

async fn upsert_conversation(
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
    let existing = query_one(
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
    let owner: Uuid = row.try_get("", "user_id")?;
    if owner != c.user_id {
        return Ok(Applied::error(
            ErrorCode::Conflict,
            format!(
                "conversation {} belongs to user {owner}, not {}",
                item.id, c.user_id
            ),
        ));
    }
    let stored_at: OffsetDateTime = row.try_get("", "updated_at")?;
    if item.at < stored_at {
        return Ok(Applied::new(Outcome::Duplicate).warn("older than the stored version; ignored"));
    }
    let old_workflow: Option<Uuid> = row.try_get("", "workflow_id")?;
    let old_session: Option<String> = row.try_get("", "langflow_session_id")?;
    let session = c.langflow_session_id.clone().or(old_session.clone());
    if old_workflow == c.workflow_id && session == old_session {
        return Ok(Applied::new(Outcome::Duplicate));
    }
    if old_workflow != c.workflow_id {
        // The conversation's start moves to its new workflow; messages keep
        // the workflow they were counted under.
        let created_at: OffsetDateTime = row.try_get("", "created_at")?;
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

/// Owner and workflow of each known conversation among `ids`.
async fn conversations_of(
    txn: &DatabaseTransaction,
    ids: &BTreeSet<Uuid>,
) -> StoreResult<HashMap<Uuid, (Uuid, Option<Uuid>)>> {
    let ids: Vec<Uuid> = ids.iter().copied().collect();
    let mut found = HashMap::new();
    for chunk in ids.chunks(500) {
        let (filter, values) = uuid_in("id", chunk, 1, txn.get_database_backend());
        let sql = format!("SELECT id, user_id, workflow_id FROM conversations WHERE {filter}");
        for row in query_all(txn, &sql, values).await? {
            found.insert(
                row.try_get("", "id")?,
                (row.try_get("", "user_id")?, row.try_get("", "workflow_id")?),
            );
        }
    }
    Ok(found)
}

/// Sends new messages to `messages` when their conversation is known, or to
/// `pending_messages` when it is not.
async fn place_messages(
    txn: &DatabaseTransaction,
    new: &[(usize, &Item, &MessageCreate)],
    out: &mut [Applied],
    batch: &mut Batch,
    now: OffsetDateTime,
) -> StoreResult<()> {
    if new.is_empty() {
        return Ok(());
    }
    let wanted: BTreeSet<Uuid> = new.iter().map(|(_, _, m)| m.conversation_id).collect();
    let mut known = conversations_of(txn, &wanted).await?;
    let missing: BTreeSet<Uuid> = wanted
        .iter()
        .filter(|id| !known.contains_key(id))
        .copied()
        .collect();
    if !missing.is_empty() {
        // A conversation may be committing right now in another batch: wait
        // for it, then look again, so no message is parked for a conversation
        // that already exists.
        advisory_locks(txn, missing.iter().map(|id| lock_key(*id)).collect()).await?;
        known.extend(conversations_of(txn, &missing).await?);
    }
    let mut pending = Vec::new();
    for (i, item, m) in new {
        match known.get(&m.conversation_id) {
            Some(&(user_id, workflow_id)) => batch.messages.push(MessageRow {
                index: Some(*i),
                id: item.id,
                at: item.at,
                user_id,
                workflow_id,
                m: (*m).clone(),
            }),
            None => {
                pending.push((*item, *m));
                out[*i] = Applied::new(Outcome::Created).warn(format!(
                    "conversation {} is not known yet; the message is kept and counted when it arrives",
                    m.conversation_id
                ));
            }
        }
    }
    let mut rows = Vec::with_capacity(pending.len());
    for (item, m) in &pending {
        let payload = serde_json::to_value(m).map_err(|e| StoreError::Internal(e.to_string()))?;
        rows.push(vec![
            item.id.into(),
            m.conversation_id.into(),
            item.at.into(),
            payload.into(),
            now.into(),
        ]);
    }
    insert_many(
        txn,
        "pending_messages",
        &[
            "id",
            "conversation_id",
            "created_at",
            "payload",
            "received_at",
        ],
        rows,
        None,
        &[],
    )
    .await?;
    Ok(())
}

/// Moves messages that waited for a conversation of this batch into the batch.
async fn drain_pending(txn: &DatabaseTransaction, batch: &mut Batch) -> StoreResult<()> {
    if batch.conversations_touched.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = batch.conversations_touched.iter().copied().collect();
    let owners = conversations_of(txn, &batch.conversations_touched).await?;
    for chunk in ids.chunks(500) {
        let (filter, values) = uuid_in("conversation_id", chunk, 1, txn.get_database_backend());
        let rows = query_all(
            txn,
            &format!("SELECT id, created_at, payload FROM pending_messages WHERE {filter}"),
            values.clone(),
        )
        .await?;
        if rows.is_empty() {
            continue;
        }
        for row in rows {
            let payload: Value = row.try_get("", "payload")?;
            let m: MessageCreate = serde_json::from_value(payload)
                .map_err(|e| StoreError::Corrupt(format!("pending message: {e}")))?;
            let Some(&(user_id, workflow_id)) = owners.get(&m.conversation_id) else {
                continue;
            };
            batch.messages.push(MessageRow {
                index: None,
                id: row.try_get("", "id")?,
                at: row.try_get("", "created_at")?,
                user_id,
                workflow_id,
                m,
            });
        }
        execute(
            txn,
            &format!("DELETE FROM pending_messages WHERE {filter}"),
            values,
        )
        .await?;
    }
    Ok(())
}

/// Makes sure the components the batch's messages name exist, and that each
/// belongs to the user of the message's conversation.
///
/// An unknown component gets a placeholder owned by that user (its own
/// `component.upsert` fills it later), as an unknown workflow does. A
/// component of another user refuses the message with `conflict`, as a
/// conversation upsert naming another user's conversation is refused: the
/// user's breakdown must never show another user's component. The refused
/// message's ledger row goes too, so a corrected re-send is not taken for a
/// retry. A message that waited in `pending_messages` was already answered,
/// so it cannot be refused any more: it is counted without the component.
async fn check_components(
    txn: &DatabaseTransaction,
    batch: &mut Batch,
    out: &mut [Applied],
) -> StoreResult<()> {
    // The earliest message decides a placeholder's owner and time, as for users.
    let mut wanted: BTreeMap<Uuid, (OffsetDateTime, Uuid)> = BTreeMap::new();
    for r in &batch.messages {
        if let Some(c) = r.m.component_id {
            wanted
                .entry(c)
                .and_modify(|x| {
                    if r.at < x.0 {
                        *x = (r.at, r.user_id)
                    }
                })
                .or_insert((r.at, r.user_id));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let rows = wanted
        .iter()
        .map(|(id, (at, user))| {
            vec![
                (*id).into(),
                (*user).into(),
                "".into(),
                true.into(),
                (*at).into(),
                (*at).into(),
            ]
        })
        .collect();
    insert_many(
        txn,
        "agent_components",
        &[
            "id",
            "user_id",
            "name",
            "is_placeholder",
            "created_at",
            "updated_at",
        ],
        rows,
        Some(ignore_conflicts(&["id"])),
        &[],
    )
    .await?;
    let ids: Vec<Uuid> = wanted.keys().copied().collect();
    let mut owners: HashMap<Uuid, Uuid> = HashMap::new();
    for chunk in ids.chunks(500) {
        let (filter, values) = uuid_in("id", chunk, 1, txn.get_database_backend());
        let sql = format!("SELECT id, user_id FROM agent_components WHERE {filter}");
        for row in query_all(txn, &sql, values).await? {
            owners.insert(row.try_get("", "id")?, row.try_get("", "user_id")?);
        }
    }
    let mut refused: Vec<Uuid> = Vec::new();
    batch.messages.retain_mut(|r| {
        let Some(component) = r.m.component_id else {
            return true;
        };
        let Some(&owner) = owners.get(&component).filter(|o| **o != r.user_id) else {
            return true;
        };
        match r.index {
            Some(i) => {
                out[i] = Applied::error(
                    ErrorCode::Conflict,
                    format!(
                        "component {component} belongs to user {owner}, not {} (the user of conversation {})",
                        r.user_id, r.m.conversation_id
                    ),
                );
                refused.push(r.id);
                false
            }
            None => {
                tracing::warn!(
                    message_id = %r.id,
                    %component,
                    %owner,
                    user = %r.user_id,
                    "a waiting message names another user's component; counted without it"
                );
                r.m.component_id = None;
                true
            }
        }
    });
    refused.sort_unstable();
    for chunk in refused.chunks(500) {
        let (filter, values) = uuid_in("id", chunk, 1, txn.get_database_backend());
        execute(
            txn,
            &format!("DELETE FROM ingested_items WHERE {filter}"),
            values,
        )
        .await?;
    }
    Ok(())
}

/// The columns of a `messages` row, in the order `write_messages` fills them.
const MESSAGE_COLUMNS: &[&str] = &[
    "id",
    "created_at",
    "user_id",
    "conversation_id",
    "workflow_id",
    "component_id",
    "role",
    "model",
    "has_usage",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "cache_write1h_tokens",
    "reasoning_tokens",
    "cost_nano_usd",
    "pricing_status",
    "price_ref",
];

/// Inserts the batch's messages and adds them to rollups, sessions, activity
/// and the `message_sent` milestone.
async fn write_messages(txn: &DatabaseTransaction, batch: &mut Batch) -> StoreResult<()> {
    if batch.messages.is_empty() {
        return Ok(());
    }
    let messages = std::mem::take(&mut batch.messages);
    let rows = messages
        .iter()
        .map(|r| {
            let u = r.m.usage.unwrap_or_default();
            vec![
                r.id.into(),
                r.at.into(),
                r.user_id.into(),
                r.m.conversation_id.into(),
                r.workflow_id.into(),
                r.m.component_id.into(),
                r.m.role.as_str().into(),
                r.m.model.clone().into(),
                r.m.usage.is_some().into(),
                tokens_i64(u.input_tokens).into(),
                tokens_i64(u.output_tokens).into(),
                tokens_i64(u.cache_read_input_tokens).into(),
                tokens_i64(u.cache_creation_input_tokens).into(),
                tokens_i64(u.cache_creation_1h_input_tokens).into(),
                tokens_i64(u.reasoning_tokens).into(),
                r.m.cost_nano_usd.into(),
                r.m.pricing_status.clone().into(),
                r.m.price_ref.clone().into(),
            ]
        })
        .collect();
    insert_many(txn, "messages", MESSAGE_COLUMNS, rows, None, &[]).await?;

    // Rollups, and the first message of each conversation on each UTC day.
    let mut days: BTreeMap<(Uuid, time::Date), (Uuid, Option<Uuid>)> = BTreeMap::new();
    let mut last_active: BTreeMap<Uuid, i64> = BTreeMap::new();
    let mut first_sent: BTreeMap<Uuid, (OffsetDateTime, Uuid)> = BTreeMap::new();
    for r in &messages {
        let facts = MessageFacts {
            role: r.m.role,
            usage: r.m.usage.as_ref(),
            cost_nano_usd: r.m.cost_nano_usd,
            pricing_status: &r.m.pricing_status,
        };
        let counters = Counters::for_message(&facts);
        batch.rollups.add(
            r.user_id,
            r.workflow_id,
            r.m.model.as_deref(),
            r.at,
            &counters,
        );
        if let Some(component) = r.m.component_id {
            batch
                .rollups
                .add_component(r.user_id, r.workflow_id, component, r.at, &counters);
        }
        days.entry((r.m.conversation_id, r.at.date()))
            .or_insert((r.user_id, r.workflow_id));
        if r.m.role == MessageRole::User {
            let b = bucket_of(r.at);
            last_active
                .entry(r.user_id)
                .and_modify(|x| *x = (*x).max(b))
                .or_insert(b);
            first_sent
                .entry(r.user_id)
                .and_modify(|x| {
                    if r.at < x.0 {
                        *x = (r.at, r.m.conversation_id)
                    }
                })
                .or_insert((r.at, r.m.conversation_id));
        }
    }
    batch.sessions = days;
    batch.last_active = last_active;
    for (user, (at, conversation)) in first_sent {
        batch.milestones.push(Milestone {
            conversation_id: Some(conversation),
            ..Milestone::auto(EventType::MessageSent, user, user, at)
        });
    }
    Ok(())
}

/// Records which conversations had a message on which UTC day; a
/// conversation's first message of a day adds a session to the rollups.
async fn write_sessions(txn: &DatabaseTransaction, batch: &mut Batch) -> StoreResult<()> {
    let rows = batch
        .sessions
        .iter()
        .map(|((conversation, date), (user, _))| {
            vec![(*conversation).into(), (*date).into(), (*user).into()]
        })
        .collect();
    let first_of_day = insert_many(
        txn,
        "conversation_days",
        &["conversation_id", "date", "user_id"],
        rows,
        Some(ignore_conflicts(&["conversation_id", "date"])),
        &["conversation_id", "date"],
    )
    .await?;
    for row in first_of_day {
        let key: (Uuid, time::Date) = (
            row.try_get("", "conversation_id")?,
            row.try_get("", "date")?,
        );
        if let Some(&(user, workflow)) = batch.sessions.get(&key) {
            batch.rollups.add_session(user, workflow, key.1);
        }
    }
    Ok(())
}

/// Locks, in id order, the `users` rows this batch will update (milestone
/// stamps and counters). `FOR NO KEY UPDATE`, the lock an `UPDATE` of
/// non-key columns takes: a plain `FOR UPDATE` would also wait for the
/// key-share locks that concurrent batches' `messages` inserts hold through
/// the foreign key, and deadlock with them. PostgreSQL only: SQLite runs one
/// writer at a time.
async fn lock_users(txn: &DatabaseTransaction, batch: &Batch) -> StoreResult<()> {
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

/// Adds the batch to the per-user counters (`total_messages`,
/// `total_conversations`) and moves `last_message_bucket` forward (never
/// back), one statement per chunk of users, in id order. Where a user's
/// latest bucket moved goes to the rollups (`active_user_buckets`).
async fn update_users(txn: &DatabaseTransaction, batch: &mut Batch) -> StoreResult<()> {
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
    for row in updated {
        let before: Option<i64> = row.try_get("", "previous_message_bucket")?;
        if let Some(after) = row.try_get::<Option<i64>>("", "last_message_bucket")? {
            batch.rollups.move_active_user(before, after);
        }
    }
    Ok(())
}

/// The `users` column holding when a user reached a funnel milestone.
fn milestone_column(t: EventType) -> Option<&'static str> {
    match t {
        EventType::UserSignedUp => Some("signed_up_at"),
        EventType::ComponentCreated => Some("first_component_at"),
        EventType::WorkflowCreated => Some("first_workflow_at"),
        EventType::MessageSent => Some("first_message_at"),
        _ => None,
    }
}

/// Records on `users` when each user first reached a milestone.
async fn stamp_milestones(
    txn: &DatabaseTransaction,
    recorded: &[(EventType, Uuid, OffsetDateTime)],
) -> StoreResult<()> {
    let sqlite = txn.get_database_backend() == sea_orm::DbBackend::Sqlite;
    for t in [
        EventType::UserSignedUp,
        EventType::ComponentCreated,
        EventType::WorkflowCreated,
        EventType::MessageSent,
    ] {
        let Some(column) = milestone_column(t) else {
            continue;
        };
        let mut earliest: BTreeMap<Uuid, OffsetDateTime> = BTreeMap::new();
        for (_, user, at) in recorded.iter().filter(|(k, _, _)| *k == t) {
            earliest
                .entry(*user)
                .and_modify(|x| *x = (*x).min(*at))
                .or_insert(*at);
        }
        let rows = earliest
            .into_iter()
            .map(|(u, at)| vec![DbValue::from(u), at.into()])
            .collect();
        let later = if sqlite {
            format!("julianday(users.{column}) > julianday(v.t)")
        } else {
            format!("users.{column} > v.t")
        };
        update_from_values(
            txn,
            "users",
            &[("u", "uuid"), ("t", "timestamptz")],
            &format!("{column} = v.t"),
            Some(&format!("users.{column} IS NULL OR {later}")),
            rows,
        )
        .await?;
    }
    Ok(())
}

/// The entity a milestone event is about, if the event names it.
fn milestone_entity(t: EventType, e: &EventTrack) -> Option<Uuid> {
    match t {
        EventType::UserSignedUp | EventType::MessageSent => Some(e.user_id),
        EventType::WorkflowCreated => e.workflow_id,
        EventType::ComponentCreated => e.component_id,
        EventType::ConversationStarted => e.conversation_id,
        _ => None,
    }
}

async fn write_events(
    txn: &DatabaseTransaction,
    events: &[(usize, &Item, &EventTrack)],
    out: &mut [Applied],
    batch: &mut Batch,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    ensure_users(
        txn,
        &mut batch.rollups,
        events.iter().map(|(_, item, e)| (e.user_id, item.at)),
    )
    .await?;
    let mut plain = Vec::new();
    for &(i, item, e) in events {
        let milestone = EventType::parse(&e.event_type).filter(EventType::is_once_per_entity);
        match milestone.map(|t| (t, milestone_entity(t, e))) {
            Some((t, Some(entity))) => batch.milestones.push(Milestone {
                event_type: t,
                entity_id: entity,
                user_id: e.user_id,
                at: item.at,
                explicit: Some((i, item.id)),
                workflow_id: e.workflow_id,
                component_id: e.component_id,
                conversation_id: e.conversation_id,
                metadata: e.metadata.clone(),
            }),
            Some((t, None)) => {
                out[i].warnings.push(format!(
                    "{t} without the id of its entity cannot be matched with the recorded milestone"
                ));
                plain.push(EventRow::from_track(item.id, item.at, e));
            }
            None => plain.push(EventRow::from_track(item.id, item.at, e)),
        }
    }
    insert_events(txn, &plain, &mut batch.events_written).await
}

struct EventRow {
    id: Uuid,
    at: OffsetDateTime,
    user_id: Uuid,
    event_type: String,
    event_category: String,
    workflow_id: Option<Uuid>,
    component_id: Option<Uuid>,
    conversation_id: Option<Uuid>,
    metadata: Value,
}

impl EventRow {
    fn from_track(id: Uuid, at: OffsetDateTime, e: &EventTrack) -> EventRow {
        EventRow {
            id,
            at,
            user_id: e.user_id,
            event_type: e.event_type.clone(),
            event_category: e.event_category.clone(),
            workflow_id: e.workflow_id,
            component_id: e.component_id,
            conversation_id: e.conversation_id,
            metadata: e.metadata.clone(),
        }
    }
}

async fn insert_events(
    txn: &DatabaseTransaction,
    rows: &[EventRow],
    written: &mut Vec<(Uuid, OffsetDateTime)>,
) -> StoreResult<()> {
    written.extend(rows.iter().map(|r| (r.id, r.at)));
    let rows = rows
        .iter()
        .map(|r| {
            vec![
                r.id.into(),
                r.at.into(),
                r.user_id.into(),
                r.event_type.clone().into(),
                r.event_category.clone().into(),
                r.workflow_id.into(),
                r.component_id.into(),
                r.conversation_id.into(),
                r.metadata.clone().into(),
            ]
        })
        .collect();
    let columns = [
        "id",
        "created_at",
        "user_id",
        "event_type",
        "event_category",
        "workflow_id",
        "component_id",
        "conversation_id",
        "metadata",
    ];
    insert_many(txn, "user_activity_events", &columns, rows, None, &[]).await?;
    Ok(())
}

async fn write_errors(
    txn: &DatabaseTransaction,
    errors: &[(usize, &Item, &super::item::ErrorLog)],
    batch: &mut Batch,
) -> StoreResult<()> {
    if errors.is_empty() {
        return Ok(());
    }
    ensure_users(
        txn,
        &mut batch.rollups,
        errors
            .iter()
            .filter_map(|(_, item, e)| e.user_id.map(|u| (u, item.at))),
    )
    .await?;
    let rows = errors
        .iter()
        .map(|(_, item, e)| {
            vec![
                item.id.into(),
                item.at.into(),
                e.user_id.into(),
                e.service.clone().into(),
                e.error_type.clone().into(),
                e.error_message.clone().into(),
                e.error_code.clone().into(),
                e.workflow_id.into(),
                e.endpoint.clone().into(),
                e.request_id.clone().into(),
                e.metadata.clone().into(),
                e.sentry_event_id.clone().into(),
            ]
        })
        .collect();
    let columns = [
        "id",
        "created_at",
        "user_id",
        "service",
        "error_type",
        "error_message",
        "error_code",
        "workflow_id",
        "endpoint",
        "request_id",
        "metadata",
        "sentry_event_id",
    ];
    insert_many(txn, "error_logs", &columns, rows, None, &[]).await?;
    let one = Counters {
        error_count: 1,
        ..Counters::default()
    };
    for (_, item, e) in errors {
        match e.user_id {
            Some(user) => batch.rollups.add(user, e.workflow_id, None, item.at, &one),
            None => batch.rollups.add_platform(None, item.at, &one),
        }
    }
    Ok(())
}

impl Milestone {
    fn auto(
        event_type: EventType,
        entity_id: Uuid,
        user_id: Uuid,
        at: OffsetDateTime,
    ) -> Milestone {
        let (workflow_id, component_id) = match event_type {
            EventType::WorkflowCreated => (Some(entity_id), None),
            EventType::ComponentCreated => (None, Some(entity_id)),
            _ => (None, None),
        };
        Milestone {
            event_type,
            entity_id,
            user_id,
            at,
            explicit: None,
            workflow_id,
            component_id,
            conversation_id: None,
            metadata: json!({"source": "charlie-stats"}),
        }
    }
}

/// Which of these milestones are already in `funnel_milestones` (committed).
async fn recorded_milestones(
    txn: &DatabaseTransaction,
    milestones: &[Milestone],
) -> StoreResult<HashSet<(EventType, Uuid)>> {
    let mut by_type: BTreeMap<&'static str, (EventType, Vec<Uuid>)> = BTreeMap::new();
    for m in milestones {
        by_type
            .entry(m.event_type.as_str())
            .or_insert_with(|| (m.event_type, Vec::new()))
            .1
            .push(m.entity_id);
    }
    let mut found = HashSet::new();
    for (name, (event_type, mut ids)) in by_type {
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(500) {
            let (filter, mut values) = uuid_in("entity_id", chunk, 2, txn.get_database_backend());
            values.insert(0, name.into());
            let sql = format!(
                "SELECT entity_id FROM funnel_milestones WHERE event_type = $1 AND {filter}"
            );
            for row in query_all(txn, &sql, values).await? {
                found.insert((event_type, row.try_get::<Uuid>("", "entity_id")?));
            }
        }
    }
    Ok(found)
}

/// Records each milestone once per entity; explicit reports of a milestone
/// already recorded are duplicates.
async fn record_milestones(
    txn: &DatabaseTransaction,
    batch: &mut Batch,
    out: &mut [Applied],
) -> StoreResult<()> {
    if batch.milestones.is_empty() {
        return Ok(());
    }
    let mut milestones = std::mem::take(&mut batch.milestones);
    // Explicit reports first, so that a platform's own event (with its
    // metadata) is the one kept when both arrive together.
    milestones.sort_by_key(|m| {
        (
            m.event_type.as_str(),
            m.entity_id,
            m.explicit.is_none(),
            m.at,
        )
    });
    // Milestones already committed are skipped with a plain read: inserting
    // them again would find the conflict only after waiting for whichever
    // concurrent batch last touched the key (every batch of a user's
    // messages reports `message_sent` again).
    let recorded_before = recorded_milestones(txn, &milestones).await?;
    let mut seen = HashSet::new();
    let mut unique = Vec::new();
    for m in milestones {
        if recorded_before.contains(&(m.event_type, m.entity_id)) {
            if let Some((i, _)) = m.explicit {
                out[i] = Applied::new(Outcome::Duplicate)
                    .warn(format!("{} already recorded for this entity", m.event_type));
            }
        } else if seen.insert((m.event_type, m.entity_id)) {
            unique.push(m);
        } else if let Some((i, _)) = m.explicit {
            out[i] = Applied::new(Outcome::Duplicate)
                .warn(format!("{} already recorded for this entity", m.event_type));
        }
    }
    if unique.is_empty() {
        return Ok(());
    }
    let event_ids: Vec<Uuid> = unique
        .iter()
        .map(|m| m.explicit.map_or_else(Uuid::now_v7, |(_, id)| id))
        .collect();
    let rows = unique
        .iter()
        .zip(&event_ids)
        .map(|(m, event_id)| {
            vec![
                m.event_type.as_str().into(),
                m.entity_id.into(),
                m.user_id.into(),
                (*event_id).into(),
            ]
        })
        .collect();
    let mut recorded: HashSet<(String, Uuid)> = HashSet::new();
    for row in insert_many(
        txn,
        "funnel_milestones",
        &["event_type", "entity_id", "user_id", "event_id"],
        rows,
        Some(ignore_conflicts(&["event_type", "entity_id"])),
        &["event_type", "entity_id"],
    )
    .await?
    {
        recorded.insert((
            row.try_get("", "event_type")?,
            row.try_get("", "entity_id")?,
        ));
    }
    let mut rows = Vec::new();
    let mut stamps = Vec::new();
    for (m, id) in unique.into_iter().zip(event_ids) {
        if !recorded.contains(&(m.event_type.as_str().to_owned(), m.entity_id)) {
            if let Some((i, _)) = m.explicit {
                out[i] = Applied::new(Outcome::Duplicate)
                    .warn(format!("{} already recorded for this entity", m.event_type));
            }
            continue;
        }
        stamps.push((m.event_type, m.user_id, m.at));
        rows.push(EventRow {
            id,
            at: m.at,
            user_id: m.user_id,
            event_type: m.event_type.as_str().to_owned(),
            event_category: m.event_type.category().as_str().to_owned(),
            workflow_id: m.workflow_id,
            component_id: m.component_id,
            conversation_id: m.conversation_id,
            metadata: m.metadata,
        });
    }
    insert_events(txn, &rows, &mut batch.events_written).await?;
    // Where the stamped users stand in the funnel before and after, for
    // `funnel_cohorts` (read under row locks: nobody moves them in between).
    let users: BTreeSet<Uuid> = stamps
        .iter()
        .filter(|(t, _, _)| milestone_column(*t).is_some())
        .map(|(_, u, _)| *u)
        .collect();
    let before = crate::rollup::funnel_positions(txn, &users).await?;
    stamp_milestones(txn, &stamps).await?;
    let after = crate::rollup::funnel_positions(txn, &users).await?;
    for user in &users {
        batch.rollups.move_funnel_position(
            &before.get(user).copied().unwrap_or_default(),
            &after.get(user).copied().unwrap_or_default(),
        );
    }
    Ok(())
}
