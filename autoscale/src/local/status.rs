//! What the local scaler is doing, per function: shown live in the terminal and served as JSON.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// One function's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FunctionStatus {
    pub function: String,
    pub queue: String,
    /// Replicas serving (started and not stopping).
    pub replicas: u32,
    /// Replicas draining after SIGTERM.
    pub stopping: u32,
    pub min_replicas: u32,
    pub max_replicas: u32,
    /// Ready (queued) messages, as last read.
    pub ready: u64,
    /// Unacknowledged (in-flight) messages, as last read.
    pub unacked: u64,
    /// Whether the gateway's push scaler says active.
    pub pushed_active: bool,
    /// Scaling changes, most recent first (at most 20); the first entry may also be the
    /// latest unchanged decision, so its reason is always current.
    pub decisions: VecDeque<DecisionRecord>,
}

/// One scaling decision.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord {
    /// RFC 3339 UTC.
    pub at: String,
    pub replicas: u32,
    pub changed: bool,
    pub trigger: &'static str,
    pub reason: String,
}

/// The shared view: written by the function loops, read by the terminal and HTTP.
#[derive(Debug, Clone, Default)]
pub struct Status(Arc<Mutex<BTreeMap<String, FunctionStatus>>>);

impl Status {
    pub fn update(&self, function: &str, change: impl FnOnce(&mut FunctionStatus)) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        change(map.entry(function.to_owned()).or_default());
    }

    pub fn snapshot(&self) -> Vec<FunctionStatus> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

/// A table of the current state, for the terminal.
pub fn render(functions: &[FunctionStatus]) -> String {
    let mut out = format!(
        "{:<12} {:>8} {:>6} {:>6} {:>8} {:>5}  last decision\n",
        "function", "replicas", "ready", "unack", "stopping", "push"
    );
    for f in functions {
        let last = f
            .decisions
            .front()
            .map(|d| {
                format!(
                    "{} {} ({})",
                    d.at.get(11..19).unwrap_or(&d.at),
                    d.reason,
                    d.trigger
                )
            })
            .unwrap_or_default();
        out += &format!(
            "{:<12} {:>3}/{:<4} {:>6} {:>6} {:>8} {:>5}  {last}\n",
            f.function,
            f.replicas,
            f.max_replicas,
            f.ready,
            f.unacked,
            f.stopping,
            if f.pushed_active { "on" } else { "-" },
        );
    }
    out
}
