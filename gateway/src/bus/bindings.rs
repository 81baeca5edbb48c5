//! Which completions on `surge.events` are routed to this replica's reply queue. Each binding
//! key is held by whoever needs it (a websocket connection holds its entity's key, a console
//! its tenant's, the replica itself the `settings` function's) and counted: the first hold
//! binds, the last release unbinds. The reply queue outlives a reconnect, so on every
//! (re)connect all held keys are bound again, and the keys whose last holder left while the
//! link was down are removed then (a binding left behind would route a whole stream here for
//! good).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use lapin::Channel;
use surge_contract::topology::Topology;

use super::BusError;

/// Stale keys remembered at most: past the bound a key is forgotten (logged), and its
/// stream flows here until the reply queue expires with the replica (`x-expires`).
const MAX_STALE: usize = 10_000;

/// The held keys and their holders, and the keys to remove at the next connect.
#[derive(Debug, Default)]
pub struct Bindings {
    /// Serialises every change, so a release and a hold of one key cannot reorder their
    /// broker calls.
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    held: HashMap<String, usize>,
    stale: HashSet<String>,
}

impl State {
    fn remember(&mut self, key: String) {
        if self.stale.len() >= MAX_STALE {
            tracing::warn!(%key, "too many stale bindings remembered; this one stays");
            return;
        }
        self.stale.insert(key);
    }
}

/// Where binding changes are made: the link's channel and the reply queue.
pub struct Target<'a> {
    pub channel: Option<Channel>,
    pub topology: &'a Topology,
    pub reply_queue: &'a str,
    pub timeout: Duration,
}

impl Bindings {
    /// Bindings with `keys` held for the replica's life (bound at every connect).
    pub fn held_for_good(keys: Vec<String>) -> Self {
        let held = keys.into_iter().map(|k| (k, 1)).collect();
        Self {
            state: tokio::sync::Mutex::new(State {
                held,
                stale: HashSet::new(),
            }),
        }
    }

    /// One more holder of `key`; the first binds it (which needs the link).
    pub async fn hold(&self, key: &str, target: Target<'_>) -> Result<(), BusError> {
        let mut state = self.state.lock().await;
        if let Some(holders) = state.held.get_mut(key) {
            *holders += 1;
            return Ok(());
        }
        let channel = target.channel.ok_or(BusError::NotConnected)?;
        let bound = target
            .topology
            .bind_events(&channel, target.reply_queue, key);
        match tokio::time::timeout(target.timeout, bound).await {
            Ok(result) => result?,
            Err(_) => return Err(BusError::Timeout(target.timeout)),
        }
        state.stale.remove(key);
        state.held.insert(key.to_owned(), 1);
        Ok(())
    }

    /// One holder of `key` fewer; the last unbinds it, now or at the next connect.
    pub async fn release(&self, key: &str, target: Target<'_>) {
        let mut state = self.state.lock().await;
        match state.held.get_mut(key) {
            Some(holders) if *holders > 1 => {
                *holders -= 1;
                return;
            }
            Some(_) => {
                state.held.remove(key);
            }
            None => return,
        }
        let Some(channel) = target.channel else {
            state.remember(key.to_owned());
            return;
        };
        let unbound = target
            .topology
            .unbind_events(&channel, target.reply_queue, key);
        match tokio::time::timeout(target.timeout, unbound).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "could not unbind completions; retried on reconnect");
                state.remember(key.to_owned());
            }
            Err(_) => {
                tracing::warn!("unbinding completions timed out; retried on reconnect");
                state.remember(key.to_owned());
            }
        }
    }

    /// On (re)connect: binds every held key and removes the stale ones.
    pub async fn restore(
        &self,
        channel: &Channel,
        topology: &Topology,
        reply_queue: &str,
    ) -> Result<(), BusError> {
        let mut state = self.state.lock().await;
        for key in state.held.keys() {
            topology.bind_events(channel, reply_queue, key).await?;
        }
        let stale: Vec<String> = state.stale.drain().collect();
        for key in stale {
            if let Err(e) = topology.unbind_events(channel, reply_queue, &key).await {
                tracing::warn!(error = %e, %key, "a stale binding could not be removed");
            }
        }
        Ok(())
    }

    #[cfg(test)]
    async fn snapshot(&self) -> (Vec<(String, usize)>, Vec<String>) {
        let state = self.state.lock().await;
        let mut held: Vec<_> = state.held.iter().map(|(k, n)| (k.clone(), *n)).collect();
        held.sort();
        let mut stale: Vec<_> = state.stale.iter().cloned().collect();
        stale.sort();
        (held, stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offline(topology: &Topology) -> Target<'_> {
        Target {
            channel: None,
            topology,
            reply_queue: "q",
            timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn without_a_link_a_first_hold_fails_and_a_last_release_is_remembered() {
        let topology = Topology::new("t-", 5);
        let bindings = Bindings::default();
        assert!(matches!(
            bindings.hold("a.*.*.*", offline(&topology)).await,
            Err(BusError::NotConnected)
        ));
        assert_eq!(bindings.snapshot().await, (vec![], vec![]));
        // Held twice (as if bound while the link was up), released twice while it is down.
        bindings.state.lock().await.held.insert("a.*.*.*".into(), 2);
        bindings.hold("a.*.*.*", offline(&topology)).await.unwrap();
        for _ in 0..2 {
            bindings.release("a.*.*.*", offline(&topology)).await;
        }
        assert_eq!(
            bindings.snapshot().await,
            (vec![("a.*.*.*".into(), 1)], vec![]),
            "still held once"
        );
        bindings.release("a.*.*.*", offline(&topology)).await;
        bindings.release("a.*.*.*", offline(&topology)).await;
        assert_eq!(
            bindings.snapshot().await,
            (vec![], vec!["a.*.*.*".into()]),
            "the last release is remembered once, an extra one is ignored"
        );
    }

    #[tokio::test]
    async fn stale_keys_are_bounded() {
        let topology = Topology::new("t-", 5);
        let bindings = Bindings::default();
        for i in 0..MAX_STALE + 5 {
            let key = format!("t{i}.*.*.*");
            bindings.state.lock().await.held.insert(key.clone(), 1);
            bindings.release(&key, offline(&topology)).await;
        }
        assert_eq!(bindings.snapshot().await.1.len(), MAX_STALE);
    }
}
