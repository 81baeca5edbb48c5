//! `entity_persona`: an entity's per-source profiles (`pc`, `mobile`, one trading bot's
//! settings…). Every query names the owning entity, so one entity never reads or writes
//! another's; an entity has at most [`MAX_PER_ENTITY`].

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// How many personas one entity may have.
pub const MAX_PER_ENTITY: i64 = 32;

/// One persona as its owner sees it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Persona {
    /// Its name: 1–32 lowercase letters, digits, `-` or `_`.
    pub source: String,
    /// What the owner keeps there: a JSON object of at most 16 KiB.
    #[schema(value_type = Object)]
    pub other: Value,
    pub created_at: DateTime<Utc>,
}

/// What [`replace`] did.
#[derive(Debug)]
pub enum Replaced {
    Created(Persona),
    Replaced(Persona),
    /// The entity already has [`MAX_PER_ENTITY`] personas and this is not one of them.
    Full,
}

/// The entity's personas by name (all of them: at most [`MAX_PER_ENTITY`]).
pub async fn list(pool: &PgPool, entity: Uuid) -> Result<Vec<Persona>, sqlx::Error> {
    sqlx::query_as!(
        Persona,
        r#"
        SELECT source, other, created_at FROM entity_persona
        WHERE entity_id = $1 ORDER BY source LIMIT $2
        "#,
        entity,
        MAX_PER_ENTITY,
    )
    .fetch_all(pool)
    .await
}

/// One of the entity's personas.
pub async fn get(
    pool: &PgPool,
    entity: Uuid,
    source: &str,
) -> Result<Option<Persona>, sqlx::Error> {
    sqlx::query_as!(
        Persona,
        r#"
        SELECT source, other, created_at FROM entity_persona
        WHERE entity_id = $1 AND source = $2
        "#,
        entity,
        source,
    )
    .fetch_optional(pool)
    .await
}

/// Sets the persona's `other` to `other` (creating the persona if the entity has room).
pub async fn replace(
    pool: &PgPool,
    entity: Uuid,
    source: &str,
    other: &Value,
) -> Result<Replaced, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let Some(id) = ensure_in(&mut tx, entity, source).await? else {
        return Ok(Replaced::Full);
    };
    let row = sqlx::query!(
        r#"
        UPDATE entity_persona SET other = $2 WHERE id = $1
        RETURNING source, other, created_at
        "#,
        id.id,
        other,
    )
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let persona = Persona {
        source: row.source,
        other: row.other,
        created_at: row.created_at,
    };
    Ok(if id.created {
        Replaced::Created(persona)
    } else {
        Replaced::Replaced(persona)
    })
}

/// The persona `source` of `entity`, created on first use; `None` when the entity is at
/// [`MAX_PER_ENTITY`] and has no persona of that name.
pub async fn ensure(
    pool: &PgPool,
    entity: Uuid,
    source: &str,
) -> Result<Option<Uuid>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let found = ensure_in(&mut tx, entity, source).await?;
    tx.commit().await?;
    Ok(found.map(|f| f.id))
}

struct Found {
    id: Uuid,
    created: bool,
}

async fn ensure_in(
    tx: &mut sqlx::PgConnection,
    entity: Uuid,
    source: &str,
) -> Result<Option<Found>, sqlx::Error> {
    // The entity's row lock makes the count and the insert one step: two requests at once
    // cannot both take the last free place.
    sqlx::query!("SELECT id FROM entity WHERE id = $1 FOR UPDATE", entity)
        .fetch_optional(&mut *tx)
        .await?;
    let row = sqlx::query!(
        r#"
        WITH existing AS (
            SELECT id FROM entity_persona WHERE entity_id = $2 AND source = $3
        ), created AS (
            INSERT INTO entity_persona (id, entity_id, source)
            SELECT $1, $2, $3
            WHERE NOT EXISTS (SELECT 1 FROM existing)
              AND (SELECT count(*) FROM entity_persona WHERE entity_id = $2) < $4
            RETURNING id
        )
        SELECT id AS "id!", false AS "created!" FROM existing
        UNION ALL
        SELECT id, true FROM created
        "#,
        Uuid::now_v7(),
        entity,
        source,
        MAX_PER_ENTITY,
    )
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|r| Found {
        id: r.id,
        created: r.created,
    }))
}
