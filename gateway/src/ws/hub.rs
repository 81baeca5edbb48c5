//! Which websocket connection wants which completion. Completions reach this replica on its
//! reply queue, bound to `surge.events` only for the entities that have a connection here;
//! the hub hands each to the matching connections' bounded queues. A connection whose queue
//! is full is told to go (it reads too slowly), never allowed to grow memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What one connection asked for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Subscriptions {
    pub jobs: HashSet<Uuid>,
    pub functions: HashSet<String>,
}

impl Subscriptions {
    pub fn len(&self) -> usize {
        self.jobs.len() + self.functions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn wants(&self, job: Option<Uuid>, function: &str) -> bool {
        job.is_some_and(|j| self.jobs.contains(&j)) || self.functions.contains(function)
    }
}

/// One completion, ready to send: the structured CloudEvent as JSON text.
#[derive(Debug, Clone)]
pub struct Push {
    /// As in the routing key (`job::topic_word`).
    pub tenant: String,
    pub entity: Uuid,
    pub function: String,
    pub job: Option<Uuid>,
    pub json: Arc<str>,
}

struct Connection {
    tenant: String,
    /// The tenant as it appears in a completion's routing key (`job::topic_word`).
    tenant_word: String,
    subscriptions: Arc<Mutex<Subscriptions>>,
    queue: mpsc::Sender<Arc<str>>,
    too_slow: CancellationToken,
}

impl Connection {
    /// Queues one message; a full queue means the client reads too slowly: it is told to go.
    fn offer(&self, json: Arc<str>) -> bool {
        match self.queue.try_send(json) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.too_slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    fn wanted(&self, job: Option<Uuid>, function: &str) -> bool {
        self.subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wants(job, function)
    }
}

/// A connection's membership; leaving the hub is `Hub::leave(member)`.
#[derive(Debug)]
pub struct Member {
    pub id: u64,
    pub subscriptions: Arc<Mutex<Subscriptions>>,
    pub queue: mpsc::Receiver<Arc<str>>,
    /// Cancelled when the connection's queue overflowed.
    pub too_slow: CancellationToken,
}

#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    entities: Mutex<HashMap<Uuid, HashMap<u64, Connection>>>,
    /// Connections in `entities`, kept beside it so the count costs no walk.
    count: AtomicUsize,
}

/// The replica already has `max` connections.
#[derive(Debug, thiserror::Error)]
#[error("this replica has as many websocket connections as it allows ({0})")]
pub struct HubFull(pub usize);

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish()
    }
}

