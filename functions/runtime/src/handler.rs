//! What a function implements. The handler gets its typed input and a [`JobContext`] whose
//! transaction commits together with the job's result: whatever the handler writes there
//! happens exactly once, however often the message is delivered.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;
use surge_contract::job::JobId;

/// A function: one event type, one typed handler.
pub trait Function: Send + Sync + 'static {
    /// The function's name (queue `fn.<name>`, event type `dev.surge.fn.<name>`).
    const NAME: &'static str;
    type Input: DeserializeOwned + Send;
    type Output: Serialize + Send;

    fn handle(
        &self,
        input: Self::Input,
        ctx: &mut JobContext<'_>,
    ) -> impl Future<Output = Result<Self::Output, HandlerError>> + Send;
}

/// What a handler knows about its job, and the transaction its result is recorded in.
pub struct JobContext<'a> {
    pub(crate) job_id: JobId,
    pub(crate) attempt: i32,
    pub(crate) owner: Option<uuid::Uuid>,
    pub(crate) tx: &'a mut PgConnection,
}

impl JobContext<'_> {
    pub fn job_id(&self) -> JobId {
        self.job_id
    }

    /// 1 on the first run, counting every run that started (including crashed ones).
    pub fn attempt(&self) -> i32 {
        self.attempt
    }

    /// The entity that submitted the job through the gateway (stamped by the gateway, never
    /// by a client); `None` for a job a trusted producer published straight to the broker.
    pub fn owner(&self) -> Option<uuid::Uuid> {
        self.owner
    }

    /// The job's transaction: writes here commit with the job's result, or not at all.
    pub fn db(&mut self) -> &mut PgConnection {
        self.tx
    }
}

/// Why a handler did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth another try (a dependency was down, a timeout): the job is redelivered until its
    /// attempts run out, then it is `dead`.
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way every time (bad input, a business rule): the job is `failed` now.
    #[error("{detail}")]
    Permanent { title: String, detail: String },
    /// A permanent failure the function describes itself: its problem document (type,
    /// status, detail, extensions) becomes the job's error as it is, so the gateway can
    /// answer with that status (a `412` of the `settings` function, say).
    #[error("{}", .0.detail.as_deref().unwrap_or(&.0.title))]
    Rejected(Box<surge_contract::problem::Problem>),
}

impl HandlerError {
    pub fn retryable(reason: impl std::fmt::Display) -> Self {
        Self::Retryable(reason.to_string())
    }

    pub fn rejected(problem: surge_contract::problem::Problem) -> Self {
        Self::Rejected(Box::new(problem))
    }

    pub fn permanent(title: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Permanent {
            title: title.into(),
            detail: detail.into(),
        }
    }
}

/// Database errors inside a handler are retried: the usual cause is a dropped connection.
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        Self::Retryable(format!("database error in handler: {e}"))
    }
}
