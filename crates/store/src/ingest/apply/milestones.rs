//! Funnel milestones: recorded once per entity, stamped on `users`.

use super::*;

/// A funnel column of `users`: when the user first reached a milestone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Stamp {
    SignedUp,
    FirstComponent,
    FirstWorkflow,
    FirstMessage,
}

impl Stamp {
    /// The column a milestone of this type stamps, if it stamps one.
    pub(super) fn of(t: EventType) -> Option<Stamp> {
        match t {
            EventType::UserSignedUp => Some(Stamp::SignedUp),
            EventType::ComponentCreated => Some(Stamp::FirstComponent),
            EventType::WorkflowCreated => Some(Stamp::FirstWorkflow),
            EventType::MessageSent => Some(Stamp::FirstMessage),
            _ => None,
        }
    }

    fn column(self) -> &'static str {
        match self {
            Stamp::SignedUp => "signed_up_at",
            Stamp::FirstComponent => "first_component_at",
            Stamp::FirstWorkflow => "first_workflow_at",
            Stamp::FirstMessage => "first_message_at",
        }
    }
}

/// The funnel stamps of a batch or a fold: `(user, column) ->` the earliest
/// time. Written by the fold ([`stamp_users`]), which holds the users' locks.
pub(crate) type Stamps = BTreeMap<(Uuid, Stamp), OffsetDateTime>;

/// Keeps the earliest time of a stamp.
pub(crate) fn add_stamp(stamps: &mut Stamps, key: (Uuid, Stamp), at: OffsetDateTime) {
    stamps
        .entry(key)
        .and_modify(|x| *x = (*x).min(at))
        .or_insert(at);
}

/// Records on `users` when each user first reached a milestone (an earlier
/// time than the stored one replaces it), and moves the users' funnel
/// positions in `funnel_cohorts` (into `rollups`). The caller holds the
/// users' locks (`sql::lock_users`): the positions are read before and
/// after, and nobody moves them in between. Runs in the fold (the ingest
/// transaction on SQLite), so ingestion itself never waits on a user's lock
/// for a milestone.
pub(in crate::ingest) async fn stamp_users(
    txn: &DatabaseTransaction,
    stamps: &Stamps,
    rollups: &mut Rollups,
) -> StoreResult<()> {
    if stamps.is_empty() {
        return Ok(());
    }
    let users: BTreeSet<Uuid> = stamps.keys().map(|(u, _)| *u).collect();
    let before = crate::rollup::funnel_positions(txn, &users).await?;
    let sqlite = txn.get_database_backend() == sea_orm::DbBackend::Sqlite;
    for stamp in [
        Stamp::SignedUp,
        Stamp::FirstComponent,
        Stamp::FirstWorkflow,
        Stamp::FirstMessage,
    ] {
        let column = stamp.column();
        let rows: Vec<Vec<DbValue>> = stamps
            .iter()
            .filter(|((_, s), _)| *s == stamp)
            .map(|((u, _), at)| vec![DbValue::from(*u), (*at).into()])
            .collect();
        if rows.is_empty() {
            continue;
        }
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
    let after = crate::rollup::funnel_positions(txn, &users).await?;
    for user in &users {
        rollups.move_funnel_position(
            &before.get(user).copied().unwrap_or_default(),
            &after.get(user).copied().unwrap_or_default(),
        );
    }
    Ok(())
}

/// The entity a milestone event is about, if the event names it.
pub(super) fn milestone_entity(t: EventType, e: &EventTrack) -> Option<Uuid> {
    match t {
        EventType::UserSignedUp | EventType::MessageSent => Some(e.user_id),
        EventType::WorkflowCreated => e.workflow_id,
        EventType::ComponentCreated => e.component_id,
        EventType::ConversationStarted => e.conversation_id,
        _ => None,
    }
}

impl Milestone {
    pub(super) fn auto(
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
pub(super) async fn recorded_milestones(
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

/// A `funnel_milestones` row inserted.
#[derive(FromQueryResult)]
struct RecordedMilestone {
    event_type: String,
    entity_id: Uuid,
}

/// Records each milestone once per entity; explicit reports of a milestone
/// already recorded are duplicates.
pub(super) async fn record_milestones(
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
        Some(ignore_conflicts(&["user_id", "event_type", "entity_id"])),
        &["event_type", "entity_id"],
    )
    .await?
    {
        let m: RecordedMilestone = read(&row)?;
        recorded.insert((m.event_type, m.entity_id));
    }
    let mut rows = Vec::new();
    for (m, id) in unique.into_iter().zip(event_ids) {
        if !recorded.contains(&(m.event_type.as_str().to_owned(), m.entity_id)) {
            if let Some((i, _)) = m.explicit {
                out[i] = Applied::new(Outcome::Duplicate)
                    .warn(format!("{} already recorded for this entity", m.event_type));
            }
            continue;
        }
        // The user's funnel column (and cohort) moves in the fold, which
        // holds the user's lock anyway: a batch never waits for a fold here.
        if let Some(stamp) = Stamp::of(m.event_type) {
            add_stamp(&mut batch.stamps, (m.user_id, stamp), m.at);
        }
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
    Ok(())
}
