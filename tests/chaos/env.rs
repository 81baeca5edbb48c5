//! The fault run's own services: a PostgreSQL server and one RabbitMQ node (or a cluster of
//! three) of its own, on loopback, made with the project's scripts and removed at the end, so
//! restarting them disturbs nothing else on the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// One RabbitMQ node of the run.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub amqp_port: u16,
    pub management_port: u16,
}

impl Node {
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    fn management(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/api{path}", self.management_port)
    }
}

/// The services; stopped and removed when dropped.
pub struct Services {
    scripts: PathBuf,
    pg_dir: PathBuf,
    rabbit_dir: PathBuf,
    pub database_url: String,
    pub nodes: Vec<Node>,
    http: reqwest::Client,
}

impl Services {
    /// Starts Postgres and `nodes` RabbitMQ nodes (clustered when more than one).
    pub async fn start(nodes: usize) -> anyhow::Result<Self> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts");
        let run = format!("surge-chaos-{}", std::process::id());
        let pg_dir = std::env::temp_dir().join(format!("{run}-pg"));
        let rabbit_dir = std::env::temp_dir().join(format!("{run}-rabbitmq"));
        let pg_port = free_port()?;
        let out = script(
            &scripts,
            "postgres-nodes.sh",
            &["start", path(&pg_dir), &pg_port.to_string()],
        )?;
        let database_url = out
            .lines()
            .find_map(|l| l.strip_prefix("primary "))
            .context("postgres-nodes.sh said no URL")?
            .to_owned();
        let base = free_base(nodes)?;
        let out = script(
            &scripts,
            "rabbitmq-nodes.sh",
            &[
                "start",
                path(&rabbit_dir),
                &nodes.to_string(),
                &base.to_string(),
            ],
        )?;
        let nodes = out
            .lines()
            .filter_map(|l| {
                let mut words = l.strip_prefix("node ")?.split_whitespace();
                Some(Node {
                    name: words.next()?.to_owned(),
                    amqp_port: words.next()?.parse().ok()?,
                    management_port: words.next()?.parse().ok()?,
                })
            })
            .collect::<Vec<_>>();
        if nodes.is_empty() {
            bail!("rabbitmq-nodes.sh started no node: {out}");
        }
        Ok(Self {
            scripts,
            pg_dir,
            rabbit_dir,
            database_url: format!("{database_url}/surge"),
            nodes,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// `broker.url` for Surge's processes: every node.
    pub fn broker_url(&self) -> String {
        self.nodes
            .iter()
            .map(Node::amqp_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A fast restart of the database server.
    pub fn restart_postgres(&self) -> anyhow::Result<()> {
        script(
            &self.scripts,
            "postgres-nodes.sh",
            &["restart", path(&self.pg_dir)],
        )
        .map(drop)
    }

    /// Stops the broker application of node `i` (the Erlang node stays), as an operator's
    /// `rabbitmqctl stop_app` does.
    pub fn stop_app(&self, i: usize) -> anyhow::Result<()> {
        rabbitmqctl(&self.nodes[i].name, "stop_app")
    }

    pub fn start_app(&self, i: usize) -> anyhow::Result<()> {
        rabbitmqctl(&self.nodes[i].name, "start_app")?;
        rabbitmqctl(&self.nodes[i].name, "await_startup")
    }

    /// SIGKILL of node `i`: a crashed broker node.
    pub fn kill_node(&self, i: usize) -> anyhow::Result<()> {
        script(
            &self.scripts,
            "rabbitmq-nodes.sh",
            &["kill", path(&self.rabbit_dir), &(i + 1).to_string()],
        )
        .map(drop)
    }

    pub fn revive_node(&self, i: usize) -> anyhow::Result<()> {
        script(
            &self.scripts,
            "rabbitmq-nodes.sh",
            &["revive", path(&self.rabbit_dir), &(i + 1).to_string()],
        )
        .map(drop)
    }

    /// Closes every client connection of every node (as a network blip or an operator
    /// would), through `rabbitmqctl`, which sees connections at once (the management API's
    /// list lags by its statistics interval).
    /// A node that is down (killed by another fault) has none to close.
    pub fn close_connections(&self) -> anyhow::Result<()> {
        let mut closed_on = 0;
        for node in &self.nodes {
            let out = Command::new("rabbitmqctl")
                .args([
                    "-q",
                    "-n",
                    &node.name,
                    "close_all_connections",
                    "surge-chaos",
                ])
                .output()
                .context("running rabbitmqctl")?;
            closed_on += usize::from(out.status.success());
        }
        if closed_on == 0 {
            bail!("no broker node answered rabbitmqctl close_all_connections");
        }
        Ok(())
    }

    /// The index of the node that leads `queue` (a quorum queue).
    pub async fn leader_of(&self, queue: &str) -> anyhow::Result<usize> {
        let node = self.live_node().await?;
        let info: serde_json::Value = self
            .http
            .get(node.management(&format!("/queues/%2F/{queue}")))
            .basic_auth("guest", Some("guest"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let leader = info["leader"]
            .as_str()
            .or_else(|| info["node"].as_str())
            .context("the queue has no leader")?;
        self.nodes
            .iter()
            .position(|n| n.name == leader)
            .with_context(|| format!("the leader {leader} is no node of the run"))
    }

    /// Ready messages in `queue`, as the broker says.
    pub async fn ready_messages(&self, queue: &str) -> anyhow::Result<u64> {
        let node = self.live_node().await?;
        let info: serde_json::Value = self
            .http
            .get(node.management(&format!("/queues/%2F/{queue}?columns=messages_ready")))
            .basic_auth("guest", Some("guest"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        info["messages_ready"]
            .as_u64()
            .context("no messages_ready figure")
    }

    /// A node whose management API answers.
    async fn live_node(&self) -> anyhow::Result<&Node> {
        for node in &self.nodes {
            let up = self
                .http
                .get(node.management("/overview"))
                .basic_auth("guest", Some("guest"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(node);
            }
        }
        bail!("no broker node's management API answers")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        let _ = script(
            &self.scripts,
            "rabbitmq-nodes.sh",
            &["stop", path(&self.rabbit_dir)],
        );
        let _ = script(
            &self.scripts,
            "postgres-nodes.sh",
            &["stop", path(&self.pg_dir)],
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn script(dir: &Path, name: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(dir.join(name))
        .args(args)
        .output()
        .with_context(|| format!("running scripts/{name}"))?;
    if !out.status.success() {
        bail!(
            "scripts/{name} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn rabbitmqctl(node: &str, command: &str) -> anyhow::Result<()> {
    let out = Command::new("rabbitmqctl")
        .args(["-q", "-n", node, command])
        .output()
        .context("running rabbitmqctl")?;
    if !out.status.success() {
        bail!(
            "rabbitmqctl {command} on {node} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A base port whose nodes' ports (AMQP base+i, management 10000+base+i, distribution
/// 20000+base+i) are all free now.
fn free_base(nodes: usize) -> anyhow::Result<u16> {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    for base in (30_000..40_000).step_by(37) {
        let ports =
            (1..=nodes as u16).flat_map(|i| [base + i, 10_000 + base + i, 20_000 + base + i]);
        if ports.clone().all(free) {
            return Ok(base);
        }
    }
    bail!("no free ports for the broker nodes")
}
