//! Service API keys for the platform's ingestion calls. A key is shown once
//! at creation; only its SHA-256 is stored.

use crate::{
    Store, StoreError, StoreResult,
    entity::api_keys::{self, ActiveModel, Column, Entity},
};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    sea_query::{Expr, ExprTrait},
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

/// A stored key, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKeyInfo {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
}

/// A new key: the secret is here and nowhere else.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: Uuid,
    pub key: String,
}

const KEY_PREFIX: &str = "cs_";

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl From<api_keys::Model> for ApiKeyInfo {
    fn from(m: api_keys::Model) -> Self {
        ApiKeyInfo {
            id: m.id,
            name: m.name,
            prefix: m.prefix,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
            last_used_at: m.last_used_at,
        }
    }
}

impl Store {
    /// Creates a key named `name` and returns its secret (shown once).
    pub async fn create_api_key(&self, name: &str) -> StoreResult<NewApiKey> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(StoreError::Invalid(
                "a key name must have 1 to 100 characters".into(),
            ));
        }
        // Two random (v4) UUIDs: 244 bits from the operating system's CSPRNG.
        let secret = format!(
            "{KEY_PREFIX}{}{}",
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let id = Uuid::now_v7();
        let _guard = self.write_guard().await;
        Entity::insert(ActiveModel {
            id: Set(id),
            name: Set(name.to_owned()),
            key_hash: Set(hash(&secret)),
            prefix: Set(secret.chars().take(10).collect()),
            created_at: Set(OffsetDateTime::now_utc()),
            revoked_at: Set(None),
            last_used_at: Set(None),
        })
        .exec_without_returning(self.conn())
        .await?;
        Ok(NewApiKey { id, key: secret })
    }

    /// Every key, newest first.
    pub async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyInfo>> {
        Ok(Entity::find()
            .order_by_desc(Column::Id)
            .all(self.conn())
            .await?
            .into_iter()
            .map(ApiKeyInfo::from)
            .collect())
    }

    /// Revokes a key; revoking twice is fine, an unknown id is not.
    pub async fn revoke_api_key(&self, id: Uuid) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let changed = Entity::update_many()
            .col_expr(
                Column::RevokedAt,
                Expr::col(Column::RevokedAt).if_null(OffsetDateTime::now_utc()),
            )
            .filter(Column::Id.eq(id))
            .exec(self.conn())
            .await?
            .rows_affected;
        if changed == 0 {
            return Err(StoreError::NotFound(format!("API key {id}")));
        }
        Ok(())
    }

    /// The active key with this secret, if any. Records its use at most once
    /// a minute, so checking keys does not turn every request into a write.
    pub async fn verify_api_key(&self, key: &str) -> StoreResult<Option<ApiKeyInfo>> {
        if !key.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let Some(found) = Entity::find()
            .filter(Column::KeyHash.eq(hash(key)))
            .filter(Column::RevokedAt.is_null())
            .one(self.conn())
            .await?
            .map(ApiKeyInfo::from)
        else {
            return Ok(None);
        };
        let now = OffsetDateTime::now_utc();
        if found
            .last_used_at
            .is_none_or(|t| now - t > time::Duration::minutes(1))
        {
            let _guard = self.write_guard().await;
            Entity::update_many()
                .col_expr(Column::LastUsedAt, Expr::value(now))
                .filter(Column::Id.eq(found.id))
                .exec(self.conn())
                .await?;
        }
        Ok(Some(found))
    }
}
