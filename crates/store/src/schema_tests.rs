//! Checks of the schema itself, on whichever engine `TEST_DATABASE_URL` selects.

use crate::{StoreError, entity, testing::TestDatabase};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, IdenStatic, Iterable, Statement, Value};
use std::collections::BTreeSet;
use time::{OffsetDateTime, macros::date};
use uuid::Uuid;

async fn insert_user(store: &crate::Store, id: Uuid) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    store
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            store.backend(),
            "INSERT INTO users (id, created_at, updated_at) VALUES ($1, $2, $3)",
            [Value::from(id), Value::from(now), Value::from(now)],
        ))
        .await?;
    Ok(())
}

async fn insert_daily(
    store: &crate::Store,
    user: Uuid,
    workflow: Option<Uuid>,
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    store
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            store.backend(),
            "INSERT INTO daily_metrics (id, user_id, workflow_id, workflow_key, date, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                Value::from(Uuid::now_v7()),
                Value::from(user),
                Value::from(workflow),
                Value::from(workflow.unwrap_or(Uuid::nil())),
                Value::from(date!(2026 - 01 - 09)),
                Value::from(now),
                Value::from(now),
            ],
        ))
        .await?;
    Ok(())
}

#[tokio::test]
async fn one_daily_row_per_user_workflow_or_none_and_day() -> Result<(), StoreError> {
    let db = TestDatabase::create().await?;
    let store = db.migrated_store().await?;
    let user = Uuid::now_v7();
    insert_user(&store, user).await?;

    // The seed's UNIQUE(user_id, workflow_id, date) would accept this twice.
    insert_daily(&store, user, None).await?;
    assert!(
        insert_daily(&store, user, None).await.is_err(),
        "a second no-workflow row was accepted"
    );

    let workflow = Uuid::now_v7();
    insert_daily(&store, user, Some(workflow)).await?;
    assert!(insert_daily(&store, user, Some(workflow)).await.is_err());

    // workflow_key must agree with workflow_id.
    let now = OffsetDateTime::now_utc();
    let mismatched = store
        .conn()
        .execute_raw(Statement::from_sql_and_values(
            store.backend(),
            "INSERT INTO daily_metrics (id, user_id, workflow_id, workflow_key, date, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            [
                Value::from(Uuid::now_v7()),
                Value::from(user),
                Value::from(Some(Uuid::now_v7())),
                Value::from(Uuid::now_v7()),
                Value::from(date!(2026 - 01 - 10)),
                Value::from(now),
                Value::from(now),
            ],
        ))
        .await;
    assert!(
        mismatched.is_err(),
        "workflow_key differing from workflow_id was accepted"
    );
    store.close().await
}

#[tokio::test]
async fn every_migration_rolls_back_and_reapplies() -> Result<(), StoreError> {
    let db = TestDatabase::create().await?;
    let store = db.migrated_store().await?;
    assert!(store.migration_status().await?.iter().all(|m| m.applied));
    store.migrate_down(None).await?;
    assert!(store.migration_status().await?.iter().all(|m| !m.applied));
    store.migrate_up().await?;
    assert!(store.migration_status().await?.iter().all(|m| m.applied));
    // The schema is usable after the round trip.
    insert_user(&store, Uuid::now_v7()).await?;
    store.close().await
}

