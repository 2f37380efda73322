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
    let before_16 = migration::Migrator::migrations()
        .iter()
        .position(|m| m.name() == "m20261204_000016_partitions")
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| StoreError::Invalid("no migration 16".into()))?;
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
        // The key still refuses a duplicate, the index names are kept
        // (migration 21 then dropped the two that nothing reads).
        assert_eq!(
            store
                .scalar_for_tests(
                    "SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'messages' AND indexname IN \
                     ('messages_pkey', 'ix_messages_created')"
                )
                .await?,
            2
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

#[derive(Debug, sea_orm::FromQueryResult)]
struct UniqueKey {
    table_name: String,
    index_name: String,
    columns: Vec<String>,
}

#[derive(Debug, sea_orm::FromQueryResult)]
struct ForeignKey {
    table_name: String,
    name: String,
    referenced: String,
    columns: Vec<String>,
    referenced_columns: Vec<String>,
}

/// Citus-readiness, checked on plain PostgreSQL (and on Citus): every table
/// has a place in `migration::citus::TABLES`; every primary key and unique
/// index of a distributed table holds its distribution column, which is NOT
/// NULL; and every foreign key is one Citus keeps (see `migration::citus`).
/// On a Citus database it also checks that the catalog matches the list and
/// that each distributed table's shards are spread over every worker.
#[tokio::test]
async fn the_schema_keeps_citus_rules() -> Result<(), StoreError> {
    use migration::citus::{Placement, TABLES, distribution_column, placement};
    let db = TestDatabase::create().await?;
    let store = db.migrated_store().await?;
    if store.backend() != DbBackend::Postgres {
        eprintln!(
            "skipped: the Citus rules are checked on PostgreSQL's catalog (TEST_DATABASE_URL is not PostgreSQL)"
        );
        return store.close().await;
    }
    let tables: BTreeSet<String> = crate::sql::query_all(
        store.conn(),
        "SELECT CAST(c.relname AS TEXT) AS name FROM pg_class c \
         WHERE c.relnamespace = CAST(current_schema() AS regnamespace) AND c.relkind IN ('r', 'p') \
           AND NOT c.relispartition",
        vec![],
    )
    .await?
    .iter()
    .map(|r| r.try_get::<String>("", "name"))
    .collect::<Result<_, _>>()?;
    let listed: BTreeSet<String> = TABLES.iter().map(|(t, _)| (*t).to_owned()).collect();
    assert_eq!(
        tables, listed,
        "every table, and only those, has a place in migration::citus::TABLES"
    );

    let keys: Vec<UniqueKey> = crate::sql::fetch_all(
        store.conn(),
        "SELECT CAST(c.relname AS TEXT) AS table_name, CAST(i.relname AS TEXT) AS index_name, \
           ARRAY(SELECT CAST(a.attname AS TEXT) FROM unnest(x.indkey) k \
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k) AS columns \
         FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid \
         WHERE x.indisunique AND c.relnamespace = CAST(current_schema() AS regnamespace) \
           AND NOT c.relispartition",
        vec![],
    )
    .await?;
    let mut checked = 0;
    for k in &keys {
        let Some(column) = placement(&k.table_name).and_then(distribution_column) else {
            continue;
        };
        assert!(
            k.columns.iter().any(|c| c == column),
            "unique index {} of distributed table {} must hold its distribution column {column} (has {:?})",
            k.index_name,
            k.table_name,
            k.columns
        );
        checked += 1;
    }
    let distributed = TABLES
        .iter()
        .filter(|(_, p)| distribution_column(*p).is_some())
        .count();
    assert!(
        checked > distributed,
        "only {checked} unique keys of {distributed} distributed tables were found"
    );
    for (table, p) in TABLES {
        if p == Placement::ByUser {
            let not_null = store
                .scalar_for_tests(&format!(
                    "SELECT COUNT(*) FROM pg_attribute WHERE attrelid = CAST('{table}' AS regclass) \
                     AND attname = 'user_id' AND attnotnull"
                ))
                .await?;
            assert_eq!(
                not_null, 1,
                "{table}.user_id must be NOT NULL to distribute by it"
            );
        }
    }

    let fks: Vec<ForeignKey> = crate::sql::fetch_all(
        store.conn(),
        "SELECT CAST(c.relname AS TEXT) AS table_name, CAST(k.conname AS TEXT) AS name, \
           CAST(r.relname AS TEXT) AS referenced, \
           ARRAY(SELECT CAST(a.attname AS TEXT) FROM unnest(k.conkey) n \
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = n) AS columns, \
           ARRAY(SELECT CAST(a.attname AS TEXT) FROM unnest(k.confkey) n \
                 JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = n) AS referenced_columns \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid \
         WHERE k.contype = 'f' AND c.relnamespace = CAST(current_schema() AS regnamespace) \
           AND NOT c.relispartition",
        vec![],
    )
    .await?;
    assert!(!fks.is_empty(), "the schema has foreign keys to check");
    for fk in &fks {
        let from = placement(&fk.table_name);
        let to = placement(&fk.referenced);
        let allowed = match (from, to) {
            // A copy on every node can be referenced from anywhere that is
            // on every node too, or distributed.
            (
                Some(
                    Placement::User
                    | Placement::ByUser
                    | Placement::ByOwnKey(_)
                    | Placement::Reference,
                ),
                Some(Placement::Reference),
            ) => true,
            // Between co-located tables only on the distribution column.
            (Some(Placement::ByUser), Some(Placement::User)) => {
                fk.columns.first().map(String::as_str) == Some("user_id")
                    && fk.referenced_columns.first().map(String::as_str) == Some("id")
            }
            (Some(Placement::ByUser), Some(Placement::ByUser)) => {
                fk.columns.first().map(String::as_str) == Some("user_id")
                    && fk.referenced_columns.first().map(String::as_str) == Some("user_id")
            }
            // A Citus local table may reference a reference table (and
            // another local one).
            (Some(Placement::Coordinator), Some(Placement::Coordinator | Placement::Reference)) => {
                true
            }
            _ => false,
        };
        assert!(
            allowed,
            "foreign key {} from {} ({from:?}) to {} ({to:?}) is not one Citus keeps",
            fk.name, fk.table_name, fk.referenced
        );
    }

    if migration::citus::is_citus(store.conn()).await? {
        for (table, p) in TABLES {
            let kind = migration::citus::current(store.conn(), table).await?;
            let expected = Some(migration::citus::kind(p));
            assert_eq!(kind.as_deref(), expected, "the Citus placement of {table}");
            if p == Placement::ByUser {
                let apart = store
                    .scalar_for_tests(&format!(
                        "SELECT COUNT(*) FROM pg_dist_partition a, pg_dist_partition b \
                         WHERE a.logicalrelid = CAST('{table}' AS regclass) \
                         AND b.logicalrelid = CAST('users' AS regclass) AND a.colocationid <> b.colocationid"
                    ))
                    .await?;
                assert_eq!(apart, 0, "{table} is co-located with users");
            }
            if expected == Some("distributed") {
                let nodes = store
                    .scalar_for_tests(&format!(
                        "SELECT COUNT(DISTINCT nodeport) FROM citus_shards WHERE table_name = CAST('{table}' AS regclass)"
                    ))
                    .await?;
                let workers = store
                    .scalar_for_tests(
                        "SELECT COUNT(*) FROM pg_dist_node WHERE groupid <> 0 AND isactive",
                    )
                    .await?;
                assert_eq!(nodes, workers, "the shards of {table} are on every worker");
            }
        }
    }
    store.close().await
}

/// The lookups that do not know the user, and the columns they look up by:
/// each needs an index that starts with exactly those columns, or it scans
/// the whole table (migration 17 moved `user_id` to the front of these
/// tables' primary keys; migration 19 added what these need).
const LOOKUPS_WITHOUT_THE_USER: [(&str, &[&str], &str); 3] = [
    (
        "conversations",
        &["id"],
        "ingestion resolving a message's conversation (`conversations_of`)",
    ),
    (
        "funnel_milestones",
        &["event_type", "entity_id"],
        "ingestion asking which milestones are recorded (`recorded_milestones`)",
    ),
    (
        "budget_reservations",
        &["id"],
        "committing or releasing a reservation by id",
    ),
];

/// `messages` carries the indexes something reads and no other (migration
/// 21): every index is written by each message ingested. PostgreSQL finds a
/// user's rows through the primary key, which starts with `user_id`;
/// SQLite's key starts with `id`, so it keeps `(user_id, created_at)` for
/// the cascade when a user is deleted. Time ranges (repricing, rebuilds,
/// retention) read `ix_messages_created` on both.
#[tokio::test]
async fn messages_carry_only_the_indexes_something_reads() -> Result<(), StoreError> {
    let db = TestDatabase::create().await?;
    let store = db.migrated_store().await?;
    let (sql, expected) = if store.backend() == DbBackend::Postgres {
        (
            "SELECT CAST(indexname AS TEXT) AS name FROM pg_indexes \
             WHERE schemaname = current_schema() AND tablename = 'messages' ORDER BY 1",
            vec!["ix_messages_created", "messages_pkey"],
        )
    } else {
        (
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages' \
             AND name NOT LIKE 'sqlite_autoindex%' ORDER BY 1",
            vec!["ix_messages_created", "ix_messages_user_created"],
        )
    };
    let names: Vec<String> = crate::sql::query_all(store.conn(), sql, vec![])
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "name"))
        .collect::<Result<_, _>>()?;
    assert_eq!(names, expected);
    if store.backend() == DbBackend::Postgres {
        let key_leads_with: String = crate::sql::query_all(
            store.conn(),
            "SELECT CAST(a.attname AS TEXT) AS col FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
             WHERE i.indrelid = CAST('messages' AS regclass) AND i.indisprimary",
            vec![],
        )
        .await?
        .first()
        .map(|r| r.try_get::<String>("", "col"))
        .transpose()?
        .unwrap_or_default();
        assert_eq!(
            key_leads_with, "user_id",
            "a user's messages are found by the key"
        );
    }
    store.close().await
}

