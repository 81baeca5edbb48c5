//! The JSON documents of jobs, as the API answers them and the job service builds them.
//! Tests deserialize the same types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use surge_contract::completion::Completion;
use surge_contract::job::{JobId, JobState};

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
    pub fn completed(mut self, completion: &Completion) -> Self {
        self.state = completion.state;
        self.attempts = Some(completion.attempts);
        self.result = completion.result().cloned();
        self.error = completion.problem().cloned();
        self.finished_at = Some(completion.finished_at);
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
