//! `login_flow`: logins between their start and their callback.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// A started login, as stored.
#[derive(Debug, Clone)]
pub struct Flow {
    pub tenant: String,
    pub purpose: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub key_seconds: Option<i64>,
    pub label: Option<String>,
    pub persona: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Stores a flow, first deleting the ones older than `ttl_s` (served by the `created_at`
/// index), so abandoned logins cannot pile up.
pub async fn insert(
    pool: &PgPool,
    state_hash: &[u8],
    flow: &Flow,
    ttl_s: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "DELETE FROM login_flow WHERE created_at < now() - make_interval(secs => $1)",
        ttl_s as f64,
    )
    .execute(pool)
    .await?;
    sqlx::query!(
        r#"
        INSERT INTO login_flow
            (state_hash, tenant, purpose, nonce, pkce_verifier, key_seconds, label, persona)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
        "#,
        state_hash,
        flow.tenant,
        flow.purpose,
        flow.nonce,
        flow.pkce_verifier,
        flow.key_seconds,
        flow.label,
        flow.persona,
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Takes the flow of this state: whoever deletes the row owns the callback, so a replay, on
/// this replica or another, finds nothing.
pub async fn take(pool: &PgPool, state_hash: &[u8]) -> Result<Option<Flow>, sqlx::Error> {
    sqlx::query_as!(
        Flow,
        r#"
        DELETE FROM login_flow WHERE state_hash = $1
        RETURNING tenant, purpose, nonce, pkce_verifier, key_seconds, label, persona, created_at
        "#,
        state_hash,
    )
    .fetch_optional(pool)
    .await
}
