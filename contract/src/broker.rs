//! Connecting to RabbitMQ and publishing with confirms: the two broker operations both sides
//! need. lapin does not reconnect by itself; callers own a reconnect loop that uses [`Backoff`]
//! and re-declares their topology after each connect.

use std::time::Duration;

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

/// Opens a connection named `name` (shown in the broker's connection list).
pub async fn connect(settings: &BrokerSettings, name: &str) -> Result<Connection, ConnectError> {
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let url = settings.url.expose_secret();
    match tokio::time::timeout(
        settings.connect_timeout(),
        Connection::connect(url, properties),
    )
    .await
    {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(ConnectError::Timeout(settings.connect_timeout())),
    }
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

/// Exponential backoff with jitter, for reconnect loops and retries of infrastructure errors.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
        }
    }

    pub fn from_settings(settings: &BrokerSettings) -> Self {
        Self::new(
            Duration::from_millis(settings.reconnect_min_ms),
            Duration::from_millis(settings.reconnect_max_ms),
        )
    }

    /// The next delay: doubles up to the ceiling, with up to 25% taken off at random so that
    /// replicas that lost the broker together do not come back in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        delay.mul_f64(1.0 - f64::from(nanos % 250) / 1000.0)
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert!(delays[0] <= Duration::from_millis(100));
        assert!(delays[0] >= Duration::from_millis(75));
        assert!(delays[5] <= Duration::from_millis(800));
        assert!(delays[5] >= Duration::from_millis(600));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
