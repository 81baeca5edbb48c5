//! One tenant's provider as the gateway knows it: its discovery document and signing keys,
//! fetched on first use (never at start, so a provider that is down fails only its own
//! logins), reused for `identity.discovery_ttl_s`, and fetched again at once when a token is
//! signed with a key we do not know yet (the provider rotated its keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::RwLock;

use openidconnect::core::{CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, Nonce, RedirectUrl, SignatureVerificationError,
};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use super::http::{self, ProviderHttpError};
use crate::config::TenantSettings;

/// What `from_provider_metadata` + `set_redirect_uri` give: the authorization endpoint is
/// known; token and userinfo endpoints may be.
pub type OidcClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why a provider could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("the provider of tenant {tenant} at {issuer} did not answer discovery: {reason}")]
    Discovery {
        tenant: String,
        issuer: String,
        reason: String,
    },
    #[error("tenant {0}'s redirect_url is not a valid URL")]
    RedirectUrl(String),
}

#[derive(Clone)]
struct Discovered {
    client: Arc<OidcClient>,
    at: Instant,
}

pub struct Provider {
    pub settings: TenantSettings,
    http: reqwest::Client,
    ttl: Duration,
    /// Keys are fetched again for an unknown `kid` at most this often, so tokens with
    /// made-up key ids cannot make us hammer the provider.
    min_refresh: Duration,
    /// Read on every login and bearer token; never held across a network call.
    discovered: RwLock<Option<Discovered>>,
    /// One discovery at a time, and when the last one was tried (failures included, so a
    /// provider that is down is asked at most every `min_refresh`).
    refreshing: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("tenant", &self.settings.name)
            .field("issuer", &self.settings.issuer.as_str())
            .finish_non_exhaustive()
    }
}

/// Why a token does not verify.
#[derive(Debug)]
pub enum VerifyError {
    Provider(ProviderError),
    Claims(ClaimsVerificationError),
}

impl Provider {
    pub fn new(
        settings: TenantSettings,
        http: reqwest::Client,
        ttl: Duration,
        min_refresh: Duration,
    ) -> Self {
        Self {
            settings,
            http,
            ttl,
            min_refresh,
            discovered: RwLock::new(None),
            refreshing: Mutex::new(None),
        }
    }

    pub fn http(&self) -> impl Fn(openidconnect::HttpRequest) -> http::ProviderHttpFuture {
        http::adapter(self.http.clone())
    }

    fn cached(&self) -> Option<Discovered> {
        self.discovered
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The client, discovering the provider when we have no fresh copy. While a refresh is
    /// due or failing, the copy we have keeps serving (a provider's brief outage does not stop
    /// logins with known keys); with no copy at all it is an error.
    pub async fn client(&self) -> Result<Arc<OidcClient>, ProviderError> {
        match self.cached() {
            Some(d) if d.at.elapsed() < self.ttl => Ok(d.client),
            stale => match self.rediscover(self.ttl).await {
                Ok(client) => Ok(client),
                Err(e) => match stale {
                    Some(d) => {
                        tracing::warn!(tenant = %self.settings.name, error = %e, "provider discovery failed; using the previous copy");
                        Ok(d.client)
                    }
                    None => Err(e),
                },
            },
        }
    }

    /// Discovers again, unless the copy we have is younger than `fresh_enough` (someone
    /// refreshed while we waited for the lock) or an attempt was made within `min_refresh`
    /// (then the copy we have answers, even if that attempt failed).
    async fn rediscover(&self, fresh_enough: Duration) -> Result<Arc<OidcClient>, ProviderError> {
        let mut last_try = self.refreshing.lock().await;
        if let Some(d) = self.cached() {
            let tried_recently = last_try.is_some_and(|at| at.elapsed() < self.min_refresh);
            if d.at.elapsed() < fresh_enough || tried_recently {
                return Ok(d.client);
            }
        }
        *last_try = Some(Instant::now());
        let client = self.discover().await?;
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Some(Discovered {
            client: client.clone(),
            at: Instant::now(),
        });
        Ok(client)
    }

    /// Verifies an ID token (or JWT access token) for this client, fetching the provider's
    /// keys again once when the token names a key we do not know (the provider rotated).
    pub async fn verify(
        &self,
        token: &CoreIdToken,
        nonce: &impl Fn(Option<&Nonce>) -> Result<(), String>,
    ) -> Result<(), VerifyError> {
        let mut client = self.client().await.map_err(VerifyError::Provider)?;
        let mut refreshed = false;
        loop {
            let verified = token.claims(&client.id_token_verifier(), nonce).map(|_| ());
            match verified {
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed => {
                    refreshed = true;
                    match self.rediscover(self.min_refresh).await {
                        Ok(fresh) if !Arc::ptr_eq(&fresh, &client) => client = fresh,
                        _ => return verified.map_err(VerifyError::Claims),
                    }
                }
                other => return other.map_err(VerifyError::Claims),
            }
        }
    }

    async fn discover(&self) -> Result<Arc<OidcClient>, ProviderError> {
        let s = &self.settings;
        let fail = |reason: String| ProviderError::Discovery {
            tenant: s.name.clone(),
            issuer: s.issuer.to_string(),
            reason,
        };
        let issuer = IssuerUrl::new(s.issuer.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| fail(e.to_string()))?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http())
            .await
            .map_err(|e| fail(discovery_reason(&e)))?;
        let redirect = RedirectUrl::new(s.redirect_url.to_string())
            .map_err(|_| ProviderError::RedirectUrl(s.name.clone()))?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(s.client_id.clone()),
            Some(ClientSecret::new(
                s.client_secret.expose_secret().to_owned(),
            )),
        )
        .set_redirect_uri(redirect);
        Ok(Arc::new(client))
    }
}

/// The discovery error with its cause, for the problem's `detail` and the log.
fn discovery_reason(e: &openidconnect::DiscoveryError<ProviderHttpError>) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
