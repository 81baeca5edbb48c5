//! `settings`, read side. Settings are server-wide (not owned): every authenticated caller may
//! read them; writes are the `settings` function's.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;
use surge_contract::server_settings::MAX_SETTINGS;

#[derive(Debug, Clone, PartialEq)]
pub struct SettingRow {
    pub name: String,
    pub value: Value,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
}

/// Every setting, sorted by name in byte order (the cache binary-searches it; the database's
/// own collation may order `_ . -` otherwise, hence `COLLATE "C"`). At most `MAX_SETTINGS`:
/// the function refuses more.
pub async fn all(pool: &PgPool) -> Result<Vec<SettingRow>, sqlx::Error> {
    let rows = sqlx::query_as!(
        SettingRow,
        r#"SELECT name, value, version, updated_at FROM settings ORDER BY name COLLATE "C" LIMIT $1"#,
        MAX_SETTINGS
    )
    .fetch_all(pool)
    .await?;
    if rows.len() as i64 == MAX_SETTINGS {
        tracing::warn!(
            max = MAX_SETTINGS,
            "as many settings as allowed exist; any beyond are not read"
        );
    }
    Ok(rows)
}
