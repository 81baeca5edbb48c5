//! Logging in: `GET /login` (a login token for this session), `GET`/`POST /token` (an API
//! key, shown once), both ending at `GET /callback`, the one redirect target of every tenant.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::client::ClientAddr;
use crate::auth::{Caller, api_key, key_policy};
use crate::error::ApiError;
use crate::identity::{CallbackParams, Purpose, account, cookie_name};
use crate::openapi::Problem;
use crate::state::AppState;
use crate::store;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(callback))
        .routes(routes!(me))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LoginQuery {
    /// The tenant to log in with; may be left out when only one is configured.
    pub tenant: Option<String>,
}

/// Log in
///
/// Redirects the browser to the tenant's OpenID provider (authorization code with PKCE); the
/// provider sends it back to `/callback`, which answers with a login token (and the
/// provider's refresh token when it gives one).
#[utoipa::path(get, path = "/login", tag = "identity", operation_id = "login", security(()),
    params(LoginQuery),
    responses(
        (status = 303, description = "To the provider's login page", headers(("Location" = String), ("Set-Cookie" = String, description = "The login's state, for /callback"))),
        (status = 400, description = "No tenant named while several are configured, or a malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (the configured ones are never listed)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The tenant's provider cannot be reached", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client address started too many logins (`limits.per_client_per_second`): wait `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    params: Result<Query<LoginQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    start(&state, client, params.tenant.as_deref(), Purpose::Login).await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The tenant to log in with; may be left out when only one is configured.
    pub tenant: Option<String>,
    /// Lifetime of the key in seconds; 0 never expires.
    #[param(minimum = 0)]
    pub seconds: Option<i64>,
    /// A name for the key in `GET /tokens`.
    pub label: Option<String>,
    /// The persona (source) the key is for: `pc`, `mobile`, `api`…
    pub persona: Option<String>,
}

impl TokenQuery {
    /// Checked before the login starts, so a refused lifetime costs no trip to the provider.
    fn validate(self, max_key_seconds: i64) -> Result<(Option<String>, Purpose), ApiError> {
        if let Some(seconds) = self.seconds {
            key_policy::lifetime(seconds, max_key_seconds)?;
        }
        if self.label.as_ref().is_some_and(|l| l.chars().count() > 100) {
            return Err(ApiError::BadRequest(
                "label is longer than 100 characters".into(),
            ));
        }
        if let Some(p) = &self.persona {
            super::personas::check_name(p)?;
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

/// Mint an API key
///
/// Redirects the browser to the tenant's OpenID provider; after the login, `/callback`
/// answers with a new API key, shown this once.
#[utoipa::path(get, path = "/token", tag = "identity", operation_id = "mint_token", security(()),
    params(TokenQuery),
    responses(
        (status = 303, description = "To the provider's login page", headers(("Location" = String), ("Set-Cookie" = String, description = "The login's state, for /callback"))),
        (status = 400, description = "A malformed query, or no tenant named while several are configured", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (the configured ones are never listed)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A lifetime past `identity.max_key_seconds` (`invalid-lifetime`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The tenant's provider cannot be reached", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client address started too many logins (`limits.per_client_per_second`): wait `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_token(
    State(state): State<AppState>,
    client: ClientAddr,
    params: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params?;
    let (tenant, purpose) = params.validate(state.tenants.settings.max_key_seconds)?;
    start(&state, client, tenant.as_deref(), purpose).await
}

/// Mint an API key (form post)
///
/// As `GET /token`, for a form's `POST`.
#[utoipa::path(post, path = "/token", tag = "identity", operation_id = "mint_token_post", security(()),
    params(TokenQuery),
    responses(
        (status = 303, description = "To the provider's login page", headers(("Location" = String), ("Set-Cookie" = String, description = "The login's state, for /callback"))),
        (status = 400, description = "A malformed query, or no tenant named while several are configured", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (the configured ones are never listed)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A lifetime past `identity.max_key_seconds` (`invalid-lifetime`)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The tenant's provider cannot be reached", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client address started too many logins (`limits.per_client_per_second`): wait `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn start_token_post(
    state: State<AppState>,
    client: ClientAddr,
    params: Result<Query<TokenQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    start_token(state, client, params).await
}

/// Starts a login: one row and a provider's discovery per call, so each is charged to the
/// client's address before anything is done.
pub(crate) async fn start(
    state: &AppState,
    client: ClientAddr,
    tenant: Option<&str>,
    purpose: Purpose,
) -> Result<Response, ApiError> {
    client.spend(state)?;
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What a completed login or refresh is to give.
struct Grant<'a> {
    kind: &'static str,
    /// Lifetime in seconds; 0 never expires.
    seconds: i64,
    label: Option<&'a str>,
    persona: Option<&'a str>,
}

/// A login token lives as long as the provider's access token, or
/// `identity.login_token_seconds` when the provider does not say.
fn login_seconds(state: &AppState, provider_says: Option<std::time::Duration>) -> i64 {
    provider_says
        .map(|d| d.as_secs() as i64)
        .filter(|s| *s > 0)
        .unwrap_or(state.tenants.settings.login_token_seconds)
}

/// Maps the person the provider vouched for to their entity (the tenant's account rules,
/// the subject bound on first sight) and issues `grant` with the claims and groups of now.
async fn issue(
    state: &AppState,
    tenant: &crate::config::TenantSettings,
    claims: &crate::identity::account::IdClaims,
    grant: Grant<'_>,
    id_token: Option<String>,
    refresh_token: Option<String>,
) -> Result<Issued, ApiError> {
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
    let persona = match grant.persona {
        Some(source) => Some(
            store::personas::ensure(&state.pool, entity, source)
                .await?
                .ok_or_else(|| super::personas::full(source))?,
        ),
        None => None,
    };
    let (secret, hash) = api_key::mint()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("no randomness for a key: {e}")))?;
    let id = store::api_keys::issue(
        &state.pool,
        &store::api_keys::Issue {
            entity,
            kind: grant.kind,
            hash: &hash,
            seconds: grant.seconds,
            label: grant.label,
            persona,
            claims: &claims.kept,
            groups: &claims.groups,
        },
    )
    .await?;
    let admin = claims.is_admin(tenant);
    tracing::info!(tenant = %tenant.name, entity = %entity, token = %id, kind = grant.kind, admin, "login completed");
    Ok(Issued {
        token_type: "Bearer".into(),
        access_token: secret.expose_secret().to_owned(),
        id,
        kind: grant.kind.into(),
        expires_in: grant.seconds,
        refresh_token,
        id_token,
        tenant: tenant.name.clone(),
        entity_id: entity,
        account,
        admin,
        label: grant.label.map(str::to_owned),
        persona: grant.persona.map(str::to_owned),
    })
}

/// `POST /login/refresh`.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The tenant that issued the refresh token; may be left out when only one is configured.
    pub tenant: Option<String>,
    /// The `refresh_token` a login (or the last refresh) answered.
    pub refresh_token: String,
}

