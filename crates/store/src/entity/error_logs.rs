//! `error_logs`: errors the platform reported through ingestion and the
//! service's own 5xx. Keyed on `(id, created_at)` so PostgreSQL can
//! partition it by month.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "error_logs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub created_at: TimeDateTimeWithTimeZone,
    pub user_id: Option<Uuid>,
    pub service: String,
    pub error_type: String,
    #[sea_orm(column_type = "Text")]
    pub error_message: String,
    pub error_code: Option<String>,
    pub workflow_id: Option<Uuid>,
    pub endpoint: Option<String>,
    pub request_id: Option<String>,
    /// A JSON object (`jsonb` on PostgreSQL, text on SQLite).
    #[sea_orm(column_type = "JsonBinary")]
    pub metadata: Json,
    pub sentry_event_id: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
