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
