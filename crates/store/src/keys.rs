//! Service API keys for the platform's ingestion calls. A key is shown once
//! at creation; only its SHA-256 is stored.

use crate::{Store, StoreError, StoreResult, sql};
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

fn info(row: &sea_orm::QueryResult) -> StoreResult<ApiKeyInfo> {
    Ok(ApiKeyInfo {
        id: row.try_get("", "id")?,
        name: row.try_get("", "name")?,
        prefix: row.try_get("", "prefix")?,
        created_at: row.try_get("", "created_at")?,
        revoked_at: row.try_get("", "revoked_at")?,
        last_used_at: row.try_get("", "last_used_at")?,
    })
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
        sql::execute(
            self.conn(),
            "INSERT INTO api_keys (id, name, key_hash, prefix, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![
                id.into(),
                name.to_owned().into(),
                hash(&secret).into(),
                secret.chars().take(10).collect::<String>().into(),
                OffsetDateTime::now_utc().into(),
            ],
        )
        .await?;
        Ok(NewApiKey { id, key: secret })
    }

    /// Every key, newest first.
    pub async fn list_api_keys(&self) -> StoreResult<Vec<ApiKeyInfo>> {
        sql::query_all(
            self.conn(),
            "SELECT id, name, prefix, created_at, revoked_at, last_used_at FROM api_keys ORDER BY id DESC",
            vec![],
        )
        .await?
        .iter()
        .map(info)
        .collect()
    }

    /// Revokes a key; revoking twice is fine, an unknown id is not.
    pub async fn revoke_api_key(&self, id: Uuid) -> StoreResult<()> {
        let _guard = self.write_guard().await;
        let changed = sql::execute(
            self.conn(),
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2",
            vec![OffsetDateTime::now_utc().into(), id.into()],
        )
        .await?;
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
        let row = sql::query_one(
            self.conn(),
            "SELECT id, name, prefix, created_at, revoked_at, last_used_at FROM api_keys \
             WHERE key_hash = $1 AND revoked_at IS NULL",
            vec![hash(key).into()],
        )
        .await?;
        let Some(row) = row else { return Ok(None) };
        let found = info(&row)?;
        let now = OffsetDateTime::now_utc();
        if found
            .last_used_at
            .is_none_or(|t| now - t > time::Duration::minutes(1))
        {
            let _guard = self.write_guard().await;
            sql::execute(
                self.conn(),
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2",
                vec![now.into(), found.id.into()],
            )
            .await?;
        }
        Ok(Some(found))
    }
}
