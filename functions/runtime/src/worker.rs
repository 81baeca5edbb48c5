//! One delivery, from decode to ack. The order is the contract: record the result, publish the
//! completion with a confirm, and only then ack. A crash anywhere before the ack redelivers the
//! message, and the job's record then answers it without running the handler again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder as _;
use futures_util::FutureExt;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::{AMQPValue, LongString};
use serde_json::Value;
use sqlx::PgPool;
use surge_contract::binding::AmqpMessage;
use surge_contract::broker::{backoff, publish_confirmed};
use surge_contract::job::{FunctionName, JobState};
use surge_contract::problem::{Problem, types};
use surge_contract::request::JobRequest;
use surge_contract::telemetry::set_parent;
use surge_contract::topology::Topology;
use tracing::Instrument;

use crate::completion;
use crate::groups::{Claim, Groups};
use crate::handler::{Function, HandlerError, Interruption, JobContext};
use crate::metrics::RuntimeMetrics;
use crate::settings::RuntimeSettings;
use crate::store::{self, EventKey, JobRecord};

/// Header that keeps the reason on a message this runtime dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-surge-dead-reason";

/// Everything a delivery needs, shared by all in-flight jobs of the process.
pub struct Worker<F: Function> {
    pub function: F,
    pub name: FunctionName,
    pub pool: PgPool,
    pub topology: Topology,
    pub settings: RuntimeSettings,
    pub metrics: Arc<RuntimeMetrics>,
    /// Claims and pure results, written in groups.
    pub groups: Groups,
    /// Who may publish an event claiming a gateway's source (`broker.gateway_users`).
    pub gateway_senders: surge_contract::broker::Senders,
    /// The broker user this process publishes as, stamped on its completions.
    pub sender: Option<String>,
}

/// How a handler's run ended.
enum RunOutcome {
    /// The job is finished (by this run or an earlier delivery): publish its record.
    Finished(JobRecord),
    /// This delivery wrote the job's final state: count it, then publish its record.
    Decided(JobRecord),
    /// Another attempt is due: hand the message back.
    Retry,
}

/// What becomes of the message that carried a job.
#[derive(Debug, PartialEq, Eq)]
pub enum Settlement {
    /// Recorded and its completion published: ack (HTTP: 2xx).
    Done,
    /// Another attempt is due: hand it back (HTTP: 503, the sender retries).
    Retry,
    /// Not a job this runtime can take: dead-letter it with the reason (HTTP: 400).
    Reject(String),
}

impl<F: Function> Worker<F> {
    /// Processes one AMQP delivery on `channel` (the publishing channel of its connection).
    pub async fn process(self: Arc<Self>, channel: Channel, delivery: Delivery) {
        let request = match JobRequest::decode(&delivery.properties, &delivery.data) {
            Ok(request) => request,
            Err(e) => return self.dead_letter(&channel, delivery, e.to_string()).await,
        };
        // A gateway's source is the gateways' alone: a producer that claims it is refused,
        // not merely held to the record's input.
        if request.source == surge_contract::job::GATEWAY_SOURCE
            && !self.gateway_senders.admits(&delivery.properties)
        {
            let reason = "an event claiming a gateway's source that no gateway's broker user \
                          published (broker.gateway_users)"
                .to_owned();
            return self.dead_letter(&channel, delivery, reason).await;
        }
        match self.handle(&channel, request).await {
            Settlement::Done => ack(delivery).await,
            Settlement::Retry => nack(delivery).await,
            Settlement::Reject(reason) => self.dead_letter(&channel, delivery, reason).await,
        }
    }

    /// Runs one job request to its settlement; the same for AMQP and HTTP.
    pub async fn handle(&self, channel: &Channel, request: JobRequest) -> Settlement {
        let _in_flight = self.metrics.in_flight();
        let span = tracing::info_span!(
            "job",
            otel.name = %format!("process {}", self.name),
            otel.kind = "consumer",
            function = %self.name,
            job_id = tracing::field::Empty,
            trace_id = tracing::field::Empty,
            event_id = %request.event_id,
        );
        set_parent(&span, &request.trace);
        // A gateway's job is known by its event id from the first line on; a trusted
        // producer's gets its id at the claim.
        if let Some(id) = request.job_id {
            span.record("job_id", tracing::field::display(id));
        }
        self.run(channel, request).instrument(span).await
    }

