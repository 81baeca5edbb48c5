//! Exchange and queue names (with a configurable prefix) and their idempotent declaration.
//!
//! ```text
//! <p>surge.jobs    direct, durable   routing key = function  → <p>fn.<name>   (quorum)
//! <p>surge.dead    direct, durable   routing key = function  → <p>fn.<name>.dead (quorum)
//! <p>surge.events  topic,  durable   <tenant>.<entity>.<function>.<outcome>
//! <p>surge.reply.<replica>           one per gateway replica (classic, expires when unused)
//! ```
//! Declaration is idempotent as long as every process declares a queue with the same
//! arguments; all of them come from here, and the delivery limit from the shared job settings.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use crate::job::FunctionName;

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "declaring {what} failed: {source}. If the broker says PRECONDITION_FAILED, the object \
         exists with other arguments: every process must share SURGE_BROKER__PREFIX and \
         SURGE_JOBS__MAX_ATTEMPTS, or the old queue must be deleted"
    )]
    Declare {
        what: String,
        #[source]
        source: lapin::Error,
    },
}

/// The broker objects of one Surge installation (one prefix).
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    delivery_limit: u32,
    reply_queue_expires_ms: u32,
}

impl Topology {
    /// `max_attempts` is how many times the runtime runs a job before marking it dead; the
    /// broker's own delivery limit sits above it as a backstop for deliveries that never reach
    /// the runtime's bookkeeping (a worker that crashes on every attempt before recording).
    pub fn new(prefix: impl Into<String>, max_attempts: u32) -> Self {
        Self {
            prefix: prefix.into(),
            delivery_limit: max_attempts.saturating_mul(2).saturating_add(1),
            reply_queue_expires_ms: 60_000,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn delivery_limit(&self) -> u32 {
        self.delivery_limit
    }

    pub fn jobs_exchange(&self) -> String {
        format!("{}surge.jobs", self.prefix)
    }

    pub fn events_exchange(&self) -> String {
        format!("{}surge.events", self.prefix)
    }

    pub fn dead_exchange(&self) -> String {
        format!("{}surge.dead", self.prefix)
    }

    pub fn function_queue(&self, function: &FunctionName) -> String {
        format!("{}fn.{function}", self.prefix)
    }

    pub fn dead_queue(&self, function: &FunctionName) -> String {
        format!("{}fn.{function}.dead", self.prefix)
    }

    pub fn reply_queue(&self, replica: &str) -> String {
        format!("{}surge.reply.{replica}", self.prefix)
    }

    /// Whether `queue` is one of this installation's reply queues: the only queues a
    /// completion may be sent to by name taken from an event.
    pub fn is_reply_queue(&self, queue: &str) -> bool {
        queue
            .strip_prefix(&self.reply_queue(""))
            .is_some_and(|replica| {
                !replica.is_empty() && replica.bytes().all(|b| b.is_ascii_alphanumeric())
            })
    }

    /// Declares the three exchanges.
    pub async fn declare_exchanges(&self, channel: &Channel) -> Result<(), TopologyError> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for (name, kind) in [
            (self.jobs_exchange(), ExchangeKind::Direct),
            (self.dead_exchange(), ExchangeKind::Direct),
            (self.events_exchange(), ExchangeKind::Topic),
        ] {
            channel
                .exchange_declare(name.as_str().into(), kind, durable, FieldTable::default())
                .await
                .map_err(|source| TopologyError::Declare {
                    what: format!("exchange {name}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// Declares a function's work queue and dead-letter queue, and binds them. Returns the
    /// work queue's ready-message count and consumer count as the broker reported them.
    pub async fn declare_function(
        &self,
        channel: &Channel,
        function: &FunctionName,
    ) -> Result<lapin::Queue, TopologyError> {
        let dead = self.dead_queue(function);
        let mut dead_args = FieldTable::default();
        dead_args.insert("x-queue-type".into(), text("quorum"));
        self.declare_queue(channel, &dead, dead_args).await?;
        self.bind(channel, &dead, &self.dead_exchange(), function.as_str())
            .await?;

        let queue = self.function_queue(function);
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), text("quorum"));
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
        );
        args.insert("x-dead-letter-exchange".into(), text(&self.dead_exchange()));
        args.insert("x-dead-letter-routing-key".into(), text(function.as_str()));
        let declared = self.declare_queue(channel, &queue, args).await?;
        self.bind(channel, &queue, &self.jobs_exchange(), function.as_str())
            .await?;
        Ok(declared)
    }

    /// Declares a gateway replica's reply queue. It is not exclusive, so replies published while
    /// the replica reconnects wait for it; it expires once unused, so a dead replica's queue goes.
    pub async fn declare_reply_queue(
        &self,
        channel: &Channel,
        replica: &str,
    ) -> Result<String, TopologyError> {
        let name = self.reply_queue(replica);
        let mut args = FieldTable::default();
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(i64::from(self.reply_queue_expires_ms)),
        );
        channel
            .queue_declare(name.as_str().into(), QueueDeclareOptions::default(), args)
            .await
            .map_err(|source| TopologyError::Declare {
                what: format!("queue {name}"),
                source,
            })?;
        Ok(name)
    }

    /// Routes every successful completion of `function` to a gateway replica's reply queue
    /// (`settings`: each is a change every replica applies).
    pub async fn bind_function_completions(
        &self,
        channel: &Channel,
        reply_queue: &str,
        function: &FunctionName,
    ) -> Result<(), TopologyError> {
        let key = crate::job::function_completions_key(function);
        self.bind(channel, reply_queue, &self.events_exchange(), &key)
            .await
    }

    /// Routes the completions matching `key` (a `job::*_binding_key`: an entity's while it
    /// has a websocket connection there, a watched tenant's) on `surge.events` to a gateway
    /// replica's reply queue.
    pub async fn bind_events(
        &self,
        channel: &Channel,
        reply_queue: &str,
        key: &str,
    ) -> Result<(), TopologyError> {
        self.bind(channel, reply_queue, &self.events_exchange(), key)
            .await
    }

    /// Undoes `bind_events`.
    pub async fn unbind_events(
        &self,
        channel: &Channel,
        reply_queue: &str,
        key: &str,
    ) -> Result<(), TopologyError> {
        let exchange = self.events_exchange();
        channel
            .queue_unbind(
                reply_queue.into(),
                exchange.as_str().into(),
                ShortString::from(key),
                FieldTable::default(),
            )
            .await
            .map_err(|source| TopologyError::Declare {
                what: format!("unbinding {reply_queue} from {exchange}"),
                source,
            })
    }

    async fn declare_queue(
        &self,
        channel: &Channel,
        name: &str,
        args: FieldTable,
    ) -> Result<lapin::Queue, TopologyError> {
        channel
            .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
            .await
            .map_err(|source| TopologyError::Declare {
                what: format!("queue {name}"),
                source,
            })
    }

    async fn bind(
        &self,
        channel: &Channel,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<(), TopologyError> {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                ShortString::from(key),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| TopologyError::Declare {
                what: format!("binding {queue} to {exchange}"),
                source,
            })
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1-", 5);
        let f = FunctionName::parse("echo").unwrap();
        assert_eq!(t.jobs_exchange(), "t1-surge.jobs");
        assert_eq!(t.function_queue(&f), "t1-fn.echo");
        assert_eq!(t.dead_queue(&f), "t1-fn.echo.dead");
        assert_eq!(t.reply_queue("r1"), "t1-surge.reply.r1");
        assert!(t.is_reply_queue("t1-surge.reply.r1"));
        assert!(!t.is_reply_queue("t1-fn.echo"));
        assert!(!t.is_reply_queue("t1-surge.reply."));
        assert!(!t.is_reply_queue("t2-surge.reply.r1"));
    }

    #[test]
    fn the_broker_limit_sits_above_the_runtime_limit() {
        assert!(Topology::new("", 5).delivery_limit() > 5);
    }
}
