//! Recording that job publishes were confirmed, in batches: each confirm is handed to one
//! task that deletes whatever confirms are waiting in one statement (no timer: a lone confirm
//! is written at once, a burst shares a statement). Losing one (a full queue, a database
//! error, a crash) is harmless: the reconciler then publishes that job once more, and the
//! runtime runs a job id once.

use std::time::Duration;

use sqlx::PgPool;
use surge_contract::job::JobId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::unconfirmed;

/// Confirms waiting to be written, at most; past it a confirm is dropped (see above).
const QUEUE: usize = 10_000;
/// Confirms one statement writes at most.
const BATCH: usize = 1_000;

/// The handle publishers use; cheap to clone.
#[derive(Debug, Clone)]
pub struct Confirmations {
    tx: mpsc::Sender<JobId>,
}

impl Confirmations {
    /// Starts the writer; it runs until `stop`, then writes what is left.
    pub fn start(pool: PgPool, stop: CancellationToken) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx }, tokio::spawn(write(pool, rx, stop)))
    }

    /// Records that `job`'s publish was confirmed.
    pub fn confirmed(&self, job: JobId) {
        if self.tx.try_send(job).is_err() {
            tracing::debug!(%job, "a confirm was not recorded; the reconciler may publish the job once more");
        }
    }
}

async fn write(pool: PgPool, mut rx: mpsc::Receiver<JobId>, stop: CancellationToken) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            first = rx.recv() => first,
            () = stop.cancelled() => {
                rx.close();
                rx.recv().await
            }
        };
        let Some(first) = first else { return };
        batch.push(first.0);
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job.0),
                Err(_) => break,
            }
        }
        // Bounded: a database that does not answer must not hold confirms for ever.
        match tokio::time::timeout(Duration::from_secs(10), unconfirmed::forget(&pool, &batch))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, count = batch.len(), "confirms could not be recorded; the reconciler will publish those jobs once more")
            }
            Err(_) => tracing::warn!(
                count = batch.len(),
                "recording confirms timed out; the reconciler will publish those jobs once more"
            ),
        }
        batch.clear();
    }
}
