//! `users`: end users of the platform (`external_id` is the session token's
//! subject), with the per-user counters and milestone times ingestion keeps
//! on the row (`total_*`, `*_message_bucket`, `signed_up_at`, `first_*_at`).
//! Ingestion writes this table with batched statements of its own; the
//! entity serves the plain reads and writes by id or `external_id`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub external_id: Option<String>,
    pub email: Option<String>,
    /// An IANA zone name; UTC when unset.
    pub timezone: Option<String>,
    pub monthly_budget_nano_usd: Option<i64>,
    pub weekly_report_opt_out: bool,
    pub is_placeholder: bool,
    pub created_at: TimeDateTimeWithTimeZone,
    pub updated_at: TimeDateTimeWithTimeZone,
    /// The quarter-hour of the user's latest own message.
    pub last_message_bucket: Option<i64>,
    pub total_messages: i64,
    pub total_conversations: i64,
    pub signed_up_at: Option<TimeDateTimeWithTimeZone>,
    pub first_component_at: Option<TimeDateTimeWithTimeZone>,
    pub first_workflow_at: Option<TimeDateTimeWithTimeZone>,
    pub first_message_at: Option<TimeDateTimeWithTimeZone>,
    /// `last_message_bucket` before ingestion's latest update of it.
    pub previous_message_bucket: Option<i64>,
    pub monthly_hard_limit_nano_usd: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
