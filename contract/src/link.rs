//! A supervised broker connection: the one reconnect loop every Surge process uses.
//!
//! lapin does not reconnect by itself. [`Link::start`] connects, opens a publishing channel in
//! confirm mode, lets the owner declare its topology and start a consumer, and on any loss
//! backs off and does it all again. The publishing channel is shared through a watch, so
//! publishers see `None` while the link is down instead of hanging. On shutdown the consumer is
//! cancelled first, the owner drains its in-flight work on the still-open connection, and only
//! then is the connection closed (which hands every unacked delivery back to the queue).

use std::future::Future;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, ConfirmSelectOptions};
use lapin::{Channel, Connection, Consumer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use backon::{BackoffBuilder as _, ExponentialBackoff};

use crate::broker;
use crate::config::BrokerSettings;

/// What a process does with its link.
pub trait LinkHandler: Send + Sync + 'static {
    /// On every (re)connect: declare what this process relies on and, if it consumes, open
    /// its consumer (with the channel it lives on).
    fn setup(
        &self,
        connection: &Connection,
        publish: &Channel,
    ) -> impl Future<Output = anyhow::Result<Option<(Channel, Consumer)>>> + Send;

    /// One delivery of the consumer; `publish` is the link's publishing channel.
    fn deliver(&self, delivery: lapin::message::Delivery, publish: &Channel);

    /// At shutdown, after the consumer is cancelled and before the connection closes.
    fn drain(&self) -> impl Future<Output = ()> + Send {
        std::future::ready(())
    }
}

/// The publishing side of a link; cheap to clone.
#[derive(Debug, Clone)]
pub struct Link {
    channel: watch::Receiver<Option<Channel>>,
}

impl Link {
    /// Starts the supervisor; it runs until `shutdown` and then drains through `handler`.
    pub fn start<H: LinkHandler>(
        settings: BrokerSettings,
        name: String,
        handler: std::sync::Arc<H>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = watch::channel(None);
        let supervisor = Supervisor {
            settings,
            next_node: std::sync::atomic::AtomicUsize::new(0),
            name,
            handler,
            channel: tx,
        };
        (Self { channel: rx }, tokio::spawn(supervisor.run(shutdown)))
    }

    /// The publishing channel, while the link is up. A channel whose connection dropped is
    /// not handed out even before the supervisor has noticed: a publish on it could only fail.
    pub fn channel(&self) -> Option<Channel> {
        self.channel
            .borrow()
            .as_ref()
            .filter(|c| c.status().connected())
            .cloned()
    }

    pub fn is_up(&self) -> bool {
        self.channel().is_some()
    }

    /// Waits until the link is up (with a connected channel), at most `timeout`.
    pub async fn wait_up(&self, timeout: std::time::Duration) -> bool {
        let mut rx = self.channel.clone();
        let up = rx.wait_for(|c| c.as_ref().is_some_and(|c| c.status().connected()));
        tokio::time::timeout(timeout, up)
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

struct Supervisor<H> {
    settings: BrokerSettings,
    /// The broker node (of `broker.url`'s list) the next connection tries first.
    next_node: std::sync::atomic::AtomicUsize,
    name: String,
    handler: std::sync::Arc<H>,
    channel: watch::Sender<Option<Channel>>,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl<H: LinkHandler> Supervisor<H> {
    async fn run(self, shutdown: CancellationToken) {
        let policy = broker::reconnect_backoff(&self.settings);
        let mut backoff = policy.build();
        loop {
            let end = self.session(&shutdown, &policy, &mut backoff).await;
            self.channel.send_replace(None);
            match end {
                SessionEnd::Shutdown => return,
                SessionEnd::Lost(reason) => {
                    // The sequence never ends (`without_max_times`).
                    let delay = backoff.next().unwrap_or_default();
                    tracing::warn!(%reason, ?delay, link = %self.name, "broker link lost; reconnecting");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// One connection's life; once it serves, the backoff starts again from its first delay.
    async fn session(
        &self,
        shutdown: &CancellationToken,
        policy: &backon::ExponentialBuilder,
        backoff: &mut ExponentialBackoff,
    ) -> SessionEnd {
        let first = self.next_node.load(std::sync::atomic::Ordering::Relaxed);
        let connection = match broker::connect(&self.settings, &self.name, first).await {
            Ok((connection, node)) => {
                // A connection lost later starts over at the next node: the one that dropped
                // it may be the one going away.
                self.next_node
                    .store(node + 1, std::sync::atomic::Ordering::Relaxed);
                connection
            }
            Err(e) => return SessionEnd::Lost(e.to_string()),
        };
        let setup = async {
            let publish = connection.create_channel().await?;
            publish
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            let consumer = self.handler.setup(&connection, &publish).await?;
            Ok::<_, anyhow::Error>((publish, consumer))
        };
        let (publish, consumer) = match setup.await {
            Ok(parts) => parts,
            Err(e) => {
                let _ = connection.close(200, "setup failed".into()).await;
                return SessionEnd::Lost(format!("{e:#}"));
            }
        };
        self.channel.send_replace(Some(publish.clone()));
        *backoff = policy.build();
        tracing::info!(link = %self.name, "broker link up");

        let (consume_channel, mut consumer) = match consumer {
            Some((channel, consumer)) => (Some(channel), Some(consumer)),
            None => (None, None),
        };
        let mut events = connection.events_listener();
        let end = loop {
            let next_delivery = async {
                match consumer.as_mut() {
                    Some(c) => c.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                event = events.next() => {
                    if let Some(lapin::Event::Error(e)) = event {
                        break SessionEnd::Lost(e.to_string());
                    }
                }
                next = next_delivery => match next {
                    Some(Ok(delivery)) => self.handler.deliver(delivery, &publish),
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
                },
            }
        };
        if matches!(end, SessionEnd::Shutdown) {
            if let (Some(channel), Some(consumer)) = (&consume_channel, &consumer) {
                let _ = channel
                    .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                    .await;
            }
            self.handler.drain().await;
        }
        let _ = connection.close(200, "bye".into()).await;
        end
    }
}