/// Refresh a login
///
/// Trades the provider's refresh token (from `/login` or the last refresh) at the tenant's
/// provider for a new login token: the person's claims and groups are read again, so the
/// admin standing is what the provider says now. The provider's new refresh token comes back
/// (most providers accept each one once). No credential but the refresh token is needed.
#[utoipa::path(post, path = "/login/refresh", tag = "identity", operation_id = "refresh_login", security(()),
    request_body(content = RefreshRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "A new login token, with the provider's new refresh and ID tokens", body = Issued),
        (status = 400, description = "Not a refresh request, no tenant named while several are configured, or the provider refused the refresh token (log in again)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The identity is refused now (an unverified email, an email held by another subject)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant (the configured ones are never listed)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than the gateway accepts", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client address made too many logins (`limits.per_client_per_second`): wait `Retry-After`", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The tenant's provider cannot be reached", body = Problem, content_type = "application/problem+json"),
    ))]
async fn refresh(
    State(state): State<AppState>,
    client: ClientAddr,
    body: Result<Json<RefreshRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    client.spend(&state)?;
    let Json(request) =
        body.map_err(|e| super::request::json_error(&e, state.http.body_limit_bytes))?;
    if request.refresh_token.is_empty() || request.refresh_token.len() > 4096 {
        return Err(ApiError::BadRequest(
            "refresh_token must be the refresh token a login answered (1 to 4096 characters)"
                .into(),
        ));
    }
    let provider = state.tenants.pick(request.tenant.as_deref())?;
    let refreshed = state
        .tenants
        .refresh(provider, &request.refresh_token)
        .await?;
    let grant = Grant {
        kind: "login",
        seconds: login_seconds(&state, refreshed.expires_in),
        label: None,
        persona: None,
    };
    let issued = issue(
        &state,
        &provider.settings,
        &refreshed.claims,
        grant,
        Some(refreshed.id_token),
        Some(refreshed.refresh_token),
    )
    .await?;
    let mut response = Json(issued).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Finish a login
///
/// The redirect target of every tenant's provider: checks the state (single use, from the
/// browser that started the login), the issuer, nonce and PKCE, applies the tenant's
/// account rules, and issues the token.
#[utoipa::path(get, path = "/callback", tag = "identity", operation_id = "callback", security(()),
    params(
        ("code" = Option<String>, Query, description = "From the provider"),
        ("state" = Option<String>, Query, description = "From the provider"),
        ("iss" = Option<String>, Query, description = "From the provider (RFC 9207)"),
        ("error" = Option<String>, Query, description = "From the provider"),
        ("error_description" = Option<String>, Query, description = "From the provider"),
    ),
    responses(
        (status = 200, description = "The new token, shown this once", body = Issued),
        (status = 400, description = "The login cannot be completed: unknown, expired or replayed state, another browser, a mix-up, the provider's error", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The identity is refused (an unverified email, an email held by another subject)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The tenant's provider cannot be reached", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "This client address started too many logins (`limits.per_client_per_second`): wait `Retry-After`", body = Problem, content_type = "application/problem+json"),
    ))]
