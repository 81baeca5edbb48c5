//! Problem details (RFC 9457): the body of every HTTP error and the data of every `.failed`
//! completion. Each `type` is a stable URN listed in `docs/problems.md`; clients match on it.

use serde::{Deserialize, Serialize};

/// An RFC 9457 problem document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({"type": "urn:surge:problem:not-found", "title": "Not found", "status": 404, "detail": "no job 0190d4c2-7f4e-7a3c-9b1e-2f0c4d5e6a7b"}))
)]
pub struct Problem {
    /// A stable URN (`docs/problems.md`): match on it.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Extension members (RFC 9457 §3.2), flattened into the document.
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(ignore))]
    pub extensions: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(kind: &str, title: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            title: title.into(),
            status: None,
            detail: None,
            extensions: serde_json::Map::new(),
        }
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_extension(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(name.to_owned(), value.into());
        self
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The stable problem types. Keep `docs/problems.md` in step (a test checks it).
pub mod types {
    pub const BAD_REQUEST: &str = "urn:surge:problem:bad-request";
    pub const INVALID_JSON: &str = "urn:surge:problem:invalid-json";
    pub const PAYLOAD_TOO_LARGE: &str = "urn:surge:problem:payload-too-large";
    pub const UNAUTHORIZED: &str = "urn:surge:problem:unauthorized";
    pub const NOT_FOUND: &str = "urn:surge:problem:not-found";
    pub const METHOD_NOT_ALLOWED: &str = "urn:surge:problem:method-not-allowed";
    pub const UNKNOWN_FUNCTION: &str = "urn:surge:problem:unknown-function";
    pub const IDEMPOTENCY_KEY_REUSED: &str = "urn:surge:problem:idempotency-key-reused";
    pub const UNAVAILABLE: &str = "urn:surge:problem:unavailable";
    pub const INTERNAL: &str = "urn:surge:problem:internal";
    /// Authenticated, but not allowed (an admin endpoint, a refused identity).
    pub const FORBIDDEN: &str = "urn:surge:problem:forbidden";
    /// The caller's entity is over its rate limit.
    pub const RATE_LIMITED: &str = "urn:surge:problem:rate-limited";
    /// `/login`, `/token` or `/callback` named a tenant that is not configured.
    pub const UNKNOWN_TENANT: &str = "urn:surge:problem:unknown-tenant";
    /// A login could not be completed: bad or replayed state, provider error, mix-up.
    pub const LOGIN_FAILED: &str = "urn:surge:problem:login-failed";
    /// A tenant's identity provider cannot be reached or answered nonsense.
    pub const PROVIDER_UNAVAILABLE: &str = "urn:surge:problem:provider-unavailable";
    /// A write's precondition (`If-Match`) names a version that is no longer current.
    pub const PRECONDITION_FAILED: &str = "urn:surge:problem:precondition-failed";
    /// A write that could lose another's update came without `If-Match`.
    pub const PRECONDITION_REQUIRED: &str = "urn:surge:problem:precondition-required";
    /// The resource exists already (creating a setting twice).
    pub const CONFLICT: &str = "urn:surge:problem:conflict";
    /// A setting's name or value is not acceptable (`detail` says why).
    pub const INVALID_SETTING: &str = "urn:surge:problem:invalid-setting";
    /// Valid JSON that Surge cannot store: U+0000 (NUL) in a string or a member name, a number
    /// beyond ±1e308 (`detail` names the field).
    pub const UNSTORABLE_VALUE: &str = "urn:surge:problem:unstorable-value";
    /// A key lifetime that is refused: past `identity.max_key_seconds`, or longer than the
    /// key's present life (a key's life only shrinks).
    pub const INVALID_LIFETIME: &str = "urn:surge:problem:invalid-lifetime";
    /// A tenant or an entity holds as many websocket connections on the replica as it may.
    pub const TOO_MANY_CONNECTIONS: &str = "urn:surge:problem:too-many-connections";
    /// A handler reported a permanent failure.
    pub const JOB_FAILED: &str = "urn:surge:problem:job-failed";
    /// The handler's input did not match the function's input type.
    pub const JOB_INVALID_INPUT: &str = "urn:surge:problem:job-invalid-input";
    /// The job ran out of attempts (retryable failures, crashes, timeouts).
    pub const JOB_DEAD: &str = "urn:surge:problem:job-dead";

    /// Every type, for the documentation check.
    pub const ALL: &[&str] = &[
        BAD_REQUEST,
        INVALID_JSON,
        UNSTORABLE_VALUE,
        INVALID_LIFETIME,
        PAYLOAD_TOO_LARGE,
        UNAUTHORIZED,
        NOT_FOUND,
        METHOD_NOT_ALLOWED,
        UNKNOWN_FUNCTION,
        IDEMPOTENCY_KEY_REUSED,
        UNAVAILABLE,
        INTERNAL,
        FORBIDDEN,
        RATE_LIMITED,
        TOO_MANY_CONNECTIONS,
        UNKNOWN_TENANT,
        LOGIN_FAILED,
        PROVIDER_UNAVAILABLE,
        JOB_FAILED,
        JOB_INVALID_INPUT,
        JOB_DEAD,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_serialize_as_rfc_9457() {
        let p = Problem::new(types::NOT_FOUND, "Not found")
            .with_status(404)
            .with_detail("no job 1")
            .with_extension("job_id", "1");
        let json = p.to_json();
        assert_eq!(json["type"], types::NOT_FOUND);
        assert_eq!(json["status"], 404);
        assert_eq!(json["job_id"], "1");
        assert_eq!(serde_json::from_value::<Problem>(json).unwrap(), p);
    }

    #[test]
    fn every_problem_type_is_documented() {
        let doc = include_str!("../../docs/problems.md");
        for t in types::ALL {
            assert!(doc.contains(t), "{t} is missing from docs/problems.md");
        }
    }
}
