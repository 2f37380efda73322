//! Messages: parked in `pending_messages` until their conversation is
//! known, checked against their component's owner, written with their
//! rollups and sessions.

use super::*;
use crate::ingest::row::{MESSAGE_COLUMNS, MessageRow as StoredRow};

/// Sends new messages to `messages` when their conversation is known, or to
/// `pending_messages` when it is not.
pub(super) async fn place_messages(
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

/// A message waiting in `pending_messages`.
#[derive(FromQueryResult)]
struct PendingRow {
    id: Uuid,
    created_at: OffsetDateTime,
    payload: Value,
}

/// Moves messages that waited for a conversation of this batch into the batch.
pub(super) async fn drain_pending(txn: &DatabaseTransaction, batch: &mut Batch) -> StoreResult<()> {
    if batch.conversations_touched.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = batch.conversations_touched.iter().copied().collect();
    let owners = conversations_of(txn, &batch.conversations_touched).await?;
    for chunk in ids.chunks(500) {
        let (filter, values) = uuid_in("conversation_id", chunk, 1, txn.get_database_backend());
        let rows = fetch_all::<PendingRow, _>(
            txn,
            &format!("SELECT id, created_at, payload FROM pending_messages WHERE {filter}"),
            values.clone(),
        )
        .await?;
        if rows.is_empty() {
            continue;
        }
        for row in rows {
            let m: MessageCreate = serde_json::from_value(row.payload)
                .map_err(|e| StoreError::Corrupt(format!("pending message: {e}")))?;
            let Some(&(user_id, workflow_id)) = owners.get(&m.conversation_id) else {
                continue;
            };
            batch.messages.push(MessageRow {
                index: None,
                id: row.id,
                at: row.created_at,
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

/// A component's owner.
#[derive(FromQueryResult)]
struct ComponentOwner {
    id: Uuid,
    user_id: Uuid,
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
pub(super) async fn check_components(
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
    // Read first: once components exist, a batch writes none of them.
    let ids: Vec<Uuid> = wanted.keys().copied().collect();
    let mut owners = component_owners(txn, &ids).await?;
    let unknown: Vec<Uuid> = ids
        .iter()
        .copied()
        .filter(|id| !owners.contains_key(id))
        .collect();
    if !unknown.is_empty() {
        insert_component_placeholders(txn, &wanted, &unknown).await?;
        // A concurrent batch may have made some of them first: read back.
        owners.extend(component_owners(txn, &unknown).await?);
    }
    refuse_foreign_components(txn, batch, out, &owners).await
}

/// The owners of the components `ids` that exist.
async fn component_owners(
    txn: &DatabaseTransaction,
    ids: &[Uuid],
) -> StoreResult<HashMap<Uuid, Uuid>> {
    let mut owners: HashMap<Uuid, Uuid> = HashMap::new();
    for chunk in ids.chunks(500) {
        let (filter, values) = uuid_in("id", chunk, 1, txn.get_database_backend());
        let sql = format!("SELECT id, user_id FROM agent_components WHERE {filter}");
        for c in fetch_all::<ComponentOwner, _>(txn, &sql, values).await? {
            owners.insert(c.id, c.user_id);
        }
    }
    Ok(owners)
}

/// Placeholders for the components `unknown`, owned as `wanted` says.
async fn insert_component_placeholders(
    txn: &DatabaseTransaction,
    wanted: &BTreeMap<Uuid, (OffsetDateTime, Uuid)>,
    unknown: &[Uuid],
) -> StoreResult<()> {
    reference_write_lock(txn).await?;
    let rows = unknown
        .iter()
        .filter_map(|id| wanted.get(id).map(|w| (id, w)))
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
    Ok(())
}

/// Refuses (or, for a message already answered, counts without its
/// component) every message naming another user's component.
async fn refuse_foreign_components(
    txn: &DatabaseTransaction,
    batch: &mut Batch,
    out: &mut [Applied],
    owners: &HashMap<Uuid, Uuid>,
) -> StoreResult<()> {
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

/// Inserts the batch's messages and adds them to rollups, sessions, activity
/// and the `message_sent` milestone.
pub(super) async fn write_messages(
    txn: &DatabaseTransaction,
    batch: &mut Batch,
) -> StoreResult<()> {
    if batch.messages.is_empty() {
        return Ok(());
    }
    let messages = std::mem::take(&mut batch.messages);
    let rows = messages
        .iter()
        .map(|r| {
            StoredRow::from_message(r.id, r.at, r.user_id, r.workflow_id, &r.m)
                .values()
                .into_iter()
                .map(Into::into)
                .collect()
        })
        .collect();
    insert_many(txn, "messages", MESSAGE_COLUMNS, rows, None, &[]).await?;
    batch
        .messages_written
        .extend(messages.iter().map(|r| (r.id, r.user_id)));

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
