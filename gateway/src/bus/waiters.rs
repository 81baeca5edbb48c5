//! Callers waiting for their job's completion, by job id. Bounded: past `capacity` a caller is
//! not registered and gets its 202 at once. A waiter removes itself when dropped (answered,
//! timed out or disconnected), so nothing outlives its request: no per-job task, no leak.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use surge_contract::job::JobId;
use tokio::sync::oneshot;

use surge_contract::completion::Completion;

#[derive(Debug, thiserror::Error)]
#[error("too many callers are waiting on this replica")]
pub struct WaitersFull;

#[derive(Debug)]
pub struct Waiters {
    capacity: usize,
    map: Mutex<HashMap<JobId, oneshot::Sender<Completion>>>,
}

impl Waiters {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity,
            map: Mutex::new(HashMap::new()),
        })
    }

    /// Registers a caller for `job`.
    pub fn register(self: &Arc<Self>, job: JobId) -> Result<Waiter, WaitersFull> {
        let (tx, rx) = oneshot::channel();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity {
            return Err(WaitersFull);
        }
        map.insert(job, tx);
        Ok(Waiter {
            job,
            rx,
            waiters: Arc::clone(self),
        })
    }

    /// Hands `completion` to the caller waiting for `job`, if any. O(1).
    pub fn complete(&self, job: JobId, completion: Completion) -> bool {
        let sender = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&job);
        sender.is_some_and(|tx| tx.send(completion).is_ok())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// One waiting caller. Dropping it unregisters it.
#[derive(Debug)]
pub struct Waiter {
    job: JobId,
    rx: oneshot::Receiver<Completion>,
    waiters: Arc<Waiters>,
}

impl Waiter {
    /// The completion, or `None` when `timeout` passes first.
    pub async fn wait(mut self, timeout: std::time::Duration) -> Option<Completion> {
        tokio::time::timeout(timeout, &mut self.rx).await.ok()?.ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.waiters
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use surge_contract::job::{FunctionName, JobState};

    fn event() -> Completion {
        Completion {
            job_id: JobId::new(),
            function: FunctionName::parse("echo").unwrap(),
            state: JobState::Succeeded,
            attempts: 1,
            finished_at: chrono::Utc::now(),
            data: None,
            owner: None,
            trace: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_completion_reaches_its_waiter() {
        let waiters = Waiters::new(4);
        let job = JobId::new();
        let waiter = waiters.register(job).unwrap();
        assert!(waiters.complete(job, event()));
        assert!(waiter.wait(Duration::from_secs(1)).await.is_some());
        assert_eq!(waiters.len(), 0);
    }

    #[tokio::test]
    async fn a_timed_out_waiter_leaves_nothing_behind() {
        let waiters = Waiters::new(4);
        let job = JobId::new();
        let waiter = waiters.register(job).unwrap();
        assert!(waiter.wait(Duration::from_millis(10)).await.is_none());
        assert_eq!(waiters.len(), 0);
        assert!(
            !waiters.complete(job, event()),
            "a late completion finds no one"
        );
    }

    #[test]
    fn the_map_is_bounded() {
        let waiters = Waiters::new(2);
        let _a = waiters.register(JobId::new()).unwrap();
        let _b = waiters.register(JobId::new()).unwrap();
        assert!(waiters.register(JobId::new()).is_err());
        drop(_a);
        assert!(waiters.register(JobId::new()).is_ok());
    }
}
