//! Rate limits: GCRA (governor) per key — per entity once a caller is authenticated, per
//! client address before (credential lookups, login starts). The limiter remembers one small
//! state per key seen recently; a sweep forgets the idle ones and a hard cap bounds the rest,
//! so a flood of distinct callers cannot grow memory.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::Deserialize;
use uuid::Uuid;

use crate::error::ApiError;

/// `limits.*`: requests per entity.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Sustained requests per second of one entity (0 turns limiting off).
    pub per_second: u32,
    /// Requests one entity may make at once above the sustained rate.
    pub burst: u32,
    /// Entities tracked at most; past it, the idle ones are forgotten first, then all.
    pub max_tracked: usize,
    /// Before authentication, per client address: credential lookups the key cache did not
    /// answer, and login starts and callbacks, per second (0 turns it off).
    pub per_client_per_second: u32,
    /// The burst of `per_client_per_second`.
    pub per_client_burst: u32,
    /// A Redis (`redis://host:6379/0`; a secret) holding every entity's limit for all
    /// replicas at once. Unset: each replica limits on its own (with N replicas an entity
    /// gets up to N× its rate).
    pub store_url: Option<secrecy::SecretString>,
    /// How long a request waits for the store's decision.
    pub store_timeout_ms: u64,
    /// When the store does not decide in time: let the request through (counted in
    /// `surge_rate_limit_store_failures_total`; the default) or answer 503.
    pub store_fail_open: bool,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 100,
            max_tracked: 100_000,
            per_client_per_second: 20,
            per_client_burst: 100,
            store_url: None,
            store_timeout_ms: 50,
            store_fail_open: true,
        }
    }
}

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// Why a request was refused: when to retry, and the policy, for the response headers.
#[derive(Debug, Clone, PartialEq)]
pub struct Limited {
    pub retry_after: Duration,
    pub burst: u32,
    pub per_second: u32,
}

/// A policy: sustained requests per second and burst; `per_second == 0` is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub per_second: u32,
    pub burst: u32,
}

/// A limit per key (an entity, a client address).
#[derive(Debug)]
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    /// The limiter of the policy in force; `None` while limiting is off. Replaced by a new,
    /// empty limiter when full of recent callers or when the policy changes.
    active: RwLock<Option<Active<K>>>,
    /// `limits.*` from configuration: in force while no `rate_limit` setting exists.
    configured: Policy,
    max_tracked: usize,
    checks: AtomicU64,
}

/// Requests per authenticated entity (`limits.per_second`, or the `rate_limit` setting).
pub type EntityLimiter = KeyedLimiter<Uuid>;
/// Unauthenticated work per client address (`limits.per_client_per_second`).
pub type ClientLimiter = KeyedLimiter<IpAddr>;

#[derive(Debug)]
struct Active<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    quota: Quota,
    policy: Policy,
}

const CAP_CHECK_EVERY: u64 = 64;

impl<K: Hash + Eq + Clone> Active<K> {
    fn new(policy: Policy) -> Option<Self> {
        let rate = NonZeroU32::new(policy.per_second)?;
        let burst = NonZeroU32::new(policy.burst.max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(rate).allow_burst(burst);
        Some(Self {
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            quota,
            policy,
        })
    }

    fn limited(&self, not_until: &governor::NotUntil<governor::clock::QuantaInstant>) -> Limited {
        Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            burst: self.policy.burst,
            per_second: self.policy.per_second,
        }
    }
}

impl EntityLimiter {
    pub fn new(settings: &LimitSettings) -> Self {
        Self::with_policy(
            Policy {
                per_second: settings.per_second,
                burst: settings.burst,
            },
            settings.max_tracked,
        )
    }
}

