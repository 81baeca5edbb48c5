//! Identity: the configured tenants (one OpenID provider each), the login flow that ends in
//! an API key or a login token, and bearer JWTs from providers that allow them.

pub mod account;
mod flow;
mod http;
mod provider;

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::CoreIdToken;
use openidconnect::{ClaimsVerificationError, Nonce};

pub use flow::{CallbackParams, Finished, Purpose, Started, cookie_name};
pub use provider::{Provider, ProviderError, VerifyError};

use crate::config::{IdentitySettings, TenantSettings};
use crate::error::ApiError;
use account::IdClaims;

/// Every configured tenant, by name and by issuer.
#[derive(Debug)]
pub struct Tenants {
    by_name: HashMap<String, Arc<Provider>>,
    by_issuer: HashMap<String, Arc<Provider>>,
    pub settings: IdentitySettings,
}

/// Issuers compare without a trailing slash.
fn issuer_key(issuer: &str) -> &str {
    issuer.trim_end_matches('/')
}

impl Tenants {
    /// Whether an admin of `tenant` is a platform operator (see `identity.operator_tenants`).
    pub fn is_operator_tenant(&self, tenant: &str) -> bool {
        if self.settings.operator_tenants.is_empty() {
            self.by_name.len() <= 1
        } else {
            self.settings.operator_tenants.iter().any(|t| t == tenant)
        }
    }

    pub fn new(
        tenants: &[TenantSettings],
        settings: &IdentitySettings,
    ) -> Result<Self, reqwest::Error> {
        let http = http::client(Duration::from_millis(settings.provider_timeout_ms))?;
        let ttl = Duration::from_secs(settings.discovery_ttl_s);
        let min_refresh = Duration::from_millis(settings.key_refresh_min_ms);
        let mut by_name = HashMap::new();
        let mut by_issuer = HashMap::new();
        for t in tenants {
            let provider = Arc::new(Provider::new(t.clone(), http.clone(), ttl, min_refresh));
            by_issuer.insert(issuer_key(t.issuer.as_str()).to_owned(), provider.clone());
            by_name.insert(t.name.clone(), provider);
        }
        Ok(Self {
            by_name,
            by_issuer,
            settings: settings.clone(),
        })
    }

    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.by_name.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The tenant a login names; with one tenant configured the name may be left out. Errors
    /// never list the configured tenants: to a stranger that is the customer list.
    pub fn pick(&self, name: Option<&str>) -> Result<&Arc<Provider>, ApiError> {
        match name {
            Some(name) => self.by_name.get(name).ok_or_else(|| {
                ApiError::UnknownTenant(format!(
                    "no tenant named {name:?} here: ask your administrator for your tenant's name"
                ))
            }),
            None if self.by_name.len() == 1 => Ok(self.by_name.values().next().expect("one")),
            None if self.by_name.is_empty() => Err(ApiError::UnknownTenant(
                "no tenants are configured on this gateway (see `tenants` in the README)".into(),
            )),
            None => Err(ApiError::BadRequest(
                "name the tenant to log in with: ?tenant=<name>".into(),
            )),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.by_name.get(name)
    }

    /// Verifies a bearer JWT from a tenant that accepts them: signature against the
    /// tenant's keys (fetched again once for an unknown key id), issuer, audience (this
    /// gateway's client id) and expiry. The tenant is chosen by the token's `iss`, which is
    /// then verified like the rest.
    pub async fn verify_bearer(
        &self,
        jwt: &str,
    ) -> Result<(Arc<Provider>, IdClaims), &'static str> {
        const INVALID: &str = "the bearer token is not valid";
        let unverified = IdClaims::from_verified_jwt(jwt).ok_or(INVALID)?;
        let issuer = unverified
            .kept
            .get("iss")
            .and_then(|v| v.as_str())
            .ok_or(INVALID)?;
        let provider = self
            .by_issuer
            .get(issuer_key(issuer))
            .filter(|p| p.settings.accept_bearer)
            .ok_or("bearer tokens from this issuer are not accepted here")?;
        let token = CoreIdToken::from_str(jwt).map_err(|_| INVALID)?;
        match provider.verify(&token, &|_: Option<&Nonce>| Ok(())).await {
            Ok(()) => {}
            Err(VerifyError::Provider(_)) => {
                return Err("the token's identity provider cannot be reached");
            }
            Err(VerifyError::Claims(ClaimsVerificationError::Expired(_))) => {
                return Err("the bearer token has expired");
            }
            Err(VerifyError::Claims(_)) => return Err(INVALID),
        }
        Ok((provider.clone(), unverified))
    }
}
