//! Server settings: what the gateway's `/settings` API and the `settings` function agree on.
//!
//! Reads are served by every gateway from a cache; writes are jobs of the `settings` function
//! (so the gateway stays stateless on writes and a write happens once however often it is
//! delivered). A write's `.completed` event on `surge.events` is the change broadcast: every
//! gateway binds `*.*.settings.completed`, reloads its cache and tells `/ws` subscribers.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::completion::Completion;
use crate::job::{FunctionName, JobId};

/// The function that performs setting writes. Reserved: never in a gateway's `functions`.
pub const FUNCTION: &str = "settings";
/// The CloudEvents type of a change pushed to `/ws` subscribers of `settings`.
pub const CHANGED_TYPE: &str = "dev.surge.settings.changed";
/// The `source` of change events.
pub const CHANGED_SOURCE: &str = "/surge/settings";
/// A setting's value, as JSON text, is at most this long.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// How many settings may exist: the cache every gateway keeps is bounded by it.
pub const MAX_SETTINGS: i64 = 256;

/// The `settings` function's name.
pub fn function() -> FunctionName {
    FunctionName::parse(FUNCTION).unwrap_or_else(|_| unreachable!("a valid literal"))
}

/// Setting names: 1 to 64 of `a-z 0-9 _ . -`, starting with a letter (they appear in paths).
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid setting name {name:?}: use 1-64 of a-z, 0-9, '_', '.', '-', starting with a letter"
        ))
    }
}

/// Checks a value before it is stored: its size, and the shape of the settings Surge itself
/// reads (`known`).
pub fn validate_value(name: &str, value: &Value) -> Result<(), String> {
    crate::binding::storable(value)?;
    let len = serde_json::to_string(value).map_or(usize::MAX, |s| s.len());
    if len > MAX_VALUE_BYTES {
        return Err(format!(
            "the value is {len} bytes of JSON; at most {MAX_VALUE_BYTES}"
        ));
    }
    known::validate(name, value)
}

/// One write: the input of a `settings` job. `if_version` is the `If-Match` of the request
/// (`None` for `*`): the write happens only if the stored version is still that one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    Create {
        name: String,
        value: Value,
    },
    Update {
        name: String,
        value: Value,
        if_version: Option<i64>,
    },
    Delete {
        name: String,
        if_version: Option<i64>,
    },
}

impl Change {
    pub fn name(&self) -> &str {
        match self {
            Self::Create { name, .. } | Self::Update { name, .. } | Self::Delete { name, .. } => {
                name
            }
        }
    }
}

/// What a write did: the result of a `settings` job, and the data of a change event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Changed {
    pub op: Op,
    pub name: String,
    /// The version after the change (for a delete: the version that was deleted).
    pub version: i64,
    /// The new value; `null` after a delete.
    pub value: Value,
    pub updated_at: DateTime<Utc>,
}

impl Changed {
    /// What a `settings` job's completion says was changed; `None` for a refused write (a
    /// `.failed` completion changed nothing).
    pub fn of(completion: &Completion) -> Result<Option<Self>, String> {
        let Some(result) = completion.result() else {
            return Ok(None);
        };
        serde_json::from_value(result.clone())
            .map(Some)
            .map_err(|e| format!("not a settings change: {e}"))
    }

    /// The `/ws` event of this change (`dev.surge.settings.changed`): id = the write's job id
    /// (clients can deduplicate), subject = the setting's name, data = what changed; who
    /// changed it is not said.
    pub fn to_event(&self, job: JobId) -> Result<cloudevents::Event, String> {
        use cloudevents::EventBuilder as _;
        cloudevents::EventBuilderV10::new()
            .id(job.to_string())
            .source(CHANGED_SOURCE)
            .ty(CHANGED_TYPE)
            .subject(self.name.clone())
            .time(self.updated_at)
            .data(
                "application/json",
                serde_json::to_value(self).map_err(|e| e.to_string())?,
            )
            .build()
            .map_err(|e| e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// The settings Surge itself reads, validated when written.
pub mod known {
    use serde::{Deserialize, Serialize};
    use serde_json::Value;

    /// `rate_limit`: `{"per_second": n, "burst": m}` for every entity; overrides the
    /// gateways' `limits.per_second` / `limits.burst` while it exists. `per_second: 0` turns
    /// limiting off.
    pub const RATE_LIMIT: &str = "rate_limit";

    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RateLimit {
        pub per_second: u32,
        pub burst: u32,
    }

    /// The shape check of a known setting; any JSON for the others.
    pub fn validate(name: &str, value: &Value) -> Result<(), String> {
        if name == RATE_LIMIT {
            let limit = RateLimit::deserialize(value).map_err(|e| {
                format!("rate_limit must be {{\"per_second\": n, \"burst\": m}}: {e}")
            })?;
            if limit.per_second > 0 && limit.burst == 0 {
                return Err("rate_limit.burst must be at least 1".into());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_path_safe() {
        for good in ["rate_limit", "a", "feature.flags-2"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Rate", "1x", "a/b", "a b", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn known_settings_are_checked_and_others_are_free() {
        assert!(validate_value("rate_limit", &json!({"per_second": 5, "burst": 10})).is_ok());
        assert!(validate_value("rate_limit", &json!({"per_second": 0, "burst": 0})).is_ok());
        assert!(validate_value("rate_limit", &json!({"per_second": -1, "burst": 1})).is_err());
        assert!(validate_value("rate_limit", &json!({"per_second": 5, "burst": 0})).is_err());
        assert!(validate_value("rate_limit", &json!({"rate": 5})).is_err());
        assert!(validate_value("anything", &json!([1, "two", null])).is_ok());
        let big = json!("x".repeat(MAX_VALUE_BYTES));
        assert!(validate_value("anything", &big).is_err());
    }

    #[test]
    fn a_change_is_tagged_by_op() {
        let change: Change = serde_json::from_value(
            json!({"op": "update", "name": "a", "value": 1, "if_version": 3}),
        )
        .unwrap();
        assert_eq!(change.name(), "a");
        assert!(
            serde_json::from_value::<Change>(json!({"op": "drop", "name": "a"})).is_err(),
            "unknown op"
        );
        assert_eq!(function().as_str(), FUNCTION);
    }
}
