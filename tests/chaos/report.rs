//! What the database says after the run, held against what the clients were told: every
//! accepted job must end, none may lose its effect or have it twice.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use sqlx::PgPool;

use crate::load::Answers;

/// The counts the run is judged by.
#[derive(Debug, Default)]
pub struct Counts {
    /// Keys the clients were answered `2xx` for.
    pub accepted: usize,
    /// Jobs recorded (some may have had no answer: a gateway killed after the INSERT).
    pub recorded: i64,
    pub by_state: Vec<(String, i64)>,
    /// Jobs still `queued` or `running` after the settle time.
    pub never_finished: i64,
    /// Accepted jobs the database does not have, or that another key's answer named.
    pub lost: usize,
    /// Jobs whose `sleep_run` effect happened more than once.
    pub doubled: i64,
    /// Succeeded jobs without their effect.
    pub effects_missing: i64,
    /// Keys given up on (never answered 2xx).
    pub unanswered: usize,
    pub retried: u64,
    pub refused: usize,
}

impl Counts {
    pub fn bad(&self) -> bool {
        self.never_finished > 0
            || self.lost > 0
            || self.doubled > 0
            || self.effects_missing > 0
            || self.unanswered > 0
            || self.refused > 0
    }
}

/// Waits until no job is queued or running (at most `limit`); the time it took.
pub async fn settle(pool: &PgPool, limit: Duration) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM job WHERE state IN ('queued', 'running')")
                .fetch_one(pool)
                .await?;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(started.elapsed())
}

pub async fn count(pool: &PgPool, answers: &Answers) -> anyhow::Result<Counts> {
    let by_state: Vec<(String, i64)> =
        sqlx::query_as("SELECT state::text, count(*) FROM job GROUP BY 1 ORDER BY 1")
            .fetch_all(pool)
            .await?;
    let recorded = by_state.iter().map(|(_, n)| n).sum();
    let never_finished = by_state
        .iter()
        .filter(|(s, _)| s == "queued" || s == "running")
        .map(|(_, n)| n)
        .sum();
    let keys: HashMap<String, String> = sqlx::query_as::<_, (String, String)>(
        "SELECT idempotency_key, id::text FROM job WHERE idempotency_key IS NOT NULL",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let lost = answers
        .accepted
        .iter()
        .filter(|(key, id)| keys.get(*key) != Some(*id))
        .count();
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM sleep_run GROUP BY job_id HAVING count(*) > 1) d",
    )
    .fetch_one(pool)
    .await?;
    let effects_missing: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job j WHERE j.state = 'succeeded'
           AND NOT EXISTS (SELECT 1 FROM sleep_run r WHERE r.job_id = j.id)",
    )
    .fetch_one(pool)
    .await?;
    Ok(Counts {
        accepted: answers.accepted.len(),
        recorded,
        by_state,
        never_finished,
        lost,
        doubled,
        effects_missing,
        unanswered: answers.unanswered.len(),
        retried: answers.retried,
        refused: answers.refused.len(),
    })
}

/// One fault's line of the report.
#[derive(Debug)]
pub struct Healing {
    pub fault: String,
    pub accepted_by_then: usize,
    pub healed: Option<Duration>,
}

pub fn render(healing: &[Healing], counts: &Counts, settled: Duration, extra: &[String]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| fault | jobs accepted by then | jobs flowing again after |"
    );
    let _ = writeln!(out, "|---|---:|---:|");
    for h in healing {
        let healed = h.healed.map_or_else(
            || "NOT HEALED".to_owned(),
            |d| format!("{:.2} s", d.as_secs_f64()),
        );
        let _ = writeln!(out, "| {} | {} | {healed} |", h.fault, h.accepted_by_then);
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "| count | jobs |");
    let _ = writeln!(out, "|---|---:|");
    let states = counts
        .by_state
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (what, n) in [
        ("accepted (answered 2xx)", counts.accepted.to_string()),
        ("recorded", format!("{} ({states})", counts.recorded)),
        (
            "never finished (queued or running at the end)",
            counts.never_finished.to_string(),
        ),
        (
            "lost (accepted, not recorded as answered)",
            counts.lost.to_string(),
        ),
        (
            "effects doubled (sleep_run > 1)",
            counts.doubled.to_string(),
        ),
        (
            "effects missing (succeeded, no sleep_run)",
            counts.effects_missing.to_string(),
        ),
        ("keys never answered 2xx", counts.unanswered.to_string()),
        (
            "requests retried (connection error or 5xx)",
            counts.retried.to_string(),
        ),
        ("refused (4xx)", counts.refused.to_string()),
    ] {
        let _ = writeln!(out, "| {what} | {n} |");
    }
    let _ = writeln!(
        out,
        "\nsettled {:.1} s after the load stopped",
        settled.as_secs_f64()
    );
    for line in extra {
        let _ = writeln!(out, "{line}");
    }
    out
}
