//! The service's own failures in `error_logs` (ingested `error.log` items are
//! written by the ingest pipeline). The API crate records every 5xx it
//! returns here, next to the Sentry event id, so that admins can query
//! errors without leaving the dashboard.

use crate::{
    Store, StoreResult,
    entity::{error_logs, users},
};
use charlie_domain::ingest::{ErrorLog, MAX_ERROR_MESSAGE_CHARS};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Column widths of `error_logs` (see the core schema migration).
const SERVICE_CHARS: usize = 50;
const ERROR_TYPE_CHARS: usize = 100;
const ERROR_CODE_CHARS: usize = 50;
const ENDPOINT_CHARS: usize = 200;
const REQUEST_ID_CHARS: usize = 100;
const SENTRY_EVENT_ID_CHARS: usize = 100;

/// A stored `error_logs` row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ErrorLogEntry {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub user_id: Option<Uuid>,
    pub service: String,
    pub error_type: String,
    pub error_message: String,
    pub error_code: Option<String>,
    pub workflow_id: Option<Uuid>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    pub metadata: Value,
    pub sentry_event_id: Option<String>,
}

/// The first `max` characters of `s` (never splits a character).
fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => s[..at].to_owned(),
        None => s.to_owned(),
    }
}

fn cut_opt(s: &Option<String>, max: usize) -> Option<String> {
    s.as_deref().map(|s| cut(s, max))
}

impl From<error_logs::Model> for ErrorLogEntry {
    fn from(m: error_logs::Model) -> Self {
        ErrorLogEntry {
            id: m.id,
            created_at: m.created_at,
            user_id: m.user_id,
            service: m.service,
            error_type: m.error_type,
            error_message: m.error_message,
            error_code: m.error_code,
            workflow_id: m.workflow_id,
            endpoint: m.endpoint,
            request_id: m.request_id,
            metadata: m.metadata,
            sentry_event_id: m.sentry_event_id,
        }
    }
}

impl Store {
    /// Records a failure of this (or another) service in `error_logs` and
    /// returns the row's id. Texts longer than their columns are cut. A
    /// `user_id` the store does not know is moved into `metadata` rather
    /// than refused, so the row is never lost over it.
    pub async fn record_service_error(&self, e: &ErrorLog) -> StoreResult<Uuid> {
        let id = Uuid::now_v7();
        let now = OffsetDateTime::now_utc();
        let mut metadata = match &e.metadata {
            Value::Object(map) => map.clone(),
            Value::Null => serde_json::Map::new(),
            other => {
                let mut map = serde_json::Map::new();
                map.insert("value".into(), other.clone());
                map
            }
        };
        let _guard = self.write_guard().await;
        let txn = self.conn().begin().await?;
        let user_id = match e.user_id {
            Some(user) => {
                let known = users::Entity::find_by_id(user)
                    .select_only()
                    .column(users::Column::Id)
                    .into_tuple::<Uuid>()
                    .one(&txn)
                    .await?
                    .is_some();
                if !known {
                    metadata.insert("user_id".into(), Value::String(user.to_string()));
                }
                known.then_some(user)
            }
            None => None,
        };
        error_logs::Entity::insert(error_logs::ActiveModel {
            id: Set(id),
            created_at: Set(now),
            user_id: Set(user_id),
            service: Set(cut(&e.service, SERVICE_CHARS)),
            error_type: Set(cut(&e.error_type, ERROR_TYPE_CHARS)),
            error_message: Set(cut(&e.error_message, MAX_ERROR_MESSAGE_CHARS)),
            error_code: Set(cut_opt(&e.error_code, ERROR_CODE_CHARS)),
            workflow_id: Set(e.workflow_id),
            endpoint: Set(cut_opt(&e.endpoint, ENDPOINT_CHARS)),
            request_id: Set(cut_opt(&e.request_id, REQUEST_ID_CHARS)),
            metadata: Set(Value::Object(metadata)),
            sentry_event_id: Set(cut_opt(&e.sentry_event_id, SENTRY_EVENT_ID_CHARS)),
        })
        .exec_without_returning(&txn)
        .await?;
        // Rollups (and `rollups rebuild`) count only the errors the platform
        // reported through ingestion (rows in `ingested_items`); the service's
        // own 5xx rows are counted from `error_logs` directly by the admin
        // endpoints, so nothing is added to the rollups here.
        txn.commit().await?;
        Ok(id)
    }

    /// The `error_logs` rows of one request id, oldest first: what a support
    /// conversation that quotes an `X-Request-Id` needs.
    pub async fn errors_by_request_id(&self, request_id: &str) -> StoreResult<Vec<ErrorLogEntry>> {
        Ok(error_logs::Entity::find()
            .filter(error_logs::Column::RequestId.eq(request_id))
            .order_by_asc(error_logs::Column::CreatedAt)
            .order_by_asc(error_logs::Column::Id)
            .all(self.conn())
            .await?
            .into_iter()
            .map(ErrorLogEntry::from)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    fn failure(request_id: &str) -> ErrorLog {
        ErrorLog {
            service: "charlie-stats".into(),
            error_type: "internal_error".into(),
            error_message: "é".repeat(6000),
            error_code: Some("500".into()),
            user_id: None,
            workflow_id: None,
            endpoint: Some("/api/v1/ingest".into()),
            request_id: Some(request_id.into()),
            metadata: serde_json::json!({"method": "POST"}),
            sentry_event_id: Some("0123456789abcdef0123456789abcdef".into()),
        }
    }

    #[test]
    fn cutting_counts_characters_not_bytes() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("hi", 5), "hi");
    }

    #[tokio::test]
    async fn a_service_error_is_stored_cut_and_found_by_request_id() {
        let db = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = db.migrated_store().await.unwrap_or_else(|e| panic!("{e}"));
        let mut e = failure("req-1");
        e.user_id = Some(Uuid::now_v7());
        let id = store
            .record_service_error(&e)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows = store
            .errors_by_request_id("req-1")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(row.id, id);
        assert_eq!(row.error_message.chars().count(), MAX_ERROR_MESSAGE_CHARS);
        assert_eq!(row.endpoint.as_deref(), Some("/api/v1/ingest"));
        assert_eq!(row.sentry_event_id, e.sentry_event_id);
        // The unknown user went to metadata instead of failing the insert.
        assert_eq!(row.user_id, None);
        assert_eq!(
            row.metadata["user_id"],
            serde_json::json!(e.user_id.map(|u| u.to_string()))
        );
        assert_eq!(row.metadata["method"], "POST");
        store.close().await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn a_known_users_service_error_keeps_its_user_id() {
        let db = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let store = db.migrated_store().await.unwrap_or_else(|e| panic!("{e}"));
        let user = Uuid::now_v7();
        let now = OffsetDateTime::now_utc();
        // The store takes typed items: no wire format is involved.
        let item = charlie_domain::ingest::Item {
            id: user,
            at: now,
            body: charlie_domain::ingest::Body::User(charlie_domain::ingest::UserUpsert {
                external_id: "ext-1".into(),
                email: "someone@example.com".into(),
                timezone: None,
                monthly_budget: None,
                monthly_hard_limit: None,
                weekly_report_opt_out: None,
            }),
            content_hash: "test".into(),
            warnings: Vec::new(),
        };
        store
            .ingest(&[item], now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut e = failure("req-2");
        e.user_id = Some(user);
        store
            .record_service_error(&e)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rows = store
            .errors_by_request_id("req-2")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows[0].user_id, Some(user));
        assert!(rows[0].metadata.get("user_id").is_none());
        store.close().await.unwrap_or_else(|e| panic!("{e}"));
    }
}
