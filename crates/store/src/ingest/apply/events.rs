//! Activity events and error logs.

use super::*;

pub(super) async fn write_events(
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

pub(super) struct EventRow {
    pub(super) id: Uuid,
    pub(super) at: OffsetDateTime,
    pub(super) user_id: Uuid,
    pub(super) event_type: String,
    pub(super) event_category: String,
    pub(super) workflow_id: Option<Uuid>,
    pub(super) component_id: Option<Uuid>,
    pub(super) conversation_id: Option<Uuid>,
    pub(super) metadata: Value,
}

impl EventRow {
    pub(super) fn from_track(id: Uuid, at: OffsetDateTime, e: &EventTrack) -> EventRow {
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

pub(super) async fn insert_events(
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

pub(super) async fn write_errors(
    txn: &DatabaseTransaction,
    errors: &[(usize, &Item, &charlie_domain::ingest::ErrorLog)],
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
