//! The two-stage write path (issue #15): a batch is acknowledged once its
//! raw rows are committed; its rollups are folded by a fold cycle, exactly
//! once, by whichever instance gets there first (`ingest/fold.rs` in the
//! store). On SQLite the fold runs in the ingest transaction: the same
//! assertions hold with nothing queued.

use crate::alerts::{dime_messages, user_items};
use crate::helpers::{assert_rollups_clean, json, spawn_app_with, token};
use charlie_domain::ingest::Item;
use charlie_pricing::Catalog;
use charlie_store::{
    Engine, Store,
    budgets::month_key,
    ingest::{
        Outcome,
        fold::{FOLD_SHARDS, WIDE_FOLD_ROWS},
    },
    maintenance::RollupRange,
    reservations::{CommitRequest, ReserveOutcome, ReservePolicy, ReserveRequest},
    testing::TestDatabase,
};
use serde_json::Value;
use std::time::Duration;
use time::OffsetDateTime;
use uuid::Uuid;

/// $0.10 in nano-dollars: one of `dime_messages`.
const DIME: i64 = 100_000_000;

fn items(raw: &[Value], now: OffsetDateTime) -> Vec<Item> {
    let catalog = Catalog::builtin();
    raw.iter()
        .map(|v| charlie_wire::parse_item(v, now, &catalog).expect("a valid item"))
        .collect()
}

async fn queued(store: &Store) -> i64 {
    store
        .scalar_for_tests("SELECT COUNT(*) FROM rollup_queue")
        .await
        .unwrap()
}

/// A store that answers without waiting for the fold (and runs no
/// background cycle: nothing folds unless the test asks).
async fn unwaiting_store(db: &TestDatabase) -> Store {
    db.migrated_store()
        .await
        .unwrap()
        .with_fold_wait(Duration::ZERO)
}

