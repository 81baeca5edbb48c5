//! `auth`: issued tokens. API keys are found by the hash of their secret; listing and
//! revoking always name the owner, so one entity cannot touch another's keys.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
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
    /// The groups of the login that issued it (admin comes from the tenant's admin group).
    pub groups: Vec<String>,
    /// The persona (source) it was issued for.
    pub persona: Option<String>,
}

impl KeyRecord {
    /// Active and not past its lifetime at `now`.
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.active
            && crate::auth::key_policy::expiry(self.granted, self.seconds)
                .is_none_or(|expires| now < expires)
    }
}

/// An API key listed for its owner, without any secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct KeySummary {
    pub id: Uuid,
    /// `api_key` (from `/token` or `surge key`) or `login` (from `/login` or the console).
    pub kind: String,
    pub label: Option<String>,
    pub granted: DateTime<Utc>,
    pub seconds: i64,
    pub revoked: bool,
}

/// Stores a new API key of `entity` minted by an operator (no login, so no claims or
/// groups); returns its id.
pub async fn insert_api_key(
    pool: &PgPool,
    entity: Uuid,
    hash: &KeyHash,
    seconds: i64,
    label: Option<&str>,
) -> Result<Uuid, sqlx::Error> {
    issue(
        pool,
        &Issue {
            entity,
            kind: "api_key",
            hash,
            seconds,
            label,
            persona: None,
            claims: &serde_json::Map::new(),
            groups: &[],
        },
    )
    .await
}

/// What a login issues: an API key (`/token`) or a login token (`/login`), with the claims
/// and groups of the ID token that vouched for it.
#[derive(Debug)]
pub struct Issue<'a> {
    pub entity: Uuid,
    /// `api_key` or `login`.
    pub kind: &'a str,
    pub hash: &'a KeyHash,
    pub seconds: i64,
    pub label: Option<&'a str>,
    pub persona: Option<Uuid>,
    pub claims: &'a serde_json::Map<String, serde_json::Value>,
    pub groups: &'a [String],
}

/// Stores an issued token with its claims and groups, in one transaction.
pub async fn issue(pool: &PgPool, issue: &Issue<'_>) -> Result<Uuid, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let id = sqlx::query_scalar!(
        r#"
        INSERT INTO auth (id, entity_id, kind, seconds, token_hash, label, persona_id)
        VALUES ($1, $2, CAST($3::text AS auth_kind), $4, $5, $6, $7)
        RETURNING id
        "#,
        Uuid::now_v7(),
        issue.entity,
        issue.kind,
        issue.seconds,
        &issue.hash.0[..],
        issue.label,
        issue.persona,
    )
    .fetch_one(&mut *tx)
    .await?;
    let (names, values): (Vec<String>, Vec<serde_json::Value>) = issue
        .claims
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unzip();
    if !names.is_empty() {
        sqlx::query!(
            r#"
        INSERT INTO auth_claims (auth_id, name, value)
        SELECT $1, c.name, c.value FROM UNNEST($2::text[], $3::jsonb[]) AS c(name, value)
        "#,
            id,
            &names,
            &values,
        )
        .execute(&mut *tx)
        .await?;
    }
    if !issue.groups.is_empty() {
        sqlx::query!(
            r#"
            INSERT INTO auth_groups (auth_id, name)
            SELECT DISTINCT $1::uuid, g FROM UNNEST($2::text[]) AS g
            "#,
            id,
            issue.groups,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

/// When one of `owner`'s active keys was granted and for how long, locked until the
/// transaction ends (so a change is decided on what it changes). `None` when it has no such
/// key.
pub async fn lock_key_life(
    tx: &mut PgConnection,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<(DateTime<Utc>, i64)>, sqlx::Error> {
    Ok(sqlx::query!(
        r#"
        SELECT granted, seconds FROM auth
        WHERE id = $1 AND entity_id = $2 AND kind = 'api_key' AND state = 'active'
        FOR UPDATE
        "#,
        id,
        owner,
    )
    .fetch_optional(tx)
    .await?
    .map(|r| (r.granted, r.seconds)))
}

/// Changes a key locked by [`lock_key_life`]: a new secret (the old one stops working at
/// once) and/or a new lifetime counted from its grant (already checked to be no longer).
pub async fn update_key(
    tx: &mut PgConnection,
    id: Uuid,
    hash: Option<&KeyHash>,
    seconds: Option<i64>,
) -> Result<KeySummary, sqlx::Error> {
    sqlx::query_as!(
        KeySummary,
        r#"
        UPDATE auth SET
            token_hash = COALESCE($2::bytea, token_hash),
            seconds = COALESCE($3::bigint, seconds)
        WHERE id = $1
        RETURNING id, kind::text AS "kind!", label, granted, seconds, state = 'revoked' AS "revoked!"
        "#,
        id,
        hash.map(|h| &h.0[..]),
        seconds,
    )
    .fetch_one(tx)
    .await
}

/// The API key or login token with this hash (served by the unique index on `token_hash`).
pub async fn find_api_key(pool: &PgPool, hash: &KeyHash) -> Result<Option<KeyRecord>, sqlx::Error> {
    sqlx::query_as!(
        KeyRecord,
        r#"
        SELECT a.id, a.entity_id, e.tenant, a.granted, a.seconds, a.state = 'active' AS "active!",
               ARRAY(SELECT g.name FROM auth_groups g WHERE g.auth_id = a.id) AS "groups!",
               p.source AS "persona?"
        FROM auth a JOIN entity e ON e.id = a.entity_id
        LEFT JOIN entity_persona p ON p.id = a.persona_id
        WHERE a.token_hash = $1
        "#,
        &hash.0[..],
    )
    .fetch_optional(pool)
    .await
}

/// Revokes one of `owner`'s API keys or login tokens; false when it has no such active one.
pub async fn revoke(pool: &PgPool, owner: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"
        UPDATE auth SET state = 'revoked', revoked_at = now()
        WHERE id = $1 AND entity_id = $2 AND kind IN ('api_key', 'login') AND state = 'active'
        "#,
        id,
        owner,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// `owner`'s API keys and login tokens, newest first.
pub async fn list(pool: &PgPool, owner: Uuid) -> Result<Vec<KeySummary>, sqlx::Error> {
    sqlx::query_as!(
        KeySummary,
        r#"
        SELECT id, kind::text AS "kind!", label, granted, seconds,
               state = 'revoked' AS "revoked!"
        FROM auth WHERE entity_id = $1 AND kind IN ('api_key', 'login')
        ORDER BY id DESC
        LIMIT 1000
        "#,
        owner,
    )
    .fetch_all(pool)
    .await
}
