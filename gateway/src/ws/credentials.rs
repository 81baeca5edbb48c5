//! Credential changes pushed to open websockets. The database announces every change to a
//! credential or an entity (`surge_credentials`, sent on commit by a trigger, whoever made
//! it); each announcement asks the entity's connections on this replica to check their own
//! credential again, so a revoked key's socket is closed (4003) within moments on every
//! replica, not at its next ping. Postgres rather than the broker carries it: it cannot be
//! forged by anyone holding broker credentials, and the change and its announcement commit
//! together. While the listening connection is lost announcements may be missed, so every
//! connection checks again once it is back.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::hub::Hub;

/// The channel the trigger notifies (`migrations/…_credential_changes.sql`).
pub const CHANNEL: &str = "surge_credentials";

/// Listens until `stop`, reconnecting with backoff.
pub async fn listen(pool: PgPool, hub: Arc<Hub>, stop: CancellationToken) {
    let mut backoff =
        surge_contract::broker::backoff(Duration::from_millis(200), Duration::from_secs(10))
            .build();
    let mut first = true;
    loop {
        let listening = tokio::select! {
            () = stop.cancelled() => return,
            listening = subscribe(&pool) => listening,
        };
        let mut listener = match listening {
            Ok(listener) => listener,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for credential changes; retrying");
                let wait = backoff.next().unwrap_or(Duration::from_secs(10));
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(wait) => continue,
                }
            }
        };
        backoff =
            surge_contract::broker::backoff(Duration::from_millis(200), Duration::from_secs(10))
                .build();
        if !first {
            // Changes made while nobody listened were not announced: everyone checks.
            let asked = hub.recheck_all();
            tracing::info!(asked, "listening for credential changes again");
        }
        first = false;
        loop {
            let received = tokio::select! {
                () = stop.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => match notification.payload().parse::<Uuid>() {
                    Ok(entity) => {
                        let asked = hub.recheck_entity(entity);
                        tracing::debug!(%entity, asked, "an entity's credentials changed");
                    }
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "a credential change that names no entity; ignored"
                    ),
                },
                // The connection dropped (and, being eager, the listener reconnected).
                Ok(None) => {
                    let asked = hub.recheck_all();
                    tracing::warn!(asked, "the credential-change connection dropped");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "listening for credential changes failed");
                    break;
                }
            }
        }
    }
}

async fn subscribe(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