/// The columns of `E`'s table as the migrations made them, and as `E`
/// declares them; and every stored row reads back as `E`'s model.
async fn entity_matches_table<E: EntityTrait + Default>(
    store: &crate::Store,
) -> Result<(), StoreError> {
    let table = E::default().table_name().to_owned();
    let sql = match store.backend() {
        DbBackend::Postgres => {
            "SELECT CAST(column_name AS TEXT) AS name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
        _ => "SELECT name FROM pragma_table_info($1)",
    };
    let stored: BTreeSet<String> =
        crate::sql::query_all(store.conn(), sql, vec![table.clone().into()])
            .await?
            .iter()
            .map(|r| r.try_get::<String>("", "name"))
            .collect::<Result<_, _>>()?;
    let declared: BTreeSet<String> = E::Column::iter().map(|c| c.as_str().to_owned()).collect();
    assert_eq!(stored, declared, "the columns of `{table}`");
    E::find().all(store.conn()).await?;
    Ok(())
}

#[tokio::test]
async fn entities_declare_exactly_their_tables_columns() -> Result<(), StoreError> {
    let db = TestDatabase::create().await?;
    let store = db.migrated_store().await?;
    let user = Uuid::now_v7();
    insert_user(&store, user).await?;
    store
        .user_for_subject("subject-1", Some("a@example.com"))
        .await?;
    entity_matches_table::<entity::agent_components::Entity>(&store).await?;
    entity_matches_table::<entity::alerts::Entity>(&store).await?;
    entity_matches_table::<entity::api_keys::Entity>(&store).await?;
    entity_matches_table::<entity::conversations::Entity>(&store).await?;
    entity_matches_table::<entity::error_logs::Entity>(&store).await?;
    entity_matches_table::<entity::report_deliveries::Entity>(&store).await?;
    entity_matches_table::<entity::users::Entity>(&store).await?;
    entity_matches_table::<entity::workflows::Entity>(&store).await?;
    store.close().await
}

/// Migration 16 on a database the older schema filled: every row survives,
/// each in its month's partition (PostgreSQL), keys and foreign keys hold,
/// and the ledger learns each item's time.
#[tokio::test]
async fn the_partition_migration_converts_a_filled_database_in_place() -> Result<(), StoreError> {
    use migration::MigratorTrait;
    use sea_orm::TransactionTrait;
    let db = TestDatabase::create().await?;
    let store = crate::Store::connect(db.url()).await?;
    let before_16 = u32::try_from(migration::Migrator::migrations().len() - 1).unwrap_or(0);
    migration::Migrator::up(store.conn(), Some(before_16)).await?;

    let user = Uuid::now_v7();
    insert_user(&store, user).await?;
    let start = time::macros::datetime!(2025-10-15 12:00 UTC);
    let n = 420;
    let txn = store.conn().begin().await?;
    for i in 0..n {
        // Every ~1.1 days for fourteen months.
        let at = start + time::Duration::minutes(i64::from(i) * 1_600);
        let id = Uuid::now_v7();
        crate::sql::execute(
            &txn,
            "INSERT INTO messages (id, created_at, user_id, conversation_id, role, has_usage, \
             input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cache_write1h_tokens, \
             reasoning_tokens, pricing_status) VALUES ($1, $2, $3, $4, 'user', FALSE, 0, 0, 0, 0, 0, 0, 'unpriced')",
            vec![id.into(), at.into(), user.into(), Uuid::now_v7().into()],
        )
        .await?;
        crate::sql::execute(
            &txn,
            "INSERT INTO ingested_items (id, item_type, content_hash, received_at) VALUES ($1, 'message.create', 'h', $2)",
            vec![id.into(), at.into()],
        )
        .await?;
        if i % 10 == 0 {
            crate::sql::execute(
                &txn,
                "INSERT INTO error_logs (id, created_at, user_id, service, error_type, error_message, metadata) \
                 VALUES ($1, $2, $3, 'openai', 'Timeout', 'slow', '{}')",
                vec![Uuid::now_v7().into(), at.into(), user.into()],
            )
            .await?;
        }
    }
    txn.commit().await?;

    store.migrate_up().await?;
    assert_eq!(
        store
            .scalar_for_tests("SELECT COUNT(*) FROM messages")
            .await?,
        i64::from(n)
    );
    assert_eq!(
        store
            .scalar_for_tests("SELECT COUNT(*) FROM error_logs")
            .await?,
        42
    );
    assert_eq!(
        store
            .scalar_for_tests("SELECT COUNT(*) FROM ingested_items WHERE created_at IS NULL")
            .await?,
        0,
        "the ledger learned every item's time"
    );
    if store.backend() == DbBackend::Postgres {
        assert_eq!(
            store
                .scalar_for_tests(
                    "SELECT COUNT(*) FROM pg_class WHERE relkind = 'p' \
                     AND relname IN ('messages', 'user_activity_events', 'error_logs')"
                )
                .await?,
            3
        );
        assert_eq!(
            store
                .scalar_for_tests("SELECT COUNT(*) FROM messages_default")
                .await?,
            0
        );
        // Each month's rows are in its own partition.
        let parts = store.partitions().await?;
        let mut total = 0;
        for p in parts.iter().filter(|p| p.table == "messages") {
            let lo = p.month.with_time(time::Time::MIDNIGHT).assume_utc();
            let inside = store
                .scalar_for_tests(&format!(
                    "SELECT COUNT(*) FROM {} WHERE created_at >= '{lo}' AND created_at < '{lo}'::timestamptz + interval '1 month'",
                    p.name
                ))
                .await?;
            let all = store
                .scalar_for_tests(&format!("SELECT COUNT(*) FROM {}", p.name))
                .await?;
            assert_eq!(inside, all, "{}", p.name);
            total += all;
        }
        assert_eq!(total, i64::from(n));
        assert!(parts.iter().any(|p| p.name == "messages_p2025_10"));
        // The key still refuses a duplicate, the index names are kept.
        assert_eq!(
            store
                .scalar_for_tests(
                    "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'messages' AND indexname IN \
                     ('messages_pkey', 'ix_messages_user_created', 'ix_messages_conversation', 'ix_messages_created')"
                )
                .await?,
            4
        );
    }
    let dup = crate::sql::execute(
        store.conn(),
        "INSERT INTO messages SELECT * FROM messages WHERE created_at = $1",
        vec![start.into()],
    )
    .await;
    assert!(dup.is_err(), "a duplicate (id, created_at) was accepted");
    // The foreign key to users still cascades.
    crate::sql::execute(
        store.conn(),
        "DELETE FROM users WHERE id = $1",
        vec![user.into()],
    )
    .await?;
    assert_eq!(
        store
            .scalar_for_tests("SELECT COUNT(*) FROM messages")
            .await?,
        0
    );
    store.close().await
}
