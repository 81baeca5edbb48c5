//! What a function implements. The handler gets its typed input and a [`JobContext`] whose
//! transaction commits together with the job's result: whatever the handler writes there
//! happens exactly once, however often the message is delivered. The transaction begins (and
//! the job's row is locked) at the handler's first `ctx.db()`; a handler that never asks for it
//! writes nothing but its result, and results like that are recorded in groups.

use std::future::Future;

use backon::BackoffBuilder as _;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
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
    pub(crate) persona: Option<String>,
    pub(crate) pool: &'a PgPool,
    /// Begun by the first `db()`.
    pub(crate) tx: Option<Transaction<'static, Postgres>>,
    /// What `db()` found when it could not hand out the transaction.
    pub(crate) interrupted: Option<Interruption>,
}

/// Why `db()` refused: the runtime, not the handler, decides what becomes of the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// Another delivery of the job finished it while this one ran.
    FinishedElsewhere,
}

impl<'a> JobContext<'a> {
    pub(crate) fn new(
        job_id: JobId,
        attempt: i32,
        owner: Option<uuid::Uuid>,
        persona: Option<String>,
        pool: &'a PgPool,
    ) -> Self {
        Self {
            job_id,
            attempt,
            owner,
            persona,
            pool,
            tx: None,
            interrupted: None,
        }
    }

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

    /// The persona (`pc`, `mobile`, `api`…) of the credential the owner submitted the job
    /// with, from the job's record; `None` without one. Its profile is the owner's
    /// `entity_persona` row of that `source`.
    pub fn persona(&self) -> Option<&str> {
        self.persona.as_deref()
    }

    /// The job's transaction: writes here commit with the job's result, or not at all. The
    /// first call begins it and locks the job's row, so of two deliveries of one job only one
    /// gets past it at a time, and the second finds the job finished: call it before any
    /// effect outside the database that must not run twice at once.
    pub async fn db(&mut self) -> Result<&mut PgConnection, HandlerError> {
        // Another delivery running the job holds its row: wait for it (bounded by the
        // handler's timeout), then see what it left.
        let mut waits = surge_contract::broker::backoff(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(2),
        )
        .build();
        while self.tx.is_none() {
            let mut tx = self.pool.begin().await?;
            match crate::store::lock(&mut tx, self.job_id).await {
                Ok(state) if state.is_terminal() => {
                    self.interrupted = Some(Interruption::FinishedElsewhere);
                    return Err(HandlerError::retryable(
                        "another delivery finished this job while it ran",
                    ));
                }
                Ok(_) => self.tx = Some(tx),
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                    drop(tx);
                    tokio::time::sleep(waits.next().unwrap_or_default()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        match self.tx.as_mut() {
            Some(tx) => Ok(&mut **tx),
            None => Err(HandlerError::retryable("the job's transaction is gone")),
        }
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
/// The database's own words go to the function's log, not into the job's error, which its
/// owner reads (they can name tables, constraints and values).
impl From<sqlx::Error> for HandlerError {
    fn from(e: sqlx::Error) -> Self {
        tracing::warn!(error = %e, "a database error interrupted the handler");
        Self::Retryable(
            "a database error interrupted the attempt (the function's log says which)".into(),
        )
    }
}
