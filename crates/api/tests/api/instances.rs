//! Several instances on one PostgreSQL database (issue 16): two server
//! processes take concurrent ingestion (with retries sent to the other one)
//! and reads while both run their background work (partition upkeep, rollup
//! folds, the alert outbox, the report scheduler). The rollups must verify
//! clean, and every alert and every report must go out exactly once.

use crate::alerts::{Receiver, SECRET, dime_messages, user_items};
use crate::helpers::{ServerProcess, post_batch as post, token};
use crate::reports::{SmtpSink, monday_of};
use charlie_store::{Store, maintenance::RollupRange, testing::TestDatabase};
use serde_json::json;
use std::time::Duration;
use time::{Date, OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

const USERS: usize = 6;
/// $0.10 messages per user: $1.20 against a $1 budget crosses 80% and 100%.
const MESSAGES_PER_USER: usize = 12;

#[tokio::test]
async fn two_instances_count_once_and_send_each_alert_and_report_once() {
    if !std::env::var("TEST_DATABASE_URL").is_ok_and(|u| u.starts_with("postgres")) {
        eprintln!(
            "skipped: several instances share a PostgreSQL database (TEST_DATABASE_URL is not PostgreSQL)"
        );
        return;
    }
    let db = TestDatabase::create().await.unwrap();
    let store: Store = db.migrated_store().await.unwrap();
    let key = store.create_api_key("instances").await.unwrap().key;
    let client = reqwest::Client::new();
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let last_week = (monday_of(today) - time::Duration::days(5))
        .with_hms(12, 0, 0)
        .unwrap()
        .assume_utc();
    // A moment inside this month, after last week's activity when possible.
    let month_start = today.replace_day(1).unwrap().midnight().assume_utc();
    let this_month = (now - time::Duration::minutes(5)).max(month_start);

    // Seeded through a first instance: users with a $1 budget, each with
    // one message last week (so each gets one weekly report).
    let users: Vec<(Uuid, Uuid)> = (0..USERS)
        .map(|_| (Uuid::now_v7(), Uuid::now_v7()))
        .collect();
    {
        let (seeder, address) = ServerProcess::start(db.url(), &[]).await;
        for (i, (u, c)) in users.iter().enumerate() {
            let mut items = user_items(*u, *c, &format!("inst_{i}"), Some("1.00"), last_week);
            items.push(json!({"id": Uuid::now_v7(), "type": "message.create",
                "timestamp": last_week.format(&Rfc3339).unwrap(),
                "body": {"conversation_id": c, "role": "assistant", "model": "gpt-4o",
                         "usage": {"input_tokens": 1000, "output_tokens": 10}}}));
            post(&client, &address, &key, &items).await;
        }
        seeder.kill_9();
    }

    let receiver = Receiver::start(0).await;
    let sink = SmtpSink::start();
    let env = vec![
        ("ALERT_WEBHOOK_URL", receiver.url.clone()),
        ("ALERT_WEBHOOK_SECRET", SECRET.to_owned()),
        ("ALERT_WEBHOOK_RETRY_BASE_MS", "200".to_owned()),
        ("OUTBOX_POLL_INTERVAL_MS", "100".to_owned()),
        ("SMTP_URL", sink.url.clone()),
        (
            "REPORT_FROM",
            "Charlie Stats <stats@example.com>".to_owned(),
        ),
        ("REPORT_TIMEZONE", "UTC".to_owned()),
        ("REPORTS_ENABLED", "true".to_owned()),
        ("REPORT_WEEKDAY", today.weekday().to_string()),
        ("REPORT_HOUR", "0".to_owned()),
        ("REPORT_CHECK_INTERVAL_SECONDS", "1".to_owned()),
    ];
    let (_a, a) = ServerProcess::start(db.url(), &env).await;
    let (_b, b) = ServerProcess::start(db.url(), &env).await;
    let instances = [a.clone(), b.clone()];

    // Concurrent ingestion: each user's messages in batches of 3, each batch
    // sent to one instance and re-sent to the other (a retry after a
    // timeout, say); reads on both all along.
    let mut tasks = Vec::new();
    for (i, (_, conversation)) in users.iter().enumerate() {
        let (client, key, instances) = (client.clone(), key.clone(), instances.clone());
        let conversation = *conversation;
        tasks.push(tokio::spawn(async move {
            let messages = dime_messages(conversation, MESSAGES_PER_USER, this_month);
            for (n, batch) in messages.chunks(3).enumerate() {
                let first = &instances[(i + n) % 2];
                let second = &instances[(i + n + 1) % 2];
                let body = post(&client, first, &key, batch).await;
                assert_eq!(body["created"], 3, "{body:#}");
                let again = post(&client, second, &key, batch).await;
                assert_eq!(again["duplicates"], 3, "{again:#}");
            }
        }));
    }
    let reader = {
        let (client, instances) = (client.clone(), instances.clone());
        tokio::spawn(async move {
            let admin = token("root", true);
            for n in 0..20 {
                let r = client
                    .get(format!(
                        "{}/api/v1/analytics/admin/overview?days=30",
                        instances[n % 2]
                    ))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    reader.await.unwrap();

    // Each user crossed 80% and 100% once: 12 alerts, each delivered once.
    receiver
        .wait_for("every alert", |d| {
            d.iter().filter(|d| d.status == 200).count() >= USERS * 2
        })
        .await;
    sink.wait_for(USERS).await;
    // Both schedulers and outbox workers keep running: nothing more goes out.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let delivered = receiver.delivered_ids();
    assert_eq!(delivered.len(), USERS * 2, "{delivered:?}");
    assert!(delivered.values().all(|n| *n == 1), "{delivered:?}");
    let mails = sink.mails();
    let mut to: Vec<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    to.dedup();
    assert_eq!((mails.len(), to.len()), (USERS, USERS), "{mails:#?}");

    // Every message counted once; the partitions ahead exist.
    let report = store.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert_eq!(
        store
            .scalar_for_tests("SELECT COUNT(*) FROM messages")
            .await
            .unwrap(),
        (USERS * (MESSAGES_PER_USER + 1)) as i64
    );
    let months: std::collections::BTreeSet<Date> = store
        .partitions()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.month)
        .collect();
    assert!(months.len() >= 3, "{months:?}");
}
