//! End users as seen by authentication: a session token's subject (`sub`)
//! is a user's `external_id`; an unknown subject gets a user on first sight
//! (the seed's `get_or_create_from_clerk`).

use crate::{
    Store, StoreError, StoreResult,
    entity::users::{ActiveModel, Column, Entity},
    rollup::Rollups,
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DerivePartialModel, EntityTrait,
    FromQueryResult, QueryFilter, TransactionTrait, sea_query::Expr,
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
    /// both `INSERT … ON CONFLICT (external_id) DO NOTHING` into
    /// `user_subjects`, the guard that keeps a subject unique platform-wide
    /// (`users` is distributed by `id` on Citus, where it cannot keep that
    /// key itself); only the one that inserted creates the user, and both
    /// then read the one user that won.
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
            let id = Uuid::now_v7();
            if claim_subject(&txn, subject, id).await? {
                Entity::insert(ActiveModel {
                    id: Set(id),
                    external_id: Set(Some(subject.to_owned())),
                    email: Set(email.map(str::to_owned)),
                    weekly_report_opt_out: Set(false),
                    is_placeholder: Set(true),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..ActiveModel::default()
                })
                .exec_without_returning(&txn)
                .await?;
                // The platform's user count (`platform_totals`) moves with it.
                let mut rollups = Rollups::default();
                rollups.count_created(1, 0);
                rollups.write_all_time(&txn).await?;
            }
            txn.commit().await?;
        }
        let user = self
            .user_by_external_id(subject)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user with external_id `{subject}`")))?;
        self.fill_missing_email(user, email).await
    }

    async fn user_by_external_id(&self, external_id: &str) -> StoreResult<Option<AuthUser>> {
        let Some(id) = subject_owner(self.conn(), external_id).await? else {
            return Ok(None);
        };
        Ok(Entity::find_by_id(id)
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

/// The user `external_id` belongs to, from `user_subjects`.
pub(crate) async fn subject_owner<C: ConnectionTrait>(
    conn: &C,
    external_id: &str,
) -> StoreResult<Option<Uuid>> {
    #[derive(FromQueryResult)]
    struct Owner {
        user_id: Uuid,
    }
    Ok(crate::sql::fetch_one::<Owner, _>(
        conn,
        "SELECT user_id FROM user_subjects WHERE external_id = $1",
        vec![external_id.into()],
    )
    .await?
    .map(|o| o.user_id))
}

/// Gives `external_id` to `user_id` in `user_subjects` unless another user
/// holds it; says whether it did. Every writer of `users.external_id` calls
/// this (or [`release_subject`]) in the same transaction.
pub(crate) async fn claim_subject<C: ConnectionTrait>(
    conn: &C,
    external_id: &str,
    user_id: Uuid,
) -> StoreResult<bool> {
    let claimed = crate::sql::execute(
        conn,
        "INSERT INTO user_subjects (external_id, user_id) VALUES ($1, $2) \
         ON CONFLICT (external_id) DO NOTHING",
        vec![external_id.into(), user_id.into()],
    )
    .await?;
    Ok(claimed == 1)
}

/// Frees `external_id` if `user_id` holds it.
pub(crate) async fn release_subject<C: ConnectionTrait>(
    conn: &C,
    external_id: &str,
    user_id: Uuid,
) -> StoreResult<()> {
    crate::sql::execute(
        conn,
        "DELETE FROM user_subjects WHERE external_id = $1 AND user_id = $2",
        vec![external_id.into(), user_id.into()],
    )
    .await?;
    Ok(())
}
