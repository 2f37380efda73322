//! Budgets that hold (issue #17):
//! - `users.monthly_hard_limit_nano_usd` and, per workflow,
//!   `workflows.monthly_budget_nano_usd` (soft) and
//!   `workflows.monthly_hard_limit_nano_usd` (hard);
//! - `budget_accounts`: one row per user whose lock serializes that user's
//!   reservations on PostgreSQL;
//! - `budget_reservations`: reserved (then committed) amounts that count
//!   against the hard limits until they settle, are released or expire;
//! - `reprice_runs`: the audit trail of `charlie-stats reprice`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    MonthlyHardLimitNanoUsd,
}

#[derive(DeriveIden)]
enum Workflows {
    Table,
    MonthlyBudgetNanoUsd,
    MonthlyHardLimitNanoUsd,
}

#[derive(DeriveIden)]
enum BudgetAccounts {
    Table,
    UserId,
    Reservations,
}

#[derive(DeriveIden)]
enum BudgetReservations {
    Table,
    Id,
    UserId,
    WorkflowId,
    IdempotencyKey,
    State,
    AmountNanoUsd,
    EstimatedNanoUsd,
    ActualNanoUsd,
    MessageId,
    Model,
    Month,
    CreatedAtMs,
    ExpiresAtMs,
    ClosedAtMs,
}

#[derive(DeriveIden)]
enum RepriceRuns {
    Table,
    Id,
    Actor,
    CreatedAt,
    FromDate,
    ToDate,
    Model,
    DryRun,
    MessagesScanned,
    MessagesChanged,
    OldTotalNanoUsd,
    NewTotalNanoUsd,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .add_column(big_integer_null(Users::MonthlyHardLimitNanoUsd))
                .take(),
        )
        .await?;
        // SQLite adds one column per ALTER TABLE.
        for col in [
            big_integer_null(Workflows::MonthlyBudgetNanoUsd),
            big_integer_null(Workflows::MonthlyHardLimitNanoUsd),
        ] {
            m.alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .add_column(col)
                    .take(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table(BudgetAccounts::Table)
                .col(pk_uuid(BudgetAccounts::UserId))
                .col(big_integer(BudgetAccounts::Reservations).default(0))
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BudgetReservations::Table)
                .col(pk_uuid(BudgetReservations::Id))
                .col(uuid(BudgetReservations::UserId))
                .col(uuid_null(BudgetReservations::WorkflowId))
                .col(string_len(BudgetReservations::IdempotencyKey, 255))
                .col(string_len(BudgetReservations::State, 16))
                .col(big_integer(BudgetReservations::AmountNanoUsd))
                .col(big_integer(BudgetReservations::EstimatedNanoUsd))
                .col(big_integer_null(BudgetReservations::ActualNanoUsd))
                .col(uuid_null(BudgetReservations::MessageId))
                .col(string_len_null(BudgetReservations::Model, 255))
                .col(string_len(BudgetReservations::Month, 7))
                .col(big_integer(BudgetReservations::CreatedAtMs))
                .col(big_integer(BudgetReservations::ExpiresAtMs))
                .col(big_integer_null(BudgetReservations::ClosedAtMs))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ux_budget_reservations_idempotency")
                .table(BudgetReservations::Table)
                .col(BudgetReservations::UserId)
                .col(BudgetReservations::IdempotencyKey)
                .unique()
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_budget_reservations_held")
                .table(BudgetReservations::Table)
                .col(BudgetReservations::UserId)
                .col(BudgetReservations::ExpiresAtMs)
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_budget_reservations_expires")
                .table(BudgetReservations::Table)
                .col(BudgetReservations::ExpiresAtMs)
                .take(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RepriceRuns::Table)
                .col(pk_uuid(RepriceRuns::Id))
                .col(string_len(RepriceRuns::Actor, 255))
                .col(timestamp_with_time_zone(RepriceRuns::CreatedAt))
                .col(date(RepriceRuns::FromDate))
                .col(date(RepriceRuns::ToDate))
                .col(string_len_null(RepriceRuns::Model, 255))
                .col(boolean(RepriceRuns::DryRun))
                .col(big_integer(RepriceRuns::MessagesScanned))
                .col(big_integer(RepriceRuns::MessagesChanged))
                .col(big_integer(RepriceRuns::OldTotalNanoUsd))
                .col(big_integer(RepriceRuns::NewTotalNanoUsd))
                .take(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_reprice_runs_created_at")
                .table(RepriceRuns::Table)
                .col(RepriceRuns::CreatedAt)
                .take(),
        )
        .await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(RepriceRuns::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(BudgetReservations::Table).to_owned())
            .await?;
        m.drop_table(Table::drop().table(BudgetAccounts::Table).to_owned())
            .await?;
        for col in [
            Workflows::MonthlyHardLimitNanoUsd,
            Workflows::MonthlyBudgetNanoUsd,
        ] {
            m.alter_table(
                Table::alter()
                    .table(Workflows::Table)
                    .drop_column(col)
                    .take(),
            )
            .await?;
        }
        m.alter_table(
            Table::alter()
                .table(Users::Table)
                .drop_column(Users::MonthlyHardLimitNanoUsd)
                .take(),
        )
        .await?;
        Ok(())
    }
}
