//! Who is calling. Handlers ask for a [`Caller`]; none reads `Authorization` itself.
//!
//! Credentials: API keys (`surge_…`, minted by `surge key create` today, by the OIDC token
//! flow once identity lands), checked against their stored hash through a short-lived cache,
//! and the development key (`dev.api_key`), off by default.

pub mod api_key;
mod cache;
mod dev_key;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use sqlx::PgPool;
use uuid::Uuid;

pub use cache::KeyCache;
pub use dev_key::DevKey;

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller: one entity of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    pub entity_id: Uuid,
    pub tenant: String,
    /// The API key used, when it was one (not the development key).
    pub key_id: Option<Uuid>,
}

/// Checks presented keys.
#[derive(Debug)]
pub struct Authenticator {
    pub dev_key: Option<DevKey>,
    pub pool: PgPool,
    pub cache: KeyCache,
}

impl Authenticator {
    async fn authenticate(&self, presented: &str) -> Result<Caller, ApiError> {
        if let Some(caller) = self.dev_key.as_ref().and_then(|dev| dev.check(presented)) {
            return Ok(caller);
        }
        let hash = api_key::parse(presented).map_err(|e| ApiError::Unauthorized(key_error(e)))?;
        let record = match self.cache.get(&hash) {
            Some(record) => record,
            None => {
                let record = crate::store::auth::find_api_key(&self.pool, &hash).await?;
                self.cache.put(hash, record.clone());
                record
            }
        };
        match record {
            Some(key) if key.valid_at(chrono::Utc::now()) => Ok(Caller {
                entity_id: key.entity_id,
                tenant: key.tenant,
                key_id: Some(key.id),
            }),
            Some(_) => Err(ApiError::Unauthorized("the API key is revoked or expired")),
            None => Err(ApiError::Unauthorized("the API key is not valid")),
        }
    }
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

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = presented_key(&parts.headers).ok_or(ApiError::Unauthorized(
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        ))?;
        state.auth.authenticate(presented).await
    }
}

/// The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| key.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
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
    }
}
