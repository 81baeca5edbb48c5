//! A database of its own for each test, migrated like production; dropped at the end.

use sqlx::{Connection, PgConnection, PgPool};

#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDatabase {
    /// Creates an empty database (no schema).
    pub async fn empty(name: &str) -> Self {
        Self::empty_on(&crate::postgres_server_url(), name).await
    }

    /// Creates an empty database on `server` (`postgres://user@host:port`).
    pub async fn empty_on(server: &str, name: &str) -> Self {
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .expect("connect to Postgres (is it running on 127.0.0.1:5432?)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = format!("{server}/{name}");
        let pool = PgPool::connect(&url)
            .await
            .expect("connect to test database");
        Self {
            name: name.to_owned(),
            url,
            pool,
        }
    }

    /// Creates a database with Surge's schema, applied by the same code `surge migrate` runs.
    pub async fn migrated(name: &str) -> Self {
        Self::migrated_on(&crate::postgres_server_url(), name).await
    }

    /// As `migrated`, on `server`.
    pub async fn migrated_on(server: &str, name: &str) -> Self {
        let db = Self::empty_on(server, name).await;
        surge_contract::schema::migrate(&db.pool)
            .await
            .expect("migrate test database");
        db
    }

    /// A database made earlier, with its pool (a benchmark hands it from one phase to the next).
    pub fn reopen(name: &str, pool: PgPool) -> Self {
        Self {
            name: name.to_owned(),
            url: format!("{}/{name}", crate::postgres_server_url()),
            pool,
        }
    }

    /// Creates a database with Surge's schema as it was at migration `version` (to test what
    /// the later migrations do to existing data).
    pub async fn migrated_to(name: &str, version: i64) -> Self {
        let db = Self::empty(name).await;
        let mut migrator = surge_contract::schema::migrator();
        migrator.migrations = migrator
            .migrations
            .iter()
            .filter(|m| m.version <= version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        migrator.run(&db.pool).await.expect("migrate test database");
        db
    }

    /// Drops a test database, disconnecting whoever is still on it. Blocking: used from Drop.
    pub fn drop_blocking(name: &str) {
        let name = name.to_owned();
        crate::block_on_thread(async move {
            let server = crate::postgres_server_url();
            if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        });
    }
}
