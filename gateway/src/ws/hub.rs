//! Which websocket connection wants which completion. Completions reach this replica on its
//! reply queue, bound to `surge.events` only for the entities that have a connection here
//! and the tenants an admin watches from here (the console's tenant-wide feed); the hub
//! hands each to the matching connections' bounded queues. A connection whose queue
//! is full is told to go (it reads too slowly), never allowed to grow memory.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
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
    /// What other entities' tenant-wide watchers get: a success without its result.
    pub for_watchers: Arc<str>,
}

struct Connection {
    /// The tenant as it appears in a completion's routing key (`job::topic_word`).
    tenant_word: String,
    subscriptions: Arc<Mutex<Subscriptions>>,
    queue: mpsc::Sender<Arc<str>>,
    too_slow: CancellationToken,
    recheck: Arc<Notify>,
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
    /// Notified when its entity's credentials changed: the connection checks its own again.
    pub recheck: Arc<Notify>,
}

/// Whose jobs a tenant-wide watcher sees: a tenant's (`Some`), or those no tenant owns
/// (`None`, operators only). Completions name it by its routing-key word.
pub type Audience = Option<String>;

fn audience_word(audience: &Audience) -> String {
    audience
        .as_deref()
        .map_or_else(|| "-".to_owned(), surge_contract::job::topic_word)
}

/// The connections watching one audience: connection id → its entity.
type Watchers = HashMap<u64, Uuid>;

#[derive(Default)]
struct Rooms {
    entities: HashMap<Uuid, HashMap<u64, Connection>>,
    /// Connections per tenant (by its routing-key word), for `Caps::per_tenant`.
    tenants: HashMap<String, usize>,
    /// Connections in `entities`.
    total: usize,
    /// Tenant-wide watchers (admins' consoles), by the audience's routing-key word.
    watchers: HashMap<String, Watchers>,
}

impl Rooms {
    fn admits(&self, tenant_word: &str, entity: Uuid, caps: Caps) -> Result<(), Refused> {
        if self.entities.get(&entity).map_or(0, HashMap::len) >= caps.per_entity {
            return Err(Refused::Entity(caps.per_entity));
        }
        if self.tenants.get(tenant_word).copied().unwrap_or(0) >= caps.per_tenant {
            return Err(Refused::Tenant(caps.per_tenant));
        }
        if self.total >= caps.replica {
            return Err(Refused::Replica(caps.replica));
        }
        Ok(())
    }

    fn connection(&self, entity: Uuid, id: u64) -> Option<&Connection> {
        self.entities.get(&entity)?.get(&id)
    }

    /// Stops `id` watching.
    fn unwatch(&mut self, id: u64) {
        self.watchers.retain(|_, w| {
            w.remove(&id);
            !w.is_empty()
        });
    }
}

/// Who wants a completion: the owner's own connections, and other entities' tenant-wide
/// watchers (who get a success without its result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub owner: bool,
    pub others: bool,
}

impl Interest {
    pub fn any(self) -> bool {
        self.owner || self.others
    }
}

#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    rooms: Mutex<Rooms>,
    /// `Rooms::total`, readable without the lock.
    count: AtomicUsize,
}

/// How many connections the hub takes: on the replica, of one tenant, of one entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub replica: usize,
    pub per_tenant: usize,
    pub per_entity: usize,
}

/// A connection the hub does not take, and which cap it met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("this replica has as many websocket connections as it allows ({0})")]
    Replica(usize),
    #[error(
        "the tenant has as many websocket connections on this replica as one tenant may ({0}, ws.max_connections_per_tenant)"
    )]
    Tenant(usize),
    #[error(
        "the caller has as many websocket connections on this replica as one entity may ({0}, ws.max_connections_per_entity); close one first"
    )]
    Entity(usize),
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connections())
            .finish()
    }
}

impl Hub {
    fn rooms(&self) -> std::sync::MutexGuard<'_, Rooms> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a connection of `entity` would be taken now (asked before the upgrade, so a
    /// refusal is an HTTP answer; `join` asks again, atomically).
    pub fn admits(&self, tenant: &str, entity: Uuid, caps: Caps) -> Result<(), Refused> {
        self.rooms()
            .admits(&surge_contract::job::topic_word(tenant), entity, caps)
    }

