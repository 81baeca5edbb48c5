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

    /// Verifies a bearer JWT from a tenant that accepts them: an ID token (audience: this
    /// gateway's client id) or an RFC 9068 access token (`typ: at+jwt`, audience: the
    /// tenant's `access_token_audience`), by signature against the tenant's keys (fetched
    /// again once for an unknown key id), issuer and expiry. The tenant is chosen by the
    /// token's `iss`, which is then verified like the rest. An access token that lacks the
    /// email (or, where admins are configured, the groups) gets them from the provider's
    /// userinfo endpoint.
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
        let access_token = is_access_token(jwt);
        let verified = if access_token {
            provider.verify_access_token(&token).await
        } else {
            provider.verify(&token, &|_: Option<&Nonce>| Ok(())).await
        };
        match verified {
            Ok(()) => {}
            Err(VerifyError::Provider(_)) => {
                return Err("the token's identity provider cannot be reached");
            }
            Err(VerifyError::Claims(ClaimsVerificationError::Expired(_))) => {
                return Err("the bearer token has expired");
            }
            Err(VerifyError::Claims(e)) => {
                tracing::debug!(tenant = %provider.settings.name, error = %e, access_token, "a bearer JWT was refused");
                return Err(INVALID);
            }
        }
        if !access_token {
            return Ok((provider.clone(), unverified));
        }
        let claims = with_userinfo(provider, jwt, unverified).await?;
        Ok((provider.clone(), claims))
    }
}

/// Whether a JWT's header says it is an RFC 9068 access token (`at+jwt`, in any of the
/// spellings RFC 7515 makes equal: `application/at+jwt`, any case).
fn is_access_token(jwt: &str) -> bool {
    use base64::Engine as _;
    let header = jwt
        .split('.')
        .next()
        .and_then(|h| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(h.trim_end_matches('='))
                .ok()
        })
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok());
    header
        .as_ref()
        .and_then(|h| h.get("typ"))
        .and_then(|t| t.as_str())
        .map(|t| t.to_ascii_lowercase())
        .is_some_and(|t| t == "at+jwt" || t == "application/at+jwt")
}

/// An access token's claims, with what it lacks (the email; the groups, where the tenant has
/// an admin group) taken from the provider's userinfo. The token's own claims win.
async fn with_userinfo(
    provider: &Provider,
    jwt: &str,
    claims: IdClaims,
) -> Result<IdClaims, &'static str> {
    let wants_groups =
        provider.settings.admin_group.is_some() && !claims.kept.contains_key("groups");
    if claims.email.is_some() && !wants_groups {
        return Ok(claims);
    }
    match provider.userinfo(jwt, &claims.subject).await {
        Ok(info) => Ok(merged(&claims, &info)),
        Err(e) if claims.email.is_some() => {
            tracing::warn!(tenant = %provider.settings.name, error = %e, "userinfo gave no groups for an access token: it makes no admin");
            Ok(claims)
        }
        Err(e) => {
            tracing::warn!(tenant = %provider.settings.name, error = %e, "an access token names no email and userinfo did not give one: refused");
            Err(
                "the access token names no email and the provider's userinfo endpoint did not give one (the gateway's log says why); have the provider put `email` in its access tokens, or use its ID token",
            )
        }
    }
}

/// `claims` with what `info` has and they lack; the token's own claims win, and its expiry
/// stays the token's.
fn merged(claims: &IdClaims, info: &serde_json::Map<String, serde_json::Value>) -> IdClaims {
    let mut all = claims.kept.clone();
    for (name, value) in info {
        all.entry(name.clone()).or_insert_with(|| value.clone());
    }
    let mut merged = IdClaims::from_map(all).unwrap_or_else(|| claims.clone());
    merged.expires_at = claims.expires_at;
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn userinfo_fills_what_an_access_token_lacks_and_never_overrides_it() {
        let token = json!({"iss": "https://idp", "sub": "u1", "aud": "urn:api", "exp": 1_900_000_000,
                           "scope": "api", "groups": ["ops"]});
        let claims = IdClaims::from_map(token.as_object().unwrap().clone()).unwrap();
        assert_eq!(claims.email, None);
        let info = json!({"sub": "u1", "email": "Ann@Example.test", "email_verified": true,
                          "groups": ["admins"], "name": "Ann"});
        let merged = merged(&claims, info.as_object().unwrap());
        assert_eq!(merged.email.as_deref(), Some("ann@example.test"));
        assert!(merged.email_verified);
        assert_eq!(merged.groups, ["ops"], "the token's own groups win");
        assert_eq!(merged.expires_at, claims.expires_at);
        assert_eq!(merged.kept["name"], "Ann");
    }

    fn jwt_with_header(header: &str) -> String {
        use base64::Engine as _;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(header), enc("{}"))
    }

    #[test]
    fn an_access_token_is_known_by_its_type_in_every_spelling() {
        for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
            let jwt = jwt_with_header(&format!(r#"{{"alg":"RS256","typ":"{typ}"}}"#));
            assert!(is_access_token(&jwt), "{typ}");
        }
        for header in [
            r#"{"alg":"RS256","typ":"JWT"}"#,
            r#"{"alg":"RS256"}"#,
            "not json",
        ] {
            assert!(!is_access_token(&jwt_with_header(header)), "{header}");
        }
    }
}
