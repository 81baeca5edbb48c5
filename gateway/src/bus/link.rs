//! The gateway replica's broker link: declares the topology (so every function's queue exists
//! before its first job, even while the function is scaled to zero), publishes jobs with
//! confirms, and consumes the replica's reply queue, handing each completion to the caller
//! waiting for it. Reconnection is `surge_contract::link`'s.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, Consumer};
use surge_contract::binding::{self, AmqpMessage};
use surge_contract::broker::{PublishError, publish_confirmed};
use surge_contract::config::BrokerSettings;
use surge_contract::job::{self, FunctionName, JobId};
use surge_contract::link::{Link, LinkHandler};
use surge_contract::server_settings;
use surge_contract::topology::Topology;
use tokio_util::sync::CancellationToken;

use super::waiters::{Waiter, Waiters, WaitersFull};
use crate::ws::hub::{Audience, Hub, Push};

/// Handle to the broker link; cheap to clone.
#[derive(Clone, Debug)]
pub struct Bus {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    link: Link,
    waiters: Arc<Waiters>,
    topology: Topology,
    reply_queue: String,
    publish_timeout: Duration,
    hub: Arc<Hub>,
    /// Serialises binding changes, so a leave and a join of one entity cannot reorder.
    bindings: tokio::sync::Mutex<()>,
    /// Bindings that could not be removed when their last follower left.
    stale: Arc<StaleBindings>,
}

/// Binding keys to remove at the next connection's setup, bounded: past the bound a key is
/// forgotten (logged), and its stream flows here until the reply queue expires with the
/// replica (`x-expires`).
#[derive(Debug, Default)]
struct StaleBindings(std::sync::Mutex<std::collections::HashSet<String>>);

/// Stale bindings remembered at most.
const MAX_STALE_BINDINGS: usize = 10_000;

