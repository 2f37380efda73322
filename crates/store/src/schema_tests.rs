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
