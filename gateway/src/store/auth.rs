//! `auth`: issued tokens. API keys are found by the hash of their secret; listing and
//! revoking always name the owner, so one entity cannot touch another's keys.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::api_key::KeyHash;

/// An API key as the authenticator needs it.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub id: Uuid,
    pub entity_id: Uuid,
    pub tenant: String,
    pub granted: DateTime<Utc>,
    /// Lifetime in seconds; 0 never expires.
    pub seconds: i64,
    pub active: bool,
}

impl KeyRecord {
    /// Active and not past its lifetime at `now`.
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.active
            && (self.seconds == 0 || now < self.granted + chrono::Duration::seconds(self.seconds))
    }
}

/// An API key listed for its owner, without any secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KeySummary {
    pub id: Uuid,
    pub label: Option<String>,
    pub granted: DateTime<Utc>,
    pub seconds: i64,
    pub revoked: bool,
}

/// Stores a new API key of `entity`; returns its id.
pub async fn insert_api_key(
    pool: &PgPool,
    entity: Uuid,
    hash: &KeyHash,
    seconds: i64,
    label: Option<&str>,
) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        INSERT INTO auth (id, entity_id, kind, seconds, token_hash, label)
        VALUES ($1, $2, 'api_key', $3, $4, $5)
        RETURNING id
        "#,
        Uuid::now_v7(),
        entity,
        seconds,
        &hash.0[..],
        label,
    )
    .fetch_one(pool)
    .await
}

/// The API key with this hash (served by the unique index on `token_hash`).
pub async fn find_api_key(pool: &PgPool, hash: &KeyHash) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as!(
        KeyRecord,
        r#"
        SELECT a.id, a.entity_id, e.tenant, a.granted, a.seconds, a.state = 'active' AS "active!"
        FROM auth a JOIN entity e ON e.id = a.entity_id
        WHERE a.token_hash = $1 AND a.kind = 'api_key'
        "#,
        &hash.0[..],
    )
    .fetch_optional(pool)
    .await
}

/// Revokes one of `owner`'s keys; false when it has no such key.
pub async fn revoke(pool: &PgPool, owner: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"
        UPDATE auth SET state = 'revoked', revoked_at = now()
        WHERE id = $1 AND entity_id = $2 AND kind = 'api_key' AND state = 'active'
        "#,
        id,
        owner,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `owner`'s API keys, newest first.
pub async fn list(pool: &PgPool, owner: Uuid) -> Result<Vec<KeySummary>, sqlx::Error> {
    sqlx::query_as!(
        KeySummary,
        r#"
        SELECT id, label, granted, seconds, state = 'revoked' AS "revoked!"
        FROM auth WHERE entity_id = $1 AND kind = 'api_key'
        ORDER BY id DESC
        "#,
        owner,
    )
    .fetch_all(pool)
    .await
}
