//! `ApiError`: the outcomes a client can see, each rendered once as RFC 9457 problem+json with
//! a stable type (`surge_contract::problem::types`). Internal errors are logged here with their
//! whole cause chain and answered with an opaque 500: database or broker text never reaches a
//! client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use surge_contract::problem::{Problem, types};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("no function named {0:?} is served here")]
    UnknownFunction(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    /// Valid JSON that Postgres cannot store (NUL, a number beyond ±1e308).
    #[error("{0}")]
    Unstorable(String),
    #[error("the body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    #[error("this Idempotency-Key was first used for another request ({0})")]
    IdempotencyKeyReused(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("too many requests from this caller: retry in {} s", .0.retry_after_secs())]
    RateLimited(crate::auth::Limited),
    #[error("{0}")]
    TooManyConnections(String),
    #[error(transparent)]
    InvalidLifetime(#[from] crate::auth::key_policy::LifetimeError),
    #[error("{0}")]
    UnknownTenant(String),
    #[error("{0}")]
    LoginFailed(String),
    #[error("{0}")]
    ProviderUnavailable(String),
    #[error("{0}")]
    PreconditionRequired(String),
    #[error("{0}")]
    InvalidSetting(String),
    /// The request contradicts what is stored (a limit reached).
    #[error("{0}")]
    Conflict(String),
    /// A function's own problem document (the `settings` function's 409, 412, 422), answered
    /// with its status as it is.
    #[error("{}", .0.detail.as_deref().unwrap_or(&.0.title))]
    Function(Box<Problem>),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Self::Unauthorized(_) => (
                StatusCode::UNAUTHORIZED,
                types::UNAUTHORIZED,
                "Unauthorized",
            ),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, types::NOT_FOUND, "Not found"),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                types::METHOD_NOT_ALLOWED,
                "Method not allowed",
            ),
            Self::UnknownFunction(_) => (
                StatusCode::NOT_FOUND,
                types::UNKNOWN_FUNCTION,
                "Unknown function",
            ),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, types::BAD_REQUEST, "Bad request"),
            Self::InvalidJson(_) => (StatusCode::BAD_REQUEST, types::INVALID_JSON, "Invalid JSON"),
            Self::Unstorable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                types::UNSTORABLE_VALUE,
                "A value Surge cannot store",
            ),
            Self::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                types::PAYLOAD_TOO_LARGE,
                "Payload too large",
            ),
            Self::IdempotencyKeyReused(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                types::IDEMPOTENCY_KEY_REUSED,
                "Idempotency-Key reused",
            ),
            Self::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                types::UNAVAILABLE,
                "Service unavailable",
            ),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, types::FORBIDDEN, "Forbidden"),
            Self::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                types::RATE_LIMITED,
                "Too many requests",
            ),
            Self::TooManyConnections(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                types::TOO_MANY_CONNECTIONS,
                "Too many connections",
            ),
            Self::UnknownTenant(_) => (
                StatusCode::NOT_FOUND,
                types::UNKNOWN_TENANT,
                "Unknown tenant",
            ),
            Self::LoginFailed(_) => (StatusCode::BAD_REQUEST, types::LOGIN_FAILED, "Login failed"),
            Self::ProviderUnavailable(_) => (
                StatusCode::BAD_GATEWAY,
                types::PROVIDER_UNAVAILABLE,
                "Identity provider unavailable",
            ),
            Self::InvalidLifetime(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                types::INVALID_LIFETIME,
                "Invalid lifetime",
            ),
            Self::InvalidSetting(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                types::INVALID_SETTING,
                "Invalid setting",
            ),
            Self::Conflict(_) => (StatusCode::CONFLICT, types::CONFLICT, "Conflict"),
            Self::PreconditionRequired(_) => (
                StatusCode::PRECONDITION_REQUIRED,
                types::PRECONDITION_REQUIRED,
                "Precondition required",
            ),
            // Rendered from the document itself (`into_response`); these are the fallbacks.
            Self::Function(_) => (StatusCode::BAD_GATEWAY, types::JOB_FAILED, "Job failed"),
            Self::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                types::INTERNAL,
                "Internal error",
            ),
        }
    }
}

/// A query string that does not parse is a bad request, answered as a problem saying why.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> Self {
        Self::BadRequest(e.body_text())
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %e, "database unavailable");
                Self::Unavailable("the database cannot be reached right now; retry shortly".into())
            }
            e => Self::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Function(problem) = &self {
            let status = problem
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
                .filter(|s| s.is_client_error())
                .unwrap_or(StatusCode::BAD_GATEWAY);
            return problem_response(status, problem, &self);
        }
        let (status, kind, title) = self.parts();
        let detail = match &self {
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                "the gateway failed to handle this request; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let problem = Problem::new(kind, title)
            .with_status(status.as_u16())
            .with_detail(detail);
        problem_response(status, &problem, &self)
    }
}

fn problem_response(status: StatusCode, problem: &Problem, error: &ApiError) -> Response {
    let mut response = (status, axum::Json(problem)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    match error {
        ApiError::Unavailable(_) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        // A slot frees when one of the caller's own connections closes: not at once.
        ApiError::TooManyConnections(_) => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        ApiError::RateLimited(limited) => {
            let wait = limited.retry_after_secs();
            let pairs = [
                (header::RETRY_AFTER.as_str(), wait.to_string()),
                // draft-ietf-httpapi-ratelimit-headers
                (
                    "ratelimit-policy",
                    format!("{};w=1;burst={}", limited.per_second, limited.burst),
                ),
                ("ratelimit-limit", limited.burst.to_string()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", wait.to_string()),
            ];
            for (name, value) in pairs {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(name, value);
                }
            }
        }
        ApiError::Unauthorized(_) => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}
