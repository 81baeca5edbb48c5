//! The supervised broker connection of one gateway replica. lapin does not reconnect by
//! itself: this loop connects, declares the topology (so every function's queue exists before
//! its first job, even while the function is scaled to zero), opens the reply queue, and on
//! any loss backs off and starts over. While it is down, publishing answers "unavailable".

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use surge_contract::binding::{self, AmqpMessage};
use surge_contract::broker::{self, Backoff, PublishError, publish_confirmed};
use surge_contract::job::{FunctionName, JobId};
use surge_contract::settings::BrokerSettings;
use surge_contract::topology::Topology;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::waiters::{Waiter, Waiters, WaitersFull};

/// Handle to the broker link; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    channel: watch::Receiver<Option<Channel>>,
    waiters: Arc<Waiters>,
    topology: Topology,
    reply_queue: String,
    publish_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishJobError {
    #[error("the broker is not connected")]
    NotConnected,
    #[error(transparent)]
    Publish(#[from] PublishError),
}

/// What the supervisor needs; moved into its task.
struct Supervisor {
    settings: BrokerSettings,
    topology: Topology,
    functions: Vec<FunctionName>,
    replica: String,
    channel: watch::Sender<Option<Channel>>,
    waiters: Arc<Waiters>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Bus {
    /// Starts the link's supervisor; it runs until `shutdown`.
    pub fn start(
        settings: &BrokerSettings,
        topology: Topology,
        functions: Vec<FunctionName>,
        max_waiters: usize,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let (tx, rx) = watch::channel(None);
        let waiters = Waiters::new(max_waiters);
        let bus = Self {
            inner: Arc::new(Inner {
                channel: rx,
                waiters: Arc::clone(&waiters),
                reply_queue: topology.reply_queue(&replica),
                topology: topology.clone(),
                publish_timeout: settings.publish_timeout(),
            }),
        };
        let supervisor = Supervisor {
            settings: settings.clone(),
            topology,
            functions,
            replica,
            channel: tx,
            waiters,
        };
        let task = tokio::spawn(supervisor.run(shutdown));
        (bus, task)
    }

    pub fn is_connected(&self) -> bool {
        self.inner.channel.borrow().is_some()
    }

    /// Waits until the link is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.inner.channel.clone();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok_and(|r| r.is_ok())
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

    pub fn waiting(&self) -> usize {
        self.inner.waiters.len()
    }

    /// Publishes a job's request event to `surge.jobs`, mandatory and confirmed.
    pub async fn publish_job(
        &self,
        function: &FunctionName,
        message: AmqpMessage,
    ) -> Result<(), PublishJobError> {
        let channel = self
            .inner
            .channel
            .borrow()
            .clone()
            .ok_or(PublishJobError::NotConnected)?;
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

impl Supervisor {
    async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::from_settings(&self.settings);
        loop {
            let end = self.session(&shutdown, &mut backoff).await;
            self.channel.send_replace(None);
            match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(reason) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%reason, ?delay, "broker link lost; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn session(&self, shutdown: &CancellationToken, backoff: &mut Backoff) -> SessionEnd {
        let name = format!("{}gateway-{}", self.topology.prefix(), self.replica);
        let connection = match broker::connect(&self.settings, &name).await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Lost(e.to_string()),
        };
        let (publish, mut replies) = match self.declare(&connection).await {
            Ok(parts) => parts,
            Err(e) => {
                let _ = connection.close(200, "setup failed".into()).await;
                return SessionEnd::Lost(format!("{e:#}"));
            }
        };
        self.channel.send_replace(Some(publish));
        backoff.reset();
        tracing::info!(reply_queue = %self.topology.reply_queue(&self.replica), "broker link up");
        let mut events = connection.events_listener();
        let end = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                event = events.next() => {
                    if let Some(lapin::Event::Error(e)) = event {
                        break SessionEnd::Lost(e.to_string());
                    }
                }
                next = replies.next() => match next {
                    Some(Ok(delivery)) => self.dispatch(&delivery),
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the reply consumer was cancelled".into()),
                },
            }
        };
        let _ = connection.close(200, "bye".into()).await;
        end
    }

    /// Declares everything this replica relies on and opens its channels.
    async fn declare(&self, connection: &Connection) -> anyhow::Result<(Channel, lapin::Consumer)> {
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        self.topology.declare_exchanges(&publish).await?;
        for function in &self.functions {
            self.topology.declare_function(&publish, function).await?;
        }
        let reply_queue = self
            .topology
            .declare_reply_queue(&publish, &self.replica)
            .await?;
        let consume = connection.create_channel().await?;
        // Replies are only useful to a live caller: no acks, nothing to redeliver.
        let replies = consume
            .basic_consume(
                reply_queue.as_str().into(),
                "replies".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok((publish, replies))
    }

    fn dispatch(&self, delivery: &lapin::message::Delivery) {
        let job = delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| id.as_str().parse::<JobId>().ok());
        let Some(job) = job else {
            tracing::warn!("a reply without a job id in correlation_id was dropped");
            return;
        };
        match binding::decode(&delivery.properties, &delivery.data) {
            Ok(event) => {
                // No waiter: the caller timed out or left; it can read the job record.
                self.waiters.complete(job, event);
            }
            Err(e) => tracing::warn!(%job, error = %e, "an undecodable reply was dropped"),
        }
    }
}