    /// Adds a connection of `entity`, unless a cap is met.
    pub fn join(
        &self,
        tenant: &str,
        entity: Uuid,
        capacity: usize,
        caps: Caps,
    ) -> Result<Member, Refused> {
        let tenant_word = surge_contract::job::topic_word(tenant);
        let mut rooms = self.rooms();
        rooms.admits(&tenant_word, entity, caps)?;
        rooms.total += 1;
        self.count.store(rooms.total, Ordering::Relaxed);
        *rooms.tenants.entry(tenant_word.clone()).or_default() += 1;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let subscriptions = Arc::new(Mutex::new(Subscriptions::default()));
        let too_slow = CancellationToken::new();
        let recheck = Arc::new(Notify::new());
        rooms.entities.entry(entity).or_default().insert(
            id,
            Connection {
                tenant_word,
                subscriptions: subscriptions.clone(),
                queue: tx,
                too_slow: too_slow.clone(),
                recheck: recheck.clone(),
            },
        );
        Ok(Member {
            id,
            subscriptions,
            queue: rx,
            too_slow,
            recheck,
        })
    }

    /// Removes a connection, and its watching.
    pub fn leave(&self, id: u64, entity: Uuid) {
        let mut rooms = self.rooms();
        rooms.unwatch(id);
        let Some(connections) = rooms.entities.get_mut(&entity) else {
            return;
        };
        let Some(gone) = connections.remove(&id) else {
            return;
        };
        if connections.is_empty() {
            rooms.entities.remove(&entity);
        }
        rooms.total -= 1;
        self.count.store(rooms.total, Ordering::Relaxed);
        if let Some(count) = rooms.tenants.get_mut(&gone.tenant_word) {
            *count -= 1;
            if *count == 0 {
                rooms.tenants.remove(&gone.tenant_word);
            }
        }
    }

    /// Asks every connection of `entity` here to check its credential again (its entity's
    /// credentials changed); returns how many were asked.
    pub fn recheck_entity(&self, entity: Uuid) -> usize {
        let rooms = self.rooms();
        let Some(connections) = rooms.entities.get(&entity) else {
            return 0;
        };
        for connection in connections.values() {
            connection.recheck.notify_one();
        }
        connections.len()
    }

    /// Asks every connection to check its credential again (changes may have been missed).
    pub fn recheck_all(&self) -> usize {
        let rooms = self.rooms();
        let mut asked = 0;
        for connection in rooms.entities.values().flat_map(|c| c.values()) {
            connection.recheck.notify_one();
            asked += 1;
        }
        asked
    }

    /// Makes connection `id` (of `entity`) a tenant-wide watcher of `audiences`: it also gets
    /// the completions of other entities' jobs there that its subscriptions match.
    pub fn watch(&self, id: u64, entity: Uuid, audiences: &[Audience]) {
        let mut rooms = self.rooms();
        if rooms.connection(entity, id).is_none() {
            return;
        }
        for audience in audiences {
            rooms
                .watchers
                .entry(audience_word(audience))
                .or_default()
                .insert(id, entity);
        }
    }

    /// Stops connection `id` watching.
    pub fn unwatch(&self, id: u64) {
        self.rooms().unwatch(id);
    }

    /// Whether connection `id` is a tenant-wide watcher (the connection itself keeps track).
    #[cfg(test)]
    pub fn is_watching(&self, id: u64) -> bool {
        self.rooms().watchers.values().any(|w| w.contains_key(&id))
    }

