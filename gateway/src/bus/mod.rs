//! The gateway's side of the broker: one supervised connection that declares the topology,
//! publishes job requests with confirms, and consumes this replica's reply queue. Replies go
//! to the callers waiting for them ([`waiters`]); completions routed here from `surge.events`
//! go to the [`EventListener`]s the replica registered (websocket feeds, the settings cache),
//! which hold the bindings they need ([`bindings`]). The bus knows nothing of websockets or
//! settings: they use it, never the other way round.

mod bindings;
mod link;
mod replies;
mod waiters;

use std::time::Duration;

use lapin::message::Delivery;
use surge_contract::broker::PublishError;
use surge_contract::completion::{Completion, CompletionError};
use surge_contract::job::JobId;

pub use link::Bus;
pub use waiters::{Waiter, WaitersFull};

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("the broker is not connected")]
    NotConnected,
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Topology(#[from] surge_contract::topology::TopologyError),
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

impl BusError {
    /// Whether the broker may hold the message despite the error: nothing says it was
    /// refused (a confirm that did not come in time, a connection lost after the send).
    pub fn may_have_been_queued(&self) -> bool {
        matches!(
            self,
            Self::Publish(PublishError::Timeout(_) | PublishError::Amqp(_))
        )
    }
}

/// Something on this replica that wants the completions routed here from `surge.events`.
pub trait EventListener: Send + Sync + 'static {
    /// One completion; decode it (`RoutedEvent::completion`) only if it is wanted.
    fn on_event(&self, event: &RoutedEvent<'_>);

    /// The link is up again: events published meanwhile may have been missed.
    fn on_connected(&self) {}

    /// Binding keys this listener needs for the replica's whole life.
    fn permanent_keys(&self) -> Vec<String> {
        Vec::new()
    }
}

/// A completion from `surge.events`, with what its routing key and properties say before
/// it is decoded (so unwanted traffic costs no decoding).
#[derive(Debug)]
pub struct RoutedEvent<'a> {
    /// The routing key's words: `<tenant>.<entity>.<function>.<outcome>` (`job::topic_word`).
    pub tenant: &'a str,
    pub entity: &'a str,
    pub function: &'a str,
    pub outcome: &'a str,
    /// The job, from `correlation_id`.
    pub job: Option<JobId>,
    delivery: &'a Delivery,
}

impl<'a> RoutedEvent<'a> {
    /// Reads the routing key of a delivery from `surge.events`; `None` if it has not four words.
    fn of(delivery: &'a Delivery) -> Option<Self> {
        let mut words = delivery.routing_key.as_str().split('.');
        let (tenant, entity, function, outcome) =
            (words.next()?, words.next()?, words.next()?, words.next()?);
        Some(Self {
            tenant,
            entity,
            function,
            outcome,
            job: job_of(delivery),
            delivery,
        })
    }

    /// Whether the job succeeded, by its routing key.
    pub fn completed(&self) -> bool {
        self.outcome == surge_contract::job::Outcome::Completed.as_str()
    }

    /// The completion itself.
    pub fn completion(&self) -> Result<Completion, CompletionError> {
        Completion::decode(&self.delivery.properties, &self.delivery.data)
    }
}

/// The job a message is about, from its `correlation_id`.
fn job_of(delivery: &Delivery) -> Option<JobId> {
    delivery
        .properties
        .correlation_id()
        .as_ref()
        .and_then(|id| id.as_str().parse().ok())
}
