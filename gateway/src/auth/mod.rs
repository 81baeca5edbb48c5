//! Who is calling. Handlers ask for a [`Caller`] (or an [`Admin`]); none reads
//! `Authorization` itself.
//!
//! Credentials, in the order they are tried: the development key (`dev.api_key`, off by
//! default); Surge tokens (`surge_…`: API keys from `/token` or `surge key create`, login
//! tokens from `/login`), checked against their stored hash through a short-lived cache; and,
//! for tenants that allow it, the provider's own JWTs.

pub mod api_key;
mod cache;
pub mod client;
mod dev_key;
pub mod key_policy;
mod rate_limit;
pub mod shared_limit;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sqlx::PgPool;
use uuid::Uuid;

pub use cache::{TtlCache, ttl_cache};
pub use dev_key::DevKey;
pub use rate_limit::{ClientLimiter, EntityLimiter, LimitSettings, Limited, Policy};

use crate::error::ApiError;
use crate::metrics::Rejection;

/// The answer to a key that was revoked or outlived its lifetime (counted as `expired`).
const EXPIRED: &str = "the API key is revoked or expired";
use crate::identity::{Tenants, account};
use crate::state::AppState;
use crate::store::api_keys::KeyRecord;

/// An authenticated caller: one entity of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub entity_id: Uuid,
    pub tenant: String,
    /// The Surge token used, when it was one (not the development key or a JWT).
    pub key_id: Option<Uuid>,
    /// When the presented credential expires (`None`: never, or the development key).
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Member of the tenant's admin group (as of the login that issued the credential).
    pub admin: bool,
    /// The persona (source profile) the presented Surge token was issued for.
    pub persona: Option<String>,
}

/// A Surge token as the authenticator keeps it: the record and whether it makes an admin.
#[derive(Debug)]
pub struct CachedKey {
    pub record: KeyRecord,
    pub admin: bool,
}

/// Caches of credential lookups (shared, not copied, on each hit).
pub type KeyCache = TtlCache<api_key::KeyHash, Arc<CachedKey>>;
/// Hashes no credential has: kept apart, so a flood of made-up keys cannot push real ones
/// out of [`KeyCache`].
pub type UnknownKeys = TtlCache<api_key::KeyHash, ()>;
/// `(tenant, subject, account)` of a bearer JWT → its entity and the subject it is bound to.
pub type SubjectCache = TtlCache<(String, String, String), (Uuid, Option<String>)>;

/// Checks presented credentials.
#[derive(Debug)]
pub struct Authenticator {
    pub dev_key: Option<DevKey>,
    pub pool: PgPool,
    pub keys: KeyCache,
    pub unknown: UnknownKeys,
    pub subjects: SubjectCache,
    /// Unauthenticated work per client address (lookups the caches do not answer).
    pub clients: Arc<ClientLimiter>,
    pub proxies: client::TrustedProxies,
    pub tenants: Arc<Tenants>,
    pub limiter: Arc<EntityLimiter>,
    /// How long a login's admin standing lasts on the credentials it issued.
    pub admin_max_age: chrono::Duration,
    /// The limit kept in a store every replica shares (`limits.store_url`), and what to do
    /// when it does not answer.
    pub shared: Option<shared_limit::SharedLimiter>,
    pub store_fail_open: bool,
}

