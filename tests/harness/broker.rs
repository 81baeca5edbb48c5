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
        Self::connect_to(&crate::amqp_url()).await
    }

    /// As [`connect`](Self::connect), to `url` (another broker user, a proxy).
    pub async fn connect_to(url: &str) -> Self {
        let connection = Connection::connect(url, ConnectionProperties::default())
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

/// A RabbitMQ user of one test's own (made through the management API, deleted when
/// dropped): to run a gateway, a function or a producer as the broker user it would have.
pub struct BrokerUser {
    pub name: String,
    password: String,
}

/// `(base URL without credentials, user, password)` of the management API.
fn management() -> (url::Url, String, String) {
    let mut url = url::Url::parse(&crate::management_url()).expect("management URL");
    let user = url.username().to_owned();
    let password = url.password().unwrap_or_default().to_owned();
    url.set_username("").expect("no credentials");
    url.set_password(None).expect("no credentials");
    (url, user, password)
}

impl BrokerUser {
    /// Makes `name` with the `(configure, write, read)` permission patterns on the default
    /// vhost.
    pub async fn create(name: &str, permissions: [&str; 3]) -> Self {
        let (base, admin, admin_password) = management();
        let client = reqwest::Client::new();
        let password = uuid::Uuid::new_v4().simple().to_string();
        let user = base.join(&format!("api/users/{name}")).expect("url");
        let response = client
            .put(user)
            .basic_auth(&admin, Some(&admin_password))
            .json(&serde_json::json!({"password": password, "tags": ""}))
            .send()
            .await
            .expect("management API");
        assert!(
            response.status().is_success(),
            "create {name}: {}",
            response.status()
        );
        let grant = base
            .join(&format!("api/permissions/%2F/{name}"))
            .expect("url");
        let [configure, write, read] = permissions;
        let response = client
            .put(grant)
            .basic_auth(&admin, Some(&admin_password))
            .json(&serde_json::json!({"configure": configure, "write": write, "read": read}))
            .send()
            .await
            .expect("management API");
        assert!(
            response.status().is_success(),
            "grant {name}: {}",
            response.status()
        );
        Self {
            name: name.to_owned(),
            password,
        }
    }

    /// The machine's broker, as this user.
    pub fn amqp_url(&self) -> String {
        let mut url = url::Url::parse(&crate::amqp_url()).expect("AMQP URL");
        url.set_username(&self.name).expect("user");
        url.set_password(Some(&self.password)).expect("password");
        url.to_string()
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let name = self.name.clone();
        crate::block_on_thread(async move {
            let (base, admin, admin_password) = management();
            if let Ok(user) = base.join(&format!("api/users/{name}")) {
                let _ = reqwest::Client::new()
                    .delete(user)
                    .basic_auth(&admin, Some(&admin_password))
                    .send()
                    .await;
            }
        });
    }
}
