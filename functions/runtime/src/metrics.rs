//! A function's metrics (`/metrics` on its HTTP port): jobs in flight, the stages of a job's
//! latency (queue wait, handler, completion, end to end), outcomes, redeliveries and dead jobs.
//! Every series carries the function's name, so one dashboard covers every function.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use surge_contract::job::{FunctionName, JobState};
use surge_contract::metrics::{
    Counter, FunctionLabel, FunctionState, ProcessMetrics, Timings, seconds, timings,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabel {
    function: String,
    /// `succeeded`, `failed` (permanently) or `retry`.
    outcome: &'static str,
}

#[derive(Debug)]
pub struct RuntimeMetrics {
    function: FunctionLabel,
    pub process: ProcessMetrics,
    in_flight: Family<FunctionLabel, Gauge>,
    queue_wait: Timings<FunctionLabel>,
    handler: Timings<HandlerLabel>,
    completion: Timings<FunctionLabel>,
    end_to_end: Timings<FunctionState>,
    finished: Family<FunctionState, Counter>,
    redeliveries: Family<FunctionLabel, Counter>,
    dead: Family<FunctionLabel, Counter>,
}

/// Counts a job in flight until dropped (a clone of the gauge shares its value).
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl RuntimeMetrics {
    pub fn register(function: &FunctionName, registry: &mut Registry) -> Self {
        let metrics = Self {
            function: FunctionLabel {
                function: function.to_string(),
            },
            process: ProcessMetrics::register(registry),
            in_flight: Family::default(),
            queue_wait: timings(),
            handler: timings(),
            completion: timings(),
            end_to_end: timings(),
            finished: Family::default(),
            redeliveries: Family::default(),
            dead: Family::default(),
        };
        registry.register(
            "surge_jobs_in_flight",
            "Jobs this process is running",
            metrics.in_flight.clone(),
        );
        registry.register(
            "surge_job_queue_wait_seconds",
            "From a job's creation to its first claim by a worker",
            metrics.queue_wait.clone(),
        );
        registry.register(
            "surge_job_handler_seconds",
            "One run of the handler, by outcome (succeeded, failed, retry)",
            metrics.handler.clone(),
        );
        registry.register(
            "surge_job_completion_seconds",
            "Publishing a finished job's completion until confirmed",
            metrics.completion.clone(),
        );
        registry.register(
            "surge_job_end_to_end_seconds",
            "From a job's creation to its recorded end, by final state",
            metrics.end_to_end.clone(),
        );
        registry.register(
            "surge_jobs_finished",
            "Jobs finished by this process, by final state",
            metrics.finished.clone(),
        );
        registry.register(
            "surge_job_redeliveries",
            "Deliveries of a job that had been delivered before",
            metrics.redeliveries.clone(),
        );
        registry.register(
            "surge_jobs_dead",
            "Jobs that ran out of attempts, and messages that were not valid jobs",
            metrics.dead.clone(),
        );
        // Present from the start, so a rate over them is 0 rather than absent.
        let _ = metrics.in_flight.get_or_create(&metrics.function);
        let _ = metrics.redeliveries.get_or_create(&metrics.function);
        let _ = metrics.dead.get_or_create(&metrics.function);
        metrics
    }

    pub fn in_flight(&self) -> InFlight {
        let gauge = self.in_flight.get_or_create(&self.function).clone();
        gauge.inc();
        InFlight(gauge)
    }

    pub fn queue_wait(&self, waited: Duration) {
        self.queue_wait
            .get_or_create(&self.function)
            .observe(seconds(waited));
    }

    pub fn handler(&self, outcome: &'static str, took: Duration) {
        self.handler
            .get_or_create(&HandlerLabel {
                function: self.function.function.clone(),
                outcome,
            })
            .observe(seconds(took));
    }

    pub fn completion(&self, took: Duration) {
        self.completion
            .get_or_create(&self.function)
            .observe(seconds(took));
        self.process.confirmed("events", took);
    }

    /// A job this delivery finished, `since_created` after it was accepted.
    pub fn finished(&self, state: JobState, since_created: Option<Duration>) {
        let label = FunctionState {
            function: self.function.function.clone(),
            state: state.as_str().to_owned(),
        };
        self.finished.get_or_create(&label).inc();
        if let Some(took) = since_created {
            self.end_to_end.get_or_create(&label).observe(seconds(took));
        }
    }

    pub fn redelivered(&self) {
        self.redeliveries.get_or_create(&self.function).inc();
    }

    pub fn dead(&self) {
        self.dead.get_or_create(&self.function).inc();
    }
}