impl Authenticator {
    /// Who `presented` is now (a cached lookup); `/ws` asks again on every ping, so a
    /// revoked or expired credential, or a lost admin role, ends the connection.
    /// `client`: the address to charge a lookup the caches cannot answer to (`None` for the
    /// gateway's own re-checks of an open websocket).
    pub(crate) async fn authenticate(
        &self,
        presented: &str,
        client: Option<IpAddr>,
    ) -> Result<Caller, ApiError> {
        if let Some(caller) = self.dev_key.as_ref().and_then(|dev| dev.check(presented)) {
            return Ok(caller);
        }
        let spend = |client: Option<IpAddr>| match client {
            Some(ip) => self.clients.check(ip).map_err(ApiError::RateLimited),
            None => Ok(()),
        };
        if looks_like_jwt(presented) {
            spend(client)?;
            return self.authenticate_jwt(presented).await;
        }
        let hash = api_key::parse(presented).map_err(|e| ApiError::Unauthorized(key_error(e)))?;
        if self.unknown.get(&hash).is_some() {
            return Err(ApiError::Unauthorized("the API key is not valid"));
        }
        let key = match self.keys.get(&hash) {
            Some(key) => Some(key),
            None => {
                spend(client)?;
                let key = crate::store::api_keys::find_api_key(&self.pool, &hash)
                    .await?
                    .map(|record| {
                        // Admin is settled once per load, not on every request: the groups
                        // of the login that issued the credential, while they are recent.
                        let admin = record.granted + self.admin_max_age > chrono::Utc::now()
                            && self
                                .tenants
                                .get(&record.tenant)
                                .is_some_and(|t| account::is_admin(&record.groups, &t.settings));
                        Arc::new(CachedKey { record, admin })
                    });
                match &key {
                    Some(key) => self.keys.insert(hash, key.clone()),
                    None => self.unknown.insert(hash, ()),
                }
                key
            }
        };
        match key {
            Some(key) if key.record.valid_at(chrono::Utc::now()) => Ok(Caller {
                entity_id: key.record.entity_id,
                tenant: key.record.tenant.clone(),
                key_id: Some(key.record.id),
                expires_at: key_policy::expiry(key.record.granted, key.record.seconds),
                admin: key.admin,
                persona: key.record.persona.clone(),
            }),
            Some(_) => Err(ApiError::Unauthorized(EXPIRED)),
            None => Err(ApiError::Unauthorized("the API key is not valid")),
        }
    }

    /// Counts `units` requests of `entity` against its rate limit: in the shared store when
    /// there is one, else on this replica.
    pub(crate) async fn charge(
        &self,
        entity: Uuid,
        units: usize,
        metrics: &crate::metrics::GatewayMetrics,
    ) -> Result<(), ApiError> {
        let Some(policy) = self.limiter.policy() else {
            return Ok(());
        };
        if units == 0 {
            return Ok(());
        }
        if units > policy.burst.max(1) as usize {
            return Err(ApiError::BadRequest(format!(
                "a batch may hold at most {} events (the rate limit's burst)",
                policy.burst
            )));
        }
        let decided = match &self.shared {
            None if units == 1 => self.limiter.check(entity).map_err(ApiError::RateLimited),
            None => self.limiter.check_more(entity, units),
            Some(shared) => match shared.check(entity, units as u32, policy).await {
                Ok(decision) => decision.map_err(ApiError::RateLimited),
                Err(e) => {
                    metrics.rate_limit_store_failed();
                    tracing::debug!(error = %e, "the rate-limit store gave no decision");
                    if self.store_fail_open {
                        Ok(())
                    } else {
                        Err(ApiError::Unavailable(
                            "the rate-limit store cannot be reached; retry shortly".into(),
                        ))
                    }
                }
            },
        };
        if matches!(decided, Err(ApiError::RateLimited(_))) {
            metrics.rate_limited();
        }
        decided
    }

    /// Drops what the cache holds of `presented`, so the next check asks the database (a
    /// websocket whose entity's credentials just changed).
    pub(crate) fn forget(&self, presented: &str) {
        if let Ok(hash) = api_key::parse(presented) {
            self.keys.invalidate(&hash);
            self.unknown.invalidate(&hash);
        }
    }

