//! A PostgreSQL primary with a streaming replica, both of one test's own (made by
//! `scripts/postgres-nodes.sh` on free loopback ports), so a test can pause the replica's
//! replay or stop it without touching the machine's server. Removed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The two servers' base URLs (`postgres://postgres@127.0.0.1:<port>`).
pub struct ReplicatedPostgres {
    dir: PathBuf,
    pub primary: String,
    pub replica: String,
}

fn script(args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-nodes.sh");
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .expect("run scripts/postgres-nodes.sh");
    assert!(
        out.status.success(),
        "postgres-nodes.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl ReplicatedPostgres {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("surge-test-pg-{}", crate::unique_name()));
        let (p, r) = (crate::free_addr().port(), crate::free_addr().port());
        let d = dir.clone();
        tokio::task::spawn_blocking(move || {
            let path = d.to_str().expect("utf-8 path").to_owned();
            script(&["start", &path, &p.to_string()]);
            script(&["replica", &path, &r.to_string()]);
        })
        .await
        .expect("start the servers");
        Self {
            dir,
            primary: format!("postgres://postgres@127.0.0.1:{p}"),
            replica: format!("postgres://postgres@127.0.0.1:{r}"),
        }
    }

    /// Stops the replica's replay: it answers, and falls behind.
    pub async fn pause_replay(&self, database: &str) {
        self.on_replica(database, "SELECT pg_wal_replay_pause()")
            .await;
    }

    pub async fn resume_replay(&self, database: &str) {
        self.on_replica(database, "SELECT pg_wal_replay_resume()")
            .await;
    }

    async fn on_replica(&self, database: &str, sql: &'static str) {
        let pool = sqlx::PgPool::connect(&format!("{}/{database}", self.replica))
            .await
            .expect("connect to the replica");
        sqlx::query(sql).execute(&pool).await.expect(sql);
        pool.close().await;
    }

    /// Stops the replica's server (fast shutdown).
    pub fn stop_replica(&self) {
        script(&["stop", self.dir.to_str().expect("utf-8 path"), "replica"]);
    }
}

impl Drop for ReplicatedPostgres {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.to_str() {
            let _ = Command::new("bash")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres-nodes.sh"))
                .args(["stop", dir])
                .output();
        }
    }
}
