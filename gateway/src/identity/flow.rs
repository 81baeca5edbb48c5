//! The authorization-code flow with PKCE (S256), state and nonce, shared by `/login` and
//! `/token`. The flow's secrets live in `login_flow` (so any replica can finish it, and only
//! once) and the state also in an `HttpOnly` cookie, so the callback must come back to the
//! browser that started the login.

use std::time::Duration;

use axum::http::HeaderMap;
use openidconnect::core::CoreResponseType;
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse as _,
    PkceCodeChallenge, PkceCodeVerifier, RefreshToken, RequestTokenError, Scope,
    TokenResponse as _,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use url::Url;

use super::Tenants;
use super::account::IdClaims;
use super::provider::{Provider, VerifyError};
use crate::error::ApiError;
use crate::store::flows::{self, Flow};

/// What the login is for.
#[derive(Debug, Clone)]
pub enum Purpose {
    /// `/login`: a login token for this session.
    Login,
    /// `/console/login`: a login token handed to the operations console page.
    Console,
    /// `/token`: an API key, shown once.
    ApiKey {
        seconds: Option<i64>,
        label: Option<String>,
        persona: Option<String>,
    },
}

/// A started login: send the browser to `authorize_url` with the state in a cookie.
#[derive(Debug)]
pub struct Started {
    pub authorize_url: Url,
    pub state: String,
}

/// The query of a provider's redirect to `/callback`.
#[derive(Debug, Default, Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A completed login: the verified ID token and what the provider gave with it.
#[derive(Debug)]
pub struct Finished {
    pub flow: Flow,
    pub claims: IdClaims,
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
}

/// The cookie that carries a tenant's login state: one per tenant, so logins to two tenants
/// at once in one browser do not overwrite each other.
pub fn cookie_name(tenant: &str) -> String {
    format!("surge_login_{tenant}")
}

fn state_hash(state: &str) -> [u8; 32] {
    Sha256::digest(state.as_bytes()).into()
}

impl Tenants {
    /// Starts a login with `provider`: new state, nonce and PKCE verifier, stored.
    pub async fn start(
        &self,
        pool: &PgPool,
        provider: &Provider,
        purpose: Purpose,
    ) -> Result<Started, ApiError> {
        let client = provider
            .client()
            .await
            .map_err(|e| ApiError::ProviderUnavailable(e.to_string()))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        let scopes = &provider.settings.scopes;
        for scope in scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if scopes.iter().any(|s| s == "offline_access") {
            // Providers issue refresh tokens only after an explicit consent.
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Consent);
        }
        let (authorize_url, state, nonce) = request.url();
        let (purpose, key_seconds, label, persona) = match purpose {
            Purpose::Login => ("login", None, None, None),
            Purpose::Console => ("console", None, Some("console".to_owned()), None),
            Purpose::ApiKey {
                seconds,
                label,
                persona,
            } => ("api_key", seconds, label, persona),
        };
        let flow = Flow {
            tenant: provider.settings.name.clone(),
            purpose: purpose.to_owned(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            key_seconds,
            label,
            persona,
            created_at: chrono::Utc::now(),
        };
        flows::insert(
            pool,
            &state_hash(state.secret()),
            &flow,
            self.settings.flow_ttl_s as i64,
        )
        .await?;
        Ok(Started {
            authorize_url,
            state: state.secret().clone(),
        })
    }