impl StaleBindings {
    fn remember(&self, keys: Vec<String>) {
        let mut stale = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if stale.len() >= MAX_STALE_BINDINGS {
                tracing::warn!(%key, "too many stale bindings remembered; this one stays");
                continue;
            }
            stale.insert(key);
        }
    }

    fn take(&self) -> Vec<String> {
        let mut stale = self.0.lock().unwrap_or_else(|p| p.into_inner());
        stale.drain().collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishJobError {
    #[error("the broker is not connected")]
    NotConnected,
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Topology(#[from] surge_contract::topology::TopologyError),
}

/// What the link does on each connect and with each reply.
struct Replies {
    topology: Topology,
    functions: Vec<FunctionName>,
    replica: String,
    waiters: Arc<Waiters>,
    hub: Arc<Hub>,
    /// Compared with every delivery's exchange: named once.
    events_exchange: String,
    /// Told of every server-settings change (the settings cache reloads).
    settings_changed: Arc<tokio::sync::Notify>,
    stale: Arc<StaleBindings>,
}

impl PublishJobError {
    /// Whether the broker may hold the message despite the error: nothing says it was
    /// refused (a confirm that did not come in time, a connection lost after the send).
    pub fn may_have_been_queued(&self) -> bool {
        matches!(
            self,
            Self::Publish(PublishError::Timeout(_) | PublishError::Amqp(_))
        )
    }
}

impl Bus {
    /// Starts the link; it runs until `shutdown`.
    pub fn start(
        settings: &BrokerSettings,
        topology: Topology,
        functions: Vec<FunctionName>,
        max_waiters: usize,
        settings_changed: Arc<tokio::sync::Notify>,
        shutdown: CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let replica = uuid::Uuid::new_v4().simple().to_string();
        let waiters = Waiters::new(max_waiters);
        let name = format!("{}gateway-{replica}", topology.prefix());
        let reply_queue = topology.reply_queue(&replica);
        let hub = Arc::new(Hub::default());
        let stale = Arc::new(StaleBindings::default());
        let handler = Arc::new(Replies {
            stale: stale.clone(),
            topology: topology.clone(),
            functions,
            replica,
            waiters: Arc::clone(&waiters),
            hub: hub.clone(),
            events_exchange: topology.events_exchange(),
            settings_changed,
        });
        let (link, task) = Link::start(settings.clone(), name, handler, shutdown);
        let bus = Self {
            inner: Arc::new(Inner {
                link,
                waiters,
                topology,
                reply_queue,
                publish_timeout: settings.publish_timeout(),
                hub,
                bindings: tokio::sync::Mutex::new(()),
                stale,
            }),
        };
        (bus, task)
    }

    /// How long a publish waits for its confirm.
    pub fn publish_timeout(&self) -> Duration {
        self.inner.publish_timeout
    }

    pub fn is_connected(&self) -> bool {
        self.inner.link.is_up()
    }

    /// Waits until the link is up, at most `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        self.inner.link.wait_up(timeout).await
    }

    /// This replica's reply queue, for `reply_to`.
    pub fn reply_queue(&self) -> &str {
        &self.inner.reply_queue
    }

    /// Registers a caller for `job`'s completion; register before publishing, so a fast
    /// completion cannot arrive before anyone listens.
    pub fn wait_for(&self, job: JobId) -> Result<Waiter, WaitersFull> {
        self.inner.waiters.register(job)
    }

    /// The websocket connections of this replica.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// Routes `entity`'s completions to this replica (its first websocket connection here).
    pub async fn follow(&self, tenant: &str, entity: uuid::Uuid) -> Result<(), PublishJobError> {
        let key = job::entity_binding_key(tenant, &entity.to_string());
        self.bind_keys(&[key]).await
    }

    /// Binds `keys` from `surge.events` to the reply queue, each within the publish timeout,
    /// serialised with every other binding change.
    async fn bind_keys(&self, keys: &[String]) -> Result<(), PublishJobError> {
        let _serial = self.inner.bindings.lock().await;
        let channel = self
            .inner
            .link
            .channel()
            .ok_or(PublishJobError::NotConnected)?;
        let timeout = self.inner.publish_timeout;
        for key in keys {
            let bound = self
                .inner
                .topology
                .bind_events(&channel, &self.inner.reply_queue, key);
            match tokio::time::timeout(timeout, bound).await {
                Ok(result) => result?,
                Err(_) => return Err(PublishJobError::Publish(PublishError::Timeout(timeout))),
            }
        }
        Ok(())
    }

    /// Stops routing `entity`'s completions here, unless a connection of it joined meanwhile.
    pub async fn unfollow(&self, tenant: &str, entity: uuid::Uuid) {
        let _serial = self.inner.bindings.lock().await;
        if self.inner.hub.has(entity) {
            return;
        }
        let key = job::entity_binding_key(tenant, &entity.to_string());
        self.unbind_or_remember(vec![key]).await;
    }

    /// Removes bindings from the reply queue; those it cannot remove now (no link, an error)
    /// are remembered and removed by the next connection's setup — the queue outlives a
    /// reconnect, and a binding left behind would route a whole stream here for good.
    /// Called with `bindings` held.
    async fn unbind_or_remember(&self, keys: Vec<String>) {
        let Some(channel) = self.inner.link.channel() else {
            self.inner.stale.remember(keys);
            return;
        };
        let mut failed = Vec::new();
        for key in keys {
            let unbound =
                self.inner
                    .topology
                    .unbind_events(&channel, &self.inner.reply_queue, &key);
            match tokio::time::timeout(self.inner.publish_timeout, unbound).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not unbind completions; retried on reconnect");
                    failed.push(key);
                }
                Err(_) => {
                    tracing::warn!("unbinding completions timed out; retried on reconnect");
                    failed.push(key);
                }
            }
        }
        self.inner.stale.remember(failed);
    }

    /// Routes every completion of these audiences' jobs here (an admin's tenant-wide feed,
    /// the first watcher of each on this replica).
    pub async fn follow_audiences(&self, audiences: &[Audience]) -> Result<(), PublishJobError> {
        if audiences.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = audiences
            .iter()
            .map(|a| job::tenant_binding_key(a.as_deref()))
            .collect();
        self.bind_keys(&keys).await
    }

    /// Undoes `follow_audiences` for those nobody here watches any more.
    pub async fn unfollow_audiences(&self, audiences: &[Audience]) {
        if audiences.is_empty() {
            return;
        }
        let _serial = self.inner.bindings.lock().await;
        let keys = audiences
            .iter()
            .filter(|a| !self.inner.hub.watched(a))
            .map(|a| job::tenant_binding_key(a.as_deref()))
            .collect();
        self.unbind_or_remember(keys).await;
    }

    /// Publishes a job's request event to `surge.jobs`, mandatory and confirmed.
    pub async fn publish_job(
        &self,
        function: &FunctionName,
        message: &AmqpMessage,
    ) -> Result<(), PublishJobError> {
        let channel = self
            .inner
            .link
            .channel()
            .ok_or(PublishJobError::NotConnected)?;
        publish_confirmed(
            &channel,
            &self.inner.topology.jobs_exchange(),
            function.as_str(),
            message,
            true,
            self.inner.publish_timeout,
        )
        .await?;
        Ok(())
    }
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
        // Settings changes, whoever made them: every replica reloads its copy.
        self.topology
            .bind_function_completions(publish, &reply_queue, &server_settings::function())
            .await?;
        // Changes missed while disconnected.
        self.settings_changed.notify_one();
        // Completions of the entities with websocket connections here and of the tenants
        // admins watch from here (after a reconnect).
        let wanted: std::collections::HashSet<String> = self
            .hub
            .entities()
            .into_iter()
            .map(|(tenant, entity)| job::entity_binding_key(&tenant, &entity.to_string()))
            .chain(
                self.hub
                    .audiences()
                    .into_iter()
                    .map(|a| job::tenant_binding_key(a.as_deref())),
            )
            .collect();
        for key in &wanted {
            self.topology
                .bind_events(publish, &reply_queue, key)
                .await?;
        }
        // Bindings whose followers left while the link was down go now (unless followed again).
        for key in self.stale.take() {
            if wanted.contains(&key) {
                continue;
            }
            if let Err(e) = self
                .topology
                .unbind_events(publish, &reply_queue, &key)
                .await
            {
                tracing::warn!(error = %e, %key, "a stale binding could not be removed");
            }
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
        if delivery.exchange.as_str() == self.events_exchange {
            self.push_to_websockets(&delivery);
            return;
        }
        let job = delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| id.as_str().parse::<JobId>().ok());
        let Some(job) = job else {
            tracing::warn!("a reply without a job id in correlation_id was dropped");
            return;
        };
        match binding::decode(&delivery.properties, &delivery.data) {
            Ok(event) => {
                // The reply closes the job's trace: a child of the function's completion span.
                let span = tracing::info_span!(
                    "reply",
                    otel.name = "receive completion",
                    otel.kind = "consumer",
                    job_id = %job,
                );
                surge_contract::telemetry::set_parent(
                    &span,
                    &surge_contract::telemetry::event_trace_context(&event),
                );
                // No waiter: the caller timed out or left; it can read the job record.
                span.in_scope(|| self.waiters.complete(job, event));
            }
            Err(e) => tracing::warn!(%job, error = %e, "an undecodable reply was dropped"),
        }
    }
}