    async fn run(&self, channel: &Channel, request: JobRequest) -> Settlement {
        if request.function != self.name {
            return Settlement::Reject(format!(
                "event type {} is not this function's ({})",
                request.function.event_type(),
                self.name.event_type()
            ));
        }
        // Only a queue named like a gateway's reply queue: a message must not make the
        // function send a job's answer anywhere else.
        let reply_to = request
            .reply_to
            .as_deref()
            .filter(|queue| self.topology.is_reply_queue(queue));
        let trace_parent = request.traceparent().map(str::to_owned);
        // Shared, not copied: the claim needs it only to record a trusted producer's event on
        // first sight; the handler runs on the input the claim reads back from the record.
        let claim = Claim {
            key: EventKey {
                source: request.source,
                id: request.event_id,
            },
            function: self.name.to_string(),
            input: Arc::new(request.input),
            trace_parent,
        };
        let job = match self.db(|| self.groups.claim(claim.clone())).await {
            Ok(job) => {
                drop(claim);
                job
            }
            // Only what is wrong with the message itself (a value Postgres refuses) makes it a
            // dead letter; a full disk or a timeout must not lose a valid job.
            Err(e) if is_data_error(&e) => {
                return Settlement::Reject(format!("the job cannot be recorded: {e}"));
            }
            Err(sqlx::Error::RowNotFound) => {
                return Settlement::Reject(
                    "an event from a gateway's source whose job is not recorded for this \
                     function: a gateway records every job before it publishes it, so this one \
                     was never accepted here (or is older than the jobs' retention)"
                        .into(),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "claiming the job failed; handing it back");
                return Settlement::Retry;
            }
        };
        if request.job_id.is_none() {
            tracing::Span::current().record("job_id", tracing::field::display(job.id));
        }
        let since_created = || {
            request
                .time
                .and_then(|t| (chrono::Utc::now() - t).to_std().ok())
        };
        if job.attempts > 1 || job.state.is_terminal() {
            self.metrics.redelivered();
        } else if let Some(waited) = since_created() {
            self.metrics.queue_wait(waited);
        }
        let outcome = if job.state.is_terminal() {
            tracing::info!(
                state = job.state.as_str(),
                "redelivered finished job: answering from its record"
            );
            RunOutcome::Finished(job)
        } else if job.attempts > self.max_attempts() {
            let problem = Problem::new(types::JOB_DEAD, "Job ran out of attempts")
                .with_detail(format!(
                    "delivered {} times and no attempt finished (the worker crashed, was killed, \
                     or lost its connections each time)",
                    job.attempts
                ))
                .with_extension("attempts", job.attempts);
            self.finish_with(job, JobState::Dead, problem).await
        } else {
            self.attempt(job).await
        };
        match outcome {
            RunOutcome::Decided(job) => {
                // Counted where its end is recorded: once, whatever becomes of the publish.
                self.metrics.finished(job.state, since_created());
                self.complete(channel, &job, reply_to).await
            }
            RunOutcome::Finished(job) => self.complete(channel, &job, reply_to).await,
            RunOutcome::Retry => Settlement::Retry,
        }
    }

