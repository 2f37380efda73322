//! `alerts`: usage alerts, one per user × local month × threshold (a unique
//! key: ingestion inserts them `ON CONFLICT DO NOTHING`, so each is raised
//! once).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    /// `YYYY-MM` in the user's zone.
    pub month: String,
    pub threshold_percent: i32,
    /// `warning` or `exceeded`.
    pub level: String,
    pub cost_nano_usd: i64,
    pub budget_nano_usd: i64,
    pub created_at: TimeDateTimeWithTimeZone,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
