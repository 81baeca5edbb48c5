//! The baseline: request/reply over RabbitMQ between two processes with nothing else —
//! persistent requests to a quorum queue and persistent replies, both with publisher confirms,
//! manual acks on the responder. No HTTP, no auth, no database.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use surge_tests::{BrokerProbe, FunctionProcess, amqp_url, eventually};
use tokio::sync::oneshot;

use crate::stats::Measurement;

const PAYLOAD: &[u8] = br#"{"hello":"world"}"#;

type Waiters = Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>;

pub struct RawBench {
    _connection: Connection,
    _inbox: BrokerProbe,
    channel: Channel,
    queue: String,
    reply_queue: String,
    waiters: Waiters,
    next_id: AtomicU64,
    responder: FunctionProcess,
}

impl RawBench {
    pub async fn start(max_callers: usize) -> anyhow::Result<Self> {
        let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let queue = format!("bench-{}-requests", uuid::Uuid::new_v4().simple());
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        channel
            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
            .await?;
        // Replies arrive on a private queue (the harness's inbox, on a connection of its own).
        let inbox = BrokerProbe::connect().await;
        let (reply_queue, mut replies) = inbox.private_queue().await;
        let waiters: Waiters = Arc::default();
        let dispatch = Arc::clone(&waiters);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                let id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .map(|c| c.to_string());
                if let Some(tx) = id.and_then(|id| dispatch.lock().ok()?.remove(&id)) {
                    let _ = tx.send(());
                }
            }
        });
        let exe = std::env::current_exe()?;
        let prefetch = max_callers.to_string();
        let responder = FunctionProcess::spawn_binary(
            &exe,
            &["responder", "--queue", &queue, "--prefetch", &prefetch],
            &[],
            "bench-raw-responder",
        );
        let probe = BrokerProbe::connect().await;
        eventually(
            "the responder to consume",
            Duration::from_secs(20),
            || async { (probe.queue_counts(&queue).await.1 == 1).then_some(()) },
        )
        .await;
        Ok(Self {
            _connection: connection,
            _inbox: inbox,
            channel,
            queue,
            reply_queue,
            waiters,
            next_id: AtomicU64::new(0),
            responder,
        })
    }

    async fn call(&self) -> anyhow::Result<()> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .insert(id.clone(), tx);
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_correlation_id(id.as_str().into())
            .with_reply_to(self.reply_queue.as_str().into());
        self.channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                PAYLOAD,
                properties,
            )
            .await?
            .await?;
        tokio::time::timeout(Duration::from_secs(10), rx).await??;
        Ok(())
    }

    pub async fn measure(&self, callers: usize, duration: Duration) -> Measurement {
        run_callers(callers, duration, || self.call()).await
    }

    pub async fn stop(self) {
        self.responder.sigterm();
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
}

/// Runs `callers` concurrent loops of `call` for a warm-up, then for `duration`, and keeps the
/// measured part.
pub async fn run_callers<'a, F, Fut>(callers: usize, duration: Duration, call: F) -> Measurement
where
    F: Fn() -> Fut + Copy + 'a,
    Fut: std::future::Future<Output = anyhow::Result<()>> + 'a,
{
    let warmup = duration / 4;
    let start = Instant::now();
    let measured_from = start + warmup;
    let end = measured_from + duration;
    let loops = (0..callers).map(|_| async move {
        let mut latencies = Vec::new();
        let mut errors = 0;
        while Instant::now() < end {
            let t0 = Instant::now();
            let ok = call().await.is_ok();
            if t0 >= measured_from {
                if ok {
                    latencies.push(t0.elapsed());
                } else {
                    errors += 1;
                }
            }
        }
        (latencies, errors)
    });
    let results = futures_util::future::join_all(loops).await;
    let elapsed = Instant::now().saturating_duration_since(measured_from);
    let (mut all, mut errors) = (Vec::new(), 0);
    for (l, e) in results {
        all.extend(l);
        errors += e;
    }
    Measurement::new(all, errors, elapsed)
}

/// The responder process: reply to each request with its body, confirmed, then ack.
pub async fn respond(queue: &str, prefetch: u16) -> anyhow::Result<()> {
    let connection = Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let consume = connection.create_channel().await?;
    consume
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut deliveries = consume
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let delivery = tokio::select! {
            _ = term.recv() => return Ok(()),
            next = deliveries.next() => match next {
                Some(Ok(d)) => d,
                _ => return Ok(()),
            },
        };
        let publish = publish.clone();
        tokio::spawn(async move {
            let reply_to = delivery.properties.reply_to().clone().unwrap_or_default();
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            if let Some(id) = delivery.properties.correlation_id() {
                properties = properties.with_correlation_id(id.clone());
            }
            let sent = async {
                publish
                    .basic_publish(
                        "".into(),
                        reply_to,
                        BasicPublishOptions::default(),
                        &delivery.data,
                        properties,
                    )
                    .await?
                    .await
            };
            if sent.await.is_ok() {
                let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            }
        });
    }
}
