//! The two ways jobs reach a function, as handlers of the process's broker link
//! (`surge_contract::link`, which owns connecting, reconnecting and the shutdown order).
//!
//! - [`Consuming`] (AMQP mode): consumes the function's queue with prefetch = concurrency;
//!   each delivery runs on a tracked task; at shutdown the link cancels the consumer and
//!   [`Consuming::drain`] gives in-flight jobs the grace period before the connection closes
//!   (which hands what is left back to the queue).
//! - [`Publishing`] (HTTP mode): only declares and publishes; jobs arrive over HTTP.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use surge_contract::job::FunctionName;
use surge_contract::link::LinkHandler;
use surge_contract::topology::Topology;
use tokio_util::task::TaskTracker;

use crate::handler::Function;
use crate::worker::Worker;

pub struct Consuming<F: Function> {
    worker: Arc<Worker<F>>,
    in_flight: TaskTracker,
    grace: Duration,
}

impl<F: Function> Consuming<F> {
    pub fn new(worker: Arc<Worker<F>>) -> Self {
        let grace = worker.settings.function.grace_period();
        Self {
            worker,
            in_flight: TaskTracker::new(),
            grace,
        }
    }
}

impl<F: Function> LinkHandler for Consuming<F> {
    async fn setup(
        &self,
        connection: &Connection,
        publish: &Channel,
    ) -> anyhow::Result<Option<(Channel, Consumer)>> {
        let topology = &self.worker.topology;
        topology.declare_exchanges(publish).await?;
        topology
            .declare_function(publish, &self.worker.name)
            .await?;
        let consume = connection.create_channel().await?;
        let concurrency = self.worker.settings.function.concurrency;
        consume
            .basic_qos(concurrency, BasicQosOptions::default())
            .await?;
        let queue = topology.function_queue(&self.worker.name);
        let consumer = consume
            .basic_consume(
                queue.as_str().into(),
                format!("{}fn-{}", topology.prefix(), self.worker.name)
                    .as_str()
                    .into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(%queue, concurrency, "consuming");
        Ok(Some((consume, consumer)))
    }

    fn deliver(&self, delivery: lapin::message::Delivery, publish: &Channel) {
        // Prefetch bounds how many of these run at once.
        self.in_flight
            .spawn(Arc::clone(&self.worker).process(publish.clone(), delivery));
    }

    async fn drain(&self) {
        self.in_flight.close();
        tracing::info!(in_flight = self.in_flight.len(), grace = ?self.grace, "draining");
        if tokio::time::timeout(self.grace, self.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.in_flight.len(),
                "grace period over: unfinished jobs go back to the queue"
            );
        }
    }
}

/// HTTP mode: the link declares the topology and carries completions.
pub struct Publishing {
    pub topology: Topology,
    pub function: FunctionName,
}

impl LinkHandler for Publishing {
    async fn setup(
        &self,
        _connection: &Connection,
        publish: &Channel,
    ) -> anyhow::Result<Option<(Channel, Consumer)>> {
        self.topology.declare_exchanges(publish).await?;
        self.topology
            .declare_function(publish, &self.function)
            .await?;
        Ok(None)
    }

    fn deliver(&self, _delivery: lapin::message::Delivery, _publish: &Channel) {}
}
