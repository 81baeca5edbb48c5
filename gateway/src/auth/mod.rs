//! Who is calling. Handlers ask for a [`Caller`]; none reads `Authorization` itself.
//!
//! Today the only credential is the development API key (`dev.api_key`), off by default; the
//! identity work (OIDC tenants, minted API keys) replaces it behind the same extractor.

mod dev_key;

use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use uuid::Uuid;

pub use dev_key::DevKey;

use crate::error::ApiError;
use crate::state::AppState;

/// An authenticated caller: one entity of one tenant.
#[derive(Debug, Clone)]
pub struct Caller {
    pub entity_id: Uuid,
    pub tenant: String,
}

/// Checks presented keys. Holds no key in clear text beyond what configuration gave it.
#[derive(Debug, Default)]
pub struct Authenticator {
    pub dev_key: Option<DevKey>,
}

impl Authenticator {
    fn authenticate(&self, presented: &str) -> Result<Caller, ApiError> {
        self.dev_key
            .as_ref()
            .and_then(|dev| dev.check(presented))
            .ok_or(ApiError::Unauthorized("the API key is not valid"))
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = presented_key(&parts.headers).ok_or(ApiError::Unauthorized(
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
        ))?;
        state.auth.authenticate(presented)
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