impl Hub {
    /// Adds a connection of `entity`, unless the replica has `max` already; the bool says
    /// whether it is the entity's first here (its completions must now be routed here).
    pub fn join(
        &self,
        tenant: &str,
        entity: Uuid,
        capacity: usize,
        max: usize,
    ) -> Result<(Member, bool), HubFull> {
        let mut entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        if self.count.load(Ordering::Relaxed) >= max {
            return Err(HubFull(max));
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let subscriptions = Arc::new(Mutex::new(Subscriptions::default()));
        let too_slow = CancellationToken::new();
        let connections = entities.entry(entity).or_default();
        let first = connections.is_empty();
        connections.insert(
            id,
            Connection {
                tenant: tenant.to_owned(),
                tenant_word: surge_contract::job::topic_word(tenant),
                subscriptions: subscriptions.clone(),
                queue: tx,
                too_slow: too_slow.clone(),
            },
        );
        let member = Member {
            id,
            subscriptions,
            queue: rx,
            too_slow,
        };
        Ok((member, first))
    }

    /// Removes a connection; true when it was its entity's last here.
    pub fn leave(&self, id: u64, entity: Uuid) -> bool {
        let mut entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        let Some(connections) = entities.get_mut(&entity) else {
            return false;
        };
        if connections.remove(&id).is_some() {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        let last = connections.is_empty();
        if last {
            entities.remove(&entity);
        }
        last
    }

    /// Whether `entity` has a connection here.
    pub fn has(&self, entity: Uuid) -> bool {
        let entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        entities.contains_key(&entity)
    }

    /// The entities with a connection here and their tenants (to re-bind after a reconnect).
    pub fn entities(&self) -> Vec<(String, Uuid)> {
        let entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        entities
            .iter()
            .filter_map(|(entity, c)| c.values().next().map(|c| (c.tenant.clone(), *entity)))
            .collect()
    }

    pub fn connections(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether any connection wants this completion: asked before it is decoded and
    /// rendered, so unwanted traffic costs no work. `tenant` is the routing key's word.
    pub fn wants(&self, tenant: &str, entity: Uuid, job: Option<Uuid>, function: &str) -> bool {
        let entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        entities.get(&entity).is_some_and(|connections| {
            connections
                .values()
                .any(|c| c.tenant_word == tenant && c.wanted(job, function))
        })
    }

    /// Whether any connection here subscribed to `function` (whatever its entity).
    pub fn wants_function(&self, function: &str) -> bool {
        let entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        entities
            .values()
            .flat_map(|c| c.values())
            .any(|c| c.wanted(None, function))
    }

    /// Hands an event meant for everyone (a settings change) to every connection subscribed
    /// to `function`, of any entity and tenant; returns how many got it.
    pub fn broadcast(&self, function: &str, json: Arc<str>) -> usize {
        let entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        let mut sent = 0;
        for connection in entities.values().flat_map(|c| c.values()) {
            if connection.wanted(None, function) {
                sent += usize::from(connection.offer(json.clone()));
            }
        }
        sent
    }

    /// Hands a completion to the connections of its entity that subscribed to it; returns
    /// how many got it. Only the entity's own connections in the same tenant are considered.
    pub fn dispatch(&self, push: &Push) -> usize {
        let entities = self.entities.lock().unwrap_or_else(|p| p.into_inner());
        let Some(connections) = entities.get(&push.entity) else {
            return 0;
        };
        let mut sent = 0;
        for connection in connections
            .values()
            .filter(|c| c.tenant_word == push.tenant)
        {
            if !connection.wanted(push.job, &push.function) {
                continue;
            }
            sent += usize::from(connection.offer(push.json.clone()));
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(member: &Member, function: &str) {
        member
            .subscriptions
            .lock()
            .unwrap()
            .functions
            .insert(function.into());
    }

    #[test]
    fn a_broadcast_reaches_every_subscriber_of_its_function_in_every_tenant() {
        let hub = Hub::default();
        let (mut a, _) = hub.join("acme", Uuid::now_v7(), 4, 10).unwrap();
        let (mut b, _) = hub.join("evil", Uuid::now_v7(), 4, 10).unwrap();
        let (mut c, _) = hub.join("acme", Uuid::now_v7(), 4, 10).unwrap();
        assert!(!hub.wants_function("settings"));
        follow(&a, "settings");
        follow(&b, "settings");
        follow(&c, "echo");
        assert!(hub.wants_function("settings"));
        assert_eq!(hub.broadcast("settings", Arc::from("{}")), 2);
        assert!(a.queue.try_recv().is_ok() && b.queue.try_recv().is_ok());
        assert!(c.queue.try_recv().is_err(), "not subscribed to settings");
    }

    fn push(tenant: &str, entity: Uuid, function: &str, job: Uuid) -> Push {
        Push {
            tenant: tenant.into(),
            entity,
            function: function.into(),
            job: Some(job),
            json: Arc::from("{}"),
        }
    }

    #[test]
    fn completions_go_only_to_their_entitys_matching_subscriptions() {
        let hub = Hub::default();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let (mut a, first) = hub.join("acme", ann, 8, 10).unwrap();
        assert!(first);
        let (mut b, _) = hub.join("acme", bob, 8, 10).unwrap();
        let job = Uuid::now_v7();
        assert_eq!(
            hub.dispatch(&push("acme", ann, "echo", job)),
            0,
            "not subscribed yet"
        );
        follow(&a, "echo");
        follow(&b, "echo");
        assert!(hub.wants("acme", ann, Some(job), "echo"));
        assert_eq!(hub.dispatch(&push("acme", ann, "echo", job)), 1);
        assert!(a.queue.try_recv().is_ok());
        assert!(b.queue.try_recv().is_err(), "bob never sees ann's events");
        assert_eq!(
            hub.dispatch(&push("other", ann, "echo", job)),
            0,
            "tenant must match"
        );
        let other_job = Uuid::now_v7();
        b.subscriptions.lock().unwrap().functions.clear();
        b.subscriptions.lock().unwrap().jobs.insert(other_job);
        assert_eq!(
            hub.dispatch(&push("acme", bob, "sleep", other_job)),
            1,
            "by job id"
        );
    }

    #[test]
    fn a_full_queue_marks_the_connection_too_slow_instead_of_growing() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let (member, _) = hub.join("acme", ann, 2, 10).unwrap();
        follow(&member, "echo");
        for _ in 0..2 {
            assert_eq!(hub.dispatch(&push("acme", ann, "echo", Uuid::now_v7())), 1);
        }
        assert!(!member.too_slow.is_cancelled());
        assert_eq!(hub.dispatch(&push("acme", ann, "echo", Uuid::now_v7())), 0);
        assert!(member.too_slow.is_cancelled());
    }

    #[test]
    fn the_last_connection_of_an_entity_says_so_when_it_leaves() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let (one, first) = hub.join("acme", ann, 1, 10).unwrap();
        let (two, second_is_first) = hub.join("acme", ann, 1, 10).unwrap();
        assert!(first && !second_is_first);
        assert_eq!(hub.entities(), vec![("acme".to_owned(), ann)]);
        assert!(!hub.leave(one.id, ann));
        assert!(hub.has(ann));
        assert!(hub.leave(two.id, ann));
        assert!(!hub.has(ann));
        assert_eq!(hub.connections(), 0);
    }

    #[test]
    fn joins_past_the_limit_are_refused_and_leaving_frees_a_slot() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let (one, _) = hub.join("acme", ann, 1, 1).unwrap();
        assert!(hub.join("acme", ann, 1, 1).is_err());
        hub.leave(one.id, ann);
        assert!(hub.join("acme", ann, 1, 1).is_ok());
    }

    #[test]
    fn a_tenant_is_compared_as_it_appears_in_routing_keys() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let (member, _) = hub.join("dev.local", ann, 4, 10).unwrap();
        follow(&member, "echo");
        let word = surge_contract::job::topic_word("dev.local");
        assert_eq!(hub.dispatch(&push(&word, ann, "echo", Uuid::now_v7())), 1);
    }
}