impl ClientLimiter {
    /// The limit per client address before authentication.
    pub fn for_clients(settings: &LimitSettings) -> Self {
        Self::with_policy(
            Policy {
                per_second: settings.per_client_per_second,
                burst: settings.per_client_burst,
            },
            settings.max_tracked,
        )
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    fn with_policy(configured: Policy, max_tracked: usize) -> Self {
        Self {
            active: RwLock::new(Active::new(configured)),
            configured,
            max_tracked,
            checks: AtomicU64::new(0),
        }
    }

    /// Puts `policy` (the `rate_limit` setting) in force, or the configured one when `None`.
    /// A change starts every entity afresh; the same policy again changes nothing.
    pub fn apply(&self, policy: Option<Policy>) {
        let policy = policy.unwrap_or(self.configured);
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        let current = active.as_ref().map(|a| a.policy);
        let off = policy.per_second == 0;
        if current == Some(policy) || (off && current.is_none()) {
            return;
        }
        tracing::info!(
            per_second = policy.per_second,
            burst = policy.burst,
            "rate limit policy changed"
        );
        *active = Active::new(policy);
    }

    /// The policy in force (`None` when limiting is off).
    pub fn policy(&self) -> Option<Policy> {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        active.as_ref().map(|a| a.policy)
    }

    /// Counts one request of `entity` (or client).
    pub fn check(&self, entity: K) -> Result<(), Limited> {
        // Counting the tracked entities visits every shard of the map: do it every so often,
        // not on every request (the cap may be overshot by at most that many entities).
        let due = self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(CAP_CHECK_EVERY);
        if due {
            self.bound();
        }
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        let Some(active) = active.as_ref() else {
            return Ok(());
        };
        match active.limiter.check_key(&entity) {
            Ok(_) => Ok(()),
            Err(not_until) => Err(active.limited(&not_until)),
        }
    }

    /// Keeps the tracked entities under `max_tracked`.
    fn bound(&self) {
        let full = self
            .active
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|a| a.limiter.len() >= self.max_tracked);
        if !full {
            return;
        }
        let mut active = self.active.write().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = active.as_mut() {
            a.limiter.retain_recent();
            if a.limiter.len() >= self.max_tracked {
                // Still full of recent callers: forget them all rather than grow.
                a.limiter =
                    RateLimiter::keyed(a.quota).with_middleware::<StateInformationMiddleware>();
            }
        }
    }

    /// Counts `n` more units of `entity` at once (the events of a batch beyond the request
    /// itself). A batch larger than the burst can never pass: that is a bad request.
    pub fn check_more(&self, entity: K, n: usize) -> Result<(), ApiError> {
        let Some(n) = NonZeroU32::new(n.try_into().unwrap_or(u32::MAX)) else {
            return Ok(());
        };
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        let Some(active) = active.as_ref() else {
            return Ok(());
        };
        match active.limiter.check_key_n(&entity, n) {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(not_until)) => Err(ApiError::RateLimited(active.limited(&not_until))),
            Err(_) => Err(ApiError::BadRequest(format!(
                "a batch may hold at most {} events (the rate limit's burst)",
                active.policy.burst
            ))),
        }
    }

    /// Forgets entities whose state is back to full (idle); called periodically.
    pub fn sweep(&self) {
        let active = self.active.read().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = active.as_ref() {
            a.limiter.retain_recent();
            a.limiter.shrink_to_fit();
        }
    }
}

impl Limited {
    /// Seconds to wait, rounded up (`Retry-After` takes whole seconds).
    pub fn retry_after_secs(&self) -> u64 {
        let d = self.retry_after;
        d.as_secs() + u64::from(d.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entity_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 1,
            burst: 3,
            max_tracked: 10,
            ..Default::default()
        });
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let limited = limiter.check(a).unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1));
        assert_eq!(limited.retry_after_secs(), 1);
        assert!(limiter.check(b).is_ok(), "per entity");
        assert!(
            limiter.check_more(b, 2).is_ok(),
            "b had 3: one used, two more"
        );
        assert!(matches!(
            limiter.check_more(b, 1),
            Err(ApiError::RateLimited(_))
        ));
        assert!(
            matches!(limiter.check_more(b, 10), Err(ApiError::BadRequest(_))),
            "past the burst"
        );
    }

    #[test]
    fn zero_per_second_turns_limiting_off() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 0,
            ..Default::default()
        });
        let a = Uuid::now_v7();
        assert!((0..1000).all(|_| limiter.check(a).is_ok()));
    }

    #[test]
    fn a_new_policy_takes_over_and_none_restores_the_configured_one() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 0,
            burst: 1,
            max_tracked: 10,
            ..Default::default()
        });
        let a = Uuid::now_v7();
        assert!(
            (0..10).all(|_| limiter.check(a).is_ok()),
            "off as configured"
        );
        let strict = Policy {
            per_second: 1,
            burst: 2,
        };
        limiter.apply(Some(strict));
        assert_eq!(limiter.policy(), Some(strict));
        assert!(limiter.check(a).is_ok() && limiter.check(a).is_ok());
        let limited = limiter.check(a).unwrap_err();
        assert_eq!((limited.per_second, limited.burst), (1, 2));
        limiter.apply(Some(strict));
        assert!(limiter.check(a).is_err(), "the same policy keeps the state");
        limiter.apply(None);
        assert_eq!(limiter.policy(), None);
        assert!((0..10).all(|_| limiter.check(a).is_ok()), "back to off");
    }

    #[test]
    fn the_tracked_set_is_bounded() {
        let limiter = EntityLimiter::new(&LimitSettings {
            per_second: 1,
            burst: 1,
            max_tracked: 5,
            ..Default::default()
        });
        for _ in 0..500 {
            let _ = limiter.check(Uuid::now_v7());
        }
        let tracked = limiter
            .active
            .read()
            .unwrap()
            .as_ref()
            .unwrap()
            .limiter
            .len();
        assert!(tracked <= 5 + CAP_CHECK_EVERY as usize, "{tracked}");
    }
}
