//! The job lifecycle and the names Surge gives events about jobs.
//!
//! A job is `queued → running → succeeded | failed | dead`. Request events have the function's
//! event type; completions add `.completed` or `.failed`. Completion routing keys on
//! `surge.events` are `<tenant>.<entity>.<function>.<outcome>` so a gateway can bind only what
//! its clients need.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a job: a UUIDv7, so ids sort by creation time.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
pub struct JobId(pub Uuid);

impl JobId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The smallest id a job created at `time` (to the millisecond) can have: `id >= ` it
    /// selects the jobs created since, through the primary key's order.
    pub fn first_at(time: chrono::DateTime<chrono::Utc>) -> Self {
        let ms = u64::try_from(time.timestamp_millis()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10]).into_uuid())
    }
}

impl Default for JobId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for JobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for JobId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a job is in its life. Mirrors the Postgres enum `job_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "job_state", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
}

impl JobState {
    /// A terminal job has its answer recorded and is never run again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }

    /// The completion outcome a terminal state is reported as.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            Self::Succeeded => Some(Outcome::Completed),
            Self::Failed | Self::Dead => Some(Outcome::Failed),
            Self::Queued | Self::Running => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }
}

/// How a completion event reports a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }
}

/// A function's name: lowercase letters, digits and `-`, 1 to 63 characters, starting with a
/// letter. It names a queue, a routing key, a Kubernetes object and a binary, so it must be
/// valid for all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid function name {0:?}: use 1-63 lowercase letters, digits or '-', starting with a letter"
)]
pub struct InvalidFunctionName(pub String);

impl FunctionName {
    pub fn parse(name: &str) -> Result<Self, InvalidFunctionName> {
        let valid = (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidFunctionName(name.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The CloudEvents `type` of this function's request events.
    pub fn event_type(&self) -> String {
        format!("{EVENT_TYPE_PREFIX}{}", self.0)
    }

    /// The `source` of this function's completion events.
    pub fn completion_source(&self) -> String {
        format!("/surge/functions/{}", self.0)
    }
}

impl TryFrom<String> for FunctionName {
    type Error = InvalidFunctionName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<FunctionName> for String {
    fn from(value: FunctionName) -> Self {
        value.0
    }
}

impl std::fmt::Display for FunctionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Request event types are `dev.surge.fn.<function>`.
pub const EVENT_TYPE_PREFIX: &str = "dev.surge.fn.";
/// The `source` of request events the gateway publishes.
pub const GATEWAY_SOURCE: &str = "/surge/gateway";

/// The completion event type for a request type and outcome.
pub fn completion_type(request_type: &str, outcome: Outcome) -> String {
    format!("{request_type}.{}", outcome.as_str())
}

/// CloudEvents extension attributes Surge sets (lowercase alphanumerics, as the spec requires).
pub mod ext {
    /// W3C trace context (distributed tracing extension).
    pub const TRACEPARENT: &str = "traceparent";
    pub const TRACESTATE: &str = "tracestate";
    /// The owner's tenant, stamped by the gateway; never taken from a client.
    pub const TENANT: &str = "surgetenant";
    /// The owner's entity id, stamped by the gateway; never taken from a client.
    pub const ENTITY: &str = "surgeentity";
    /// The persona (source profile: `pc`, `mobile`, `api`…) of the credential the job was
    /// submitted with, stamped by the gateway; the runtime reads it from the job's record.
    pub const PERSONA: &str = "surgepersona";
    /// On completions: the job's final state (`succeeded`, `failed`, `dead`).
    pub const STATE: &str = "surgestate";
    /// The reply queue of a waiting caller, for transports that drop AMQP's `reply_to`
    /// (Knative's RabbitmqSource turns messages into HTTP requests). Honoured only for queues
    /// named like Surge's reply queues.
    pub const REPLY_TO: &str = "surgereplyto";
    /// On completions: how many attempts the job took.
    pub const ATTEMPTS: &str = "surgeattempts";
}

/// The routing key of a completion on `surge.events`: `<tenant>.<entity>.<function>.<outcome>`.
/// Jobs with no owner (published by a trusted producer) use `-` for tenant and entity.
pub fn completion_routing_key(
    tenant: Option<&str>,
    entity: Option<&str>,
    function: &FunctionName,
    outcome: Outcome,
) -> String {
    format!(
        "{}.{}.{}.{}",
        word(tenant),
        word(entity),
        function,
        outcome.as_str()
    )
}

/// The binding that routes every completion of one entity: `<tenant>.<entity>.*.*`.
pub fn entity_binding_key(tenant: &str, entity: &str) -> String {
    format!("{}.{}.*.*", word(Some(tenant)), word(Some(entity)))
}

/// The binding that routes every completion of a tenant's jobs (`<tenant>.*.*.*`), or with
/// `None` of the jobs no tenant owns (`-.*.*.*`): an admin's tenant-wide `/ws` feed.
pub fn tenant_binding_key(tenant: Option<&str>) -> String {
    format!("{}.*.*.*", word(tenant))
}

/// The binding that routes every successful completion of one function, whoever owns the job:
/// `*.*.<function>.completed` (gateways follow the `settings` function's this way).
pub fn function_completions_key(function: &FunctionName) -> String {
    format!("*.*.{function}.{}", Outcome::Completed.as_str())
}

/// One word of a topic key: a dot inside a tenant would shift every word after it. A
/// consumer comparing a key's words with a tenant must compare with `topic_word(tenant)`.
pub fn topic_word(tenant: &str) -> String {
    word(Some(tenant))
}

/// Whether `name` may name a tenant: 1–63 ASCII letters, digits, `-` and `_`, starting with
/// a letter or digit. A tenant is a word of the completion routing keys, so a
/// name that routing would rewrite (a dot, `*`, `#`) could share its word with another
/// tenant's (`acme.x` and `acme_x`) and receive its completions; `-` is the jobs no tenant
/// owns.
pub fn check_tenant_name(name: &str) -> Result<(), String> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tenant name {name:?} is not allowed: use 1-63 letters, digits, '-' or '_', starting with a letter or digit (a dot would share routing keys with \
             another tenant)"
        ))
    }
}

