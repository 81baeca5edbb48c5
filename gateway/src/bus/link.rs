//! The bus handle the rest of the gateway holds: publishing job requests, waiting for
//! replies, holding event bindings. Reconnection is `surge_contract::link`'s.

use std::sync::Arc;
use std::time::Duration;

use surge_contract::binding::AmqpMessage;
use surge_contract::broker::publish_confirmed;
use surge_contract::config::BrokerSettings;
use surge_contract::job::{FunctionName, JobId};
use surge_contract::link::Link;
use surge_contract::topology::Topology;
use tokio_util::sync::CancellationToken;

use super::bindings::{Bindings, Target};
use super::replies::Replies;
use super::waiters::{Waiter, Waiters, WaitersFull};
use super::{BusError, EventListener};

/// Handle to the broker link; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    link: Link,
    waiters: Arc<Waiters>,
    bindings: Arc<Bindings>,
    topology: Topology,
    reply_queue: String,
    publish_timeout: Duration,
    /// The broker user this replica publishes as, stamped on its requests.
    sender: Option<String>,
}

impl Bus {
    /// Starts the link; it runs until `shutdown`. Every function in `functions` gets its
    /// queues declared (so a job for a function scaled to zero waits in its queue), and
    /// `listeners` get every completion routed here.
    pub fn start(
        settings: &BrokerSettings,
        topology: Topology,
        functions: Vec<FunctionName>,
        max_waiters: usize,
        listeners: Vec<Arc<dyn EventListener>>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let waiters = Waiters::new(max_waiters);
        let permanent = listeners.iter().flat_map(|l| l.permanent_keys()).collect();
        let bindings = Arc::new(Bindings::held_for_good(permanent));
        let name = format!("{}gateway-{replica}", topology.prefix());
        let reply_queue = topology.reply_queue(&replica);
        let handler = Arc::new(Replies {
            topology: topology.clone(),
            functions,
            replica,
            waiters: Arc::clone(&waiters),
            bindings: Arc::clone(&bindings),
            listeners,
            events_exchange: topology.events_exchange(),
            senders: settings.function_senders(),
        });
        let (link, task) = Link::start(settings.clone(), name, handler, shutdown);
        let bus = Self {
            inner: Arc::new(Inner {
                link,
                waiters,
                bindings,
                topology,
                reply_queue,
                publish_timeout: settings.publish_timeout(),
                sender: settings.user(),
            }),
        };
        (bus, task)
    }

    /// The broker user this replica publishes as (`user_id` of its requests).
    pub fn sender(&self) -> Option<&str> {
        self.inner.sender.as_deref()
    }

    /// How long a publish waits for its confirm.
    pub fn publish_timeout(&self) -> Duration {
        self.inner.publish_timeout
    }

    pub fn is_connected(&self) -> bool {
        self.inner.link.is_up()
    }

    /// Waits until the link is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.inner.link.wait_up(timeout).await
    }

    /// This replica's reply queue, for `reply_to`.
    pub fn reply_queue(&self) -> &str {
        &self.inner.reply_queue
    }

    /// Registers a caller for `job`'s completion; register before publishing, so a fast
    /// completion cannot arrive before anyone listens.
    pub fn wait_for(&self, job: JobId) -> Result<Waiter, WaitersFull> {
        self.inner.waiters.register(job)
    }

    /// Routes the completions matching `key` (a `job::*_binding_key`) here, for one more
    /// holder; fails when the first holder cannot bind it (the link is down).
    pub async fn hold(&self, key: &str) -> Result<(), BusError> {
        self.inner.bindings.hold(key, self.target()).await
    }

    /// Undoes one `hold`; the last one stops the routing.
    pub async fn release(&self, key: &str) {
        self.inner.bindings.release(key, self.target()).await;
    }

    fn target(&self) -> Target<'_> {
        Target {
            channel: self.inner.link.channel(),
            topology: &self.inner.topology,
            reply_queue: &self.inner.reply_queue,
            timeout: self.inner.publish_timeout,
        }
    }

    /// Publishes a job's request to `surge.jobs`, mandatory and confirmed.
    pub async fn publish_job(
        &self,
        function: &FunctionName,
        message: &AmqpMessage,
    ) -> Result<(), BusError> {
        let channel = self.inner.link.channel().ok_or(BusError::NotConnected)?;
        publish_confirmed(
            &channel,
            &self.inner.topology.jobs_exchange(),
            function.as_str(),
            message,
            true,
            self.inner.publish_timeout,
        )
        .await?;
        Ok(())
    }
}
