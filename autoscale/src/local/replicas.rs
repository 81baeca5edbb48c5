//! The processes of one function: started like pods, stopped like pods (SIGTERM, then SIGKILL
//! once `terminationGracePeriodSeconds` has passed). Scale-down only ever sends SIGTERM; the
//! runtime's drain finishes in-flight jobs first.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// One replica process.
#[derive(Debug)]
struct Replica {
    child: Child,
    /// When it was sent SIGTERM; `None` while it serves.
    stopping_since: Option<Instant>,
}

/// The replicas of one function.
#[derive(Debug)]
pub struct Replicas {
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_dir: PathBuf,
    grace: Duration,
    replicas: Vec<Replica>,
    started: u64,
}

impl Replicas {
    pub fn new(
        binary: PathBuf,
        env: Vec<(String, String)>,
        log_dir: PathBuf,
        grace: Duration,
    ) -> Self {
        Self {
            binary,
            env,
            log_dir,
            grace,
            replicas: Vec::new(),
            started: 0,
        }
    }

    /// Replicas that serve (not stopping).
    pub fn serving(&self) -> u32 {
        let n = self
            .replicas
            .iter()
            .filter(|r| r.stopping_since.is_none())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Replicas draining after SIGTERM.
    pub fn stopping(&self) -> u32 {
        let n = self
            .replicas
            .iter()
            .filter(|r| r.stopping_since.is_some())
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Starts or stops replicas until `target` serve. Newest stop first.
    pub fn scale_to(&mut self, target: u32) -> std::io::Result<()> {
        while self.serving() < target {
            self.start()?;
        }
        while self.serving() > target {
            let Some(replica) = self
                .replicas
                .iter_mut()
                .rev()
                .find(|r| r.stopping_since.is_none())
            else {
                break;
            };
            signal(&replica.child, Signal::SIGTERM);
            replica.stopping_since = Some(Instant::now());
        }
        Ok(())
    }

    fn start(&mut self) -> std::io::Result<()> {
        self.started += 1;
        let name = self
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = std::fs::File::create(self.log_dir.join(format!("{name}-{}.log", self.started)))?;
        let child = Command::new(&self.binary)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        self.replicas.push(Replica {
            child,
            stopping_since: None,
        });
        Ok(())
    }

    /// Forgets replicas that exited; SIGKILLs those still draining past the grace period.
    /// Returns how many serving replicas exited unexpectedly (crashed).
    pub fn reap(&mut self) -> u32 {
        let mut crashed = 0;
        let grace = self.grace;
        self.replicas.retain_mut(|r| {
            if let Ok(Some(status)) = r.child.try_wait() {
                if r.stopping_since.is_none() {
                    tracing::warn!(%status, "a replica exited on its own");
                    crashed += 1;
                }
                return false;
            }
            if r.stopping_since.is_some_and(|t| t.elapsed() > grace) {
                tracing::warn!(
                    ?grace,
                    "a replica outlived terminationGracePeriodSeconds: SIGKILL"
                );
                signal(&r.child, Signal::SIGKILL);
            }
            true
        });
        crashed
    }

    /// Stops everything: SIGTERM, then waits up to the grace period, then SIGKILL.
    pub async fn stop_all(&mut self) {
        self.scale_to(0).ok();
        let deadline = Instant::now() + self.grace;
        while !self.replicas.is_empty() && Instant::now() < deadline {
            self.reap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for r in &mut self.replicas {
            let _ = r.child.start_kill();
        }
        self.replicas.clear();
    }
}

fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}
