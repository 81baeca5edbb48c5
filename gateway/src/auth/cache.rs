//! A short-lived, bounded cache. Keys: API key lookups, so a busy key costs one query per
//! second per replica rather than one per request; entries live at most `ttl` (1 s), so a
//! key revoked or expired in the database is refused by every replica within that time, with
//! no broadcast to lose. Unknown keys are cached too, so one fake key retried in a loop costs
//! one query per second (many distinct fakes still cost a query each: the checksum only stops
//! typos). Bearer tokens: the entity a provider's subject maps to.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct TtlCache<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached value, if fresh.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(value, _)| value.clone())
    }

    pub fn put(&self, key: K, value: V) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                // Still full of fresh entries: start over rather than grow.
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let ttl = Duration::from_secs(1);
        let cache = TtlCache::<u8, Option<u8>>::new(ttl, 10);
        cache.put(1, None);
        let now = Instant::now();
        assert_eq!(cache.get_at(&1, now), Some(None));
        assert!(
            cache.get_at(&1, now + ttl).is_none(),
            "gone once the TTL has passed"
        );
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = TtlCache::new(Duration::from_secs(60), 3);
        for i in 0..10u8 {
            cache.put(i, ());
        }
        assert!(cache.entries.lock().unwrap().len() <= 3);
    }
}