impl Replies {
    /// A completion from `surge.events` (routed here for a websocket entity): to the hub.
    fn push_to_websockets(&self, delivery: &lapin::message::Delivery) {
        let key = delivery.routing_key.as_str();
        let mut words = key.split('.');
        let (Some(tenant), Some(entity), Some(function)) =
            (words.next(), words.next(), words.next())
        else {
            return;
        };
        let outcome = words.next();
        if function == server_settings::FUNCTION {
            // Every replica applies the change; the writer's own connections also get the
            // job's completion below, like any other of their jobs.
            self.settings_change(delivery, outcome);
        }
        // `-`: a job no tenant owns, seen only by operators watching it; the nil id is no
        // entity's, so it reaches no entity's own connections.
        let entity = entity.parse().unwrap_or(uuid::Uuid::nil());
        let job = delivery
            .properties
            .correlation_id()
            .as_ref()
            .and_then(|id| id.as_str().parse().ok());
        let interest = self.hub.interest(tenant, entity, job, function);
        if !interest.any() {
            return;
        }
        let mut event = match binding::decode(&delivery.properties, &delivery.data) {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "an undecodable completion was not pushed");
                return;
            }
        };
        let render = |event| match binding::structured_json(event) {
            Ok(json) => Some(Arc::<str>::from(json)),
            Err(e) => {
                tracing::warn!(error = %e, "a completion could not be rendered as JSON");
                None
            }
        };
        // Others' tenant-wide watchers (admins) see a success without its result, as
        // `/admin/jobs` shows it; a failure keeps its problem. The data is set aside, not
        // copied, while the bare copy is made.
        let bare = if interest.others && outcome == Some(job::Outcome::Completed.as_str()) {
            let (content_type, _, data) = event.take_data();
            let bare = render(event.clone());
            if let Some(data) = data {
                event.set_data(content_type.unwrap_or_default(), data);
            }
            let Some(bare) = bare else { return };
            Some(bare)
        } else {
            None
        };
        let Some(json) = render(event) else {
            return;
        };
        let for_watchers = bare.unwrap_or_else(|| json.clone());
        self.hub.dispatch(&Push {
            tenant: tenant.to_owned(),
            entity,
            function: function.to_owned(),
            job,
            json,
            for_watchers,
        });
    }

    /// A `settings` completion: a change to apply (reload) and to show the `/ws`
    /// subscribers of `settings`, as a `dev.surge.settings.changed` event that names the
    /// setting but not who changed it. A refused write (`.failed`) changed nothing.
    fn settings_change(&self, delivery: &lapin::message::Delivery, outcome: Option<&str>) {
        if outcome != Some(surge_contract::job::Outcome::Completed.as_str()) {
            return;
        }
        self.settings_changed.notify_one();
        if !self.hub.wants_function(server_settings::FUNCTION) {
            return;
        }
        let json = binding::decode(&delivery.properties, &delivery.data)
            .map_err(|e| e.to_string())
            .and_then(|completion| change_event(&completion))
            .and_then(|event| binding::structured_json(event).map_err(|e| e.to_string()));
        match json {
            Ok(json) => {
                self.hub
                    .broadcast(server_settings::FUNCTION, Arc::from(json));
            }
            Err(e) => tracing::warn!(error = %e, "a settings change could not be pushed"),
        }
    }
}

