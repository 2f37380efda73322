//! `report_deliveries`: one row per user × ISO week, the record that makes
//! a weekly report go out at most once. Times are Unix milliseconds.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "report_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    /// `YYYY-Www`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub week: String,
    /// `pending`, `sending`, `sent`, `skipped` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_ms: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub last_error: Option<String>,
    pub updated_at_ms: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
