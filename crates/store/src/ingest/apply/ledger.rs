//! The idempotency ledger: which message, event and error ids of a batch
//! are new (`ingested_items`), and which reuse an id for other content.

use super::*;

/// The content hash a ledger row holds for an id.
#[derive(FromQueryResult)]
struct StoredHash {
    id: Uuid,
    content_hash: String,
}

/// Inserts ledger rows for new message/event/error ids; returns their indexes.
pub(super) async fn ledger(
    txn: &DatabaseTransaction,
    items: &[Item],
    now: OffsetDateTime,
    kept_from: Option<OffsetDateTime>,
    out: &mut [Applied],
) -> StoreResult<Vec<usize>> {
    let mut first: HashMap<Uuid, usize> = HashMap::new();
    let mut candidates: Vec<(usize, &Item)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if !matches!(
            item.item_type(),
            ItemType::Message | ItemType::Event | ItemType::Error
        ) {
            continue;
        }
        if let Some(kept) = kept_from.filter(|k| item.at < *k) {
            out[i] = Applied::error(
                ErrorCode::BeyondRetention,
                format!(
                    "the item's timestamp is before {kept}, from when raw data is kept \
                     (RAW_RETENTION_MONTHS); it is not stored"
                ),
            );
            continue;
        }
        match first.get(&item.id) {
            Some(&j) => {
                let same = items[j].content_hash == item.content_hash;
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
                item.at.into(),
            ]
        })
        .collect();
    let mut inserted: HashSet<Uuid> = HashSet::new();
    for row in insert_many(
        txn,
        "ingested_items",
        &[
            "id",
            "item_type",
            "content_hash",
            "received_at",
            "created_at",
        ],
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
        for row in fetch_all::<StoredHash, _>(txn, &sql, values).await? {
            stored_hash.insert(row.id, row.content_hash);
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
