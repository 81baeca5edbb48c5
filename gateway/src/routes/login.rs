//! Logging in: `GET /login` (a login token for this session), `GET`/`POST /token` (an API
//! key, shown once), both ending at `GET /callback`, the one redirect target of every tenant.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::{Caller, api_key};
use crate::error::ApiError;
use crate::identity::{CallbackParams, Purpose, account, cookie_name};
use crate::state::AppState;
use crate::store;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login", get(login))
        .route("/callback", get(callback))
        .route("/me", get(me))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginQuery {
    pub tenant: Option<String>,
}

/// `GET /login?tenant=`: redirects to the tenant's provider; the callback answers with a
/// login token (and the provider's refresh token when it gives one).
async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    start(&state, query.tenant.as_deref(), Purpose::Login).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    pub tenant: Option<String>,
    /// Lifetime of the key in seconds; 0 never expires.
    pub seconds: Option<i64>,
    /// A name for the key in `GET /tokens`.
    pub label: Option<String>,
    /// The persona (source) the key is for: `pc`, `mobile`, `api`…
    pub persona: Option<String>,
}

impl TokenQuery {
    fn validate(self) -> Result<(Option<String>, Purpose), ApiError> {
        if self.seconds.is_some_and(|s| s < 0) {
            return Err(ApiError::BadRequest(
                "seconds must be 0 (never expires) or a positive number of seconds".into(),
            ));
        }
        if self.label.as_ref().is_some_and(|l| l.chars().count() > 100) {
            return Err(ApiError::BadRequest(
                "label is longer than 100 characters".into(),
            ));
        }
        if let Some(p) = &self.persona
            && (p.is_empty()
                || p.len() > 32
                || !p.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                }))
        {
            return Err(ApiError::BadRequest(
                "persona must be 1-32 lowercase letters, digits, '-' or '_' (pc, mobile, api…)"
                    .into(),
            ));
        }
        Ok((
            self.tenant,
            Purpose::ApiKey {
                seconds: self.seconds,
                label: self.label,
                persona: self.persona,
            },
        ))
    }
}

/// `GET`/`POST /token?tenant=&seconds=&label=&persona=`: redirects to the tenant's provider;
/// the callback answers with a new API key, shown once.
pub async fn start_token(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, ApiError> {
    let (tenant, purpose) = query.validate()?;
    start(&state, tenant.as_deref(), purpose).await
}

async fn start(
    state: &AppState,
    tenant: Option<&str>,
    purpose: Purpose,
) -> Result<Response, ApiError> {
    let provider = state.tenants.pick(tenant)?;
    let started = state.tenants.start(&state.pool, provider, purpose).await?;
    let redirect = &provider.settings.redirect_url;
    let cookie = format!(
        "{}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        cookie_name(&provider.settings.name),
        started.state,
        redirect.path(),
        state.tenants.settings.flow_ttl_s,
        if redirect.scheme() == "https" {
            "; Secure"
        } else {
            ""
        },
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(started.authorize_url.as_str())?,
    );
    headers.insert(header::SET_COOKIE, header_value(&cookie)?);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

fn header_value(text: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(text)
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e).context("header value")))
}

/// What `/callback` answers: a token, shown this once.
#[derive(Debug, Serialize, Deserialize)]
pub struct Issued {
    /// `Bearer`: send it as `Authorization: Bearer <access_token>` (or `X-API-Key`).
    pub token_type: String,
    /// The new API key or login token. Surge keeps only its hash.
    pub access_token: String,
    /// Its id, for `GET /tokens`, `PUT /token` and `DELETE /token/{id}`.
    pub id: Uuid,
    /// `api_key` or `login`.
    pub kind: String,
    /// Lifetime in seconds; 0 never expires.
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The provider's ID token (after a `/login`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    pub tenant: String,
    pub entity_id: Uuid,
    pub account: String,
    pub admin: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
}

/// `GET /callback`: finishes the login the state names (see `identity::flow` for the checks),
/// applies the tenant's account rules, and issues the token.
async fn callback(
    State(state): State<AppState>,
    Query(params): Query<CallbackParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let finished = state.tenants.finish(&state.pool, params, &headers).await?;
    let flow = &finished.flow;
    let tenant = &state
        .tenants
        .get(&flow.tenant)
        .ok_or_else(|| ApiError::LoginFailed(format!("tenant {} is gone", flow.tenant)))?
        .settings;
    let claims = &finished.claims;
    let account = account::account(claims, tenant).map_err(|e| {
        tracing::warn!(tenant = %tenant.name, reason = %e, "login refused");
        ApiError::Forbidden(e.to_string())
    })?;
    let (entity, bound) =
        store::entities::ensure_with_subject(&state.pool, &tenant.name, &account, &claims.subject)
            .await?;
    account::check_subject(bound.as_deref(), &claims.subject).map_err(|e| {
        tracing::warn!(tenant = %tenant.name, entity = %entity, "login refused: the email is bound to another subject");
        ApiError::Forbidden(e.to_string())
    })?;
    let persona = match &flow.persona {
        Some(source) => Some(store::entities::ensure_persona(&state.pool, entity, source).await?),
        None => None,
    };
    let api_key = flow.purpose == "api_key";
    let kind = if api_key { "api_key" } else { "login" };
    let seconds = if api_key {
        flow.key_seconds
            .unwrap_or(state.tenants.settings.default_key_seconds)
    } else {
        finished
            .expires_in
            .map(|d| d.as_secs() as i64)
            .filter(|s| *s > 0)
            .unwrap_or(state.tenants.settings.login_token_seconds)
    };
    let (secret, hash) = api_key::mint()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness for a key: {e}")))?;
    let id = store::auth::issue(
        &state.pool,
        &store::auth::Issue {
            entity,
            kind,
            hash: &hash,
            seconds,
            label: flow.label.as_deref(),
            persona,
            claims: &claims.kept,
            groups: &claims.groups,
        },
    )
    .await?;
    let admin = claims.is_admin(tenant);
    tracing::info!(tenant = %tenant.name, entity = %entity, token = %id, kind, admin, "login completed");
    let issued = Issued {
        token_type: "Bearer".into(),
        access_token: secret.expose_secret().to_owned(),
        id,
        kind: kind.into(),
        expires_in: seconds,
        refresh_token: finished.refresh_token.clone(),
        id_token: (!api_key).then(|| finished.id_token.clone()),
        tenant: tenant.name.clone(),
        entity_id: entity,
        account,
        admin,
        label: flow.label.clone(),
        persona: flow.persona.clone(),
    };
    let mut response = Json(issued).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The login is over: the state cookie goes.
    headers.insert(
        header::SET_COOKIE,
        header_value(&format!(
            "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax",
            cookie_name(&tenant.name),
            tenant.redirect_url.path()
        ))?,
    );
    Ok(response)
}

/// Who the caller is, as the gateway sees it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Me {
    pub entity_id: Uuid,
    pub tenant: String,
    pub admin: bool,
    pub key_id: Option<Uuid>,
}

/// `GET /me`: the caller's entity, tenant and role.
async fn me(caller: Caller) -> Json<Me> {
    Json(Me {
        entity_id: caller.entity_id,
        tenant: caller.tenant,
        admin: caller.admin,
        key_id: caller.key_id,
    })
}
