//! Short-lived, bounded caches of credential lookups (moka's: each entry lives at most its
//! time to live, and past the capacity the least useful entries go, never the whole cache).
//!
//! - API keys: a busy key costs one query per second per replica rather than one per
//!   request; entries live 1 s, so a key revoked or expired in the database is refused by
//!   every replica within that time, with no broadcast to lose. Unknown keys are cached too,
//!   so one fake key retried in a loop costs one query per second.
//! - Bearer tokens: the entity a provider's subject maps to.

use std::hash::Hash;
use std::time::Duration;

/// A cache of at most `capacity` entries, each for at most `ttl`.
pub type TtlCache<K, V> = moka::sync::Cache<K, V>;

/// A new cache of at most `capacity` entries, each kept at most `ttl`.
pub fn ttl_cache<K, V>(ttl: Duration, capacity: u64) -> TtlCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_gone_once_its_time_to_live_has_passed() {
        let cache = ttl_cache::<u8, u8>(Duration::from_millis(50), 10);
        cache.insert(1, 1);
        assert_eq!(cache.get(&1), Some(1));
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(cache.get(&1), None);
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = ttl_cache::<u32, ()>(Duration::from_secs(60), 3);
        for i in 0..100 {
            cache.insert(i, ());
        }
        cache.run_pending_tasks();
        assert!(cache.entry_count() <= 3, "{}", cache.entry_count());
    }
}