    /// Runs the handler once and records what came of it: in the handler's transaction when
    /// it opened one, else with the results of other handlers that wrote nothing else.
    async fn attempt(&self, mut job: JobRecord) -> RunOutcome {
        // The recorded input, never the delivery's: a message on the broker cannot change
        // what the owner asked for.
        let recorded = job.input.take().unwrap_or(Value::Null);
        let input: F::Input = match serde_json::from_value(recorded) {
            Ok(input) => input,
            Err(e) => {
                let problem = Problem::new(
                    types::JOB_INVALID_INPUT,
                    "Input does not match the function",
                )
                .with_detail(format!("{}: {e}", self.name));
                return self.finish_with(job, JobState::Failed, problem).await;
            }
        };
        let mut ctx = JobContext::new(
            job.id,
            job.attempts,
            job.owner_id,
            job.persona.clone(),
            &self.pool,
        );
        let handler = tracing::info_span!(
            "handler",
            otel.name = %format!("handle {}", self.name),
            attempt = job.attempts,
        );
        let run = AssertUnwindSafe(self.function.handle(input, &mut ctx).instrument(handler))
            .catch_unwind();
        let timeout = self.settings.function.timeout();
        let started = std::time::Instant::now();
        let result = match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(HandlerError::retryable(format!(
                "the handler took longer than {timeout:?}"
            ))),
            Ok(Err(panic)) => {
                // The panic's own words stay in the function's log: they may hold anything
                // the handler had in hand, and the job's owner reads its error.
                tracing::error!(panic = panic_text(&panic), "the handler panicked");
                Err(HandlerError::retryable(
                    "the handler panicked (its message is in the function's log, under this job's id)",
                ))
            }
            Ok(Ok(result)) => result,
        };
        let JobContext {
            tx, interrupted, ..
        } = ctx;
        if interrupted == Some(Interruption::FinishedElsewhere) {
            drop(tx);
            tracing::info!("another delivery finished this job while it ran; its result stands");
            return self.reload(job).await;
        }
        let outcome = match &result {
            Ok(_) => "succeeded",
            Err(HandlerError::Retryable(_)) => "retry",
            Err(_) => "failed",
        };
        self.metrics.handler(outcome, started.elapsed());
        let output = match result.and_then(|out| {
            let value = serde_json::to_value(out).map_err(|e| {
                HandlerError::permanent("Output cannot be serialized", e.to_string())
            })?;
            surge_contract::binding::storable(&value)
                .map_err(|e| HandlerError::permanent("Output cannot be stored", e))?;
            Ok(value)
        }) {
            Ok(output) => output,
            Err(HandlerError::Permanent { title, detail }) => {
                drop(tx);
                let problem = Problem::new(types::JOB_FAILED, title).with_detail(detail);
                return self.finish_with(job, JobState::Failed, problem).await;
            }
            Err(HandlerError::Rejected(problem)) => {
                drop(tx);
                return self.finish_with(job, JobState::Failed, *problem).await;
            }
            Err(HandlerError::Retryable(reason)) => {
                drop(tx);
                tracing::warn!(attempt = job.attempts, %reason, "attempt failed");
                return self.retry(job, retryable_problem(&reason)).await;
            }
        };
        let recorded = match tx {
            Some(tx) => self.succeed_in(tx, &job, &output).await,
            None => match serde_json::to_string(&output) {
                Ok(text) => self.groups.succeed(job.id, text).await,
                Err(e) => Err(sqlx::Error::Encode(Box::new(e))),
            },
        };
        match recorded {
            Ok(Some(finished_at)) => RunOutcome::Decided(JobRecord {
                state: JobState::Succeeded,
                result: Some(output),
                finished_at: Some(finished_at),
                ..job
            }),
            Ok(None) => {
                tracing::info!("another delivery finished this job first; its result stands");
                self.reload(job).await
            }
            // A value Postgres refuses fails the same way every time.
            Err(e) if is_data_error(&e) => {
                tracing::warn!(error = %e, "the database refused a handler's result");
                let problem = Problem::new(types::JOB_FAILED, "Output cannot be stored")
                    .with_detail("the database refused the result (the function's log says why)");
                self.finish_with(job, JobState::Failed, problem).await
            }
            // Committed or not, a redelivery finds out from the record.
            Err(e) => {
                tracing::warn!(error = %e, "recording the result failed; the job will be redelivered");
                RunOutcome::Retry
            }
        }
    }

    /// Records the result in the handler's transaction, with its writes.
    async fn succeed_in(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        job: &JobRecord,
        output: &Value,
    ) -> Result<store::Finished, sqlx::Error> {
        let finished = store::succeed(&mut tx, job.id, output).await?;
        if finished.is_some() {
            tx.commit().await?;
        }
        Ok(finished)
    }

    /// A retryable failure: keep its reason, and either hand the job back or, out of
    /// attempts, mark it dead.
    async fn retry(&self, job: JobRecord, problem: Problem) -> RunOutcome {
        if job.attempts >= self.max_attempts() {
            let reason = problem.detail.clone().unwrap_or_default();
            let dead = Problem::new(types::JOB_DEAD, "Job ran out of attempts")
                .with_detail(format!(
                    "failed {} attempts; the last: {reason}",
                    job.attempts
                ))
                .with_extension("attempts", job.attempts);
            return self.finish_with(job, JobState::Dead, dead).await;
        }
        let json = problem.to_json();
        if let Err(e) = self
            .db(|| store::record_attempt_error(&self.pool, job.id, &json))
            .await
        {
            tracing::warn!(error = %e, "keeping the attempt's error failed");
        }
        // Holding the delivery for the delay (bounded by prefetch) keeps a failing job from
        // spinning through the queue.
        tokio::time::sleep(self.settings.function.retry_delay(job.attempts)).await;
        RunOutcome::Retry
    }

    async fn finish_with(&self, job: JobRecord, state: JobState, problem: Problem) -> RunOutcome {
        let json = problem.to_json();
        match self
            .db(|| store::finish_with_error(&self.pool, job.id, state, &json))
            .await
        {
            Ok(Some(finished_at)) => {
                if state == JobState::Dead {
                    self.metrics.dead();
                }
                tracing::info!(
                    state = state.as_str(),
                    detail = problem.detail.as_deref().unwrap_or(""),
                    "job finished without a result"
                );
                RunOutcome::Decided(JobRecord {
                    state,
                    error: Some(json),
                    finished_at: Some(finished_at),
                    ..job
                })
            }
            Ok(None) => self.reload(job).await,
            Err(e) => {
                tracing::warn!(error = %e, "recording the failure failed; the job will be redelivered");
                RunOutcome::Retry
            }
        }
    }

    async fn reload(&self, job: JobRecord) -> RunOutcome {
        match self.db(|| store::load(&self.pool, job.id)).await {
            Ok(job) if job.state.is_terminal() => RunOutcome::Finished(job),
            Ok(_) => RunOutcome::Retry,
            Err(e) => {
                tracing::warn!(error = %e, "reading the job back failed; it will be redelivered");
                RunOutcome::Retry
            }
        }
    }

    /// Publishes the completion; only once it is confirmed may the message be settled. A
    /// failed publish hands the message back: the redelivery republishes from the record.
    async fn complete(
        &self,
        channel: &Channel,
        job: &JobRecord,
        reply_to: Option<&str>,
    ) -> Settlement {
        let timeout = self.settings.broker.publish_timeout();
        let started = std::time::Instant::now();
        let published = completion::publish(
            channel,
            &self.topology,
            &self.name,
            job,
            reply_to,
            self.sender.as_deref(),
            timeout,
        )
        .await;
        match published {
            Ok(()) => {
                self.metrics.completion(started.elapsed());
                Settlement::Done
            }
            Err(e) => {
                tracing::warn!(error = %e, "publishing the completion failed; the job will be redelivered");
                Settlement::Retry
            }
        }
    }

    /// Moves a message that is not a valid job to the dead-letter queue with its reason, then
    /// acks it: never dropped, never redelivered in a loop.
    async fn dead_letter(&self, channel: &Channel, mut delivery: Delivery, reason: String) {
        tracing::warn!(%reason, function = %self.name, "dead-lettering a message that is not a valid job");
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        headers.insert(
            DEAD_REASON_HEADER.into(),
            AMQPValue::LongString(LongString::from(reason)),
        );
        let message = AmqpMessage {
            properties: delivery.properties.clone().with_headers(headers),
            // The broker keeps its own copy until the ack or nack below.
            body: std::mem::take(&mut delivery.data),
        };
        let published = publish_confirmed(
            channel,
            &self.topology.dead_exchange(),
            self.name.as_str(),
            &message,
            true,
            self.settings.broker.publish_timeout(),
        )
        .await;
        match published {
            Ok(()) => {
                self.metrics.dead();
                ack(delivery).await;
            }
            Err(e) => {
                tracing::error!(error = %e, "dead-lettering failed; handing the message back");
                tokio::time::sleep(Duration::from_secs(1)).await;
                nack(delivery).await;
            }
        }
    }

    /// Retries a database operation while the database is unreachable, with backoff; other
    /// errors are returned at once.
    async fn db<T, Fut>(&self, mut op: impl FnMut() -> Fut) -> Result<T, sqlx::Error>
    where
        Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
    {
        let mut delays = backoff(Duration::from_millis(50), Duration::from_secs(5)).build();
        loop {
            match op().await {
                Err(e) if is_transient(&e) => {
                    let delay = delays.next().unwrap_or_default();
                    tracing::warn!(error = %e, ?delay, "database unavailable; retrying");
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }

    fn max_attempts(&self) -> i32 {
        i32::try_from(self.settings.jobs.max_attempts).unwrap_or(i32::MAX)
    }
}

/// Errors that say the database is unreachable or restarting, not that the statement is wrong.
fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P0x: admin/crash shutdown; 40001/40P01: retry;
            // 55P03: lock_not_available (another delivery of the same job holds its row).
            c.starts_with("08")
                || c.starts_with("57P0")
                || c == "40001"
                || c == "40P01"
                || c == "55P03"
        }),
        _ => false,
    }
}

/// Errors about the values sent (SQLSTATE classes 22, data exception, and 23, integrity
/// constraint violation): sending the same message again cannot succeed.
fn is_data_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| c.starts_with("22") || c.starts_with("23")))
}

fn retryable_problem(reason: &str) -> Problem {
    Problem::new(types::JOB_FAILED, "Attempt failed").with_detail(reason.to_owned())
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

async fn ack(delivery: Delivery) {
    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
        // The broker redelivers it; the record answers the redelivery.
        tracing::warn!(error = %e, "ack failed");
    }
}

async fn nack(delivery: Delivery) {
    let requeue = BasicNackOptions {
        requeue: true,
        ..Default::default()
    };
    if let Err(e) = delivery.acker.nack(requeue).await {
        tracing::warn!(error = %e, "nack failed; the broker will redeliver when the channel closes");
    }
}
