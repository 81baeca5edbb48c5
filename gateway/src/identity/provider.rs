//! One tenant's provider as the gateway knows it: its discovery document and signing keys,
//! fetched on first use (never at start, so a provider that is down fails only its own
//! logins), reused for `identity.discovery_ttl_s`, and fetched again at once when a token is
//! signed with a key we do not know yet (the provider rotated its keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{CoreClient, CoreProviderMetadata};
use openidconnect::{
    ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, RedirectUrl,
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
    discovered: Mutex<Option<Discovered>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("tenant", &self.settings.name)
            .field("issuer", &self.settings.issuer.as_str())
            .finish_non_exhaustive()
    }
}

/// Keys are fetched again for an unknown `kid` at most this often, so tokens with made-up
/// key ids cannot make us hammer the provider.
const MIN_REFRESH: Duration = Duration::from_secs(10);

impl Provider {
    pub fn new(settings: TenantSettings, timeout: Duration, ttl: Duration) -> Self {
        Self {
            settings,
            http: http::client(timeout),
            ttl,
            discovered: Mutex::new(None),
        }
    }

    pub fn http(&self) -> impl Fn(openidconnect::HttpRequest) -> http::ProviderHttpFuture {
        http::adapter(self.http.clone())
    }

    /// The client, discovering the provider when we have no fresh copy. A failed refresh
    /// keeps using the copy we have (a provider's brief outage does not stop logins with
    /// known keys); with no copy at all it is an error.
    pub async fn client(&self) -> Result<Arc<OidcClient>, ProviderError> {
        let mut discovered = self.discovered.lock().await;
        if let Some(d) = discovered.as_ref().filter(|d| d.at.elapsed() < self.ttl) {
            return Ok(d.client.clone());
        }
        match self.discover().await {
            Ok(client) => {
                *discovered = Some(Discovered {
                    client: client.clone(),
                    at: Instant::now(),
                });
                Ok(client)
            }
            Err(e) => match discovered.as_ref() {
                Some(stale) => {
                    tracing::warn!(tenant = %self.settings.name, error = %e, "provider discovery failed; using the previous copy");
                    Ok(stale.client.clone())
                }
                None => Err(e),
            },
        }
    }

    /// Discovers again (new signing keys) unless that happened in the last few seconds.
    /// Returns whether a new copy was fetched.
    pub async fn refresh_keys(&self) -> bool {
        let mut discovered = self.discovered.lock().await;
        if discovered
            .as_ref()
            .is_some_and(|d| d.at.elapsed() < MIN_REFRESH)
        {
            return false;
        }
        match self.discover().await {
            Ok(client) => {
                tracing::info!(tenant = %self.settings.name, "provider keys fetched again");
                *discovered = Some(Discovered {
                    client,
                    at: Instant::now(),
                });
                true
            }
            Err(e) => {
                tracing::warn!(tenant = %self.settings.name, error = %e, "provider keys could not be fetched again");
                false
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