#[tokio::test]
async fn a_batch_acknowledged_before_it_is_folded_is_counted_once_by_the_next_cycle() {
    let db = TestDatabase::create().await.unwrap();
    let store = unwaiting_store(&db).await;
    let now = OffsetDateTime::now_utc();
    let at = now - time::Duration::minutes(5);
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let mut raw = user_items(u, c, "fold_user", None, at);
    raw.extend(dime_messages(c, 3, at));
    let batch = items(&raw, now);
    let month = month_key(at.date());

    let before = OffsetDateTime::now_utc();
    let applied = store.ingest(&batch, now).await.unwrap();
    assert!(applied.iter().all(|a| a.outcome == Outcome::Created));
    match store.engine() {
        Engine::Postgres => {
            // Acknowledged: the raw rows are there, the shared rows wait,
            // one queue row per fold shard the batch changes.
            let rows = queued(&store).await;
            assert!(
                (1..=FOLD_SHARDS as i64).contains(&rows),
                "{rows} queue rows for one batch"
            );
            assert_eq!(
                store
                    .scalar_for_tests("SELECT COUNT(*) FROM messages")
                    .await
                    .unwrap(),
                3
            );
            assert_eq!(
                store.month_totals(u, &month).await.unwrap().message_count,
                0
            );
            let lag = store.rollup_lag().await.unwrap();
            assert_eq!(lag.rows, rows);
            assert!(lag.seconds >= 0.0);
            assert!(store.rollups_as_of().is_none_or(|t| t < before));
            assert_eq!(store.fold_pending().await.unwrap() as i64, rows);
        }
        Engine::Sqlite => assert_eq!(queued(&store).await, 0),
    }
    let totals = store.month_totals(u, &month).await.unwrap();
    assert_eq!(totals.message_count, 3);
    assert_eq!(totals.cost_nano_usd, 3 * DIME);
    assert!(store.rollups_as_of().is_some_and(|t| t >= before));
    assert_eq!(store.rollup_lag().await.unwrap().rows, 0);

    // Folding again, and sending the batch again, change nothing.
    assert_eq!(store.fold_pending().await.unwrap(), 0);
    let again = store.ingest(&batch, now).await.unwrap();
    assert!(again.iter().all(|a| a.outcome != Outcome::Created));
    store.fold_pending().await.unwrap();
    assert_eq!(store.month_totals(u, &month).await.unwrap(), totals);
    assert_eq!(
        store
            .scalar_for_tests("SELECT total_messages FROM users WHERE external_id = 'fold_user'")
            .await
            .unwrap(),
        3
    );
    let report = store.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

#[tokio::test]
async fn two_instances_folding_at_once_count_every_batch_once() {
    let db = TestDatabase::create().await.unwrap();
    let a = unwaiting_store(&db).await;
    let b = Store::connect(db.url())
        .await
        .unwrap()
        .with_fold_wait(Duration::ZERO);
    let now = OffsetDateTime::now_utc();
    let at = now - time::Duration::minutes(5);
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    a.ingest(
        &items(&user_items(u, c, "two_instances", None, at), now),
        now,
    )
    .await
    .unwrap();

    // Eight writers, each sending five batches of two messages through one
    // instance and folding through the other, while both also fold in a loop.
    let writers = (0..8).map(|w| {
        let (mine, other) = if w % 2 == 0 {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        tokio::spawn(async move {
            for _ in 0..5 {
                let batch = items(&dime_messages(c, 2, at), now);
                let applied = mine.ingest(&batch, now).await.unwrap();
                assert!(applied.iter().all(|x| x.outcome == Outcome::Created));
                other.fold_pending().await.unwrap();
            }
        })
    });
    let folders = [a.clone(), b.clone()].map(|s| {
        tokio::spawn(async move {
            for _ in 0..20 {
                s.fold_pending().await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    });
    for w in writers {
        w.await.unwrap();
    }
    for f in folders {
        f.await.unwrap();
    }
    a.fold_pending().await.unwrap();
    b.fold_pending().await.unwrap();

    assert_eq!(queued(&a).await, 0);
    let totals = a.month_totals(u, &month_key(at.date())).await.unwrap();
    assert_eq!(totals.message_count, 80);
    assert_eq!(totals.cost_nano_usd, 80 * DIME);
    let report = b.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

#[tokio::test]
async fn a_batch_is_queued_in_its_users_shards_and_each_shard_folds_exactly() {
    let db = TestDatabase::create().await.unwrap();
    let store = unwaiting_store(&db).await;
    let now = OffsetDateTime::now_utc();
    let at = now - time::Duration::minutes(5);
    let users = users_in_every_shard(&store, 12, at, now).await;

    let mut raw = Vec::new();
    for (n, (_, c)) in users.iter().enumerate() {
        raw.extend(dime_messages(*c, n % 3 + 1, at));
    }
    let applied = store.ingest(&items(&raw, now), now).await.unwrap();
    assert!(applied.iter().all(|a| a.outcome == Outcome::Created));
    if store.engine() == Engine::Postgres {
        // One row per shard, each message in the row of its user's shard,
        // once (the shard recomputed here from the id's last hex digit).
        assert_eq!(
            queued(&store).await,
            FOLD_SHARDS as i64,
            "the users fall in every shard"
        );
        let placed = store
            .scalar_for_tests(&format!(
                "SELECT COUNT(*) FROM rollup_queue q, unnest(q.message_ids) AS i(id) \
                 JOIN messages m ON m.id = i.id \
                 WHERE q.shard = ('x0' || right(m.user_id::text, 1))::bit(8)::int % {FOLD_SHARDS}"
            ))
            .await
            .unwrap();
        assert_eq!(placed, raw.len() as i64);
        assert_eq!(
            store
                .scalar_for_tests("SELECT COUNT(*) FROM rollup_queue q, unnest(q.message_ids)")
                .await
                .unwrap(),
            raw.len() as i64
        );
        assert_eq!(
            store.fold_pending().await.unwrap(),
            FOLD_SHARDS,
            "every shard folded its row"
        );
        assert_eq!(queued(&store).await, 0);
    }
    // Every user's month counts what they sent (`n % 3 + 1`, plus `more`
    // each), and the rollups agree with a recount.
    let counted = |more: usize| {
        let (store, users) = (store.clone(), users.clone());
        async move {
            for (n, (u, _)) in users.iter().enumerate() {
                let totals = store.month_totals(*u, &month_key(at.date())).await.unwrap();
                let sent = (n % 3 + 1 + more) as i64;
                assert_eq!(totals.message_count, sent);
                assert_eq!(totals.cost_nano_usd, sent * DIME);
            }
            let report = store.verify_rollups(RollupRange::default()).await.unwrap();
            assert!(report.differences.is_empty(), "{:#?}", report.differences);
        }
    };
    counted(0).await;

    // A backlog (more rows than one fold takes from the whole queue) is
    // folded shard by shard, in parallel, and still exactly.
    let backlog = 20;
    for _ in 0..backlog {
        let raw: Vec<Value> = users
            .iter()
            .flat_map(|(_, c)| dime_messages(*c, 1, at))
            .collect();
        store.ingest(&items(&raw, now), now).await.unwrap();
    }
    if store.engine() == Engine::Postgres {
        assert_eq!(queued(&store).await, (backlog * FOLD_SHARDS) as i64);
        assert_eq!(store.fold_pending().await.unwrap(), backlog * FOLD_SHARDS);
        assert_eq!(queued(&store).await, 0);
    }
    counted(backlog).await;
}

/// Users whose ids fall in every shard (a shard is the id's low bits), each
/// with a conversation, signed up and folded.
async fn users_in_every_shard(
    store: &Store,
    n: u128,
    at: OffsetDateTime,
    now: OffsetDateTime,
) -> Vec<(Uuid, Uuid)> {
    let users: Vec<(Uuid, Uuid)> = (0..n)
        .map(|k| {
            let id = Uuid::from_u128((Uuid::now_v7().as_u128() & !0xff) | k);
            (id, Uuid::now_v7())
        })
        .collect();
    let mut setup = Vec::new();
    for (k, (u, c)) in users.iter().enumerate() {
        setup.extend(user_items(*u, *c, &format!("shard_user_{k}"), None, at));
    }
    store.ingest(&items(&setup, now), now).await.unwrap();
    store.fold_pending().await.unwrap();
    users
}

#[tokio::test]
async fn after_a_wide_fold_the_next_cycle_folds_shard_by_shard_and_stays_exact() {
    let db = TestDatabase::create().await.unwrap();
    let store = unwaiting_store(&db).await;
    let now = OffsetDateTime::now_utc();
    let at = now - time::Duration::minutes(5);
    let users = users_in_every_shard(&store, 8, at, now).await;
    let postgres = store.engine() == Engine::Postgres;
    let one_each = |store: Store| {
        let users = users.clone();
        async move {
            let raw: Vec<Value> = users
                .iter()
                .flat_map(|(_, c)| dime_messages(*c, 1, at))
                .collect();
            store.ingest(&items(&raw, now), now).await.unwrap();
            store.fold_pending().await.unwrap();
            store.fold_counts()
        }
    };
    let (whole, shards) = one_each(store.clone()).await;
    if postgres {
        assert_eq!((whole, shards), (2, 0), "short queues are folded whole");
    }

    // Wide traffic: each user's messages a quarter-hour apart, so no two
    // share a bucket row, and the queue holds more keyed rows than
    // WIDE_FOLD_ROWS (in fewer queue rows than one whole fold takes).
    let quarter_hours: Vec<i64> = (0..=(WIDE_FOLD_ROWS / users.len()) as i64).collect();
    let mut sent = 1;
    for chunk in quarter_hours.chunks(250) {
        let raw: Vec<Value> = users
            .iter()
            .flat_map(|(_, c)| {
                chunk
                    .iter()
                    .flat_map(move |k| dime_messages(*c, 1, at - time::Duration::minutes(15 * k)))
            })
            .collect();
        store.ingest(&items(&raw, now), now).await.unwrap();
    }
    sent += quarter_hours.len();
    store.fold_pending().await.unwrap();
    if postgres {
        assert_eq!(
            store.fold_counts(),
            (whole + 1, 0),
            "folded whole, in one transaction"
        );
    }
    // The next cycle folds by shard (one transaction each), and as it wrote
    // few rows, the one after folds whole again.
    assert_eq!(
        one_each(store.clone()).await,
        if postgres {
            (whole + 1, FOLD_SHARDS as u64)
        } else {
            (0, 0)
        }
    );
    assert_eq!(
        one_each(store.clone()).await,
        if postgres {
            (whole + 2, FOLD_SHARDS as u64)
        } else {
            (0, 0)
        }
    );
    sent += 2;
    assert_eq!(queued(&store).await, 0);

    let counted = store
        .scalar_for_tests("SELECT CAST(SUM(message_count) AS BIGINT) FROM user_buckets")
        .await
        .unwrap();
    assert_eq!(counted, (sent * users.len()) as i64);
    let report = store.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

#[tokio::test]
async fn a_committed_reservation_holds_until_its_message_is_in_the_rollups() {
    let db = TestDatabase::create().await.unwrap();
    let store = unwaiting_store(&db).await;
    let now = OffsetDateTime::now_utc();
    let at = now - time::Duration::minutes(1);
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    store
        .ingest(&items(&user_items(u, c, "held_user", None, at), now), now)
        .await
        .unwrap();
    let policy = ReservePolicy {
        default_hard_limit_nano_usd: Some(10 * DIME),
        commit_hold_seconds: 600,
    };
    let reserved = store
        .reserve_budget(
            &ReserveRequest {
                user_id: u,
                workflow_id: None,
                amount_nano_usd: 2 * DIME,
                model: Some("gpt-4o".into()),
                idempotency_key: "call-1".into(),
                ttl_seconds: 600,
            },
            &policy,
            now,
        )
        .await
        .unwrap();
    let ReserveOutcome::Allowed { reservation, .. } = reserved else {
        panic!("the reservation is under the limit: {reserved:?}");
    };
    let message = dime_messages(c, 1, at);
    let message_id: Uuid = message[0]["id"].as_str().unwrap().parse().unwrap();
    store
        .commit_reservation(
            &CommitRequest {
                reservation_id: reservation.id,
                actual_nano_usd: Some(DIME),
                message_id: Some(message_id),
            },
            &policy,
            now,
        )
        .await
        .unwrap();
    let held = |s: Store| async move { s.held_reservations(u, now).await.unwrap().len() };
    assert_eq!(held(store.clone()).await, 1);

    // The message is acknowledged; until its cost is in the month's usage,
    // the reservation still holds it (never neither).
    store.ingest(&items(&message, now), now).await.unwrap();
    let month = month_key(at.date());
    if store.engine() == Engine::Postgres {
        assert_eq!(
            store.month_totals(u, &month).await.unwrap().cost_nano_usd,
            0
        );
        assert_eq!(held(store.clone()).await, 1);
        store.fold_pending().await.unwrap();
    }
    assert_eq!(
        store.month_totals(u, &month).await.unwrap().cost_nano_usd,
        DIME
    );
    assert_eq!(held(store.clone()).await, 0);
}

#[tokio::test]
async fn analytics_answers_say_up_to_when_they_count_and_metrics_show_the_lag() {
    let app = spawn_app_with(Default::default()).await;
    let key = app.api_key().await;
    let at = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let mut raw = user_items(u, c, "as_of_user", None, at);
    raw.extend(dime_messages(c, 2, at));
    let before = OffsetDateTime::now_utc();
    let resp = app.ingest_with(&key, &raw).await;
    assert_eq!(resp.status(), 207);

    // The default wait folds before answering: a read right after the 207
    // counts the batch, and says so.
    let resp = app
        .client
        .get(app.url("/api/v1/analytics/my-usage"))
        .bearer_auth(token("as_of_user", false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let as_of = resp
        .headers()
        .get("rollups-as-of")
        .expect("a Rollups-As-Of header")
        .to_str()
        .unwrap()
        .to_owned();
    let as_of =
        OffsetDateTime::parse(&as_of, &time::format_description::well_known::Rfc3339).unwrap();
    assert!(as_of >= before, "{as_of} < {before}");
    let usage = json(resp).await;
    assert_eq!(usage["cost_usd"].to_string(), "0.2");
    // Only analytics reads carry it.
    assert!(
        app.get("/health")
            .await
            .headers()
            .get("rollups-as-of")
            .is_none()
    );

    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("charlie_rollup_lag_seconds 0.000"),
        "{metrics}"
    );
    assert!(metrics.contains("charlie_rollup_queue_rows 0"), "{metrics}");
    assert_rollups_clean(&app).await;
}

#[tokio::test]
async fn the_background_fold_survives_the_database_dropping_its_connections() {
    let mut vars = crate::helpers::Vars::new();
    // Requests answer at once: only the background cycle folds.
    vars.insert("ROLLUP_WAIT_MS", "0".into());
    let app = spawn_app_with(vars).await;
    if app.store.engine() != Engine::Postgres {
        // SQLite folds inside the ingest transaction: there is no
        // background cycle and no connection to lose.
        return;
    }
    let key = app.api_key().await;
    let at = OffsetDateTime::now_utc() - time::Duration::minutes(5);
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    let resp = app
        .ingest_with(&key, &user_items(u, c, "restart_user", None, at))
        .await;
    assert_eq!(resp.status(), 207);

    // What a database restart does to the server: every connection of
    // this database is cut, the background cycle's included.
    let admin = Store::connect(&std::env::var("TEST_DATABASE_URL").unwrap())
        .await
        .unwrap();
    let cut = format!(
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db_name(&app)
    );
    assert!(admin.scalar_for_tests(&cut).await.unwrap() >= 1);

    // Ingestion comes back (a request on a cut connection may be refused
    // with 503 and is sent again, as a client would).
    let batch = dime_messages(c, 2, at);
    let mut status = 0;
    for _ in 0..20 {
        status = app.ingest_with(&key, &batch).await.status().as_u16();
        if status == 207 {
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status, 207);
    // And the background cycle folds it, without a request waiting.
    let t = token("restart_user", false);
    let mut usage = Value::Null;
    for _ in 0..100 {
        usage = app.get_as("/api/v1/analytics/my-usage", &t).await.1;
        if usage["cost_usd"] == serde_json::json!(0.2) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(usage["cost_usd"].to_string(), "0.2", "{usage:#}");
    assert_rollups_clean(&app).await;
}

/// The test database's name (the last path segment of its URL).
fn db_name(app: &crate::helpers::TestApp) -> String {
    let url = app._db.url();
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

/// A batch with a user's first message never waits for a fold that holds
/// the user's lock. The funnel stamp on `users` (`first_message_at`) and the
/// cohort it moves are written by the fold, which takes the user's lock
/// anyway; the ingest transaction takes none for them. (It used to lock the
/// user to stamp, so every first message waited out any fold of that user,
/// and a fold waited out every such batch until its commit.)
#[tokio::test]
async fn a_first_message_never_waits_for_a_fold_holding_its_user() {
    let db = TestDatabase::create().await.unwrap();
    let store = unwaiting_store(&db).await;
    if store.engine() != Engine::Postgres {
        eprintln!(
            "skipped: SQLite stamps in the ingest transaction and has no user locks \
             (TEST_DATABASE_URL is not PostgreSQL)"
        );
        return;
    }
    let now = OffsetDateTime::now_utc();
    let at = now - time::Duration::minutes(5);
    let (u, c) = (Uuid::now_v7(), Uuid::now_v7());
    store
        .ingest(&items(&user_items(u, c, "stamp_user", None, at), now), now)
        .await
        .unwrap();
    store.fold_pending().await.unwrap();
    let stamped = || async {
        store
            .scalar_for_tests(&format!(
                "SELECT COUNT(*) FROM users WHERE id = '{u}' AND first_message_at IS NOT NULL"
            ))
            .await
            .unwrap()
    };
    assert_eq!(stamped().await, 0);

    let held = charlie_store::testing::hold_user_locks(&store, &[u])
        .await
        .unwrap();
    let first = serde_json::json!({"id": Uuid::now_v7(), "type": "message.create",
        "timestamp": (at + time::Duration::seconds(1)).format(&time::format_description::well_known::Rfc3339).unwrap(),
        "body": {"conversation_id": c, "role": "user"}});
    let applied = tokio::time::timeout(
        Duration::from_secs(20),
        store.ingest(&items(&[first], now), now),
    )
    .await
    .expect("the batch waited for the user's lock")
    .unwrap();
    assert_eq!(applied[0].outcome, Outcome::Created);
    // The milestone is recorded; the stamp waits in the queue with the
    // counters, for the fold.
    assert_eq!(
        store
            .scalar_for_tests(
                "SELECT COUNT(*) FROM funnel_milestones WHERE event_type = 'message_sent'"
            )
            .await
            .unwrap(),
        1
    );
    assert_eq!(stamped().await, 0);
    held.rollback().await.unwrap();
    store.fold_pending().await.unwrap();
    assert_eq!(stamped().await, 1);
    let report = store.verify_rollups(RollupRange::default()).await.unwrap();
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}
