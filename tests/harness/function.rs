//! A function as a real process, spawned from its built binary with the test's settings.

use std::path::PathBuf;
use std::process::Stdio;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// The directory of the workspace's binaries (next to the test executable's `deps/`), or
/// `SURGE_BIN_DIR`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SURGE_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    if dir.ends_with("deps") {
        dir.parent().expect("target dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// Where spawned processes write their logs: `target/test-logs/`.
pub fn log_dir() -> PathBuf {
    let dir = bin_dir().join("test-logs");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// A running function process; killed when dropped.
#[derive(Debug)]
pub struct FunctionProcess {
    pub name: String,
    pub log: PathBuf,
    child: Child,
}

impl FunctionProcess {
    /// Spawns `surge-<function>` with `env` (on top of a clean `SURGE_*` environment).
    pub fn spawn(function: &str, env: &[(String, String)], log_name: &str) -> Self {
        let binary = bin_dir().join(format!("surge-{function}"));
        Self::spawn_binary(&binary, &[], env, log_name)
    }

    /// Spawns any binary the same way (the gateway, a benchmark's second process).
    pub fn spawn_binary(
        binary: &std::path::Path,
        args: &[&str],
        env: &[(String, String)],
        log_name: &str,
    ) -> Self {
        assert!(
            binary.exists(),
            "{} is missing: build the workspace binaries first (`cargo build --workspace --bins`)",
            binary.display()
        );
        let function = binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let log = log_dir().join(format!("{log_name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let mut command = Command::new(binary);
        command.args(args);
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("SURGE_")) {
            command.env_remove(key);
        }
        command
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .kill_on_drop(true);
        let child = command.spawn().expect("spawn function");
        Self {
            name: function,
            log,
            child,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id().expect("running")).expect("pid"))
    }

    /// What KEDA's scale-down does.
    pub fn sigterm(&self) {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
    }

    /// A crash: no drain, no goodbye.
    pub fn sigkill(&self) {
        kill(self.pid(), Signal::SIGKILL).expect("SIGKILL");
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> std::process::ExitStatus {
        tokio::time::timeout(timeout, self.child.wait())
            .await
            .expect("the process exits in time")
            .expect("wait")
    }

    /// Kills the process and waits until it is gone (5 s at most), for a synchronous `Drop`
    /// that must not touch the process's files while it still writes them.
    pub fn kill_and_reap(&mut self) {
        let _ = self.child.start_kill();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(5)),
                Ok(Some(_)) | Err(_) => return,
            }
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