    pub fn connections(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Who here wants this completion, asked before it is decoded and rendered (unwanted
    /// traffic costs no work), under one lock. `tenant` is the routing key's word.
    pub fn interest(
        &self,
        tenant: &str,
        entity: Uuid,
        job: Option<Uuid>,
        function: &str,
    ) -> Interest {
        let rooms = self.rooms();
        let owner = rooms.entities.get(&entity).is_some_and(|connections| {
            connections
                .values()
                .any(|c| c.tenant_word == tenant && c.wanted(job, function))
        });
        // As `dispatch`: the owner's own connections count as the owner, not as watchers.
        let others = rooms.watchers.get(tenant).is_some_and(|w| {
            w.iter().any(|(id, watcher)| {
                *watcher != entity
                    && rooms
                        .connection(*watcher, *id)
                        .is_some_and(|c| c.wanted(job, function))
            })
        });
        Interest { owner, others }
    }

    /// Whether any connection here subscribed to `function` (whatever its entity).
    pub fn wants_function(&self, function: &str) -> bool {
        self.rooms()
            .entities
            .values()
            .flat_map(|c| c.values())
            .any(|c| c.wanted(None, function))
    }

    /// Hands an event meant for everyone (a settings change) to every connection subscribed
    /// to `function`, of any entity and tenant; returns how many got it.
    pub fn broadcast(&self, function: &str, json: Arc<str>) -> usize {
        let rooms = self.rooms();
        let mut sent = 0;
        for connection in rooms.entities.values().flat_map(|c| c.values()) {
            if connection.wanted(None, function) {
                sent += usize::from(connection.offer(json.clone()));
            }
        }
        sent
    }

    /// Hands a completion to the connections that subscribed to it: its entity's own in the
    /// same tenant, and the tenant-wide watchers of its tenant; each gets it once. Returns
    /// how many got it.
    pub fn dispatch(&self, push: &Push) -> usize {
        let rooms = self.rooms();
        let mut sent = 0;
        if let Some(connections) = rooms.entities.get(&push.entity) {
            for connection in connections
                .values()
                .filter(|c| c.tenant_word == push.tenant)
            {
                if connection.wanted(push.job, &push.function) {
                    sent += usize::from(connection.offer(push.json.clone()));
                }
            }
        }
        if let Some(watchers) = rooms.watchers.get(&push.tenant) {
            for (id, entity) in watchers {
                // The entity's own connections were served above.
                if *entity == push.entity {
                    continue;
                }
                if let Some(connection) = rooms.connection(*entity, *id)
                    && connection.wanted(push.job, &push.function)
                {
                    sent += usize::from(connection.offer(push.for_watchers.clone()));
                }
            }
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// At most `replica` connections, with no tenant or entity cap below it.
    fn caps(replica: usize) -> Caps {
        Caps {
            replica,
            per_tenant: replica,
            per_entity: replica,
        }
    }

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
        let mut a = hub.join("acme", Uuid::now_v7(), 4, caps(10)).unwrap();
        let mut b = hub.join("evil", Uuid::now_v7(), 4, caps(10)).unwrap();
        let mut c = hub.join("acme", Uuid::now_v7(), 4, caps(10)).unwrap();
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
            for_watchers: Arc::from("{\"bare\":true}"),
        }
    }

    #[test]
    fn completions_go_only_to_their_entitys_matching_subscriptions() {
        let hub = Hub::default();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let mut a = hub.join("acme", ann, 8, caps(10)).unwrap();
        let mut b = hub.join("acme", bob, 8, caps(10)).unwrap();
        let job = Uuid::now_v7();
        assert_eq!(
            hub.dispatch(&push("acme", ann, "echo", job)),
            0,
            "not subscribed yet"
        );
        follow(&a, "echo");
        follow(&b, "echo");
        assert!(hub.interest("acme", ann, Some(job), "echo").owner);
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
        let member = hub.join("acme", ann, 2, caps(10)).unwrap();
        follow(&member, "echo");
        for _ in 0..2 {
            assert_eq!(hub.dispatch(&push("acme", ann, "echo", Uuid::now_v7())), 1);
        }
        assert!(!member.too_slow.is_cancelled());
        assert_eq!(hub.dispatch(&push("acme", ann, "echo", Uuid::now_v7())), 0);
        assert!(member.too_slow.is_cancelled());
    }

    #[test]
    fn leaving_removes_the_connection_and_an_entity_without_one() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let one = hub.join("acme", ann, 1, caps(10)).unwrap();
        let two = hub.join("acme", ann, 1, caps(10)).unwrap();
        follow(&two, "echo");
        hub.leave(one.id, ann);
        assert_eq!(hub.connections(), 1);
        assert!(hub.interest("acme", ann, None, "echo").owner);
        hub.leave(two.id, ann);
        assert_eq!(hub.connections(), 0);
        assert!(hub.rooms().entities.is_empty());
    }

    #[test]
    fn joins_past_the_limit_are_refused_and_leaving_frees_a_slot() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let one = hub.join("acme", ann, 1, caps(1)).unwrap();
        assert!(hub.join("acme", ann, 1, caps(1)).is_err());
        hub.leave(one.id, ann);
        assert!(hub.join("acme", ann, 1, caps(1)).is_ok());
    }

    #[test]
    fn a_tenant_is_compared_as_it_appears_in_routing_keys() {
        let hub = Hub::default();
        let ann = Uuid::now_v7();
        let member = hub.join("dev.local", ann, 4, caps(10)).unwrap();
        follow(&member, "echo");
        let word = surge_contract::job::topic_word("dev.local");
        assert_eq!(hub.dispatch(&push(&word, ann, "echo", Uuid::now_v7())), 1);
    }