/// The `/ws` event of a settings change, from the `settings` job's completion: id = the job
/// id (clients can deduplicate), subject = the setting's name, data = what changed.
fn change_event(completion: &cloudevents::Event) -> Result<cloudevents::Event, String> {
    use cloudevents::{AttributesReader as _, EventBuilder as _};
    let data = binding::json_data(completion).map_err(|e| e.to_string())?;
    let changed: server_settings::Changed =
        serde_json::from_value(data).map_err(|e| format!("not a settings change: {e}"))?;
    cloudevents::EventBuilderV10::new()
        .id(completion.id())
        .source(server_settings::CHANGED_SOURCE)
        .ty(server_settings::CHANGED_TYPE)
        .subject(changed.name.clone())
        .time(changed.updated_at)
        .data(
            "application/json",
            serde_json::to_value(&changed).map_err(|e| e.to_string())?,
        )
        .build()
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_bindings_are_remembered_once_up_to_the_bound_and_taken_whole() {
        let stale = StaleBindings::default();
        stale.remember(vec!["a.*.*.*".into(), "a.*.*.*".into(), "-.*.*.*".into()]);
        let mut taken = stale.take();
        taken.sort();
        assert_eq!(taken, ["-.*.*.*", "a.*.*.*"]);
        assert!(stale.take().is_empty(), "taken means gone");
        stale.remember(
            (0..MAX_STALE_BINDINGS + 5)
                .map(|i| format!("t{i}.*.*.*"))
                .collect(),
        );
        assert_eq!(stale.take().len(), MAX_STALE_BINDINGS);
    }
}
