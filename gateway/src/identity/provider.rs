//! One tenant's provider as the gateway knows it: its discovery document and signing keys,
//! fetched on first use (never at start, so a provider that is down fails only its own
//! logins), reused for `identity.discovery_ttl_s`, and fetched again at once when a token is
//! signed with a key we do not know yet (the provider rotated its keys).

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::RwLock;

use openidconnect::core::{
    CoreClient, CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    ClaimsVerificationError, ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebTokenType, Nonce, RedirectUrl, SignatureVerificationError,
};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};
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
    /// What access tokens are checked against (the client keeps its own copies private).
    issuer: IssuerUrl,
    jwks: CoreJsonWebKeySet,
    userinfo: Option<String>,
    at: Instant,
}

/// Userinfo answers by the SHA-256 of the access token they were fetched with.
type UserinfoCache = moka::sync::Cache<[u8; 32], Arc<Map<String, Value>>>;

/// Why the userinfo endpoint gave nothing usable (logged; the client gets a short reason).
#[derive(Debug, thiserror::Error)]
pub enum UserinfoError {
    #[error("the provider's discovery document names no userinfo endpoint")]
    NoEndpoint,
    #[error("the userinfo endpoint cannot be reached: {0}")]
    Unreachable(String),
    #[error("the userinfo endpoint refused the token: HTTP {status} {challenge}")]
    Refused { status: u16, challenge: String },
    #[error("the userinfo endpoint answered something that is not a JSON object: {0}")]
    NotJson(String),
    #[error("the userinfo endpoint speaks for subject {got:?}, the token for {want:?}")]
    OtherSubject { want: String, got: String },
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
    userinfo: UserinfoCache,
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

/// Signature algorithms an access token may use: public-key ones only. An HMAC would be
/// keyed with the client secret, which this gateway holds: it could forge tokens itself.
const ASYMMETRIC: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

const USERINFO_CACHE_ENTRIES: u64 = 10_000;
const USERINFO_CACHE_TTL: Duration = Duration::from_secs(300);

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
            userinfo: moka::sync::Cache::builder()
                .max_capacity(USERINFO_CACHE_ENTRIES)
                .time_to_live(USERINFO_CACHE_TTL)
                .build(),
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
        Ok(self.discovered().await?.client)
    }

    async fn discovered(&self) -> Result<Discovered, ProviderError> {
        match self.cached() {
            Some(d) if d.at.elapsed() < self.ttl => Ok(d),
            stale => match self.rediscover(self.ttl).await {
                Ok(d) => Ok(d),
                Err(e) => match stale {
                    Some(d) => {
                        tracing::warn!(tenant = %self.settings.name, error = %e, "provider discovery failed; using the previous copy");
                        Ok(d)
                    }
                    None => Err(e),
                },
            },
        }
    }

    /// Discovers again, unless the copy we have is younger than `fresh_enough` (someone
    /// refreshed while we waited for the lock) or an attempt was made within `min_refresh`
    /// (then the copy we have answers, even if that attempt failed).
    async fn rediscover(&self, fresh_enough: Duration) -> Result<Discovered, ProviderError> {
        let mut last_try = self.refreshing.lock().await;
        if let Some(d) = self.cached() {
            let tried_recently = last_try.is_some_and(|at| at.elapsed() < self.min_refresh);
            if d.at.elapsed() < fresh_enough || tried_recently {
                return Ok(d);
            }
        }
        *last_try = Some(Instant::now());
        let discovered = self.discover().await?;
        *self.discovered.write().unwrap_or_else(|p| p.into_inner()) = Some(discovered.clone());
        Ok(discovered)
    }

    /// Verifies an ID token for this client (audience: the client id; `typ`: `JWT` or none).
    pub async fn verify(
        &self,
        token: &CoreIdToken,
        nonce: &impl Fn(Option<&Nonce>) -> Result<(), String>,
    ) -> Result<(), VerifyError> {
        self.verify_with(|d| {
            token
                .claims(&d.client.id_token_verifier(), nonce)
                .map(|_| ())
        })
        .await
    }

    /// Verifies an RFC 9068 access token: `typ` `at+jwt` (section 4: any other type is
    /// refused), signed with an asymmetric key of the provider (never with the client secret,
    /// which this gateway holds too), this issuer, not expired, and an audience that names
    /// this gateway (`access_token_audience`, else the client id); other audiences beside
    /// ours are allowed, as the RFC allows a token for several resources.
    pub async fn verify_access_token(&self, token: &CoreIdToken) -> Result<(), VerifyError> {
        let audience = self
            .settings
            .access_token_audience
            .clone()
            .unwrap_or_else(|| self.settings.client_id.clone());
        let types: Vec<_> = ["at+jwt"]
            .into_iter()
            .filter_map(|t| JsonWebTokenType::new(t.to_owned()).normalize().ok())
            .collect();
        self.verify_with(|d| {
            let verifier = CoreIdTokenVerifier::new_public_client(
                ClientId::new(audience.clone()),
                d.issuer.clone(),
                d.jwks.clone(),
            )
            .set_allowed_jose_types(types.clone())
            .set_allowed_algs(ASYMMETRIC.iter().cloned())
            .set_other_audience_verifier_fn(|_| true);
            token
                .claims(&verifier, &|_: Option<&Nonce>| Ok(()))
                .map(|_| ())
        })
        .await
    }

    /// Runs `check` against the provider's keys, fetching them again once when the token
    /// names a key we do not know (the provider rotated).
    async fn verify_with(
        &self,
        check: impl Fn(&Discovered) -> Result<(), ClaimsVerificationError>,
    ) -> Result<(), VerifyError> {
        let mut discovered = self.discovered().await.map_err(VerifyError::Provider)?;
        let mut refreshed = false;
        loop {
            let verified = check(&discovered);
            match verified {
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if !refreshed => {
                    refreshed = true;
                    match self.rediscover(self.min_refresh).await {
                        Ok(fresh) if !Arc::ptr_eq(&fresh.client, &discovered.client) => {
                            discovered = fresh
                        }
                        _ => return verified.map_err(VerifyError::Claims),
                    }
                }
                other => return other.map_err(VerifyError::Claims),
            }
        }
    }

    /// The provider's userinfo for a verified access token of `subject` (cached by token for
    /// a few minutes, so a client's requests cost the provider one call).
    pub async fn userinfo(
        &self,
        access_token: &str,
        subject: &str,
    ) -> Result<Arc<Map<String, Value>>, UserinfoError> {
        use sha2::Digest as _;
        let key: [u8; 32] = sha2::Sha256::digest(access_token.as_bytes()).into();
        if let Some(found) = self.userinfo.get(&key) {
            return Ok(found);
        }
        let discovered = self
            .discovered()
            .await
            .map_err(|e| UserinfoError::Unreachable(e.to_string()))?;
        let url = discovered.userinfo.ok_or(UserinfoError::NoEndpoint)?;
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| UserinfoError::Unreachable(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            return Err(UserinfoError::Refused {
                status: status.as_u16(),
                challenge,
            });
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| UserinfoError::Unreachable(e.to_string()))?;
        let claims: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
            // A signed userinfo (application/jwt) lands here too.
            UserinfoError::NotJson(e.to_string())
        })?;
        let got = claims
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if got != subject {
            // OpenID Connect Core 5.3.2: a userinfo for someone else is a substitution attack.
            return Err(UserinfoError::OtherSubject {
                want: subject.to_owned(),
                got: got.to_owned(),
            });
        }
        let claims = Arc::new(claims);
        self.userinfo.insert(key, claims.clone());
        Ok(claims)
    }

    async fn discover(&self) -> Result<Discovered, ProviderError> {
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
        let issuer = metadata.issuer().clone();
        let jwks = metadata.jwks().clone();
        let userinfo = metadata.userinfo_endpoint().map(|u| u.to_string());
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
        Ok(Discovered {
            client: Arc::new(client),
            issuer,
            jwks,
            userinfo,
            at: Instant::now(),
        })
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
