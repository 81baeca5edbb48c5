//! `entity`: one user within one tenant.

use sqlx::PgPool;
use uuid::Uuid;

/// The entity of `(tenant, account)`, created on first sight.
pub async fn ensure(pool: &PgPool, tenant: &str, account: &str) -> Result<Uuid, sqlx::Error> {
    sqlx::query_scalar!(
        r#"
        INSERT INTO entity (id, tenant, account) VALUES ($1, $2, $3)
        ON CONFLICT ON CONSTRAINT entity_tenant_account_key DO UPDATE SET tenant = EXCLUDED.tenant
        RETURNING id
        "#,
        Uuid::now_v7(),
        tenant,
        account,
    )
    .fetch_one(pool)
    .await
}

/// The entity of `(tenant, account)` as a login finds it: created with the provider's
/// subject on the first login, given the subject on the first login of an entity made
/// without one (`surge key create`, the development key). Returns the id and the subject
/// the entity is bound to, which the caller compares with the login's.
pub async fn ensure_with_subject(
    pool: &PgPool,
    tenant: &str,
    account: &str,
    subject: &str,
) -> Result<(Uuid, Option<String>), sqlx::Error> {
    let row = sqlx::query!(
        r#"
        INSERT INTO entity (id, tenant, account, subject) VALUES ($1, $2, $3, $4)
        ON CONFLICT ON CONSTRAINT entity_tenant_account_key
        DO UPDATE SET subject = COALESCE(entity.subject, EXCLUDED.subject)
        RETURNING id, subject
        "#,
        Uuid::now_v7(),
        tenant,
        account,
        subject,
    )
    .fetch_one(pool)
    .await?;
    Ok((row.id, row.subject))
}
