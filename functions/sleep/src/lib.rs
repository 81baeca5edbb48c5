//! `sleep`: waits the requested time, fails or panics when asked, and records each run it
//! completes in `sleep_run` inside the job's transaction. The fixture for scaling and fault
//! tests: the number of `sleep_run` rows of a job is the number of times its effect happened.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use surge_runtime::{Function, HandlerError, JobContext};

pub struct Sleep;

/// What to do. Every field is optional: `{}` sleeps 0 ms and succeeds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepInput {
    /// How long to wait, at most ten minutes.
    #[serde(default)]
    pub ms: u64,
    /// `retryable` or `permanent`: fail that way after sleeping.
    #[serde(default)]
    pub fail: Option<FailureKind>,
    /// Panic after sleeping (a retryable failure to the runtime).
    #[serde(default)]
    pub panic: bool,
    /// Fail (retryably) on attempts before this one, then succeed: for retry tests.
    #[serde(default)]
    pub succeed_on_attempt: Option<i32>,
    /// Record the run in `sleep_run` (the default); `false` writes nothing but the result,
    /// like a pure function.
    #[serde(default = "record_by_default")]
    pub record: bool,
}

fn record_by_default() -> bool {
    true
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailureKind {
    Retryable,
    Permanent,
}

#[derive(Debug, Serialize)]
pub struct SleepOutput {
    pub slept_ms: u64,
    pub attempt: i32,
    /// The persona the job was submitted with, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
}

const MAX_SLEEP_MS: u64 = 600_000;

impl Function for Sleep {
    const NAME: &'static str = "sleep";
    type Input = SleepInput;
    type Output = SleepOutput;

    async fn handle(
        &self,
        input: SleepInput,
        ctx: &mut JobContext<'_>,
    ) -> Result<SleepOutput, HandlerError> {
        if input.ms > MAX_SLEEP_MS {
            return Err(HandlerError::permanent(
                "Sleep too long",
                format!("ms must be at most {MAX_SLEEP_MS}, got {}", input.ms),
            ));
        }
        tokio::time::sleep(Duration::from_millis(input.ms)).await;
        if input.panic {
            panic!("asked to panic");
        }
        match input.fail {
            Some(FailureKind::Permanent) => {
                return Err(HandlerError::permanent(
                    "Asked to fail",
                    "the input asked for a permanent failure",
                ));
            }
            Some(FailureKind::Retryable) => {
                return Err(HandlerError::retryable(
                    "the input asked for a retryable failure",
                ));
            }
            None => {}
        }
        if input.succeed_on_attempt.is_some_and(|n| ctx.attempt() < n) {
            return Err(HandlerError::retryable(format!(
                "attempt {} is before the one asked to succeed",
                ctx.attempt()
            )));
        }
        if input.record {
            let job_id = ctx.job_id().0;
            let slept = i64::try_from(input.ms).unwrap_or(i64::MAX);
            sqlx::query!(
                "INSERT INTO sleep_run (job_id, slept_ms) VALUES ($1, $2)",
                job_id,
                slept
            )
            .execute(ctx.db().await?)
            .await?;
        }
        Ok(SleepOutput {
            slept_ms: input.ms,
            attempt: ctx.attempt(),
            persona: ctx.persona().map(str::to_owned),
        })
    }
}
