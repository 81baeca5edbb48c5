//! The JSON documents of the jobs API. Tests deserialize the same types.

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Event};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_contract::job::{JobId, JobState, ext};

use crate::store::jobs::JobRow;

/// A job. `result` is set once it succeeded, `error` (a problem document) once it failed or
/// died. Times are RFC 3339 UTC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobView {
    pub id: JobId,
    pub function: String,
    pub state: JobState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// A page of the caller's jobs, newest first. Pass `next_before` as `before` for the next page.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobPage {
    pub jobs: Vec<JobView>,
    pub next_before: Option<JobId>,
}

impl JobView {
    /// A job just accepted.
    pub fn queued(id: JobId, function: &str, created_at: DateTime<Utc>) -> Self {
        Self {
            id,
            function: function.to_owned(),
            state: JobState::Queued,
            attempts: None,
            input: None,
            result: None,
            error: None,
            created_at,
            started_at: None,
            finished_at: None,
        }
    }

    /// The job as its completion event reports it, without reading the database again.
    pub fn completed(mut self, completion: &Event) -> Self {
        let state = completion
            .extension(ext::STATE)
            .and_then(|s| serde_json::from_value(Value::String(s.to_string())).ok())
            .unwrap_or(JobState::Failed);
        let data = surge_contract::binding::json_data(completion).ok();
        self.state = state;
        self.attempts = completion
            .extension(ext::ATTEMPTS)
            .and_then(|a| a.to_string().parse().ok());
        if state == JobState::Succeeded {
            self.result = data;
        } else {
            self.error = data;
        }
        self.finished_at = completion.time().copied();
        self
    }
}

impl From<JobRow> for JobView {
    fn from(row: JobRow) -> Self {
        Self {
            id: row.id,
            function: row.function,
            state: row.state,
            attempts: Some(row.attempts),
            input: row.input,
            result: row.result,
            error: row.error,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        }
    }
}
