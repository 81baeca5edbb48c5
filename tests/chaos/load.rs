//! The load: concurrent clients submitting asynchronous jobs, each with its own
//! `Idempotency-Key`, as careful clients do — on a connection error or a `5xx` the same key is
//! sent again (to the next gateway), until a `2xx` says the job is accepted. What every key
//! was answered with is kept, to hold it against the database at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// What the clients were told: key → job id.
#[derive(Debug, Default)]
pub struct Answers {
    pub accepted: HashMap<String, String>,
    /// Keys given up on at the end (never answered `2xx` within the last attempts' window).
    pub unanswered: Vec<String>,
    /// Requests answered with a connection error or a `5xx`, then sent again.
    pub retried: u64,
    /// Answers other than `2xx` / `5xx` (none are expected).
    pub refused: Vec<String>,
}

pub struct Load {
    stop: CancellationToken,
    answers: Arc<Mutex<Answers>>,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

/// One client's way of calling.
#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    pub gateways: Vec<String>,
    pub key: String,
}

impl Client {
    /// Submits one job under `key` until a gateway accepts it, or `give_up` passes; the job
    /// id, or `None`.
    pub async fn submit(
        &self,
        function: &str,
        input: &serde_json::Value,
        key: &str,
        first: usize,
        give_up: tokio::time::Instant,
        answers: &Mutex<Answers>,
    ) -> Option<String> {
        let mut attempt = first;
        loop {
            let gateway = &self.gateways[attempt % self.gateways.len()];
            let sent = self
                .http
                .post(format!("{gateway}/jobs/{function}"))
                .header("x-api-key", &self.key)
                .header("idempotency-key", key)
                .header("prefer", "respond-async")
                .json(input)
                .send()
                .await;
            match sent {
                Ok(r) if r.status().is_success() => {
                    let body: serde_json::Value = r.json().await.ok()?;
                    return body["id"].as_str().map(str::to_owned);
                }
                Ok(r) if !r.status().is_server_error() => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    lock(answers)
                        .refused
                        .push(format!("{key}: {status} {text}"));
                    return None;
                }
                // A connection error or a 5xx: the same key again, to the next gateway.
                _ => lock(answers).retried += 1,
            }
            if tokio::time::Instant::now() >= give_up {
                return None;
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Load {
    /// `clients` clients, each submitting a `sleep` job every `pace`.
    pub fn start(client: Client, clients: usize, pace: Duration, job_ms: u64) -> Self {
        let stop = CancellationToken::new();
        let answers = Arc::new(Mutex::new(Answers::default()));
        let clients = (0..clients)
            .map(|n| {
                let (client, stop, answers) = (client.clone(), stop.clone(), answers.clone());
                tokio::spawn(async move {
                    let input = serde_json::json!({ "ms": job_ms });
                    let mut every = tokio::time::interval(pace);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    for seq in 0u64.. {
                        if stop.run_until_cancelled(every.tick()).await.is_none() {
                            return;
                        }
                        let key = format!("client{n}-{seq}");
                        // A key once sent is seen through, even past the stop: at most a
                        // minute, the longest a gateway restart plus a lease can take.
                        let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
                        match client
                            .submit("sleep", &input, &key, n, give_up, &answers)
                            .await
                        {
                            Some(id) => {
                                lock(&answers).accepted.insert(key, id);
                            }
                            None => lock(&answers).unanswered.push(key),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            answers,
            clients,
        }
    }

    /// Jobs accepted so far.
    pub fn accepted(&self) -> usize {
        lock(&self.answers).accepted.len()
    }

    /// Stops the clients (each sees its current key through) and returns what they were told.
    pub async fn stop(self) -> Answers {
        self.stop.cancel();
        for client in self.clients {
            let _ = client.await;
        }
        std::mem::take(&mut *lock(&self.answers))
    }
}

pub fn lock(answers: &Mutex<Answers>) -> std::sync::MutexGuard<'_, Answers> {
    answers.lock().unwrap_or_else(|p| p.into_inner())
}
