//! `settings`: performs the writes of `/settings`. The gateway checks that the caller is an
//! admin and stamps it as the job's owner; this function checks the precondition (the
//! version the writer read) and writes in the job's transaction, so a write happens once and
//! two writers who read the same version cannot both win. Its `.completed` event is the change
//! every gateway listens for (`surge_contract::server_settings`).

use serde_json::Value;
use sqlx::PgConnection;
use surge_contract::problem::{Problem, types};
use surge_contract::server_settings::{self, Change, Changed, MAX_SETTINGS, Op};
use surge_runtime::{Function, HandlerError, JobContext};
use uuid::Uuid;

pub struct Settings;

impl Function for Settings {
    // A literal (the manifest checks read it from here); a test pins it to the contract's.
    const NAME: &'static str = "settings";
    type Input = Change;
    type Output = Changed;

    async fn handle(
        &self,
        change: Change,
        ctx: &mut JobContext<'_>,
    ) -> Result<Changed, HandlerError> {
        // Only the gateway stamps an owner, and only for an admin: a job published straight
        // to the broker (a trusted producer) does not get to change server settings.
        let Some(actor) = ctx.owner() else {
            return Err(rejected(
                types::FORBIDDEN,
                403,
                "settings are changed through the gateway's /settings by an admin, not by events published to the broker",
            ));
        };
        server_settings::validate_name(change.name()).map_err(invalid)?;
        let db = ctx.db().await?;
        match change {
            Change::Create { name, value } => create(db, actor, &name, value).await,
            Change::Update {
                name,
                value,
                if_version,
            } => update(db, actor, &name, value, if_version).await,
            Change::Delete { name, if_version } => delete(db, &name, if_version).await,
        }
    }
}

async fn create(
    db: &mut PgConnection,
    actor: Uuid,
    name: &str,
    value: Value,
) -> Result<Changed, HandlerError> {
    server_settings::validate_value(name, &value).map_err(invalid)?;
    // Creates are serialised (a transaction-scoped advisory lock, taken before the count's
    // snapshot), so concurrent ones cannot together pass the cap.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('surge.settings.create'))")
        .execute(&mut *db)
        .await?;
    let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM settings"#)
        .fetch_one(&mut *db)
        .await?;
    if count >= MAX_SETTINGS {
        return Err(rejected(
            types::CONFLICT,
            409,
            &format!("there are {count} settings already, the most allowed; delete one first"),
        ));
    }
    let row = sqlx::query!(
        r#"INSERT INTO settings (id, name, value, updated_by)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (name) DO NOTHING
           RETURNING version, updated_at"#,
        Uuid::now_v7(),
        name,
        value,
        actor,
    )
    .fetch_optional(&mut *db)
    .await?;
    let row = row.ok_or_else(|| {
        rejected(
            types::CONFLICT,
            409,
            &format!("setting {name} exists already; change it with PUT /settings/{name}"),
        )
    })?;
    Ok(Changed {
        op: Op::Create,
        name: name.to_owned(),
        version: row.version,
        value,
        updated_at: row.updated_at,
    })
}

async fn update(
    db: &mut PgConnection,
    actor: Uuid,
    name: &str,
    value: Value,
    if_version: Option<i64>,
) -> Result<Changed, HandlerError> {
    server_settings::validate_value(name, &value).map_err(invalid)?;
    let row = sqlx::query!(
        r#"UPDATE settings
           SET value = $2, version = version + 1, updated_by = $3, updated_at = now()
           WHERE name = $1 AND ($4::bigint IS NULL OR version = $4)
           RETURNING version, updated_at"#,
        name,
        value,
        actor,
        if_version,
    )
    .fetch_optional(&mut *db)
    .await?;
    match row {
        Some(row) => Ok(Changed {
            op: Op::Update,
            name: name.to_owned(),
            version: row.version,
            value,
            updated_at: row.updated_at,
        }),
        None => Err(why_not(db, name, if_version).await),
    }
}

async fn delete(
    db: &mut PgConnection,
    name: &str,
    if_version: Option<i64>,
) -> Result<Changed, HandlerError> {
    let row = sqlx::query!(
        r#"DELETE FROM settings
           WHERE name = $1 AND ($2::bigint IS NULL OR version = $2)
           RETURNING version"#,
        name,
        if_version,
    )
    .fetch_optional(&mut *db)
    .await?;
    match row {
        Some(row) => Ok(Changed {
            op: Op::Delete,
            name: name.to_owned(),
            version: row.version,
            value: Value::Null,
            updated_at: chrono::Utc::now(),
        }),
        None => Err(why_not(db, name, if_version).await),
    }
}

/// A conditional write matched no row: the setting is gone, or another write came first.
async fn why_not(db: &mut PgConnection, name: &str, if_version: Option<i64>) -> HandlerError {
    let current = sqlx::query_scalar!("SELECT version FROM settings WHERE name = $1", name)
        .fetch_optional(&mut *db)
        .await;
    match current {
        Err(e) => e.into(),
        Ok(None) => rejected(types::NOT_FOUND, 404, &format!("no setting {name}")),
        Ok(Some(current)) => HandlerError::rejected(
            Problem::new(types::PRECONDITION_FAILED, "Precondition failed")
                .with_status(412)
                .with_detail(format!(
                    "setting {name} is at version {current}, not {}: it changed since it was read; read it again",
                    if_version.unwrap_or_default()
                ))
                .with_extension("current_version", current),
        ),
    }
}

fn rejected(kind: &str, status: u16, detail: &str) -> HandlerError {
    let title = match status {
        403 => "Forbidden",
        404 => "Not found",
        409 => "Conflict",
        _ => "Invalid setting",
    };
    HandlerError::rejected(
        Problem::new(kind, title)
            .with_status(status)
            .with_detail(detail),
    )
}

fn invalid(detail: String) -> HandlerError {
    rejected(types::INVALID_SETTING, 422, &detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_is_the_contracts() {
        assert_eq!(<Settings as Function>::NAME, server_settings::FUNCTION);
    }
}
