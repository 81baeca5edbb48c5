//! Recording that job publishes were confirmed, in batches: each confirm is handed to one
//! task that deletes whatever confirms are waiting in one statement, at most every
//! `FLUSH_EVERY`. Nobody waits for it (a caller is answered once its publish is confirmed), so
//! the pause adds no latency; it makes one commit of a tenth of a second's confirms instead of
//! one commit per job when jobs come one at a time. Losing one (a full queue, a database
//! error, a crash) is harmless: the reconciler then publishes that job once more (after
//! `delivery.lease_ms`, far longer than the pause), and the runtime runs a job id once.

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
/// The shortest time between two writes.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

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
        // Let a tenth of a second's confirms gather (not when stopping: write what is left).
        if !stop.is_cancelled() {
            let _ = tokio::time::timeout(FLUSH_EVERY, stop.cancelled()).await;
        }
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
