//! Looking at and disturbing the test's part of the broker.

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use std::time::Duration;

/// A plain AMQP client for assertions: queue depths, consumers, raw publishes.
pub struct BrokerProbe {
    _connection: Connection,
    pub channel: Channel,
}

impl BrokerProbe {
    pub async fn connect() -> Self {
        let connection = Connection::connect(&crate::amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect to RabbitMQ (is it running on 127.0.0.1:5672?)");
        let channel = connection.create_channel().await.expect("channel");
        Self {
            _connection: connection,
            channel,
        }
    }

    /// `(ready messages, consumers)` of a queue that exists.
    pub async fn queue_counts(&self, queue: &str) -> (u32, u32) {
        let q = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue exists");
        (q.message_count(), q.consumer_count())
    }

    /// Publishes raw bytes and properties.
    pub async fn publish(
        &self,
        exchange: &str,
        key: &str,
        properties: BasicProperties,
        body: &[u8],
    ) {
        self.channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    /// A server-named, exclusive queue and a no-ack consumer on it: a private inbox, gone
    /// with the probe's connection.
    pub async fn private_queue(&self) -> (String, lapin::Consumer) {
        let q = self
            .channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare a private queue");
        let consumer = self
            .channel
            .basic_consume(
                q.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume the private queue");
        (q.name().to_string(), consumer)
    }

    /// A private queue bound to `exchange` with `key`, and a consumer on it.
    pub async fn subscribe(&self, exchange: &str, key: &str) -> lapin::Consumer {
        let (queue, consumer) = self.private_queue().await;
        self.channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind the private queue");
        consumer
    }

    /// The next delivery on `consumer`, within `timeout`.
    pub async fn next(
        consumer: &mut lapin::Consumer,
        timeout: Duration,
    ) -> lapin::message::Delivery {
        tokio::time::timeout(timeout, consumer.next())
            .await
            .expect("a delivery in time")
            .expect("consumer open")
            .expect("delivery")
    }

    /// Deletes the objects of one test prefix (best effort).
    pub async fn delete_topology(&self, prefix: &str, functions: &[&str]) {
        for f in functions {
            for q in [format!("{prefix}fn.{f}"), format!("{prefix}fn.{f}.dead")] {
                let _ = self
                    .channel
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for x in ["surge.jobs", "surge.dead", "surge.events"] {
            let name = format!("{prefix}{x}");
            let _ = self
                .channel
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
}

/// Closes, on the broker's side, every connection whose name starts with `prefix`: what
/// `rabbitmqctl close_all_connections` does (CONNECTION_FORCED), limited to this test's processes so tests that
/// run at the same time are not disturbed. Returns how many were closed.
pub fn close_connections_named(prefix: &str) -> usize {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "list_connections",
            "pid",
            "client_properties",
            "--formatter",
            "json",
            "-q",
        ])
        .output()
        .expect("run rabbitmqctl");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rabbitmqctl json");
    let mut closed = 0;
    for conn in list.as_array().into_iter().flatten() {
        let name = conn["client_properties"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p[0] == "connection_name")
            .and_then(|p| p[2].as_str())
            .unwrap_or_default();
        if name.starts_with(prefix) {
            // rabbitmqctl prints pids as seen from its own node (`#PID<N.X.Y>`); evaluated on
            // the broker's node the same process is `<0.X.Y>`.
            let pid = conn["pid"].as_str().unwrap_or_default();
            let local = pid.split('.').skip(1).collect::<Vec<_>>().join(".");
            let code = format!(
                "rabbit_networking:close_connection(list_to_pid(\"<0.{local}\"), \"test: broker closes the connection\")."
            );
            let status = std::process::Command::new("rabbitmqctl")
                .args(["eval", &code])
                .stdout(std::process::Stdio::null())
                .status()
                .expect("run rabbitmqctl");
            if status.success() {
                closed += 1;
            }
        }
    }
    closed
}
