//! The broker session of a function process. lapin does not reconnect by itself, so this loop
//! does: connect, declare the topology, consume with prefetch = concurrency, and on any loss
//! back off and start over. In-flight deliveries of a lost connection are redelivered by the
//! broker; their job records make that safe.
//!
//! On shutdown the consumer is cancelled first (no new work), in-flight jobs get the grace
//! period to finish on the still-open connection, and whatever is left is handed back to the
//! queue when the connection closes.

use std::sync::Arc;

use futures_util::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use surge_contract::broker::{self, Backoff};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::handler::Function;
use crate::worker::Worker;

/// Why a session ended.
enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Consumes until `shutdown`, reconnecting as needed. Returns once drained.
pub async fn consume<F: Function>(worker: Arc<Worker<F>>, shutdown: CancellationToken) {
    let mut backoff = Backoff::from_settings(&worker.settings.broker);
    loop {
        match session(&worker, &shutdown, &mut backoff).await {
            SessionEnd::Shutdown => return,
            SessionEnd::Lost(reason) => {
                let delay = backoff.next_delay();
                tracing::warn!(%reason, ?delay, "broker session lost; reconnecting");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

async fn session<F: Function>(
    worker: &Arc<Worker<F>>,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> SessionEnd {
    let settings = &worker.settings;
    let name = format!("{}fn-{}", worker.topology.prefix(), worker.name);
    let connection = match broker::connect(&settings.broker, &name).await {
        Ok(c) => c,
        Err(e) => return SessionEnd::Lost(e.to_string()),
    };
    let setup = async {
        let publish = connection.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        worker.topology.declare_exchanges(&publish).await?;
        worker
            .topology
            .declare_function(&publish, &worker.name)
            .await?;
        let consume = connection.create_channel().await?;
        consume
            .basic_qos(settings.function.concurrency, BasicQosOptions::default())
            .await?;
        let consumer = consume
            .basic_consume(
                worker.topology.function_queue(&worker.name).as_str().into(),
                name.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, anyhow::Error>((publish, consume, consumer))
    };
    let (publish, consume, mut consumer) = match setup.await {
        Ok(parts) => parts,
        Err(e) => return SessionEnd::Lost(format!("{e:#}")),
    };
    backoff.reset();
    tracing::info!(queue = %worker.topology.function_queue(&worker.name), concurrency = settings.function.concurrency, "consuming");

    let in_flight = TaskTracker::new();
    let mut events = connection.events_listener();
    let end = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break SessionEnd::Shutdown,
            event = events.next() => {
                if let Some(lapin::Event::Error(e)) = event {
                    break SessionEnd::Lost(e.to_string());
                }
            }
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    // Prefetch bounds how many of these run at once.
                    in_flight.spawn(Arc::clone(worker).process(publish.clone(), delivery));
                }
                Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
            },
        }
    };
    in_flight.close();
    if matches!(end, SessionEnd::Shutdown) {
        let _ = consume
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await;
        let grace = settings.function.grace_period();
        tracing::info!(in_flight = in_flight.len(), ?grace, "draining");
        if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
            tracing::warn!(
                left = in_flight.len(),
                "grace period over: unfinished jobs go back to the queue"
            );
        }
    }
    // Closing hands every unacked delivery back to the queue.
    let _ = connection.close(200, "bye".into()).await;
    end
}