    /// A provider's JWT: verified, then mapped to its entity by the same rules as a login
    /// (verified email, subject bound on first sight).
    async fn authenticate_jwt(&self, jwt: &str) -> Result<Caller, ApiError> {
        let (provider, claims) = self
            .tenants
            .verify_bearer(jwt)
            .await
            .map_err(ApiError::Unauthorized)?;
        let tenant = &provider.settings;
        let account =
            account::account(&claims, tenant).map_err(|e| ApiError::Forbidden(e.to_string()))?;
        let key = (tenant.name.clone(), claims.subject.clone(), account);
        let (entity_id, bound) = match self.subjects.get(&key) {
            Some(found) => found,
            None => {
                let found =
                    crate::store::entities::ensure_with_subject(&self.pool, &key.0, &key.2, &key.1)
                        .await?;
                self.subjects.insert(key.clone(), found.clone());
                found
            }
        };
        account::check_subject(bound.as_deref(), &claims.subject)
            .map_err(|e| ApiError::Forbidden(e.to_string()))?;
        Ok(Caller {
            entity_id,
            tenant: tenant.name.clone(),
            key_id: None,
            // A verified token always has one; without it, it may rotate nothing.
            expires_at: Some(claims.expires_at.unwrap_or_else(chrono::Utc::now)),
            admin: claims.is_admin(tenant),
            persona: None,
        })
    }
}

/// Three base64url parts: a JWT (a Surge key never contains a dot).
fn looks_like_jwt(presented: &str) -> bool {
    presented.split('.').count() == 3 && !presented.starts_with(api_key::PREFIX)
}

fn key_error(e: api_key::KeyError) -> &'static str {
    match e {
        api_key::KeyError::Prefix => "the API key is not valid",
        api_key::KeyError::Shape => "the API key is malformed",
        api_key::KeyError::Checksum => {
            "the API key's checksum does not match: it was mistyped or altered"
        }
    }
}

/// An authenticated admin of their tenant.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.admin {
            Ok(Self(caller))
        } else {
            state.metrics.rejected(Rejection::Forbidden);
            Err(ApiError::Forbidden(
                "this endpoint is for admins: members of the tenant's admin group".into(),
            ))
        }
    }
}

/// An admin of a tenant listed in `identity.operator_tenants`: the platform's operators, who
/// change what every tenant shares (server settings) and see what no tenant owns.
#[derive(Debug, Clone)]
pub struct Operator(pub Caller);

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Admin(caller) = Admin::from_request_parts(parts, state).await?;
        if state.tenants.is_operator_tenant(&caller.tenant) {
            Ok(Self(caller))
        } else {
            state.metrics.rejected(Rejection::Forbidden);
            Err(ApiError::Forbidden(format!(
                "this is for platform operators: admins of the tenants in identity.operator_tenants, which does not list {}",
                caller.tenant
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let client::ClientAddr(client) =
            client::ClientAddr::from_request_parts(parts, state).await?;
        let Some(presented) = presented_key(&parts.headers) else {
            state.metrics.rejected(Rejection::Missing);
            return Err(ApiError::Unauthorized(
                "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
            ));
        };
        let caller = state
            .auth
            .authenticate(presented, Some(client))
            .await
            .inspect_err(|e| match e {
                ApiError::Unauthorized(why) => state.metrics.rejected(if *why == EXPIRED {
                    Rejection::Expired
                } else {
                    Rejection::Invalid
                }),
                ApiError::RateLimited(_) => state.metrics.rate_limited(),
                _ => {}
            })?;
        state
            .auth
            .charge(caller.entity_id, 1, &state.metrics)
            .await?;
        Ok(caller)
    }
}

/// The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`, or, on a websocket
/// upgrade (browsers cannot set headers there), from a `bearer.<key>` subprotocol.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    if let Some(key) = headers.get("x-api-key") {
        return key.to_str().ok().map(str::trim);
    }
    let upgrading = headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrading {
        return None;
    }
    headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("bearer."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(presented_key(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "xyz".parse().unwrap());
        assert_eq!(presented_key(&h), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(presented_key(&h), None);
        let mut h = HeaderMap::new();
        h.insert(
            "sec-websocket-protocol",
            "surge.v1, bearer.k1".parse().unwrap(),
        );
        assert_eq!(presented_key(&h), None, "only on a websocket upgrade");
        h.insert("upgrade", "websocket".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k1"));
    }
}
