//! The body of the ingest transaction, one module per concern (`ledger`,
//! `entities`, `messages`, `users`, `events`, `milestones`); this module
//! holds the batch's state and runs the steps in order. See the module
//! above for guarantees.

use super::Outcome;
use crate::{
    StoreError, StoreResult,
    rollup::{Counters, MessageFacts, Rollups, bucket_of},
    sql::{
        advisory_locks, execute, fetch_all, fetch_one, ignore_conflicts, insert_many, lock_key,
        query_all, read, reference_write_lock, update_from_values, uuid_in,
    },
};
use charlie_domain::ErrorCode;
use charlie_domain::ingest::{
    Body, ConversationUpsert, EventTrack, Item, ItemError, ItemType, MessageCreate, NamedUpsert,
    UserUpsert,
};
use charlie_domain::{EventType, MessageRole};
use sea_orm::{ConnectionTrait, DatabaseTransaction, FromQueryResult, Value as DbValue};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use time::OffsetDateTime;
use uuid::Uuid;

mod entities;
mod events;
mod ledger;
mod messages;
mod milestones;

use entities::*;
use events::*;
use ledger::*;
use messages::*;
use milestones::*;

pub(in crate::ingest) use milestones::{Stamp, Stamps, add_stamp, stamp_users};

/// What applying did to one item: its outcome, the error that refused it
/// (a conflict with what is stored, such as an id reused for other content),
/// and warnings. Given in the order of the items.
#[derive(Debug, Clone)]
pub struct Applied {
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

/// What a batch collects while its items are applied; `fold::Delta::of`
/// takes the shared-row changes.
#[derive(Default)]
pub(crate) struct Batch {
    pub(super) rollups: Rollups,
    milestones: Vec<Milestone>,
    messages: Vec<MessageRow>,
    /// Conversations created or re-read in this batch: their waiting messages are drained.
    conversations_touched: BTreeSet<Uuid>,
    /// The latest own-message bucket of each user who sent one.
    pub(super) last_active: BTreeMap<Uuid, i64>,
    /// The funnel columns of `users` the batch's new milestones stamp.
    pub(super) stamps: Stamps,
    /// `(conversation, UTC day) -> (user, workflow)` of the batch's messages.
    pub(super) sessions: BTreeMap<(Uuid, time::Date), (Uuid, Option<Uuid>)>,
    /// The messages written, as `(id, user)` (their cost is in this batch's
    /// rollups).
    pub(super) messages_written: Vec<(Uuid, Uuid)>,
    /// The `user_activity_events` rows written, `(id, created_at)`: queued
    /// for PostHog when forwarding is on.
    events_written: Vec<(Uuid, OffsetDateTime)>,
}

/// Whether applying `items` may write `users`, `workflows` or
/// `agent_components`: an upsert of one, or a reference to one that does not
/// exist yet (it gets a placeholder). Reads only.
async fn writes_reference_tables(txn: &DatabaseTransaction, items: &[Item]) -> StoreResult<bool> {
    let mut users = BTreeSet::new();
    let mut workflows = BTreeSet::new();
    let mut components = BTreeSet::new();
    for item in items {
        match &item.body {
            Body::User(_) | Body::Workflow(_) | Body::Component(_) => return Ok(true),
            Body::Conversation(c) => {
                users.insert(c.user_id);
                workflows.extend(c.workflow_id);
            }
            Body::Event(e) => {
                users.insert(e.user_id);
            }
            Body::Error(e) => {
                users.extend(e.user_id);
            }
            Body::Message(m) => {
                components.extend(m.component_id);
            }
        }
    }
    for (table, ids) in [
        ("users", &users),
        ("workflows", &workflows),
        ("agent_components", &components),
    ] {
        if !missing(txn, table, ids).await?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Applies a batch's items in `txn`: raw rows, ledger, entities,
/// placeholders and milestones. The rows every batch shares are left to the
/// caller, in the returned [`Batch`] (see `fold.rs`).
pub(super) async fn apply(
    txn: &DatabaseTransaction,
    items: &[Item],
    now: OffsetDateTime,
    posthog: bool,
) -> StoreResult<(Vec<Applied>, Batch)> {
    let mut out: Vec<Applied> = items.iter().map(|_| Applied::new(Outcome::Error)).collect();
    let mut batch = Batch::default();

    // 0. A batch that will write users, workflows or components takes its
    // turn for that before it writes anything else (see
    // `sql::reference_write_lock`): a turn taken halfway, after rows of
    // other tables, can close a cycle with a batch waiting for those rows.
    if writes_reference_tables(txn, items).await? {
        reference_write_lock(txn).await?;
    }

    // 1. The ledger decides which append-only items are new (and refuses
    // those older than raw rows are kept).
    let kept_from = crate::retention::kept_from_for_write(txn).await?;
    let fresh = ledger(txn, items, now, kept_from, &mut out).await?;

    // 2. Entities, parents before children.
    for kind in [
        ItemType::User,
        ItemType::Workflow,
        ItemType::Component,
        ItemType::Conversation,
    ] {
        for (i, item) in items.iter().enumerate() {
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
            item @ Item {
                body: Body::Message(m),
                ..
            } => Some((i, item, m)),
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
            item @ Item {
                body: Body::Event(e),
                ..
            } => events.push((i, item, e)),
            item @ Item {
                body: Body::Error(e),
                ..
            } => errors.push((i, item, e)),
            _ => {}
        }
    }
    write_events(txn, &events, &mut out, &mut batch).await?;
    write_errors(txn, &errors, &mut batch).await?;

    // 5. Funnel milestones: recorded once per entity, stamped on `users`
    // (their outcomes are the explicit reports' answers).
    record_milestones(txn, &mut batch, &mut out).await?;
    // The PostHog outbox rows of the events, committed with them.
    if posthog {
        crate::posthog::enqueue(txn, &batch.events_written, now).await?;
    }
    Ok((out, batch))
}
