//! Nothing acknowledged is lost, nothing is counted twice: the real server
//! is killed with SIGKILL in the middle of concurrent ingestion, restarted,
//! and everything is sent again. (Issue 15's first guarantee; it must keep
//! holding whatever the write path becomes.)

use crate::helpers::ServerProcess;
use charlie_store::{Store, maintenance::RollupRange, testing::TestDatabase};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

const USERS: usize = 8;
const BATCHES: usize = 40;
const PER_BATCH: usize = 25;
const CLIENTS: usize = 4;

fn item(id: Uuid, kind: &str, at: OffsetDateTime, body: Value) -> Value {
    json!({"id": id, "type": kind, "timestamp": at.format(&Rfc3339).unwrap(), "body": body})
}

/// The users and their conversations (sent before the crash), then batches
/// of priced messages spread over them and over the last three days.
fn world(now: OffsetDateTime) -> (Vec<Value>, Vec<Vec<Value>>) {
    let start = now - Duration::days(3);
    let mut setup = Vec::new();
    let mut conversations = Vec::new();
    for u in 0..USERS {
        let user = Uuid::now_v7();
        let conversation = Uuid::now_v7();
        setup.push(item(
            user,
            "user.upsert",
            start,
            json!({"external_id": format!("crash_{u}"), "email": format!("crash{u}@example.com")}),
        ));
        setup.push(item(
            conversation,
            "conversation.upsert",
            start,
            json!({"user_id": user}),
        ));
        conversations.push(conversation);
    }
    let total = BATCHES * PER_BATCH;
    let batches = (0..BATCHES)
        .map(|b| {
            (0..PER_BATCH)
                .map(|i| {
                    let n = b * PER_BATCH + i;
                    let at = start + Duration::seconds((n * 259_000 / total) as i64);
                    item(
                        Uuid::now_v7(),
                        "message.create",
                        at,
                        json!({
                            "conversation_id": conversations[n % USERS],
                            "role": "assistant",
                            "model": "gpt-4o",
                            "usage": {"input_tokens": 100 + n, "output_tokens": 20 + n % 7},
                        }),
                    )
                })
                .collect()
        })
        .collect();
    (setup, batches)
}

/// Sends a batch; the item results when the server answered 207.
async fn send(
    client: &reqwest::Client,
    address: &str,
    key: &str,
    batch: &[Value],
) -> Option<Value> {
    let resp = client
        .post(format!("{address}/api/v1/ingest"))
        .bearer_auth(key)
        .json(&json!({ "batch": batch }))
        .send()
        .await
        .ok()?;
    if resp.status() != 207 {
        return None;
    }
    resp.json().await.ok()
}

fn outcomes(answer: &Value) -> Vec<(String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["outcome"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn count(store: &Store, sql: &str) -> i64 {
    store.scalar_for_tests(sql).await.unwrap()
}

#[tokio::test]
async fn a_sigkill_during_concurrent_ingestion_loses_no_acknowledged_item_and_a_resend_counts_each_once()
 {
    let db = TestDatabase::create().await.unwrap();
    let store = db.migrated_store().await.unwrap();
    let key = store.create_api_key("crash").await.unwrap().key;
    let (setup, batches) = world(OffsetDateTime::now_utc());
    let client = reqwest::Client::new();

    let (first, address) = ServerProcess::start(db.url(), &[]).await;
    let answer = send(&client, &address, &key, &setup).await.unwrap();
    assert!(outcomes(&answer).iter().all(|(_, o)| o == "created"));

    // Four clients take batches from one queue; the server is killed once
    // a quarter of the messages are acknowledged, with requests in flight.
    let queue = Arc::new(Mutex::new(batches.clone().into_iter()));
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (queue, acknowledged) = (queue.clone(), acknowledged.clone());
        let (client, address, key) = (client.clone(), address.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            loop {
                let next = queue.lock().unwrap().next();
                let Some(batch) = next else { break };
                match send(&client, &address, &key, &batch).await {
                    Some(answer) => {
                        for (id, outcome) in outcomes(&answer) {
                            assert_eq!(outcome, "created", "first send of {id}");
                            acknowledged.lock().unwrap().insert(id);
                        }
                    }
                    None => failed += 1,
                }
            }
            failed
        }));
    }
    let quarter = BATCHES * PER_BATCH / 4;
    for _ in 0..600 {
        if acknowledged.lock().unwrap().len() >= quarter {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    first.kill_9();
    let mut failed = 0;
    for t in tasks {
        failed += t.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() >= quarter,
        "killed before a quarter was acknowledged"
    );
    assert!(
        failed > 0,
        "every batch was answered: the kill came too late"
    );
    assert!(acknowledged.len() < BATCHES * PER_BATCH);
    // What was acknowledged is stored (each once); what was not may or may
    // not be (a commit whose answer was lost).
    let stored = count(&store, "SELECT COUNT(*) FROM messages").await;
    assert!(
        stored >= acknowledged.len() as i64,
        "{stored} stored < {} acknowledged",
        acknowledged.len()
    );

    // Restarted, everything is sent again: acknowledged items are
    // duplicates, the rest are created now or were stored by the commit
    // whose answer the kill lost.
    let (second, address) = ServerProcess::start(db.url(), &[]).await;
    let mut created_now = 0;
    for batch in &batches {
        let answer = send(&client, &address, &key, batch).await.unwrap();
        for (id, outcome) in outcomes(&answer) {
            match outcome.as_str() {
                "duplicate" => {}
                "created" => {
                    assert!(
                        !acknowledged.contains(&id),
                        "{id} was acknowledged, then created again"
                    );
                    created_now += 1;
                }
                other => panic!("{id}: {other} on the resend: {answer}"),
            }
        }
    }
    second.kill_9();

    let total = (BATCHES * PER_BATCH) as i64;
    assert_eq!(
        stored + created_now,
        total,
        "every message stored exactly once"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM messages").await, total);
    assert_eq!(
        count(&store, "SELECT COUNT(DISTINCT id) FROM messages").await,
        total
    );
    let report = store.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert!(
        report.stuck_pending.is_empty(),
        "{:?}",
        report.stuck_pending
    );
    // The rollups count every message once: the users' all-time counters too.
    assert_eq!(
        count(
            &store,
            "SELECT CAST(COALESCE(SUM(total_messages), 0) AS BIGINT) FROM users"
        )
        .await,
        total
    );
    store.close().await.unwrap();
}