/// Every lookup in [`LOOKUPS_WITHOUT_THE_USER`] has an index on PostgreSQL
/// (on SQLite those tables kept their `id`-first keys).
#[tokio::test]
async fn lookups_without_the_user_have_an_index() -> Result<(), StoreError> {
    let db = TestDatabase::create().await?;
    let store = db.migrated_store().await?;
    if store.backend() != DbBackend::Postgres {
        eprintln!(
            "skipped: on SQLite these tables keep their id-first primary keys (TEST_DATABASE_URL is not PostgreSQL)"
        );
        return store.close().await;
    }
    for (table, columns, used_by) in LOOKUPS_WITHOUT_THE_USER {
        let leading: Vec<String> = crate::sql::query_all(
            store.conn(),
            "SELECT array_to_string(ARRAY(SELECT CAST(a.attname AS TEXT) \
               FROM unnest(i.indkey[0:$2 - 1]) WITH ORDINALITY AS k(attnum, n) \
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
               ORDER BY k.n), ',') AS cols \
             FROM pg_index i WHERE i.indrelid = CAST($1 AS regclass)",
            vec![
                (*table).into(),
                i32::try_from(columns.len()).unwrap_or(0).into(),
            ],
        )
        .await?
        .iter()
        .map(|r| r.try_get::<String>("", "cols"))
        .collect::<Result<_, _>>()?;
        let wanted = columns.join(",");
        assert!(
            leading.contains(&wanted),
            "{table} has no index starting with ({wanted}), needed by {used_by}; its indexes start with {leading:?}"
        );
    }
    store.close().await
}
