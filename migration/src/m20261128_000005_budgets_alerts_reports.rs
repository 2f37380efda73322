//! Budgets, usage alerts and weekly reports:
//! - `user_month_usage`: month-to-date counters per user × local month
//!   (`YYYY-MM` in the user's time zone), incremented by ingestion in the same
//!   transaction as the other rollups; its row lock serializes concurrent
//!   batches of one user, so the total each batch reads back is exact.
//! - `alerts`: one row per user × month × threshold (a unique key).
//! - `outbox`: messages to deliver (webhooks), written in the transaction
//!   that decided to send them; times are Unix milliseconds so both engines
//!   compare them as numbers.
//! - `report_deliveries`: one row per user × ISO week, the record that makes
//!   a weekly report e-mail go out at most once and a run resumable;
//!   `report_runs`: weeks whose scheduled run completed.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum UserMonthUsage {
    Table,
    UserId,
    Month,
    MessageCount,
    InputTokens,
    OutputTokens,
    CostNanoUsd,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    UserId,
    Month,
    ThresholdPercent,
    Level,
    CostNanoUsd,
    BudgetNanoUsd,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Outbox {
    Table,
    Id,
    Topic,
    EventId,
    Payload,
    CreatedAtMs,
    NextAttemptMs,
    Attempts,
    LastError,
    DeliveredAtMs,
    FailedAtMs,
}

#[derive(DeriveIden)]
enum ReportDeliveries {
    Table,
    UserId,
    Week,
    Status,
    Attempts,
    NextAttemptMs,
    LastError,
    UpdatedAtMs,
}

#[derive(DeriveIden)]
enum ReportRuns {
    Table,
    Week,
    CompletedAtMs,
}

fn fk_user<T: IntoIden + 'static>(table: T, col: T) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, col)
        .to(Users::Table, Users::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .take()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UserMonthUsage::Table)
                .col(uuid(UserMonthUsage::UserId))
                .col(string_len(UserMonthUsage::Month, 7))
                .col(big_integer(UserMonthUsage::MessageCount).default(0))
                .col(big_integer(UserMonthUsage::InputTokens).default(0))
                .col(big_integer(UserMonthUsage::OutputTokens).default(0))
                .col(big_integer(UserMonthUsage::CostNanoUsd).default(0))
                .primary_key(
                    Index::create()
                        .col(UserMonthUsage::UserId)
                        .col(UserMonthUsage::Month),
                )
                .foreign_key(&mut fk_user(UserMonthUsage::Table, UserMonthUsage::UserId))
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alerts::Table)
                .col(pk_uuid(Alerts::Id))
                .col(uuid(Alerts::UserId))
                .col(string_len(Alerts::Month, 7))
                .col(integer(Alerts::ThresholdPercent))
                .col(string_len(Alerts::Level, 16))
                .col(big_integer(Alerts::CostNanoUsd))
                .col(big_integer(Alerts::BudgetNanoUsd))
                .col(timestamp_with_time_zone(Alerts::CreatedAt))
                .foreign_key(&mut fk_user(Alerts::Table, Alerts::UserId))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_alerts_user_month_threshold")
                .table(Alerts::Table)
                .col(Alerts::UserId)
                .col(Alerts::Month)
                .col(Alerts::ThresholdPercent)
                .unique()
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_alerts_created")
                .table(Alerts::Table)
                .col(Alerts::CreatedAt)
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Outbox::Table)
                .col(pk_uuid(Outbox::Id))
                .col(string_len(Outbox::Topic, 64))
                .col(uuid(Outbox::EventId))
                .col(text(Outbox::Payload))
                .col(big_integer(Outbox::CreatedAtMs))
                .col(big_integer(Outbox::NextAttemptMs))
                .col(integer(Outbox::Attempts).default(0))
                .col(text_null(Outbox::LastError))
                .col(big_integer_null(Outbox::DeliveredAtMs))
                .col(big_integer_null(Outbox::FailedAtMs))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_outbox_due")
                .table(Outbox::Table)
                .col(Outbox::DeliveredAtMs)
                .col(Outbox::FailedAtMs)
                .col(Outbox::NextAttemptMs)
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_outbox_event")
                .table(Outbox::Table)
                .col(Outbox::EventId)
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ReportDeliveries::Table)
                .col(uuid(ReportDeliveries::UserId))
                .col(string_len(ReportDeliveries::Week, 8))
                .col(string_len(ReportDeliveries::Status, 16))
                .col(integer(ReportDeliveries::Attempts).default(0))
                .col(big_integer(ReportDeliveries::NextAttemptMs).default(0))
                .col(text_null(ReportDeliveries::LastError))
                .col(big_integer(ReportDeliveries::UpdatedAtMs))
                .primary_key(
                    Index::create()
                        .col(ReportDeliveries::UserId)
                        .col(ReportDeliveries::Week),
                )
                .foreign_key(&mut fk_user(
                    ReportDeliveries::Table,
                    ReportDeliveries::UserId,
                ))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_report_deliveries_week_status")
                .table(ReportDeliveries::Table)
                .col(ReportDeliveries::Week)
                .col(ReportDeliveries::Status)
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ReportRuns::Table)
                .col(string_len(ReportRuns::Week, 8).primary_key())
                .col(big_integer(ReportRuns::CompletedAtMs))
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ReportRuns::Table.into_iden(),
            ReportDeliveries::Table.into_iden(),
            Outbox::Table.into_iden(),
            Alerts::Table.into_iden(),
            UserMonthUsage::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).if_exists().take())
                .await?;
        }
        Ok(())
    }
}
