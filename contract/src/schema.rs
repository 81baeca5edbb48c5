//! The database schema: migrations embedded in every binary, applied only by `surge migrate`
//! (what a Kubernetes Job runs), and checked at the start of every other process.

use sqlx::PgPool;
use sqlx::migrate::{MigrateError, Migrator};

/// The command that brings a database up to date, named in every schema error.
pub const MIGRATE_COMMAND: &str = "surge migrate";

/// The migrations this build was compiled with.
pub fn migrator() -> Migrator {
    sqlx::migrate!("../migrations")
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database schema is at version {have}, this build needs {want}: \
         run `{MIGRATE_COMMAND}` (with the same SURGE_DATABASE__URL) first"
    )]
    Outdated { have: i64, want: i64 },
    #[error("the database has no Surge schema yet: run `{MIGRATE_COMMAND}` first")]
    Missing,
    #[error("reading the schema version failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("applying migrations failed: {0}")]
    Migrate(#[from] MigrateError),
}

/// Applies every pending migration. Safe to run concurrently: sqlx takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), SchemaError> {
    migrator().run(pool).await?;
    Ok(())
}

/// Refuses to go on against a database older than this build. A newer database is accepted:
/// migrations are additive, so during a rolling upgrade old replicas keep working.
pub async fn ensure_current(pool: &PgPool) -> Result<(), SchemaError> {
    let want = migrator()
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or_default();
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Err(SchemaError::Missing);
    }
    let have: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?;
    match have {
        None => Err(SchemaError::Missing),
        Some(have) if have < want => Err(SchemaError::Outdated { have, want }),
        Some(_) => Ok(()),
    }
}
