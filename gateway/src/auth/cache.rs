//! A short-lived, bounded cache of API key lookups, so a busy key costs one query per second
//! per replica rather than one per request. Entries live at most `ttl` (1 s by default): a
//! key revoked or expired in the database is refused by every replica within that time, with
//! no broadcast to lose. Unknown keys are cached too, so a flood of well-formed fakes cannot
//! turn into a flood of queries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::api_key::KeyHash;
use crate::store::auth::KeyRecord;

#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<KeyHash, (Option<KeyRecord>, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached lookup, if fresh: `Some(None)` is a cached "no such key".
    pub fn get(&self, hash: &KeyHash) -> Option<Option<KeyRecord>> {
        self.get_at(hash, Instant::now())
    }

    fn get_at(&self, hash: &KeyHash, now: Instant) -> Option<Option<KeyRecord>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(_, at)| now.saturating_duration_since(*at) < self.ttl)
            .map(|(record, _)| record.clone())
    }

    pub fn put(&self, hash: KeyHash, record: Option<KeyRecord>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                // Still full of fresh entries: start over rather than grow.
                entries.clear();
            }
        }
        entries.insert(hash, (record, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_ttl() {
        let ttl = Duration::from_secs(1);
        let cache = KeyCache::new(ttl, 10);
        let h = KeyHash([1; 32]);
        cache.put(h, None);
        let now = Instant::now();
        assert_eq!(cache.get_at(&h, now).map(|r| r.is_none()), Some(true));
        assert!(
            cache.get_at(&h, now + ttl).is_none(),
            "gone once the TTL has passed"
        );
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = KeyCache::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            cache.put(KeyHash([i; 32]), None);
        }
        assert!(cache.entries.lock().unwrap().len() <= 3);
    }
}
