//! What the link does on each connect (declare the topology, restore the bindings, consume
//! the reply queue) and with each message on the reply queue: a reply goes to its waiting
//! caller, a completion routed from `surge.events` to the listeners.

use std::sync::Arc;

use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use surge_contract::completion::Completion;
use surge_contract::job::FunctionName;
use surge_contract::link::LinkHandler;
use surge_contract::topology::Topology;

use super::bindings::Bindings;
use super::waiters::Waiters;
use super::{EventListener, RoutedEvent, job_of};

pub(super) struct Replies {
    pub topology: Topology,
    pub functions: Vec<FunctionName>,
    pub replica: String,
    pub waiters: Arc<Waiters>,
    pub bindings: Arc<Bindings>,
    pub listeners: Vec<Arc<dyn EventListener>>,
    /// Compared with every delivery's exchange: named once.
    pub events_exchange: String,
    /// Who completions are taken from (`broker.function_users`).
    pub senders: surge_contract::broker::Senders,
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
        self.bindings
            .restore(publish, &self.topology, &reply_queue)
            .await?;
        for listener in &self.listeners {
            listener.on_connected();
        }
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
        // Only a function may say how a job ended: anything else on the events exchange or a
        // reply queue (a producer's forgery) never reaches a caller, a socket or the settings.
        if !self.senders.admits(&delivery.properties) {
            tracing::warn!(
                exchange = %delivery.exchange,
                key = %delivery.routing_key,
                user = delivery.properties.user_id().as_ref().map_or("", |u| u.as_str()),
                "a completion not published by a function's broker user was dropped"
            );
            return;
        }
        if delivery.exchange.as_str() == self.events_exchange {
            match RoutedEvent::of(&delivery) {
                Some(event) => self.listeners.iter().for_each(|l| l.on_event(&event)),
                None => {
                    tracing::warn!(key = %delivery.routing_key, "an event with a malformed routing key was dropped")
                }
            }
            return;
        }
        let Some(job) = job_of(&delivery) else {
            tracing::warn!("a reply without a job id in correlation_id was dropped");
            return;
        };
        match Completion::decode(&delivery.properties, &delivery.data) {
            Ok(completion) => {
                // The reply closes the job's trace: a child of the function's completion span.
                let span = tracing::info_span!(
                    "reply",
                    otel.name = "receive completion",
                    otel.kind = "consumer",
                    job_id = %job,
                );
                surge_contract::telemetry::set_parent(&span, &completion.trace);
                // No waiter: the caller timed out or left; it can read the job record.
                span.in_scope(|| self.waiters.complete(job, completion));
            }
            Err(e) => tracing::warn!(%job, error = %e, "an undecodable reply was dropped"),
        }
    }
}
