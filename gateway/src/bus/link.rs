//! The gateway replica's broker link: declares the topology (so every function's queue exists
//! before its first job, even while the function is scaled to zero), publishes jobs with
//! confirms, and consumes the replica's reply queue, handing each completion to the caller
//! waiting for it. Reconnection is `surge_contract::link`'s.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use surge_contract::binding::{self, AmqpMessage};
use surge_contract::broker::{PublishError, publish_confirmed};
use surge_contract::job::{FunctionName, JobId};
use surge_contract::link::{Link, LinkHandler};
use surge_contract::settings::BrokerSettings;
use surge_contract::topology::Topology;
use tokio_util::sync::CancellationToken;

use super::waiters::{Waiter, Waiters, WaitersFull};

/// Handle to the broker link; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    link: Link,
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

/// What the link does on each connect and with each reply.
struct Replies {
    topology: Topology,
    functions: Vec<FunctionName>,
    replica: String,
    waiters: Arc<Waiters>,
}

impl Bus {
    /// Starts the link; it runs until `shutdown`.
    pub fn start(
        settings: &BrokerSettings,
        topology: Topology,
        functions: Vec<FunctionName>,
        max_waiters: usize,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let waiters = Waiters::new(max_waiters);
        let name = format!("{}gateway-{replica}", topology.prefix());
        let reply_queue = topology.reply_queue(&replica);
        let handler = Arc::new(Replies {
            topology: topology.clone(),
            functions,
            replica,
            waiters: Arc::clone(&waiters),
        });
        let (link, task) = Link::start(settings.clone(), name, handler, shutdown);
        let bus = Self {
            inner: Arc::new(Inner {
                link,
                waiters,
                topology,
                reply_queue,
                publish_timeout: settings.publish_timeout(),
            }),
        };
        (bus, task)
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

    /// Publishes a job's request event to `surge.jobs`, mandatory and confirmed.
    pub async fn publish_job(
        &self,
        function: &FunctionName,
        message: AmqpMessage,
    ) -> Result<(), PublishJobError> {
        let channel = self
            .inner
            .link
            .channel()
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

impl LinkHandler for Replies {
    async fn setup(
        &self,
        connection: &Connection,
        publish: &Channel,
    ) -> anyhow::Result<Option<(Channel, Consumer)>> {
        self.topology.declare_exchanges(publish).await?;
        for function in &self.functions {
            self.topology.declare_function(publish, function).await?;
        }
        let reply_queue = self
            .topology
            .declare_reply_queue(publish, &self.replica)
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
        Ok(Some((consume, replies)))
    }

    fn deliver(&self, delivery: lapin::message::Delivery, _publish: &Channel) {
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