fn word(w: Option<&str>) -> String {
    w.map_or_else(|| "-".to_owned(), |w| w.replace(['.', '*', '#'], "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_that_routing_would_rewrite_or_confuse_are_refused() {
        for good in ["acme", "acme_x", "acme-eu", "a", "9lives", "Acme"] {
            assert!(check_tenant_name(good).is_ok(), "{good:?} refused");
            assert_eq!(topic_word(good), good, "routed as written");
        }
        for bad in ["", "-", "acme.x", "a*", "a#", "_x", &"x".repeat(64)] {
            assert!(check_tenant_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn function_names_are_checked() {
        assert!(FunctionName::parse("echo").is_ok());
        assert!(FunctionName::parse("resize-image2").is_ok());
        for bad in ["", "Echo", "1echo", "a.b", "a b", &"x".repeat(64)] {
            assert!(FunctionName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_first_id_of_a_millisecond_sorts_before_every_id_made_then_or_later() {
        let now = chrono::Utc::now();
        let first = JobId::first_at(now);
        assert_eq!(first.0.get_version_num(), 7);
        let made = JobId::new();
        assert!(first <= made, "{first} > {made}");
        assert!(JobId::first_at(now + chrono::Duration::seconds(2)) > made);
        let (secs, nanos) = made.0.get_timestamp().unwrap().to_unix();
        let made_at = chrono::DateTime::from_timestamp(secs as i64, nanos).unwrap();
        assert!(JobId::first_at(made_at) <= made);
    }

    #[test]
    fn routing_keys_have_four_words_whatever_the_tenant() {
        let f = FunctionName::parse("echo").unwrap();
        assert_eq!(
            completion_routing_key(Some("acme.eu"), Some("e1"), &f, Outcome::Completed),
            "acme_eu.e1.echo.completed"
        );
        assert_eq!(
            completion_routing_key(None, None, &f, Outcome::Failed),
            "-.-.echo.failed"
        );
        assert_eq!(tenant_binding_key(Some("acme.eu")), "acme_eu.*.*.*");
        assert_eq!(tenant_binding_key(None), "-.*.*.*");
    }

    #[test]
    fn only_finished_states_are_terminal() {
        assert!(!JobState::Queued.is_terminal());
        assert!(!JobState::Running.is_terminal());
        assert_eq!(JobState::Dead.outcome(), Some(Outcome::Failed));
        assert_eq!(JobState::Succeeded.outcome(), Some(Outcome::Completed));
    }
}
