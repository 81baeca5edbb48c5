//! Group commit: work that arrives together is written together. Callers hand in one item
//! each and wait for its own answer; one task takes whatever is waiting when it is free —
//! never waiting for more, so a lone item is written at once and only a burst shares a
//! statement — and writes the group with one call. At most `in_flight` groups are written at
//! once (a share of the database pool); items that arrive meanwhile form the next group.
//!
//! A group's write answers each item on its own (one bad row fails only its own item, see the
//! writers), so batching changes how many items share a commit, never what an answer means.

use std::future::Future;
use std::sync::Arc;

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// How a group writer is sized.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// Items waiting for a writer, at most; past it callers wait (back-pressure).
    pub queue: usize,
    /// Items in one group, at most.
    pub max_group: usize,
    /// Groups written at once, at most.
    pub in_flight: usize,
}

/// The handle callers use; cheap to clone.
pub struct GroupWriter<T, R> {
    tx: mpsc::Sender<(T, oneshot::Sender<R>)>,
}

impl<T, R> Clone for GroupWriter<T, R> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
        }
    }
}

impl<T, R> std::fmt::Debug for GroupWriter<T, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter").finish_non_exhaustive()
    }
}

/// The writer stopped (its task ended with the process).
#[derive(Debug, thiserror::Error)]
#[error("the group writer has stopped")]
pub struct Stopped;

impl<T: Send + 'static, R: Send + 'static> GroupWriter<T, R> {
    /// Starts the writer task. `write` gets a group and answers each item in the group's
    /// order (a missing answer is the caller's `Stopped`). The task ends when every handle is
    /// dropped, after writing what was handed in.
    pub fn start<F, Fut>(limits: GroupLimits, sizes: Option<Histogram>, write: F) -> Self
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<R>> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(limits.queue.max(1));
        tokio::spawn(run(rx, limits, sizes, Arc::new(write)));
        Self { tx }
    }

    /// Hands in `item` and waits for its answer.
    pub async fn write(&self, item: T) -> Result<R, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.tx.send((item, reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

async fn run<T, R, F, Fut>(
    mut rx: mpsc::Receiver<(T, oneshot::Sender<R>)>,
    limits: GroupLimits,
    sizes: Option<Histogram>,
    write: Arc<F>,
) where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Vec<R>> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limits.in_flight.max(1)));
    let max = limits.max_group.max(1);
    loop {
        // A free writer first: while all are busy, what arrives waits and joins one group.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut group = vec![first];
        while group.len() < max {
            match rx.try_recv() {
                Ok(item) => group.push(item),
                Err(_) => break,
            }
        }
        if let Some(sizes) = &sizes {
            sizes.observe(group.len() as f64);
        }
        let write = write.clone();
        tokio::spawn(async move {
            let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = group.into_iter().unzip();
            let answers = write(items).await;
            for (reply, answer) in replies.into_iter().zip(answers) {
                let _ = reply.send(answer);
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn a_lone_item_is_written_at_once_and_answered_alone() {
        let writer = GroupWriter::start(
            GroupLimits {
                queue: 8,
                max_group: 8,
                in_flight: 1,
            },
            None,
            |items: Vec<u32>| async move { items.iter().map(|i| i * 10).collect() },
        );
        let answer = tokio::time::timeout(Duration::from_secs(1), writer.write(4))
            .await
            .expect("no timer holds a lone item");
        assert_eq!(answer.unwrap(), 40);
    }

    #[tokio::test]
    async fn items_that_wait_share_a_group_and_each_gets_its_own_answer() {
        let groups = Arc::new(AtomicUsize::new(0));
        let counted = groups.clone();
        let (release_tx, release_rx) = tokio::sync::watch::channel(false);
        let writer = GroupWriter::start(
            GroupLimits {
                queue: 64,
                max_group: 16,
                in_flight: 1,
            },
            None,
            move |items: Vec<u32>| {
                counted.fetch_add(1, Ordering::SeqCst);
                let mut release = release_rx.clone();
                async move {
                    // The first group holds the only writer until released: the rest queue.
                    let _ = release.wait_for(|r| *r).await;
                    items.iter().map(|i| i + 1).collect()
                }
            },
        );
        let calls: Vec<_> = (0..33u32)
            .map(|i| {
                let writer = writer.clone();
                tokio::spawn(async move { (i, writer.write(i).await.unwrap()) })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release_tx.send_replace(true);
        for call in calls {
            let (i, answer) = call.await.unwrap();
            assert_eq!(answer, i + 1, "each item gets its own answer");
        }
        let groups = groups.load(Ordering::SeqCst);
        // One group began alone; the 32 that waited went in groups of at most 16.
        assert!((3..=4).contains(&groups), "{groups} groups for 33 items");
    }
}