async fn callback(
    State(state): State<AppState>,
    client: ClientAddr,
    params: Result<Query<CallbackParams>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    client.spend(&state)?;
    let Query(params) = params?;
    let finished = state.tenants.finish(&state.pool, params, &headers).await?;
    let flow = &finished.flow;
    let tenant = &state
        .tenants
        .get(&flow.tenant)
        .ok_or_else(|| ApiError::LoginFailed(format!("tenant {} is gone", flow.tenant)))?
        .settings;
    let api_key = flow.purpose == "api_key";
    let grant = Grant {
        kind: if api_key { "api_key" } else { "login" },
        seconds: if api_key {
            flow.key_seconds
                .unwrap_or(state.tenants.settings.default_key_seconds)
        } else {
            login_seconds(&state, finished.expires_in)
        },
        label: flow.label.as_deref(),
        persona: flow.persona.as_deref(),
    };
    let issued = issue(
        &state,
        tenant,
        &finished.claims,
        grant,
        (!api_key).then(|| finished.id_token.clone()),
        finished.refresh_token.clone(),
    )
    .await?;
    let mut response = if flow.purpose == "console" {
        crate::routes::console::handoff(&issued)
    } else {
        Json(issued).into_response()
    };
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
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Me {
    pub entity_id: Uuid,
    pub tenant: String,
    pub admin: bool,
    pub key_id: Option<Uuid>,
    /// The persona the presented key was issued for, with its profile.
    pub persona: Option<store::personas::Persona>,
}

/// Who am I
///
/// The caller's entity, tenant and role, the key it called with, and that key's persona.
#[utoipa::path(get, path = "/me", tag = "identity", operation_id = "me",
    responses((status = 200, description = "The caller", body = Me)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let persona = match &caller.persona {
        Some(source) => store::personas::get(&state.pool, caller.entity_id, source).await?,
        None => None,
    };
    Ok(Json(Me {
        entity_id: caller.entity_id,
        tenant: caller.tenant,
        admin: caller.admin,
        key_id: caller.key_id,
        persona,
    }))
}
