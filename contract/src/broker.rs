//! Connecting to RabbitMQ and publishing with confirms: the two broker operations both sides
//! need. lapin does not reconnect by itself; callers own a reconnect loop that uses
//! [`backoff`] and re-declares their topology after each connect.

use std::time::Duration;

use backon::ExponentialBuilder;
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Connection, ConnectionProperties};
use secrecy::ExposeSecret;

use crate::binding::AmqpMessage;
use crate::config::BrokerSettings;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("cannot connect to RabbitMQ: no answer within {0:?}")]
    Timeout(Duration),
}

/// Opens a connection named `name` (shown in the broker's connection list) to the first
/// node that answers, trying the listed nodes in turn from the `first`-th (modulo their
/// number); returns it with the index of the node it reached.
pub async fn connect(
    settings: &BrokerSettings,
    name: &str,
    first: usize,
) -> Result<(Connection, usize), ConnectError> {
    let urls = settings.urls();
    let mut last = ConnectError::Timeout(settings.connect_timeout());
    for n in 0..urls.len() {
        let index = (first + n) % urls.len();
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connect = Connection::connect(urls[index].expose_secret(), properties);
        match tokio::time::timeout(settings.connect_timeout(), connect).await {
            Ok(Ok(connection)) => return Ok((connection, index)),
            Ok(Err(e)) => last = ConnectError::Amqp(e),
            Err(_) => last = ConnectError::Timeout(settings.connect_timeout()),
        }
        if urls.len() > 1 {
            tracing::warn!(node = index + 1, of = urls.len(), error = %last, "a broker node did not answer; trying the next");
        }
    }
    Err(last)
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("publish failed: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm the publish within {0:?}")]
    Timeout(Duration),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0:?}: the message was returned")]
    Unroutable(String),
    #[error("the event cannot be encoded: {0}")]
    Encode(String),
}

/// The broker users a kind of message is taken from. RabbitMQ refuses a publish whose
/// `user_id` is not the publishing connection's own user, so a message's `user_id` says who
/// sent it, and nobody with only a producer's credentials can pass for a gateway or a function.
/// No users named: every message is taken (one broker user for every part, as in
/// development).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Senders(Vec<String>);

impl Senders {
    /// Comma-separated broker user names.
    pub fn parse(list: &str) -> Self {
        Self(
            list.split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    /// Whether a message with these properties may be taken.
    pub fn admits(&self, properties: &lapin::BasicProperties) -> bool {
        self.0.is_empty()
            || properties
                .user_id()
                .as_ref()
                .is_some_and(|user| self.0.iter().any(|u| u == user.as_str()))
    }

    /// Whether any message is taken, whoever sent it.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }
}

/// Publishes persistently and waits for the broker's confirm (the channel must be in confirm
/// mode). With `mandatory`, a message that no queue takes is an error: the broker still acks
/// it, and only the returned message tells, so both are checked.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &AmqpMessage,
    mandatory: bool,
    timeout: Duration,
) -> Result<(), PublishError> {
    // Borrowed, so one encoded message can go to several places (a completion to the events
    // exchange and a reply queue) or be sent again, without copying its body.
    let properties = message.properties.clone().with_delivery_mode(2);
    let confirm = async {
        let pending = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                &message.body,
                properties,
            )
            .await?;
        pending.await
    };
    match tokio::time::timeout(timeout, confirm).await {
        Err(_) => Err(PublishError::Timeout(timeout)),
        Ok(Err(e)) => Err(e.into()),
        Ok(Ok(Confirmation::Ack(Some(_)))) => Err(PublishError::Unroutable(routing_key.into())),
        Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => Ok(()),
        Ok(Ok(Confirmation::Nack(_))) => Err(PublishError::Nacked),
    }
}

/// Publishes a message that only wakes someone who can read the record if it is lost (a reply
/// to a waiting caller): not persistent, and not waited for — the confirm still comes, nobody
/// holds anything up for it.
pub async fn publish_transient(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    message: &AmqpMessage,
) -> Result<(), PublishError> {
    let properties = message.properties.clone().with_delivery_mode(1);
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            &message.body,
            properties,
        )
        .await?;
    Ok(())
}

/// The delays of every reconnect loop and infrastructure retry: doubling from `min` to `max`,
/// each plus up to as much again of random jitter (so replicas that lost the broker together
/// do not come back in lockstep), never giving up. `.build()` starts a sequence; a success starts a
/// fresh one.
pub fn backoff(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
}

/// The broker reconnect backoff of `settings` (`broker.reconnect_min_ms` / `_max_ms`).
pub fn reconnect_backoff(settings: &BrokerSettings) -> ExponentialBuilder {
    backoff(
        Duration::from_millis(settings.reconnect_min_ms),
        Duration::from_millis(settings.reconnect_max_ms),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder as _;

    #[test]
    fn senders_admit_only_the_named_broker_users_unless_none_are_named() {
        let props = |user: Option<&str>| match user {
            Some(u) => lapin::BasicProperties::default().with_user_id(u.into()),
            None => lapin::BasicProperties::default(),
        };
        let open = Senders::parse(" ");
        assert!(open.is_open() && open.admits(&props(None)));
        let functions = Senders::parse("surge-fn, surge-fn-gpu");
        assert!(functions.admits(&props(Some("surge-fn-gpu"))));
        assert!(!functions.admits(&props(Some("producer"))));
        assert!(!functions.admits(&props(None)), "an unstamped message");
    }

    #[test]
    fn backoff_grows_to_its_ceiling_plus_jitter_and_never_ends() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<_> = backoff(min, max).build().take(50).collect();
        assert_eq!(delays.len(), 50, "it never gives up");
        assert!(delays[0] >= min && delays[0] < min * 2, "{:?}", delays[0]);
        assert!(
            delays[1] >= min * 2 && delays[1] < min * 4,
            "{:?}",
            delays[1]
        );
        for d in &delays[3..] {
            assert!(
                *d >= max && *d < max * 2,
                "capped at max plus jitter: {d:?}"
            );
        }
    }
}
