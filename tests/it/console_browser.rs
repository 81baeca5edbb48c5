//! The operations console as a person uses it, in Debian's headless Chromium driven by
//! playwright-core (`tests/idp/console.mjs`): log in through tenant `a`'s real OpenID
//! provider as an admin, submit a job and watch it complete, watch a job die, fix the
//! function, replay the job from the dead letters and watch it succeed — its effect once.
//! Screenshots are kept in the test logs folder.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use surge_tests::{TestApp, TestAppBuilder, idp_dir, log_dir};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

/// `tests/idp/console.mjs` driving Debian's Chromium through the console of `app` as `user`
/// of `tenant`: it prints one JSON line per step reached, and goes on past the dead job once
/// told the cause is fixed.
struct ConsoleDriver {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    stderr: tokio::process::ChildStderr,
}

impl ConsoleDriver {
    fn start(app: &TestApp, tenant: &str, user: &str, shots: &std::path::Path) -> Self {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            std::path::Path::new(&chromium).exists(),
            "{chromium} is missing: `bash scripts/setup.sh` installs Debian's chromium"
        );
        let mut child = tokio::process::Command::new("node")
            .arg(idp_dir().join("console.mjs"))
            .arg(app.url(""))
            .arg(tenant)
            .arg(user)
            .arg(shots)
            .env("CHROMIUM", &chromium)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("node");
        Self {
            stdin: child.stdin.take().unwrap(),
            lines: BufReader::new(child.stdout.take().unwrap()).lines(),
            stderr: child.stderr.take().unwrap(),
            child,
        }
    }

    /// The next step the browser reached, which must be `name` (within 90 s).
    async fn step(&mut self, name: &str) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("the browser did not reach {name:?} within 90 s"))
            .expect("stdout");
        let Some(line) = line else {
            let mut err = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut self.stderr, &mut err).await;
            panic!("the browser stopped before {name:?}: {err}");
        };
        let step: Value = serde_json::from_str(&line).expect("a JSON step");
        assert_eq!(step["step"], name, "{step}");
        step
    }

    /// Tells the browser the dead job's cause is fixed.
    async fn fixed(&mut self) {
        self.stdin.write_all(b"fixed\n").await.unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// Waits for the browser to close, successfully.
    async fn finish(mut self) {
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the browser closes")
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

#[tokio::test]
async fn a_person_logs_in_runs_a_job_and_replays_a_dead_one_in_a_real_browser() {
    let mut app = TestAppBuilder {
        identity: true,
        max_attempts: 2,
        scaler_poll_ms: Some(300),
        ..Default::default()
    }
    .spawn()
    .await;
    let _echo = app.start_function("echo", &[]).await;
    // Every attempt outlives the handler timeout: the job dies.
    let broken = app
        .start_function("sleep", &[("SURGE_FUNCTION__TIMEOUT_MS", "300")])
        .await;
    let shots = log_dir().join(format!("console-{}", surge_tests::unique_name()));
    let mut browser = ConsoleDriver::start(&app, "a", "alice", &shots);

    let logged_in = browser.step("logged-in").await;
    assert!(
        logged_in["who"]
            .as_str()
            .unwrap()
            .contains("alice@example.test"),
        "{logged_in}"
    );
    let completed = browser.step("completed").await;
    let echo_job = completed["job"].as_str().unwrap().to_owned();
    let dead = browser.step("dead").await;
    let doomed = dead["job"].as_str().unwrap().to_owned();
    assert!(
        dead["reason"].as_str().unwrap().contains("attempt"),
        "the reason it died is shown: {dead}"
    );
    assert_eq!(app.job_state(&doomed).await.as_deref(), Some("dead"));

    // The cause is fixed: the function with its default timeout.
    drop(broken);
    let _fixed = app.start_function("sleep", &[]).await;
    browser.fixed().await;

    let replayed = browser.step("replayed").await;
    assert_eq!(replayed["job"], doomed.as_str());
    assert_eq!(replayed["problems"], Value::Array(vec![]), "{replayed}");
    assert_eq!(
        replayed["foreign"],
        Value::Array(vec![]),
        "every request after the login went to the gateway: {replayed}"
    );
    let sleep = &replayed["figures"]["sleep"];
    assert_eq!(sleep["dead"], "0", "{replayed}");
    assert_eq!(sleep["replicas"], "1", "{replayed}");
    assert!(
        sleep["p50"].as_str().unwrap().ends_with(" s"),
        "latency of a 1 s job shown in seconds: {replayed}"
    );
    // The job submitted through the form and the one the page saw arrive from elsewhere.
    assert_eq!(replayed["figures"]["echo"]["succeeded"], "2", "{replayed}");

    // What the page showed is what happened.
    assert_eq!(app.job_state(&echo_job).await.as_deref(), Some("succeeded"));
    assert_eq!(app.job_state(&doomed).await.as_deref(), Some("succeeded"));
    assert_eq!(app.sleep_runs(&doomed).await, 1, "the effect happened once");
    browser.step("logged-out").await;
    assert_eq!(
        app.count("auth WHERE kind = 'login' AND state = 'active'")
            .await,
        0,
        "the console's login token was revoked"
    );
    assert_eq!(
        app.count("auth WHERE kind = 'login' AND state = 'revoked'")
            .await,
        1
    );
    browser.finish().await;
    for shot in ["dead", "replayed"] {
        let path = format!("{}-{shot}.png", shots.display());
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "{path} kept"
        );
    }
}
