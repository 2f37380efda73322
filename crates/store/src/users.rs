//! End users as seen by authentication: a session token's subject (`sub`)
//! is a user's `external_id`; an unknown subject gets a user on first sight
//! (the seed's `get_or_create_from_clerk`).

use crate::{
    Store, StoreError, StoreResult,
    entity::users::{ActiveModel, Column, Entity},
    rollup::Rollups,
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, DerivePartialModel, EntityTrait, QueryFilter, TransactionTrait,
    sea_query::{Expr, OnConflict},
};
use time::OffsetDateTime;
use uuid::Uuid;

/// Longest `external_id` the schema stores.
pub const MAX_EXTERNAL_ID_CHARS: usize = 255;
/// Longest e-mail address the schema stores.
const MAX_EMAIL_CHARS: usize = 320;

/// The user behind a verified session token.
#[derive(Debug, Clone, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "Entity")]
pub struct AuthUser {
    pub id: Uuid,
    /// The stored e-mail address (from the platform's `user.upsert`, or the
    /// token's e-mail when the user was created on first sight).
    pub email: Option<String>,
    /// The stored IANA time zone, if any.
    pub timezone: Option<String>,
}

impl Store {
    /// The user whose `external_id` is `subject`, created on first sight.
    ///
    /// A user created here is a placeholder (`is_placeholder`): the platform
    /// has not told us about them yet. `email` is stored when the user is
    /// created, and fills a missing stored e-mail later; it never replaces
    /// one (the platform's `user.upsert` is the source of truth).
    ///
    /// Race-safe on both engines: concurrent first requests of one new user
    /// both `INSERT … ON CONFLICT (external_id) DO NOTHING` and then read the
    /// one row that won.
    pub async fn user_for_subject(
        &self,
        subject: &str,
        email: Option<&str>,
    ) -> StoreResult<AuthUser> {
        if subject.trim().is_empty() || subject.chars().count() > MAX_EXTERNAL_ID_CHARS {
            return Err(StoreError::Invalid(format!(
                "a subject must have 1 to {MAX_EXTERNAL_ID_CHARS} characters"
            )));
        }
        let email = email
            .map(str::trim)
            .filter(|e| !e.is_empty() && e.chars().count() <= MAX_EMAIL_CHARS);
        if let Some(user) = self.user_by_external_id(subject).await? {
            return self.fill_missing_email(user, email).await;
        }
        let now = OffsetDateTime::now_utc();
        {
            let _guard = self.write_guard().await;
            let txn = self.conn().begin().await?;
            crate::sql::reference_write_lock(&txn).await?;
            let created = Entity::insert(ActiveModel {
                id: Set(Uuid::now_v7()),
                external_id: Set(Some(subject.to_owned())),
                email: Set(email.map(str::to_owned)),
                weekly_report_opt_out: Set(false),
                is_placeholder: Set(true),
                created_at: Set(now),
                updated_at: Set(now),
                ..ActiveModel::default()
            })
            .on_conflict(
                OnConflict::column(Column::ExternalId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            // The platform's user count (`platform_totals`) moves with it.
            let mut rollups = Rollups::default();
            rollups.count_created(i64::try_from(created).unwrap_or(i64::MAX), 0);
            rollups.write_all_time(&txn).await?;
            txn.commit().await?;
        }
        let user = self
            .user_by_external_id(subject)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user with external_id `{subject}`")))?;
        self.fill_missing_email(user, email).await
    }

    async fn user_by_external_id(&self, external_id: &str) -> StoreResult<Option<AuthUser>> {
        Ok(Entity::find()
            .filter(Column::ExternalId.eq(external_id))
            .into_partial_model::<AuthUser>()
            .one(self.conn())
            .await?)
    }

    /// Stores `email` when the user has none yet; a no-op otherwise, so a
    /// known user's request does not write.
    async fn fill_missing_email(
        &self,
        mut user: AuthUser,
        email: Option<&str>,
    ) -> StoreResult<AuthUser> {
        let (None, Some(email)) = (&user.email, email) else {
            return Ok(user);
        };
        let _guard = self.write_guard().await;
        Entity::update_many()
            .col_expr(Column::Email, Expr::value(email))
            .filter(Column::Id.eq(user.id))
            .filter(Column::Email.is_null())
            .exec(self.conn())
            .await?;
        user.email = Some(email.to_owned());
        Ok(user)
    }
}