    #[test]
    fn a_watcher_gets_its_tenants_jobs_of_every_entity_once_and_no_other_tenants() {
        let hub = Hub::default();
        let (admin, ann, eve) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut console = hub.join("acme", admin, 8, caps(10)).unwrap();
        let mut own = hub.join("acme", ann, 8, caps(10)).unwrap();
        follow(&console, "echo");
        follow(&own, "echo");
        assert!(!hub.interest("acme", ann, None, "sleep").any());
        let acme = Some("acme".to_owned());
        hub.watch(console.id, admin, std::slice::from_ref(&acme));
        hub.watch(own.id, ann, std::slice::from_ref(&acme));
        hub.unwatch(own.id);
        assert!(hub.is_watching(console.id) && !hub.is_watching(own.id));
        assert_eq!(
            hub.interest("acme", ann, None, "echo"),
            Interest {
                owner: true,
                others: true
            }
        );
        assert_eq!(
            hub.interest("acme", admin, None, "echo"),
            Interest {
                owner: true,
                others: false
            },
            "the admin's own job is the admin's, whole"
        );
        assert_eq!(hub.dispatch(&push("acme", ann, "echo", Uuid::now_v7())), 2);
        assert_eq!(
            &*own.queue.try_recv().unwrap(),
            "{}",
            "the owner gets the result"
        );
        assert_eq!(
            &*console.queue.try_recv().unwrap(),
            "{\"bare\":true}",
            "an admin watching gets it without"
        );
        // The admin's own job reaches its console once, not once per way in.
        assert_eq!(
            hub.dispatch(&push("acme", admin, "echo", Uuid::now_v7())),
            1
        );
        assert!(console.queue.try_recv().is_ok() && console.queue.try_recv().is_err());
        assert_eq!(hub.dispatch(&push("evil", eve, "echo", Uuid::now_v7())), 0);
        assert_eq!(
            hub.dispatch(&push("acme", ann, "sleep", Uuid::now_v7())),
            0,
            "not subscribed"
        );
        hub.leave(console.id, admin);
        assert!(hub.rooms().watchers.is_empty(), "its watching went with it");
        assert_eq!(hub.dispatch(&push("acme", ann, "echo", Uuid::now_v7())), 1);
    }

    #[test]
    fn an_operator_watches_the_jobs_nobody_owns_under_their_own_word() {
        let hub = Hub::default();
        let admin = Uuid::now_v7();
        let mut console = hub.join("ops", admin, 8, caps(10)).unwrap();
        follow(&console, "echo");
        let audiences = [Some("ops".to_owned()), None];
        hub.watch(console.id, admin, &audiences);
        assert_eq!(hub.rooms().watchers.len(), 2);
        // An ownerless completion's key is `-.-.<function>.<outcome>`.
        let ownerless = Push {
            entity: Uuid::nil(),
            ..push("-", admin, "echo", Uuid::now_v7())
        };
        assert_eq!(hub.dispatch(&ownerless), 1);
        assert!(console.queue.try_recv().is_ok());
        hub.unwatch(console.id);
        assert_eq!(hub.dispatch(&ownerless), 0);
    }

    #[test]
    fn an_entity_or_a_tenant_at_its_cap_is_refused_while_others_still_join() {
        let hub = Hub::default();
        let caps = Caps {
            replica: 5,
            per_tenant: 3,
            per_entity: 2,
        };
        let (ann, bob, eve) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let first = hub.join("acme", ann, 1, caps).unwrap();
        hub.join("acme", ann, 1, caps).unwrap();
        assert_eq!(hub.admits("acme", ann, caps), Err(Refused::Entity(2)));
        assert_eq!(
            hub.join("acme", ann, 1, caps).err(),
            Some(Refused::Entity(2))
        );
        hub.join("acme", bob, 1, caps).unwrap();
        assert_eq!(
            hub.join("acme", bob, 1, caps).err(),
            Some(Refused::Tenant(3))
        );
        hub.join("evil", eve, 1, caps).unwrap();
        hub.join("evil", eve, 1, caps).unwrap();
        assert_eq!(
            hub.join("other", Uuid::now_v7(), 1, caps).err(),
            Some(Refused::Replica(5))
        );
        hub.leave(first.id, ann);
        assert_eq!(hub.connections(), 4);
        assert!(
            hub.admits("acme", ann, caps).is_ok(),
            "leaving frees the slot"
        );
        assert!(hub.join("acme", ann, 1, caps).is_ok());
    }

    #[tokio::test]
    async fn a_recheck_reaches_every_connection_of_the_entity_and_no_other() {
        let hub = Hub::default();
        let (ann, bob) = (Uuid::now_v7(), Uuid::now_v7());
        let one = hub.join("acme", ann, 1, caps(10)).unwrap();
        let two = hub.join("other", ann, 1, caps(10)).unwrap();
        let bobs = hub.join("acme", bob, 1, caps(10)).unwrap();
        assert_eq!(hub.recheck_entity(ann), 2);
        assert_eq!(hub.recheck_entity(Uuid::now_v7()), 0);
        let soon = std::time::Duration::from_millis(100);
        assert!(
            tokio::time::timeout(soon, one.recheck.notified())
                .await
                .is_ok()
        );
        assert!(
            tokio::time::timeout(soon, two.recheck.notified())
                .await
                .is_ok()
        );
        assert!(
            tokio::time::timeout(soon, bobs.recheck.notified())
                .await
                .is_err()
        );
        assert_eq!(hub.recheck_all(), 3);
        assert!(
            tokio::time::timeout(soon, bobs.recheck.notified())
                .await
                .is_ok()
        );
    }
}