    /// Finishes a login at the callback. Every check is made before any token is issued;
    /// the flow is used up whatever the outcome.
    pub async fn finish(
        &self,
        pool: &PgPool,
        params: CallbackParams,
        headers: &HeaderMap,
    ) -> Result<Finished, ApiError> {
        let state = params.state.as_deref().ok_or_else(|| {
            ApiError::LoginFailed("the callback has no `state`: start again at /login".into())
        })?;
        let flow = flows::take(pool, &state_hash(state))
            .await?
            .ok_or_else(|| {
                ApiError::LoginFailed(
                    "this login's state is unknown, expired or already used: start again at /login"
                        .into(),
                )
            })?;
        let age = chrono::Utc::now() - flow.created_at;
        if age > chrono::Duration::seconds(self.settings.flow_ttl_s as i64) {
            return Err(ApiError::LoginFailed(
                "this login took too long and has expired: start again at /login".into(),
            ));
        }
        let same_browser = cookie(headers, &cookie_name(&flow.tenant))
            .is_some_and(|c| bool::from(c.as_bytes().ct_eq(state.as_bytes())));
        if !same_browser {
            tracing::warn!(tenant = %flow.tenant, "login callback refused: it did not come from the browser that started the login");
            return Err(ApiError::LoginFailed(
                "this callback does not belong to a login started in this browser".into(),
            ));
        }
        let provider = self.get(&flow.tenant).ok_or_else(|| {
            ApiError::LoginFailed(format!("tenant {} is no longer configured", flow.tenant))
        })?;
        // Mix-up defence (RFC 9207): the answer must come from the issuer the flow began with.
        let expected = provider.settings.issuer.as_str().trim_end_matches('/');
        if let Some(iss) = params.iss.as_deref()
            && iss.trim_end_matches('/') != expected
        {
            tracing::warn!(tenant = %flow.tenant, answered_by = %iss, "login callback refused: issuer mix-up");
            return Err(ApiError::LoginFailed(format!(
                "the response comes from issuer {iss}, but this login began with tenant {} ({expected})",
                flow.tenant
            )));
        }
        if let Some(error) = params.error.as_deref() {
            return Err(ApiError::LoginFailed(format!(
                "the provider of tenant {} answered `{error}`{}",
                flow.tenant,
                params
                    .error_description
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            )));
        }
        let code = params.code.ok_or_else(|| {
            ApiError::LoginFailed("the callback has neither `code` nor `error`".into())
        })?;
        let client = provider
            .client()
            .await
            .map_err(|e| ApiError::ProviderUnavailable(e.to_string()))?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|_| {
                ApiError::ProviderUnavailable(format!(
                    "tenant {}'s provider has no token endpoint",
                    flow.tenant
                ))
            })?
            .set_pkce_verifier(PkceCodeVerifier::new(flow.pkce_verifier.clone()))
            .request_async(&provider.http())
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => ApiError::LoginFailed(format!(
                    "tenant {}'s provider refused the code: {}",
                    flow.tenant,
                    r.error()
                )),
                other => {
                    // The cause (an unparsable token response, a timeout) goes to the log.
                    tracing::warn!(tenant = %flow.tenant, error = ?other, "a login's code exchange failed");
                    ApiError::ProviderUnavailable(format!(
                        "tenant {}'s provider failed to exchange the code: {other}",
                        flow.tenant
                    ))
                }
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            ApiError::LoginFailed(format!(
                "tenant {}'s provider returned no ID token (is `openid` among its scopes?)",
                flow.tenant
            ))
        })?;
        let nonce = Nonce::new(flow.nonce.clone());
        let nonce_matches = |presented: Option<&Nonce>| -> Result<(), String> {
            let same = presented.is_some_and(|n| {
                bool::from(n.secret().as_bytes().ct_eq(nonce.secret().as_bytes()))
            });
            if same {
                Ok(())
            } else {
                Err("the nonce does not match this login".into())
            }
        };
        match provider.verify(id_token, &nonce_matches).await {
            Ok(()) => {}
            Err(VerifyError::Provider(e)) => {
                return Err(ApiError::ProviderUnavailable(e.to_string()));
            }
            Err(VerifyError::Claims(e)) => {
                tracing::warn!(tenant = %flow.tenant, error = %e, "login refused: the ID token does not verify");
                return Err(ApiError::LoginFailed(format!(
                    "the ID token from tenant {}'s provider does not verify: {e}",
                    flow.tenant
                )));
            }
        }
        let id_token = id_token.to_string();
        let claims = IdClaims::from_verified_jwt(&id_token)
            .ok_or_else(|| ApiError::LoginFailed("the ID token's claims cannot be read".into()))?;
        Ok(Finished {
            flow,
            claims,
            id_token,
            refresh_token: tokens.refresh_token().map(|t| t.secret().clone()),
            expires_in: tokens.expires_in(),
        })
    }
}

/// What a provider's refresh grant gave: the person's claims as of now.
#[derive(Debug)]
pub struct Refreshed {
    pub claims: IdClaims,
    pub id_token: String,
    /// The provider's new refresh token (most rotate them), else the one presented.
    pub refresh_token: String,
    pub expires_in: Option<Duration>,
}

impl Tenants {
    /// Trades a refresh token at `provider` (its refresh grant) for fresh tokens, and reads
    /// the person's claims and groups again from the new ID token, verified like a login's
    /// (no nonce: a refresh has none).
    pub async fn refresh(
        &self,
        provider: &Provider,
        refresh_token: &str,
    ) -> Result<Refreshed, ApiError> {
        let tenant = &provider.settings.name;
        let client = provider
            .client()
            .await
            .map_err(|e| ApiError::ProviderUnavailable(e.to_string()))?;
        let presented = RefreshToken::new(refresh_token.to_owned());
        let tokens = client
            .exchange_refresh_token(&presented)
            .map_err(|_| {
                ApiError::ProviderUnavailable(format!(
                    "tenant {tenant}'s provider has no token endpoint"
                ))
            })?
            .request_async(&provider.http())
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    tracing::info!(%tenant, error = %r.error(), "a refresh was refused by the provider");
                    ApiError::LoginFailed(format!(
                        "tenant {tenant}'s provider refused the refresh token ({}): log in again",
                        r.error()
                    ))
                }
                other => ApiError::ProviderUnavailable(format!(
                    "tenant {tenant}'s provider failed to refresh: {other}"
                )),
            })?;
        let id_token = tokens.id_token().ok_or_else(|| {
            ApiError::LoginFailed(format!(
                "tenant {tenant}'s provider returned no ID token with the refresh, so the \
                 person's claims cannot be renewed: log in again"
            ))
        })?;
        match provider.verify(id_token, &|_: Option<&Nonce>| Ok(())).await {
            Ok(()) => {}
            Err(VerifyError::Provider(e)) => {
                return Err(ApiError::ProviderUnavailable(e.to_string()));
            }
            Err(VerifyError::Claims(e)) => {
                tracing::warn!(%tenant, error = %e, "refresh refused: the ID token does not verify");
                return Err(ApiError::LoginFailed(format!(
                    "the ID token from tenant {tenant}'s provider does not verify: {e}"
                )));
            }
        }
        let id_token = id_token.to_string();
        let claims = IdClaims::from_verified_jwt(&id_token)
            .ok_or_else(|| ApiError::LoginFailed("the ID token's claims cannot be read".into()))?;
        Ok(Refreshed {
            claims,
            id_token,
            refresh_token: tokens
                .refresh_token()
                .map_or_else(|| refresh_token.to_owned(), |t| t.secret().clone()),
            expires_in: tokens.expires_in(),
        })
    }
}

/// One cookie's value from the `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; surge_login_x=abc".parse().unwrap());
        h.append("cookie", "surge_login_xy=zzz".parse().unwrap());
        assert_eq!(cookie(&h, "surge_login_x"), Some("abc"));
        assert_eq!(cookie(&h, "surge_login_xy"), Some("zzz"));
        assert_eq!(cookie(&h, "surge_login"), None);
    }
}
